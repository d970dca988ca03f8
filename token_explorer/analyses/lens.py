"""Logit-lens statistics from per-layer logits of one position.

The caller maps each layer's residual stream through the model's own final norm and unembedding
(``model.unembed.Unembed``); this module only summarises the resulting distributions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..results import LensStats
from .distribution import LN2, entropy_bits


def layer_logprobs(layer_logits: torch.Tensor) -> torch.Tensor:
    """(L+1, V) logits -> (L+1, V) float32 log-probabilities."""
    return torch.log_softmax(layer_logits.float(), dim=-1)


def lens_stats(logp: torch.Tensor, k: int) -> LensStats:
    """Top-k, entropy and KL(final || layer) of each layer's distribution at one position.

    ``logp``: (L+1, V) log-probabilities, last row the model's real distribution.
    """
    top_logp, top_ids = logp.topk(min(k, logp.shape[-1]), dim=-1)  # (L+1, k)
    final = logp[-1]  # (V,)
    kl = (final.exp() * (final - logp)).sum(-1) / LN2  # (L+1,)
    return LensStats(
        top_ids=top_ids.cpu().numpy().astype(np.int64),
        top_probs=top_logp.exp().cpu().numpy(),
        entropy_bits=entropy_bits(logp).cpu().numpy(),
        kl_to_final_bits=kl.clamp_min(0).cpu().numpy(),
    )


def lens_token(logp: torch.Tensor, token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability (L+1,) and 1-based rank (L+1,) of ``token_id`` under each layer's lens."""
    chosen = logp[:, token_id : token_id + 1]  # (L+1, 1)
    rank = (logp > chosen).sum(-1) + 1
    return chosen[:, 0].exp().cpu().numpy(), rank.cpu().numpy().astype(np.int64)
