"""The attention view: how much the cursor's position attends to each earlier token.

The cursor's attention row is recomputed per layer and head from its captured query and the cached
keys, so the model keeps its fused attention and no weights are ever materialised for the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..analyses.attention import AGGREGATES, aggregate, attention_row, row_entropy_bits
from ..errors import UserError
from ..results import Table, TokenScores
from . import needs_family, register
from .residual import captures

TOP = 8


def available(engine) -> str | None:
    """Needs the family table and captured queries."""
    reason = needs_family(engine)
    if reason is None and not engine.session.queries_on:
        return "attention queries of this model cannot be captured"
    return reason


def cursor_rows(engine, tokens: Sequence[int], cursor: int) -> torch.Tensor:
    """(L, H, cursor+1) float32 attention weights of the query at ``cursor`` in every layer and head."""
    cap = captures(engine, tokens[: cursor + 1], attention=True)
    assert cap.queries is not None
    rows = []
    for l, keys in enumerate(cap.keys):
        engine.check_cancelled()
        rows.append(attention_row(cap.queries[l, :, cursor], keys, cursor))  # (H, cursor+1)
    return torch.stack(rows)


def _index(params: Mapping[str, Any], name: str, count: int) -> int:
    value = int(params.get(name, -1))
    if not -1 <= value < count:
        raise UserError(f"{name} must be -1 (all) or 0..{count - 1}, got {value}")
    return value


@register("attention", 1, available)
def attention(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    """Attention weight from the cursor to each token at or before it, aggregated over layers and heads."""
    rows = cursor_rows(engine, tokens, cursor)  # (L, H, cursor+1)
    n_layers, n_heads = rows.shape[0], rows.shape[1]
    layer, head = _index(params, "layer", n_layers), _index(params, "head", n_heads)
    how = params.get("aggregate", "mean")
    if how not in AGGREGATES:
        raise UserError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    values = aggregate(rows, layer, head, how)  # (cursor+1,)
    over_layers = f"all {n_layers} layers" if layer < 0 else f"layer {layer}"
    over_heads = f"all {n_heads} heads" if head < 0 else f"head {head}"
    entropy = row_entropy_bits(rows)  # (L, H)
    order = np.argsort(-values, kind="stable")[:TOP]
    texts = engine.token_texts([tokens[int(i)] for i in order])
    return TokenScores(
        view="attention",
        values=values.astype(np.float32),
        lo=0.0,
        hi=1.0,
        unit="weight",
        caption=(f"attention weight from the cursor (token {cursor}) to each token up to it: {how} over "
                 f"{over_layers} × {over_heads} of softmax(q·k·scale) rows; tokens after the cursor are not attended"),
        tables=(
            Table(f"most attended tokens ({how} over {over_layers} × {over_heads})",
                  ("position", "token", "weight"),
                  tuple((str(int(i)), t, f"{values[i]:.4f}") for i, t in zip(order, texts))),
            Table("entropy (bits) of each head's attention row at the cursor",
                  ("layer", *(f"h{h}" for h in range(n_heads))),
                  tuple((str(l), *(f"{entropy[l, h]:.2f}" for h in range(n_heads))) for l in range(n_layers))),
        ),
        grid=rows.mean(1).cpu().numpy().astype(np.float32),  # (L, cursor+1)
        grid_label=f"attention from the cursor, mean over heads: rows = layers 0 … {n_layers - 1}, columns = tokens",
    )
