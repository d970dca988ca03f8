"""Sequences by decile: each sequence's max attention per head (``triples.max_activation``) kept in
a uniform reservoir, cut into equal buckets by rank, a few sequences drawn from each, and their
attention stored sparse (flat COO indices ``q * seq_len + k``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch


class SequenceReservoir:
    """A uniform sample of at most ``capacity`` sequences with their maxima for n heads (algorithm R):
    every sequence seen so far is in it with the same probability, and memory stays capacity × n."""

    def __init__(self, capacity: int, n_heads: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.ids: list[int] = []
        self.maxima = torch.zeros(capacity, n_heads, dtype=torch.float32)  # (capacity, n)
        self.seen = 0
        self.random = random.Random(seed)

    def offer(self, seq_id: int, maxima: torch.Tensor) -> None:
        """A sequence and its (n,) maxima."""
        slot = self.seen if self.seen < self.capacity else self.random.randrange(self.seen + 1)
        self.seen += 1
        if slot >= self.capacity:
            return
        if slot == len(self.ids):
            self.ids.append(seq_id)
        else:
            self.ids[slot] = seq_id
        self.maxima[slot] = maxima.float().cpu()

    def column(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence ids (N,) and head ``index``'s maxima (N,) of the sequences held."""
        return np.asarray(self.ids, dtype=np.int64), self.maxima[: len(self.ids), index].numpy()


@dataclass(frozen=True)
class Pick:
    """One sequence drawn for a head: its id, its interval (1 = lowest maxima) and its max."""

    seq_id: int
    interval: int
    max_activation: float


def pick_by_interval(ids: np.ndarray, maxima: np.ndarray, n_intervals: int, per_interval: int) -> list[Pick]:
    """Sort by max (ties by id), put rank r of N in interval ``r * n_intervals // N + 1``, and take
    ``per_interval`` sequences from each at evenly spaced ranks (always the bucket's highest)."""
    order = np.lexsort((ids, maxima))  # ascending max, then id
    n = len(order)
    picks: list[Pick] = []
    for interval in range(1, n_intervals + 1):
        ranks = [r for r in range(n) if r * n_intervals // n + 1 == interval]
        if not ranks:
            continue
        chosen = sorted({ranks[int(i)] for i in np.linspace(len(ranks) - 1, 0, min(per_interval, len(ranks)))})
        picks += [Pick(int(ids[order[r]]), interval, float(maxima[order[r]])) for r in reversed(chosen)]
    return picks


def sparse_attention(weights: torch.Tensor, top_k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A (T, T) pattern's top ``top_k`` weights per row that exceed ``threshold``, as sorted flat
    indices ``q * T + k`` (int64) and their weights (float32)."""
    t = weights.shape[-1]
    values, keys = weights.topk(min(top_k, t), dim=-1)  # (T, k)
    rows = torch.arange(t)[:, None].expand_as(keys)
    keep = values > threshold
    flat = (rows * t + keys)[keep]
    order = flat.argsort()
    return flat[order].numpy().astype(np.int64), values[keep][order].numpy().astype(np.float32)
