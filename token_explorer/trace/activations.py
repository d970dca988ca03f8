"""Activation summaries of one step: per layer and submodule, norms, sparsity and top neurons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SUBMODULES = ("resid_pre", "resid_post", "mlp_out", "o_proj")
ALIASES = {"residual_pre": "resid_pre", "residual_post": "resid_post", "mlp.down_proj": "mlp_out"}
POINT_OF = {"resid_pre": "resid_pre", "resid_post": "resid_post", "mlp_out": "mlp_out", "o_proj": "attn_out"}
NEAR_ZERO = 1e-3  # an entry counts as zero below this fraction of the vector's largest magnitude


@dataclass(frozen=True)
class ActivationRecord:
    """One step's activations; n layers, S submodules, k = top neurons, d = hidden size."""

    layers: tuple[int, ...]
    submodules: tuple[str, ...]
    l2_norm: np.ndarray  # (n, S) float32
    mean_abs: np.ndarray  # (n, S) float32
    sparsity: np.ndarray  # (n, S) float32, fraction of entries with |x| < NEAR_ZERO * max|x|
    top_index: np.ndarray  # (n, S, k) int64, by descending |value|
    top_value: np.ndarray  # (n, S, k) float32, signed
    vectors: np.ndarray | None = None  # (n, S, d) float32, kept only for sidecars


def activation_record(vectors: torch.Tensor, layers: tuple[int, ...], submodules: tuple[str, ...],
                      k: int, keep_full: bool) -> ActivationRecord:
    """Summaries of (n, S, d) activation vectors."""
    x = vectors.float()
    mag = x.abs()
    k = min(k, x.shape[-1])
    top_idx = mag.topk(k, dim=-1).indices  # (n, S, k)
    peak = mag.amax(-1, keepdim=True)  # (n, S, 1)
    return ActivationRecord(
        layers=layers,
        submodules=submodules,
        l2_norm=x.norm(dim=-1).cpu().numpy(),
        mean_abs=mag.mean(-1).cpu().numpy(),
        sparsity=(mag < NEAR_ZERO * peak).float().mean(-1).cpu().numpy(),
        top_index=top_idx.cpu().numpy().astype(np.int64),
        top_value=x.gather(-1, top_idx).cpu().numpy(),
        vectors=x.cpu().numpy() if keep_full else None,
    )
