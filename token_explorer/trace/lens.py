"""The logit lens of one step at chosen layers: each layer's residual stream (after the block)
through the model's own final norm, unembedding and logit soft-cap (``model.unembed.Unembed``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LensRecord:
    """One step's lens; n = number of captured layers, k = lens top-k."""

    layers: tuple[int, ...]  # block indices; layer l reads the residual stream leaving block l
    top_ids: np.ndarray  # (n, k) int64
    top_probs: np.ndarray  # (n, k) float32
    top_logprobs: np.ndarray  # (n, k) float32
    entropy: np.ndarray  # (n,) float32, nats
    selected_rank: np.ndarray  # (n,) int64, 1-based over the vocabulary
    selected_prob: np.ndarray  # (n,) float32


def lens_record(logits: torch.Tensor, layers: tuple[int, ...], selected: int, k: int) -> LensRecord:
    """Lens statistics from (n, V) lens logits of ``layers`` for the token chosen at this step."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (n, V)
    top_logp, top_ids = logp.topk(min(k, logp.shape[-1]), dim=-1)  # (n, k)
    p = logp.exp()
    entropy = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)  # (n,)
    chosen = logits[:, selected : selected + 1]  # (n, 1)
    rank = (logits > chosen).sum(-1) + 1  # (n,)
    return LensRecord(
        layers=layers,
        top_ids=top_ids.cpu().numpy().astype(np.int64),
        top_probs=top_logp.exp().cpu().numpy().astype(np.float32),
        top_logprobs=top_logp.cpu().numpy().astype(np.float32),
        entropy=entropy.clamp_min(0).cpu().numpy().astype(np.float32),
        selected_rank=rank.cpu().numpy().astype(np.int64),
        selected_prob=p[:, selected].cpu().numpy().astype(np.float32),
    )
