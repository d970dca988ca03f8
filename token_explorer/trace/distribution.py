"""The adaptive probe of one next-token distribution: how many candidates carry its mass, and how
it scored the token that was chosen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Probe:
    """Outcome of the adaptive rule on one distribution (one step, raw or processed)."""

    k_used: int  # smallest k >= min_k whose top-k mass reaches the threshold, capped at max_k
    # and at the number of tokens with non-zero probability
    entropy: float  # nats, of the whole distribution
    top_mass_used: float  # probability mass of the k_used candidates
    selected_prob: float
    selected_logprob: float
    selected_rank: int  # 1-based over the whole vocabulary; ties counted in the token's favour
    ids: np.ndarray  # (k_used,) int64 candidate ids, by descending probability
    probs: np.ndarray  # (k_used,) float32
    logprobs: np.ndarray  # (k_used,) float32


def adaptive_k(sorted_probs: np.ndarray, min_k: int, max_k: int, mass: float, support: int) -> int:
    """Smallest k >= min_k with sum(sorted_probs[:k]) >= mass, capped at max_k and ``support``.

    ``sorted_probs``: the largest probabilities in descending order (at least min(max_k, support)).
    """
    cum = np.cumsum(sorted_probs.astype(np.float64))
    reached = np.nonzero(cum >= mass)[0]
    k = int(reached[0]) + 1 if len(reached) else len(cum) + 1
    return max(1, min(max(k, min_k), max_k, support))


def probe(logits: torch.Tensor, selected: int, min_k: int, max_k: int, mass: float) -> Probe:
    """The adaptive probe of softmax(logits) for (V,) float32 logits (``-inf`` = removed token)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (V,)
    p = logp.exp()
    support = int((p > 0).sum())
    top_logp, top_ids = logp.topk(min(max_k, logp.shape[-1]))  # (max_k,)
    top_p = top_logp.exp()
    k = adaptive_k(top_p.cpu().numpy(), min_k, max_k, mass, support)
    entropy = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum()
    chosen = logits[selected]
    rank = int((logits > chosen).sum()) + 1
    top_p = top_p[:k].cpu().numpy()
    return Probe(
        k_used=k,
        entropy=max(0.0, float(entropy)),
        top_mass_used=min(1.0, float(top_p.astype(np.float64).sum())),
        selected_prob=float(p[selected]),
        selected_logprob=float(logp[selected]),
        selected_rank=rank,
        ids=top_ids[:k].cpu().numpy().astype(np.int64),
        probs=top_p.astype(np.float32),
        logprobs=top_logp[:k].cpu().numpy().astype(np.float32),
    )
