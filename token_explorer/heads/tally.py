"""Which tokens a head's strongest rows read from and write at: attention-weighted counts of token
ids at each row's strongest key (``triples.row_peaks``), their top entries and their entropy."""

from __future__ import annotations

import numpy as np
import torch

from .metrics import LN2


class TokenTally:
    """Attention-weighted token-id counts at query and key positions for n heads over a vocabulary of V."""

    def __init__(self, n_heads: int, vocab_size: int) -> None:
        self.query = torch.zeros(n_heads, vocab_size, dtype=torch.float64)  # (n, V)
        self.key = torch.zeros(n_heads, vocab_size, dtype=torch.float64)  # (n, V)

    def add(self, rows: slice, tokens: torch.Tensor, q: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> None:
        """Add one sequence's row peaks for the heads at ``rows``: ``tokens`` (T,), ``q`` (R,),
        ``k`` (h, R), ``w`` (h, R)."""
        tokens, q, k, w = tokens.cpu(), q.cpu(), k.cpu(), w.double().cpu()
        self.query[rows].scatter_add_(1, tokens[q].expand_as(k), w)
        self.key[rows].scatter_add_(1, tokens[k], w)

    @staticmethod
    def entropy_bits(counts: torch.Tensor) -> np.ndarray:
        """(n, V) weights -> (n,) entropy in bits of each row normalised; NaN for an empty row."""
        total = counts.sum(-1, keepdim=True)
        p = counts / total
        ent = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1) / LN2
        return torch.where(total[:, 0] > 0, ent, torch.full_like(ent, float("nan"))).numpy()

    @staticmethod
    def top(counts: torch.Tensor, index: int, n: int) -> list[tuple[int, float]]:
        """The ``n`` heaviest token ids of head ``index`` with their share of its total weight."""
        row = counts[index]
        total = float(row.sum())
        if total <= 0:
            return []
        weights, ids = row.topk(min(n, int((row > 0).sum())))
        return [(int(i), float(v) / total) for i, v in zip(ids, weights)]
