"""The logit-lens view: how early each layer predicts the token that actually follows.

Every layer's residual stream is read through the model's own final norm, unembedding and logit
soft-cap (``model.unembed.Unembed``), so the last row is the model's real distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..analyses.lens import layer_logprobs, lens_stats
from ..errors import UserError
from ..results import LensStats, Table, TokenScores
from . import needs_family, register
from .residual import captures, fmt, is_prefix, layer_name, layer_param

QUANTITIES = ("prob", "rank")
LENS_BUDGET = 1 << 24  # floats of (layers x positions x vocab) lens logits held at once
TOP = 5


def _from_records(engine, tokens: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(L+1, n) token probabilities and ranks from the session's records, or None if not all there."""
    session = engine.session
    n = len(tokens)
    if not is_prefix(tokens, session.tokens):
        return None
    records = session.positions[:n]
    if any(p.lens is None or (i > 0 and p.lens.token_prob is None) for i, p in enumerate(records)):
        return None
    rows = records[0].lens.n_layers
    prob, rank = np.full((rows, n), np.nan, np.float32), np.full((rows, n), np.nan, np.float64)
    for i in range(1, n):
        prob[:, i] = records[i].lens.token_prob
        rank[:, i] = records[i].lens.token_rank
    return prob, rank


def _computed(engine, tokens: Sequence[int], resid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(L+1, n) lens probability and 1-based rank of token i read at position i-1 (column 0 NaN)."""
    unembed, n = engine.session.unembed, len(tokens)
    rows, vocab = resid.shape[0], engine.info.vocab_size
    prob, rank = np.full((rows, n), np.nan, np.float32), np.full((rows, n), np.nan, np.float64)
    batch = max(1, LENS_BUDGET // (rows * vocab))
    target = torch.tensor(list(tokens[1:]), device=resid.device)  # (n-1,) token i+1 follows position i
    for start in range(0, n - 1, batch):
        engine.check_cancelled()
        stop = min(n - 1, start + batch)
        logp = layer_logprobs(unembed(resid[:, start:stop]))  # (L+1, b, V)
        idx = target[start:stop][None, :, None].expand(rows, -1, 1)  # (L+1, b, 1)
        chosen = logp.gather(-1, idx)  # (L+1, b, 1)
        prob[:, start + 1 : stop + 1] = chosen[..., 0].exp().cpu().numpy()
        rank[:, start + 1 : stop + 1] = ((logp > chosen).sum(-1) + 1).cpu().numpy()
    return prob, rank


def _cursor_stats(engine, tokens: Sequence[int], cursor: int, resid: torch.Tensor | None) -> LensStats:
    session = engine.session
    if is_prefix(tokens[: cursor + 1], session.tokens) and session.positions[cursor].lens is not None:
        return session.positions[cursor].lens
    if resid is None:
        resid = captures(engine, tokens[: cursor + 1]).resid
    return lens_stats(layer_logprobs(session.unembed(resid[:, cursor])), TOP)


@register("lens", 1, needs_family, needs_prefix_only=False)
def lens(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    """Lens probability (or log10 rank) of each actual next token, per layer; lens tables at the cursor."""
    quantity = params.get("quantity", "prob")
    if quantity not in QUANTITIES:
        raise UserError(f"lens quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
    resid = None
    session = engine.session
    if is_prefix(tokens, session.tokens):
        session.fill_lens(engine.check_cancelled)  # the records a long prefill left out, once
    found = _from_records(engine, tokens)
    if found is None:
        resid = captures(engine, tokens).resid  # (L+1, n, d)
        found = _computed(engine, tokens, resid)
    prob, rank = found
    n_layers = prob.shape[0] - 1
    layer = layer_param(params, n_layers, n_layers)
    grid = prob if quantity == "prob" else np.log10(rank).astype(np.float32)
    vocab = engine.info.vocab_size
    what = "probability" if quantity == "prob" else "log10 of the 1-based rank"
    stats = _cursor_stats(engine, tokens, cursor, resid)
    top = stats.top_ids[:, :TOP]
    texts = engine.token_texts(np.unique(top).tolist())
    text_of = dict(zip(np.unique(top).tolist(), texts))
    rows = tuple(
        (layer_name(l, n_layers), fmt(float(stats.entropy_bits[l]), 3), fmt(float(stats.kl_to_final_bits[l]), 3),
         "  ".join(f"{text_of[int(t)]} {p:.3f}" for t, p in zip(top[l], stats.top_probs[l, :TOP])))
        for l in range(n_layers + 1))
    return TokenScores(
        view="lens",
        values=grid[layer].astype(np.float32),
        lo=0.0,
        hi=1.0 if quantity == "prob" else float(np.log10(vocab)),
        unit="" if quantity == "prob" else "log10 rank",
        caption=(f"logit lens at layer {layer_name(layer, n_layers)}: {what} of each token under that layer's "
                 f"residual stream at the previous position, read through the final norm + unembedding "
                 f"(layer {n_layers} is the model's own distribution); the first token has no prefix"),
        tables=(Table(f"lens at the cursor (token {cursor}): next-token distribution per layer",
                      ("layer", "entropy bits", "KL(final‖layer) bits", f"top {TOP}"), rows),),
        grid=grid.astype(np.float32),
        grid_label=(f"lens {what} of the actual token: rows = layers 0 (embeddings) … {n_layers} "
                    f"(model output), columns = tokens"),
    )
