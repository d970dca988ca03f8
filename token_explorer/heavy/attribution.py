"""The attribution view: which earlier tokens the cursor's token owes its log-probability to.

Attributes f = log p(tokens[cursor] | tokens[:cursor]) to the input embeddings of tokens
0..cursor-1. The cursor's own token and everything after it are not inputs of f, so they get no
score (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..analyses import attribution as attr
from ..errors import UserError
from ..model.attribution import baseline_token, embed, gradient, log_prob, path_mean_gradient
from ..results import Completeness, Table, TokenScores
from . import needs_family, register

TOP = 8
DEFINITIONS = {
    "saliency": "saliency |∂f/∂e_i| (L2 norm of the gradient)",
    "input_x_gradient": "input × gradient Σ_d e_i·∂f/∂e_i",
    "integrated_gradients": "integrated gradients",
}
BASELINES = ("token", "zero")  # token: every position holds the baseline token's embedding


def _method(params: Mapping[str, Any]) -> str:
    method = params.get("method", "saliency")
    if method not in attr.METHODS:
        raise UserError(f"attribution method must be one of {', '.join(attr.METHODS)}, got {method!r}")
    return method


def _steps(engine, params: Mapping[str, Any]) -> int:
    steps = int(params.get("steps", engine.settings.engine.ig_steps))
    if steps < 1:
        raise UserError(f"integrated-gradients steps must be >= 1, got {steps}")
    return steps


def _baseline(params: Mapping[str, Any]) -> str:
    baseline = params.get("baseline", "token")
    if baseline not in BASELINES:
        raise UserError(f"attribution baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    return baseline


def _key_extra(engine, params: Mapping[str, Any]) -> Mapping[str, Any]:
    if params.get("method") != "integrated_gradients":
        return {}
    return {"steps": _steps(engine, params), "baseline": _baseline(params)}


@register("attribution", 2, needs_family, key_extra=_key_extra)
def attribution(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    """Gradient attribution of log p(token at the cursor | its prefix) to each prefix token."""
    method = _method(params)
    values = np.full(cursor + 1, np.nan, np.float32)  # (cursor+1,) NaN at the cursor itself
    common = dict(view="attribution", unit="nats" if method != "saliency" else "nats per unit")
    if cursor == 0:
        return TokenScores(values=values, lo=-1.0, hi=1.0,
                           caption="attribution: the first token has no prefix to attribute to", **common)
    model, target = engine.session.model, int(tokens[cursor])
    embeds = embed(model, tokens[:cursor])  # (m, d), m = cursor
    engine.check_cancelled()
    note, completeness = "", None
    if method != "integrated_gradients":
        f, grad = gradient(model, embeds[None], target)  # (1,), (1, m, d)
        f_input = float(f[0])
        scores = attr.saliency(grad[0]) if method == "saliency" else attr.input_x_gradient(embeds, grad[0])
    else:
        steps, which = _steps(engine, params), _baseline(params)
        if which == "zero":
            base, named = torch.zeros_like(embeds), "zero embeddings"
        else:  # a real point of embedding space: zero embeddings sit where RMSNorm is singular
            token = baseline_token(model)
            base = embed(model, [token] * cursor)
            named = f"the embedding of token {token} {engine.token_texts([token])[0]!r} at every position"
        mean_grad = path_mean_gradient(model, embeds, target, steps, engine.check_cancelled, baseline=base)
        ends = log_prob(model, torch.stack([embeds, base]), target)  # (2,) f(E), f(B)
        f_input, f_base = float(ends[0]), float(ends[1])
        ig = attr.integrated_gradients(embeds - base, mean_grad, f_input, f_base, steps)
        scores = ig.scores
        completeness = Completeness(f_input, f_base, ig.total, steps)
        note = (f"; baseline: {named}; {steps} midpoint steps; completeness: Σ attributions = {ig.total:.4f} vs "
                f"f(input) − f(baseline) = {f_input - f_base:.4f} (gap {ig.gap:+.2e})")
    values[:cursor] = scores
    finite = np.abs(scores[np.isfinite(scores)])
    bound = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    order = np.argsort(-np.abs(scores), kind="stable")[:TOP]
    texts = engine.token_texts([tokens[int(i)] for i in order])
    return TokenScores(
        values=values,
        lo=0.0 if method == "saliency" else -bound,
        hi=bound,
        caption=(f"{DEFINITIONS[method]} of f = log p(token {cursor} | tokens 0..{cursor - 1}) = {f_input:.4f} nats "
                 f"(p = {math.exp(f_input):.4g}) with respect to each prefix token's input embedding e_i; "
                 f"the cursor and tokens after it are not inputs{note}"),
        tables=(Table(f"largest |attribution| ({method})", ("position", "token", "score"),
                      tuple((str(int(i)), t, f"{scores[i]:+.4g}") for i, t in zip(order, texts))),),
        completeness=completeness,
        **common,
    )
