"""Points for a head's projection cloud: a weighted sample of its high-attention (sequence, q, k)
triples with the Q, K, O and V vectors there, and a 3-component PCA of each stack.

The sample is weighted reservoir sampling (A-Res: key = log(u) / weight, keep the largest keys), so
a triple is drawn in proportion to its attention weight and memory stays ``capacity`` points per head.
"""

from __future__ import annotations

import numpy as np
import torch

STACKS = ("Q", "K", "O", "V")  # Q at q, K at k, O at q, V at k


class TripleReservoir:
    """Weighted samples of at most ``capacity`` triples per head for the h studied heads of one layer
    (every head gets one candidate per row, so all hold the same number P of points)."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.key: torch.Tensor | None = None  # (h, P) float64 sampling keys
        self.seq: torch.Tensor | None = None  # (h, P) int64 sequence ids
        self.q: torch.Tensor | None = None  # (h, P) int64 query positions
        self.k: torch.Tensor | None = None  # (h, P) int64 key positions
        self.vectors: dict[str, torch.Tensor] = {}  # stack -> (h, P, hd) float32

    def offer(self, seq_id: int, q: torch.Tensor, k: torch.Tensor, w: torch.Tensor,
              vectors: dict[str, torch.Tensor]) -> None:
        """One sequence's row peaks: ``q`` (R,), ``k`` (h, R), ``w`` (h, R); ``vectors``: stack -> (h, T, hd)."""
        h, r = k.shape
        if r == 0:
            return
        u = torch.rand(h, r, generator=self.generator, dtype=torch.float64).clamp_min(1e-300)
        key = u.log() / w.double().cpu().clamp_min(1e-12)  # (h, R): larger is kept
        q_pos, k_pos = q.cpu().expand(h, r), k.cpu()
        at = {"Q": q_pos, "O": q_pos, "K": k_pos, "V": k_pos}
        new = {s: torch.gather(v.cpu().float(), 1, at[s][..., None].expand(-1, -1, v.shape[-1]))
               for s, v in vectors.items()}  # stack -> (h, R, hd)
        seq = torch.full((h, r), seq_id, dtype=torch.int64)
        if self.key is None:
            self.key, self.seq, self.q, self.k, self.vectors = key, seq, q_pos.clone(), k_pos.clone(), new
        else:
            self.key = torch.cat([self.key, key], 1)
            self.seq, self.q, self.k = torch.cat([self.seq, seq], 1), torch.cat([self.q, q_pos], 1), torch.cat([self.k, k_pos], 1)
            self.vectors = {s: torch.cat([self.vectors[s], new[s]], 1) for s in STACKS}
        if self.key.shape[1] > self.capacity:
            best = self.key.topk(self.capacity, dim=1).indices  # (h, capacity)
            self.key, self.seq = self.key.gather(1, best), self.seq.gather(1, best)
            self.q, self.k = self.q.gather(1, best), self.k.gather(1, best)
            self.vectors = {s: v.gather(1, best[..., None].expand(-1, -1, v.shape[-1])) for s, v in self.vectors.items()}

    def head(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The ``index``-th head's points: sequence ids, q, k (each (P,)) and stack -> (P, hd) vectors."""
        if self.key is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), {}
        return (self.seq[index].numpy(), self.q[index].numpy(), self.k[index].numpy(),
                {s: v[index].numpy() for s, v in self.vectors.items()})


def pca3(x: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, 3) coordinates on the first three principal components (zeros beyond the rank);
    each component's sign is fixed so its largest loading is positive."""
    n = x.shape[0]
    out = np.zeros((n, 3))
    if n == 0:
        return out
    centred = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(N, d), d)
    vt = vt[:3]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    out[:, : len(vt)] = centred @ (vt * signs[:, None]).T
    return out
