"""Gradient attributions of one token's log-probability to the input embeddings of its prefix.

The attributed quantity is f(E) = log p(token at the cursor | tokens before it), a function of the
embeddings E (m, d) of the m tokens before the cursor. The cursor's own token and everything after
it are not inputs of f, so they get no score (NaN).

- saliency: |∂f/∂e_i|, the L2 norm of the gradient (nats per unit of embedding norm);
- input × gradient: Σ_d e_i·∂f/∂e_i (nats, a first-order estimate);
- integrated gradients: Σ_d (e_i − b_i)·∫ ∂f/∂e_i along a path from the baseline B to E (nats).
  By completeness the scores add up to f(E) − f(B): how much log p of the cursor's token rises when
  every prefix token goes from the baseline to itself. The default baseline is the mean input
  embedding (an "average token") at every position.

The path has two legs. First the first token alone goes from its baseline to itself, the others
staying at theirs: its score is that exact change of f (one more forward, no integral). Then all
the others go together along a straight line, the first token staying itself: their scores are
the integrated gradients of that leg. Why: the first position's hidden state (the attention sink,
with its massive activations) switches sharply as its embedding moves, so along the plain straight
path f jumps by several nats within 1% of it (on the bundled model "Once upon a time" at ' time'
kept a 50% gap after 512 points); with the first token already itself the rest of the path is
smooth (a few dozen points reach 5%).

The second leg's integral is an adaptive trapezoid rule: every path point gives f and its gradient,
so each interval's own completeness gap (trapezoid estimate against the change of f over it) is
known; the intervals holding most of the gap are halved until the gaps sum to under ``TOLERANCE``
of |f(E) − f(B)|, or ``MAX_POINTS`` points were taken (the result then says it did not converge).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.attribution import baseline_token, embed, gradient, log_prob
from ..model.hooks import checking
from ..results import MIN_DIFFERENCE, Attribution, Completeness
from . import register
from .context import Context
from .declare import Param, Spec

METHODS = ("saliency", "input_x_gradient", "integrated_gradients")
BASELINES = ("mean", "token")  # the mean input embedding; the pad/eos token's embedding (zero embeddings
# are not offered: RMSNorm is singular there, and the integrand with it)
TOLERANCE = 0.05  # completeness gap asked for, as a fraction of |f(E) - f(B)|
MAX_POINTS = 512  # path points (gradients) at most
TOKENS_PER_BATCH = 1024  # prefix tokens per forward+backward
REFINE_SHARE = 0.8  # each round halves the worst intervals that hold this share of the local gaps

SPEC = Spec(
    "attribution", "attribution", version=4,
    params=(Param("method", "mode", computes=True, choices=METHODS),
            Param("baseline", "setting", computes=True, choices=BASELINES)),
    reads="prefix", at_cursor=True, needs=frozenset(), scale="signed", unit="nats",
)


def saliency(grad: torch.Tensor) -> np.ndarray:
    """(m, d) gradient of f -> (m,) float32: its L2 norm per token."""
    return grad.double().norm(dim=-1).float().cpu().numpy()


def input_x_gradient(embeds: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
    """(m, d) embeddings and gradient -> (m,) float32: sum over d of E * df/dE per token."""
    return (embeds.double() * grad.double()).sum(-1).float().cpu().numpy()


def baseline(ctx: Context, which: str, m: int) -> tuple[torch.Tensor, int | None]:
    """(m, d) baseline embeddings and the token they are the embedding of, if any."""
    weight = ctx.model.get_input_embeddings().weight
    if which == "token":
        token = baseline_token(ctx.model)
        return embed(ctx.model, [token] * m), token
    with torch.no_grad():
        return weight.mean(0, keepdim=True).expand(m, -1).clone(), None


class Path:
    """f and the per-token integrand s_i(α) = Σ_d (e_i − b_i)·∂f/∂e_i at points of the path B + α(E − B)."""

    def __init__(self, ctx: Context, embeds: torch.Tensor, base: torch.Tensor, target: int) -> None:
        self.ctx, self.target = ctx, target
        self.base, self.delta = base.double(), embeds.double() - base.double()  # (m, d)
        self.batch = max(1, TOKENS_PER_BATCH // max(1, embeds.shape[0]))
        self.f: dict[float, float] = {}
        self.s: dict[float, torch.Tensor] = {}  # α -> (m,) float64
        self.dtype = embeds.dtype

    def add(self, alphas: list[float]) -> None:
        """Evaluate f and s at ``alphas`` (one batched forward + backward, checked per block)."""
        a = torch.tensor(alphas, dtype=torch.float64, device=self.delta.device)  # (b,)
        points = (self.base[None] + a[:, None, None] * self.delta[None]).to(self.dtype)  # (b, m, d)
        with checking(self.ctx.model, self.ctx.family, self.ctx.check):
            f, grad = gradient(self.ctx.model, points, self.target)  # (b,), (b, m, d)
        s = (grad.double() * self.delta[None]).sum(-1)  # (b, m)
        for i, alpha in enumerate(alphas):
            self.f[alpha], self.s[alpha] = float(f[i]), s[i]

    def intervals(self) -> list[tuple[float, float, float]]:
        """(local gap, a, b) of every interval: |trapezoid of Σ_i s_i − (f(b) − f(a))|."""
        xs = sorted(self.f)
        return [(abs((b - a) / 2 * float(self.s[a].sum() + self.s[b].sum()) - (self.f[b] - self.f[a])), a, b)
                for a, b in zip(xs, xs[1:])]

    def scores(self) -> np.ndarray:
        """(m,) float32 trapezoid integral of each token's s_i over [0, 1]."""
        xs = sorted(self.f)
        total = sum((b - a) / 2 * (self.s[a] + self.s[b]) for a, b in zip(xs, xs[1:]))
        return total.float().cpu().numpy()


