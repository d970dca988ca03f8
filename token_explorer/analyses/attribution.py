"""Gradient attributions of one token's log-probability to the input embeddings of its prefix.

The attributed quantity is f(E) = log p(token at the cursor | tokens before it), a function of the
embeddings E (m, d) of the m tokens before the cursor. The cursor's own token and everything after
it are not inputs of f, so they get no score (NaN).

- saliency: |∂f/∂e_i|, the L2 norm of the gradient (nats per unit of embedding norm);
- input × gradient: Σ_d e_i·∂f/∂e_i (nats, a first-order estimate);
- integrated gradients: Σ_d (e_i − b_i)·∫₀¹ ∂f/∂e_i(B + α(E − B)) dα (nats). By completeness the
  scores add up to f(E) − f(B): how much log p of the cursor's token rises when every prefix token
  goes from the baseline B to itself, split over the tokens along the straight path. The default
  baseline is the mean input embedding (an "average token") at every position.

The path integral is taken with an adaptive trapezoid rule: every path point gives f and its
gradient, so each interval's own completeness gap (trapezoid estimate against the change of f over
it) is known; the worst intervals are halved until the gaps sum to under ``TOLERANCE`` of
|f(E) − f(B)|, or ``MAX_POINTS`` points were taken (the result then says it did not converge).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.attribution import baseline_token, embed, gradient
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

SPEC = Spec(
    "attribution", "attribution", version=3,
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
    """Adaptive integrated gradients: (m,) scores, f(E), f(B), points evaluated."""
    path = Path(ctx, embeds, base, target)
    first = [float(x) for x in np.linspace(0.0, 1.0, max(2, start) + 1)]
    for i in range(0, len(first), path.batch):
        path.add(first[i : i + path.batch])
        ctx.progress(len(path.f), MAX_POINTS)
    settled = 0
    while len(path.f) < MAX_POINTS:
        scale = max(abs(path.f[1.0] - path.f[0.0]), MIN_DIFFERENCE)
        gaps = path.intervals()
        gap = abs(float(path.scores().sum(dtype=np.float64)) - (path.f[1.0] - path.f[0.0]))
        settled = settled + 1 if gap <= TOLERANCE * scale else 0
        if sum(g for g, _, _ in gaps) <= TOLERANCE * scale or settled >= 2:
            break
        gaps.sort(reverse=True)
        worst = gaps[: min(path.batch, MAX_POINTS - len(path.f))]
        path.add([(a + b) / 2 for _, a, b in worst])
        ctx.progress(len(path.f), MAX_POINTS)
    return path.scores(), path.f[1.0], path.f[0.0], len(path.f)


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
