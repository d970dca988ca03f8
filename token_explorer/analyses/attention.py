"""One query position's attention weights, recomputed from its stored query and the cached keys.

Recomputing one row per head costs a (H, hd) x (hd, n) product per layer, so the model itself keeps
its fused attention kernel and never has to materialise weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .distribution import LN2

AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class LayerKeys:
    """What one layer's attention needs besides the query: keys, where they start, how it scores."""

    keys: torch.Tensor  # (kv_heads, k, hd) post-rotary keys of positions start .. start+k-1
    start: int  # position of the first key (> 0 once a sliding-window cache dropped old keys)
    scaling: float
    softcap: float | None = None
    sliding_window: int | None = None


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


def aggregate(rows: torch.Tensor, layer: int = -1, head: int = -1, how: str = "mean") -> np.ndarray:
    """(L, H, n) rows -> (n,) float32: the mean (or max) over the chosen layers and heads.

    ``layer``/``head`` of -1 take all of them; otherwise only that one.
    """
    assert how in AGGREGATES, f"aggregate must be one of {AGGREGATES}, got {how!r}"
    picked = rows if layer < 0 else rows[layer : layer + 1]  # (L', H, n)
    picked = picked if head < 0 else picked[:, head : head + 1]  # (L', H', n)
    flat = picked.reshape(-1, picked.shape[-1])  # (L'H', n)
    out = flat.mean(0) if how == "mean" else flat.amax(0)
    return out.float().cpu().numpy()
