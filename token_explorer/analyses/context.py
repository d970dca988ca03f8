"""What an analysis receives: a typed context, never the engine or the session.

The engine builds one :class:`Context` per run: the captured tensors the analysis declared it
needs (copied out of the session, so a step may change the session meanwhile), the model's
unembedding and family, the model itself for the few analyses that must run it, and three
callbacks: ``check`` (raises ``Cancelled``; call it at least once per layer or integration step),
``progress(done, total)`` and ``partial(result)`` (a result with the on-screen part filled first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model.family import Family
from ..model.unembed import Unembed
from ..results import ModelInfo, Position


@dataclass(frozen=True)
class LayerKeys:
    """What one layer's attention needs besides the query: keys, where they start, how it scores."""

    keys: torch.Tensor  # (kv_heads, k, hd) post-rotary keys of positions start .. start+k-1
    start: int  # position of the first key (> 0 once a sliding-window cache dropped old keys)
    scaling: float
    softcap: float | None = None
    sliding_window: int | None = None


@dataclass(frozen=True)
class Captures:
    """What one forward over the context's m tokens produced (the analysis's own copy)."""

    resid: torch.Tensor  # (L+1, m, d): entering each block; last row = last block's output, before the final norm
    queries: torch.Tensor | None = None  # (L, H, m, hd) post-rotary queries
    keys: tuple[LayerKeys, ...] = ()  # one per layer


@dataclass(frozen=True)
class Context:
    """Everything one analysis run may read."""

    tokens: tuple[int, ...]  # the tokens the result depends on (up to the cursor for prefix analyses)
    cursor: int
    params: Mapping[str, Any]  # every declared parameter, resolved; selecting ones say what to do first
    info: ModelInfo
    model: torch.nn.Module  # only for analyses that must run it (gradients, hooks the captures lack)
    family: Family
    unembed: Unembed  # final norm + unembedding + soft-cap, as the model applies them
    token_texts: Callable[[Sequence[int]], list[str]]
    check: Callable[[], None]  # raises errors.Cancelled once the result is no longer wanted
    progress: Callable[[int, int], None] = lambda done, total: None
    partial: Callable[[Any], None] = lambda result: None
    captures: Captures | None = None  # when the spec needs "resid" / "attention"
    records: tuple[Position, ...] = ()  # the session's records of ``tokens`` when it holds them (read only)
    window: tuple[int, int] | None = None  # [start, stop) positions on screen: compute them first
    settings: Any = None  # the engine's Settings (e.g. [[sae]] entries, integrated-gradients cap)
    cursor_past: Any = field(default=None, repr=False)  # a KV cache copy of tokens[:cursor], when needed

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device
