"""Hooks that capture what one forward pass produced, keyed by canonical names.

``resid``: the residual stream entering each block, plus the output of the last block
(shape (L+1, T, d) for T new positions). ``queries``: each layer's attention queries after any
rotary embedding, as the attention function saw them (shape (L, H, T, hd)); on request also the
keys and values it was given (each (L, kv_heads, T_k, hd), before grouped-query repetition). Queries come from a
thin wrapper registered as an attention implementation that records them and then calls the
model's original attention function, so the fused (SDPA) path stays in use.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .family import Family, blocks

WRAPPED_PREFIX = "token_explorer_capture_"  # + the wrapped implementation, e.g. "sdpa"
_ORIGINAL = threading.local()  # the active recorder, per thread


@dataclass
class AttentionMeta:
    """How a layer turns queries and keys into weights."""

    scaling: float
    softcap: float | None
    sliding_window: int | None


@dataclass
class Recorder:
    """Collects one forward pass's captures."""

    n_layers: int
    resid: list[torch.Tensor | None] = field(default_factory=list)
    queries: dict[int, torch.Tensor] = field(default_factory=dict)
    meta: dict[int, AttentionMeta] = field(default_factory=dict)
    want_queries: bool = True
    want_kv: bool = False  # also record each layer's keys and values (see ``keys``, ``values``)
    keys: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (1, kv_heads, T_k, hd)
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (1, kv_heads, T_k, hd)

    def __post_init__(self) -> None:
        self.resid = [None] * (self.n_layers + 1)

    def stacked_resid(self) -> torch.Tensor:
        """(L+1, T, d) residual stream of the batch's single sequence."""
        assert all(r is not None for r in self.resid), "every block must have run"
        return torch.stack([r[0] for r in self.resid])  # type: ignore[index]

    def stacked_queries(self) -> torch.Tensor | None:
        """(L, H, T, hd) queries, or None where the family's attention was not seen."""
        if len(self.queries) != self.n_layers:
            return None
        return torch.stack([self.queries[i][0] for i in range(self.n_layers)])


def _base_attention(module: torch.nn.Module):
    impl = module.config._attn_implementation.removeprefix(WRAPPED_PREFIX)
    if impl in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[impl]
    return sys.modules[type(module).__module__].eager_attention_forward


def _recording_attention(module, query, key, value, attention_mask, **kwargs):
    recorder: Recorder | None = getattr(_ORIGINAL, "recorder", None)
    if recorder is not None and recorder.want_queries:
        layer = getattr(module, "layer_idx", None)
        if layer is not None:
            recorder.queries[layer] = query.detach()
            if recorder.want_kv:
                recorder.keys[layer], recorder.values[layer] = key.detach(), value.detach()
            if layer not in recorder.meta:
                scaling = kwargs.get("scaling")
                recorder.meta[layer] = AttentionMeta(
                    scaling=float(scaling if scaling is not None else query.shape[-1] ** -0.5),
                    softcap=kwargs.get("softcap"),
                    sliding_window=kwargs.get("sliding_window"),
                )
    return _base_attention(module)(module, query, key, value, attention_mask, **kwargs)


def install_query_capture(model: torch.nn.Module) -> bool:
    """Route the model's attention through the recording wrapper; False if it cannot be.

    The wrapper is registered under a name that embeds the wrapped implementation, with that
    implementation's mask function, so masks and kernels stay exactly as they were.
    """
    base = model.config._attn_implementation
    if base.startswith(WRAPPED_PREFIX):
        return True
    mask = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(base)
    if mask is None:
        return False
    name = WRAPPED_PREFIX + base
    AttentionInterface.register(name, _recording_attention)
    AttentionMaskInterface.register(name, mask)
    try:
        model.set_attn_implementation(name)
    except Exception:  # noqa: BLE001 - a family without the attention interface: no queries
        return False
    return model.config._attn_implementation == name


def _hidden_in(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _hidden_out(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def recording(model: torch.nn.Module, family: Family, want_queries: bool = True,
              want_kv: bool = False) -> Iterator[Recorder]:
    """Capture the residual stream (and queries, and keys and values) of the forwards run inside the block."""
    layers = blocks(model, family)
    recorder = Recorder(n_layers=len(layers), want_queries=want_queries, want_kv=want_kv)
    owner = threading.get_ident()  # forwards on other threads (an analysis beside a step) are not ours
    handles = []
    for i, block in enumerate(layers):
        def pre(_mod, args, kwargs, i=i):
            if threading.get_ident() == owner:
                recorder.resid[i] = _hidden_in(args, kwargs).detach()
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))

    def post(_mod, _args, output):
        if threading.get_ident() == owner:
            recorder.resid[-1] = _hidden_out(output).detach()
    handles.append(layers[-1].register_forward_hook(post))
    _ORIGINAL.recorder = recorder
    try:
        yield recorder
    finally:
        _ORIGINAL.recorder = None
        for handle in handles:
            handle.remove()
