"""Cosine similarities between hidden states: across positions, and across layers of one position."""

from __future__ import annotations

import numpy as np
import torch

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
