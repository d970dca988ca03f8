"""Which tokens a head's strongest rows read from and write at: attention-weighted counts of token
ids at each row's strongest key (``triples.row_peaks``), their top entries and their entropy.

Counts are kept sparse, one entry per (head, token id) pair seen, so memory grows with the pairs
that occur (at most heads × vocabulary), not with the corpus.
"""

from __future__ import annotations

import numpy as np
import torch

from .metrics import LN2

_COALESCE_AT = 1 << 18  # pending entries summed into the table once there are this many


class SparseCounts:
    """Weights per (head, token id) for n heads over a vocabulary of V, as sorted unique keys
    ``head * V + id`` with their summed weights."""

    def __init__(self, n_heads: int, vocab_size: int) -> None:
        self.n, self.vocab = n_heads, vocab_size
        self.keys = torch.zeros(0, dtype=torch.int64)  # (E,) sorted, unique
        self.values = torch.zeros(0, dtype=torch.float64)  # (E,)
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.n_pending = 0

    def add(self, heads: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> None:
        """Add ``weights`` at (``heads``, ``ids``), all of one shape."""
        self.pending.append(((heads * self.vocab + ids).flatten().cpu(), weights.double().flatten().cpu()))
        self.n_pending += self.pending[-1][0].numel()
        if self.n_pending >= _COALESCE_AT:
            self._coalesce()

    def _coalesce(self) -> None:
        if not self.pending:
            return
        keys = torch.cat([self.keys] + [k for k, _ in self.pending])
        values = torch.cat([self.values] + [v for _, v in self.pending])
        self.keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        self.values = torch.zeros(len(self.keys), dtype=torch.float64).scatter_add_(0, inverse, values)
        self.pending, self.n_pending = [], 0

    def head(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Head ``index``'s token ids (E_h,) and weights (E_h,)."""
        self._coalesce()
        lo, hi = torch.searchsorted(self.keys, torch.tensor([index * self.vocab, (index + 1) * self.vocab]))
        return self.keys[lo:hi] - index * self.vocab, self.values[lo:hi]

    def entropy_bits(self) -> np.ndarray:
        """(n,) entropy in bits of each head's normalised weights; NaN for a head with none."""
        self._coalesce()
        head = self.keys // self.vocab  # (E,)
        total = torch.zeros(self.n, dtype=torch.float64).scatter_add_(0, head, self.values)  # (n,)
        p = self.values / total[head]
        terms = torch.where(p > 0, -p * p.log(), torch.zeros_like(p)) / LN2
        ent = torch.zeros(self.n, dtype=torch.float64).scatter_add_(0, head, terms)
        return torch.where(total > 0, ent, torch.full_like(ent, float("nan"))).numpy()

    def top(self, index: int, n: int) -> list[tuple[int, float]]:
        """The ``n`` heaviest token ids of head ``index`` with their share of its total weight."""
        ids, weights = self.head(index)
        total = float(weights.sum())
        if total <= 0:
            return []
        order = torch.argsort(weights, descending=True, stable=True)[:n]
        return [(int(ids[i]), float(weights[i]) / total) for i in order]


class TokenTally:
    """Token counts at the query and at the key of each row's strongest pair, for n heads."""

    def __init__(self, n_heads: int, vocab_size: int) -> None:
        self.query = SparseCounts(n_heads, vocab_size)
        self.key = SparseCounts(n_heads, vocab_size)

    def add(self, rows: slice, tokens: torch.Tensor, q: torch.Tensor, k: torch.Tensor, w: torch.Tensor) -> None:
        """Add one sequence's row peaks for the heads at ``rows``: ``tokens`` (T,), ``q`` (R,),
        ``k`` (h, R), ``w`` (h, R)."""
        tokens, q, k, w = tokens.cpu(), q.cpu(), k.cpu(), w.cpu()
        heads = torch.arange(rows.start, rows.stop)[:, None].expand_as(k)  # (h, R)
        self.query.add(heads, tokens[q].expand_as(k), w)
        self.key.add(heads, tokens[k], w)
