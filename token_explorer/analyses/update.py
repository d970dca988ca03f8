"""The block-update view: how much each block changes the residual stream at each position."""

from __future__ import annotations

from ..results import LayerGrid
from . import register
from .context import Context
from .declare import Param, Spec

SPEC = Spec(
    "update", "block update", version=1,
    params=(Param("layer", "layer", computes=False, hi="last_block"),),
    reads="prompt", at_cursor=False, needs=frozenset({"resid"}), scale="fitted", unit="L2 norm",
)


@register(SPEC)
def update(ctx: Context) -> LayerGrid:
    """(L, n) float32: |resid_{l+1}[i] − resid_l[i]|, the norm of block l's attention + MLP update at position i."""
    assert ctx.captures is not None
    resid = ctx.captures.resid.float()  # (L+1, n, d)
    return LayerGrid((resid[1:] - resid[:-1]).norm(dim=-1).cpu().numpy())
