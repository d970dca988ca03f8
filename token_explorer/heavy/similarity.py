"""Similarity views: each token's hidden state against the cursor's, and against its own final state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..analyses.similarity import to_final_layer, to_position
from ..results import TokenScores
from . import needs_family, register
from .residual import captures, hidden_states, layer_name, layer_param

STATES = ("hidden states as transformers' output_hidden_states: rows 0..L-1 the raw residual stream "
          "entering each block, row L the last block's output after the final norm")


def _state_name(layer: int, n_layers: int) -> str:
    if layer == n_layers:
        return f"{layer} (last block's output after the final norm)"
    return layer_name(layer, n_layers) + ", raw residual"


@register("similarity", 1, needs_family, needs_prefix_only=False)
def similarity(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    """Cosine similarity of every token's hidden state to the cursor's, at one layer (default: last)."""
    hidden = hidden_states(engine, captures(engine, tokens).resid)  # (L+1, n, d)
    n_layers = hidden.shape[0] - 1
    layer = layer_param(params, n_layers, n_layers)
    grid = to_position(hidden, cursor)  # (L+1, n)
    return TokenScores(
        view="similarity",
        values=grid[layer].astype(np.float32),
        lo=-1.0,
        hi=1.0,
        unit="cosine",
        caption=(f"cosine similarity of each token's hidden state to the cursor's (token {cursor}) "
                 f"at layer {_state_name(layer, n_layers)}"),
        grid=grid,
        grid_label=f"cosine to the cursor per layer: {STATES}",
    )


@register("hidden_similarity", 1, needs_family, needs_prefix_only=False)
def hidden_similarity(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    """Cosine of each token's hidden state at one layer (default: middle) to its own final state."""
    hidden = hidden_states(engine, captures(engine, tokens).resid)  # (L+1, n, d)
    n_layers = hidden.shape[0] - 1
    layer = layer_param(params, n_layers, n_layers // 2)
    grid = to_final_layer(hidden)  # (L+1, n)
    return TokenScores(
        view="hidden_similarity",
        values=grid[layer].astype(np.float32),
        lo=-1.0,
        hi=1.0,
        unit="cosine",
        caption=(f"cosine of each token's hidden state at layer {_state_name(layer, n_layers)} to its own "
                 f"final hidden state (layer {n_layers}, after the final norm)"),
        grid=grid,
        grid_label=f"cosine to the final hidden state per layer: {STATES}",
    )
