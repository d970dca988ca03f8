"""Sizes of the residual stream and of each block's two updates to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.hooks import checking, run_with_hooks
from ..results import Residual
from . import register
from .context import Context
from .declare import Param, Spec


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


# ------------------------------------------------------------------ the residual view

SPEC = Spec(
    "residual", "residual stream", version=2,
    params=(Param("layer", "layer", computes=False, hi="n_layers"),),
    reads="prompt", at_cursor=True, needs=frozenset({"resid", "cursor_past"}), scale="fitted", unit="L2 norm",
)
POINTS = ("resid_pre", "attn_out", "mlp_out", "resid_post")


def cursor_activations(ctx: Context) -> dict[str, torch.Tensor]:
    """The cursor position's activations at ``POINTS``, each (L, d).

    One single-token forward over a copy of the session's KV cache of the prefix when the engine
    handed one over (``ctx.cursor_past``), else the whole prefix from scratch.
    """
    ids = list(ctx.tokens[: ctx.cursor + 1])
    with checking(ctx.model, ctx.family, ctx.check):
        if ctx.cursor_past is not None:
            acts = run_with_hooks(ctx.model, ctx.family, ids[ctx.cursor :], POINTS, past=ctx.cursor_past)  # (L, 1, d)
            return {name: value[:, 0] for name, value in acts.items()}
        acts = run_with_hooks(ctx.model, ctx.family, ids, POINTS)  # (L, cursor+1, d)
    return {name: value[:, ctx.cursor] for name, value in acts.items()}


@register(SPEC)
def residual(ctx: Context) -> Residual:
    """L2 norm of the raw residual stream at every layer and position; each block's updates at the cursor."""
    assert ctx.captures is not None
    norms = stream_norms(ctx.captures.resid)  # (L+1, n)
    ctx.check()
    acts = cursor_activations(ctx)
    parts = block_parts(*(acts[k] for k in POINTS))
    return Residual(norms=norms, attn_norm=parts.attn_norm, mlp_norm=parts.mlp_norm,
                    delta_norm=parts.delta_norm, max_error=parts.max_error)
