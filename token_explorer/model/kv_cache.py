"""A KV cache whose full-attention layers grow by doubling instead of concatenating.

transformers' ``DynamicLayer`` concatenates on every update, copying the whole cache per token.
``GrowingLayer`` writes the new positions into a buffer with spare room and hands out views, so an
append copies only the new position and a crop just moves the end.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .buffer import GrowBuffer


class GrowingLayer(DynamicLayer):
    """Full-attention cache layer over growable key/value buffers (batch of one)."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._keys, self._values = GrowBuffer(dim=2), GrowBuffer(dim=2)  # (1, kv_heads, n, head_dim)
        self.reserve(getattr(self, "_room", 0))

    def reserve(self, length: int) -> None:
        """Room for exactly ``length`` positions at the next growth (see ``GrowBuffer.reserve``)."""
        if not self.is_initialized:
            self._room = length  # applied when the buffers are made
            return
        self._keys.reserve(length)
        self._values.reserve(length)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._keys.extend(key_states)
        self._values.extend(value_states)
        self.keys, self.values = self._keys.view(), self._values.view()
        return self.keys, self.values

    def keep(self, length: int) -> None:
        """Keep the first ``length`` positions."""
        if not self.is_initialized:
            return
        if length == 0:
            self.reset()
            return
        self._keys.truncate(length)
        self._values.truncate(length)
        self.keys, self.values = self._keys.view(), self._values.view()

    def crop(self, tokens_to_remove: int) -> None:
        if self.is_initialized:
            self.keep(self.get_seq_length() - abs(tokens_to_remove))


def make_cache(config) -> DynamicCache:
    """A DynamicCache for ``config`` with its plain full-attention layers made growable."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def reserve(cache: DynamicCache, length: int) -> None:
    """Let the growable layers make room for exactly ``length`` positions when they next grow."""
    for layer in cache.layers:
        if isinstance(layer, GrowingLayer):
            layer.reserve(length)


def keep_prefix(cache: DynamicCache, length: int) -> bool:
    """Cut every layer to its first ``length`` positions; False if a sliding layer cannot be cut."""
    seen = cache.get_seq_length()
    for layer in cache.layers:
        if isinstance(layer, GrowingLayer):
            continue
        if getattr(layer, "keys", None) is not None and layer.keys.shape[-2] != seen:
            return False  # a sliding window already dropped the positions needed
    for layer in cache.layers:
        if isinstance(layer, GrowingLayer):
            layer.keep(length)
        elif getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length = length
    return True