def integrated_gradients(ctx: Context, embeds: torch.Tensor, base: torch.Tensor, target: int,
                         start: int) -> tuple[np.ndarray, float, float, int]:
    """Integrated gradients along the two-leg path (see the module docstring): (m,) scores, f(E),
    f(B), path points evaluated."""
    with torch.no_grad(), checking(ctx.model, ctx.family, ctx.check):
        f_base = float(log_prob(ctx.model, base[None], target)[0])  # f(B)
    if embeds.shape[0] == 1:  # the first leg is the whole path
        with torch.no_grad(), checking(ctx.model, ctx.family, ctx.check):
            f_input = float(log_prob(ctx.model, embeds[None], target)[0])
        return np.array([f_input - f_base], np.float32), f_input, f_base, 0
    first = base.clone()
    first[0] = embeds[0]  # the end of the first leg: the first token itself, the rest at the baseline
    path = Path(ctx, embeds, first, target)  # the second leg; the first token stays itself on it
    points = [float(x) for x in np.linspace(0.0, 1.0, max(2, start) + 1)]
    for i in range(0, len(points), path.batch):
        path.add(points[i : i + path.batch])
        ctx.progress(len(path.f), MAX_POINTS)
    settled = 0
    while len(path.f) < MAX_POINTS:
        scale = max(abs(path.f[1.0] - f_base), MIN_DIFFERENCE)
        gaps = path.intervals()
        gap = abs(float(path.scores().sum(dtype=np.float64)) - (path.f[1.0] - path.f[0.0]))
        settled = settled + 1 if gap <= TOLERANCE * scale else 0
        total = sum(g for g, _, _ in gaps)
        if total <= TOLERANCE * scale or settled >= 2:
            break
        gaps.sort(reverse=True)
        worst, held = [], 0.0  # the fewest worst intervals holding most of the local gaps
        for g, a, b in gaps[: min(path.batch, MAX_POINTS - len(path.f))]:
            if held >= REFINE_SHARE * total:
                break
            worst.append((a + b) / 2)
            held += g
        path.add(worst)
        ctx.progress(len(path.f), MAX_POINTS)
    scores = path.scores()
    scores[0] = path.f[0.0] - f_base  # the first leg, exact: only the first token moves on it
    return scores, path.f[1.0], f_base, len(path.f)


@register(SPEC)
def attribution(ctx: Context) -> Attribution:
    """Gradient attribution of log p(token at the cursor | its prefix) to each prefix token."""
    method, cursor = ctx.params["method"], ctx.cursor
    scores = np.full(cursor + 1, np.nan, np.float32)  # (cursor+1,) NaN at the cursor itself
    if cursor == 0:
        return Attribution(scores, method, float("nan"))
    target = int(ctx.tokens[cursor])
    embeds = embed(ctx.model, ctx.tokens[:cursor])  # (m, d), m = cursor
    ctx.check()
    if method != "integrated_gradients":
        with checking(ctx.model, ctx.family, ctx.check):
            f, grad = gradient(ctx.model, embeds[None], target)  # (1,), (1, m, d)
        scores[:cursor] = saliency(grad[0]) if method == "saliency" else input_x_gradient(embeds, grad[0])
        return Attribution(scores, method, float(f[0]))
    base, token = baseline(ctx, ctx.params["baseline"], cursor)
    start = int(getattr(getattr(ctx.settings, "engine", None), "ig_steps", 8))
    values, f_input, f_base, points = integrated_gradients(ctx, embeds, base, target, start)
    scores[:cursor] = values
    done = Completeness(f_input, f_base, float(np.sum(values, dtype=np.float64)), points, TOLERANCE, token)
    return Attribution(scores, method, f_input, done)
