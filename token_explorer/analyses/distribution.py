"""Statistics of next-token distributions, computed from full logits.

All functions take float32 logits of shape (T, V) (one row per position) and return NumPy arrays.
Probabilities are the raw softmax of the logits: no temperature, top-k or top-p filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

LN2 = math.log(2.0)


@dataclass(frozen=True)
class NextStats:
    """Per-row summary of a next-token distribution; every field has T rows."""

    top_ids: np.ndarray  # (T, k) int64
    top_probs: np.ndarray  # (T, k) float32
    top_logits: np.ndarray  # (T, k) float32
    entropy_bits: np.ndarray  # (T,) float32
    energy: np.ndarray  # (T,) float32, -T logsumexp(logits / T), nats
    logit_mean: np.ndarray  # (T,) float32
    logit_std: np.ndarray  # (T,) float32, population std over the vocabulary


@dataclass(frozen=True)
class TokenStats:
    """How a distribution scored one given token per row; every field has T rows."""

    prob: np.ndarray  # (T,) float32
    rank: np.ndarray  # (T,) int64, 1-based; ties resolved in the token's favour
    logit: np.ndarray  # (T,) float32
    z: np.ndarray  # (T,) float32, (logit - mean) / std over the vocabulary


def entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    """(..., V) log-probabilities -> (...) entropy in bits."""
    return -(logp.exp() * logp).sum(-1) / LN2


def next_stats(logits: torch.Tensor, k: int, temperature: float) -> NextStats:
    """Summaries of each row's distribution: top-k, entropy, free energy, logit moments."""
    logits = logits.float()  # (T, V)
    logp = torch.log_softmax(logits, dim=-1)  # (T, V)
    top_logits, top_ids = logits.topk(min(k, logits.shape[-1]), dim=-1)  # (T, k)
    top_probs = logp.gather(-1, top_ids).exp()
    energy = -temperature * torch.logsumexp(logits / temperature, dim=-1)  # (T,)
    return NextStats(
        top_ids=top_ids.cpu().numpy().astype(np.int64),
        top_probs=top_probs.cpu().numpy(),
        top_logits=top_logits.cpu().numpy(),
        entropy_bits=entropy_bits(logp).cpu().numpy(),
        energy=energy.cpu().numpy(),
        logit_mean=logits.mean(-1).cpu().numpy(),
        logit_std=logits.std(-1, correction=0).cpu().numpy(),
    )


def token_stats(logits: torch.Tensor, token_ids: torch.Tensor) -> TokenStats:
    """Probability, rank, logit and z-score of ``token_ids[t]`` under row ``t`` of ``logits``."""
    logits = logits.float()  # (T, V)
    chosen = logits.gather(-1, token_ids[:, None])  # (T, 1)
    logp = chosen[:, 0] - torch.logsumexp(logits, dim=-1)  # (T,)
    rank = (logits > chosen).sum(-1) + 1  # (T,)
    z = (chosen[:, 0] - logits.mean(-1)) / logits.std(-1, correction=0)
    return TokenStats(
        prob=logp.exp().cpu().numpy(),
        rank=rank.cpu().numpy().astype(np.int64),
        logit=chosen[:, 0].cpu().numpy(),
        z=z.cpu().numpy(),
    )
