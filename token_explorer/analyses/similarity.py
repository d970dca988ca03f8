"""Cosine similarities between hidden states: across positions, and across layers of one position."""

from __future__ import annotations

import numpy as np
import torch

from ..results import LayerGrid
from . import register
from .context import Context
from .declare import Param, Spec

EPS = 1e-12


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)


def to_position(hidden: torch.Tensor, cursor: int) -> np.ndarray:
    """(L+1, n, d) hidden states -> (L+1, n) float32: cos(h_l[i], h_l[cursor]) for every layer l."""
    unit = _unit(hidden)  # (L+1, n, d)
    return torch.einsum("lnd,ld->ln", unit, unit[:, cursor]).float().cpu().numpy()


def to_final_layer(hidden: torch.Tensor) -> np.ndarray:
    """(L+1, n, d) hidden states -> (L+1, n) float32: cos(h_l[i], h_L[i]) for every layer l."""
    unit = _unit(hidden)  # (L+1, n, d)
    return (unit * unit[-1:]).sum(-1).float().cpu().numpy()


# ------------------------------------------------------------------ the two similarity views

SPACES = ("raw", "normed")  # raw residual stream, or every row through the model's final norm


def states(ctx: Context) -> torch.Tensor:
    """(L+1, n, d) the residual stream rows 0..L in the chosen space, all raw or all final-normed."""
    assert ctx.captures is not None
    resid = ctx.captures.resid
    if ctx.params["space"] == "raw":
        return resid
    with torch.no_grad():
        return ctx.unembed.norm(resid)


SIMILARITY = Spec(
    "similarity", "similarity to cursor", version=2,
    params=(Param("space", "mode", computes=True, choices=SPACES),
            Param("layer", "layer", computes=False, hi="n_layers")),
    reads="prompt", at_cursor=True, needs=frozenset({"resid"}), scale="cosine", unit="cosine",
)


@register(SIMILARITY)
def similarity(ctx: Context) -> LayerGrid:
    """cos(h_l[i], h_l[cursor]) for every layer l and position i, rows 0..L."""
    return LayerGrid(to_position(states(ctx), ctx.cursor))


HIDDEN_SIMILARITY = Spec(
    "hidden_similarity", "hidden-state similarity", version=2,
    params=(Param("space", "mode", computes=True, choices=SPACES),
            Param("layer", "layer", computes=False, hi="n_layers", default="middle")),
    reads="prompt", at_cursor=False, needs=frozenset({"resid"}), scale="cosine", unit="cosine",
)


@register(HIDDEN_SIMILARITY)
def hidden_similarity(ctx: Context) -> LayerGrid:
    """cos(h_l[i], h_L[i]) for every layer l and position i: each row against the last, in one space."""
    return LayerGrid(to_final_layer(states(ctx)))
