"""One query position's attention weights, recomputed from its stored query and the cached keys.

Recomputing one row per head costs a (H, hd) x (hd, n) product per layer, so the model itself keeps
its fused attention kernel and never has to materialise weights.
"""

from __future__ import annotations

import numpy as np
import torch

from ..results import Attention
from . import register
from .context import Context, LayerKeys
from .declare import ALL, Param, Spec
from .distribution import LN2

AGGREGATES = ("mean", "max")


def attention_row(query: torch.Tensor, layer: LayerKeys, cursor: int) -> torch.Tensor:
    """Weights (H, cursor+1) float32 of the query at ``cursor`` over positions 0..cursor.

    ``query``: (H, hd), heads grouped over the kv heads (query head h reads kv head h // groups).
    Scores are q·k * scaling, soft-capped as cap·tanh(s/cap) where set, masked causally and to
    the sliding window (a key at p is seen when cursor - window < p <= cursor), then softmaxed.
    Positions the query cannot see get weight exactly 0.
    """
    heads, kv_heads = query.shape[0], layer.keys.shape[0]
    assert heads % kv_heads == 0, f"{heads} query heads over {kv_heads} kv heads"
    keys = layer.keys.float().repeat_interleave(heads // kv_heads, dim=0)  # (H, k, hd)
    scores = torch.einsum("hd,hkd->hk", query.float(), keys) * layer.scaling  # (H, k)
    if layer.softcap:
        scores = torch.tanh(scores / layer.softcap) * layer.softcap
    pos = torch.arange(layer.start, layer.start + keys.shape[1], device=scores.device)  # (k,)
    seen = pos <= cursor
    if layer.sliding_window is not None:
        seen &= pos > cursor - layer.sliding_window
    assert bool(seen.any()), "the cursor's own key must be cached"
    weights = scores.masked_fill(~seen, float("-inf")).softmax(-1)  # (H, k)
    row = scores.new_zeros(heads, cursor + 1)  # (H, cursor+1)
    keep = pos[seen]
    row[:, keep] = weights[:, seen]
    return row


def row_entropy_bits(rows: torch.Tensor) -> np.ndarray:
    """(..., n) attention rows -> (...,) float32 entropy in bits (0 log 0 = 0)."""
    p = rows.double()
    ent = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1) / LN2
    return ent.float().cpu().numpy()


SPEC = Spec(
    "attention", "attention influence", version=2,
    params=(Param("aggregate", "mode", computes=False, choices=AGGREGATES),
            Param("layer", "layer", computes=False, hi="last_block", default=ALL, allow_all=True),
            Param("head", "pick", computes=False, hi="last_head", default=ALL, allow_all=True)),
    reads="prefix", at_cursor=True, needs=frozenset({"attention"}), scale="probability", unit="weight",
)


def cursor_rows(ctx: Context) -> torch.Tensor:
    """(L, H, cursor+1) float32 attention weights of the query at the cursor in every layer and head."""
    cap = ctx.captures
    assert cap is not None and cap.queries is not None
    rows = []
    for l, keys in enumerate(cap.keys):
        ctx.check()
        rows.append(attention_row(cap.queries[l, :, ctx.cursor], keys, ctx.cursor))  # (H, cursor+1)
    return torch.stack(rows)


def _available(info, settings) -> str | None:
    return None if info.queries else "attention queries of this model cannot be captured"


@register(SPEC, available=_available)
def attention(ctx: Context) -> Attention:
    """Every layer's and head's attention row at the cursor; layer, head and aggregate only select."""
    rows = cursor_rows(ctx)  # (L, H, cursor+1)
    return Attention(weights=rows.cpu().numpy().astype(np.float32), entropy_bits=row_entropy_bits(rows))
