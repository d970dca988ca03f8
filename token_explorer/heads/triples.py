"""High-attention (query, key) pairs: each row's strongest key, leaving out the diagonal, row 0
and column 0 (the rules of the headvis deciles: position 0 is an attention sink, the diagonal a
token reading itself)."""

from __future__ import annotations

import torch


def off_sink_mask(seen: torch.Tensor) -> torch.Tensor:
    """(T, T) bool: the pairs the high-attention statistics read: seen, q >= 1, k >= 1, k != q."""
    t = seen.shape[-1]
    keep = seen & ~torch.eye(t, dtype=torch.bool, device=seen.device)
    keep[0, :] = False
    keep[:, 0] = False
    return keep


def row_peaks(weights: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's strongest allowed key: query positions (R,), key positions (h, R), weights (h, R).

    ``weights``: (h, T, T); ``seen``: (T, T). Rows without an allowed key (q < 2, or a window of
    one) are left out, so R is the number of rows that have one.
    """
    keep = off_sink_mask(seen)  # (T, T)
    rows = keep.any(-1).nonzero().flatten()  # (R,)
    masked = weights.masked_fill(~keep, -1.0)[:, rows]  # (h, R, T)
    w, k = masked.max(-1)  # (h, R)
    return rows, k, w


def max_activation(weights: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """(h,) the sequence's highest attention weight outside the diagonal, row 0 and column 0
    (0 for a sequence too short to have one)."""
    keep = off_sink_mask(seen)
    if not bool(keep.any()):
        return weights.new_zeros(weights.shape[0])
    return weights.masked_fill(~keep, 0.0).flatten(1).max(-1).values
