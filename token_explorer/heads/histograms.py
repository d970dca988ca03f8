"""The |q − k| histogram of a head: attention mass by query–key distance in log-spaced bins."""

from __future__ import annotations

import numpy as np
import torch


def distance_edges(seq_len: int, n_bins: int = 12) -> np.ndarray:
    """Integer bin edges [0, 1, ..., seq_len]: 0 alone (the diagonal), then log-spaced from 1.

    Bin i holds distances d with edges[i] <= d < edges[i+1]; the largest distance is seq_len - 1.
    """
    logs = np.unique(np.round(np.geomspace(1, seq_len, n_bins)).astype(np.int64))
    return np.concatenate([[0], logs]).astype(np.float64)


class DistanceHistogram:
    """Running attention mass per distance bin for n heads."""

    def __init__(self, n_heads: int, edges: np.ndarray) -> None:
        self.edges = edges
        self.mass = torch.zeros(n_heads, len(edges) - 1, dtype=torch.float64)  # (n, bins)
        self._bins: dict[int, torch.Tensor] = {}  # sequence length -> (T*T,) bin of each (q, k)

    def bins(self, t: int) -> torch.Tensor:
        """(T*T,) the bin of |q - k| for each flat (q, k) of a T-token sequence."""
        if t not in self._bins:
            pos = torch.arange(t)
            dist = (pos[:, None] - pos[None, :]).abs().flatten()  # (T*T,)
            self._bins[t] = torch.bucketize(dist, torch.tensor(self.edges[1:-1], dtype=torch.int64), right=True)
        return self._bins[t]

    def add(self, rows: slice, weights: torch.Tensor) -> None:
        """Add one sequence's ``weights`` (h, T, T) for the heads at ``rows``."""
        bins = self.bins(weights.shape[-1])
        self.mass[rows].scatter_add_(1, bins.expand(weights.shape[0], -1), weights.double().flatten(1).cpu())

    def fractions(self, index: int) -> np.ndarray:
        """(bins,) share of head ``index``'s attention mass in each bin (sums to 1)."""
        row = self.mass[index]
        return (row / row.sum()).numpy()


def value_histogram(values: np.ndarray, n_bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Edges (n_bins + 1,) over [0, 1] and counts (n_bins,) of ``values`` (attention weights)."""
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=n_bins, range=(0.0, 1.0))
    return edges, counts.astype(np.float64)
