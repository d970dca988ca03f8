"""Sizes of the residual stream and of each block's two updates to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def stream_norms(resid: torch.Tensor) -> np.ndarray:
    """(L+1, n, d) residual stream -> (L+1, n) float32 L2 norms."""
    return resid.float().norm(dim=-1).cpu().numpy()


@dataclass(frozen=True)
class BlockParts:
    """Each block's updates to the residual stream at one position; every field has L rows."""

    attn_norm: np.ndarray  # (L,) float32: |attn_out|
    mlp_norm: np.ndarray  # (L,) float32: |mlp_out|
    delta_norm: np.ndarray  # (L,) float32: |resid_post - resid_pre|
    max_error: np.ndarray  # (L,) float32: max_d |attn_out + mlp_out - (resid_post - resid_pre)|


def block_parts(resid_pre: torch.Tensor, attn_out: torch.Tensor, mlp_out: torch.Tensor,
                resid_post: torch.Tensor) -> BlockParts:
    """Norms of the updates of each block at one position; every argument is (L, d)."""
    delta = (resid_post.float() - resid_pre.float())  # (L, d)
    parts = attn_out.float() + mlp_out.float()  # (L, d)
    return BlockParts(
        attn_norm=attn_out.float().norm(dim=-1).cpu().numpy(),
        mlp_norm=mlp_out.float().norm(dim=-1).cpu().numpy(),
        delta_norm=delta.norm(dim=-1).cpu().numpy(),
        max_error=(parts - delta).abs().amax(dim=-1).cpu().numpy(),
    )
