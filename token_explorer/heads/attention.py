"""One sequence's attention per studied head, from the queries, keys and values captured over one
forward: the model keeps its own attention kernel and is never asked for weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..model.capture import AttentionMeta, Recorder, recording
from ..model.family import Family
from ..model.hooks import last_logits_only


@dataclass(frozen=True)
class LayerPattern:
    """The studied heads of one layer over one sequence of T tokens (h heads, hd per head)."""

    layer: int
    heads: tuple[int, ...]
    scores: torch.Tensor  # (h, T, T) float32 pre-softmax q·k·scaling (soft-capped); -inf where unseen
    weights: torch.Tensor  # (h, T, T) float32 softmax of ``scores``; exactly 0 where unseen
    seen: torch.Tensor  # (T, T) bool: the query (row) sees the key (column): causal, within any window
    queries: torch.Tensor  # (h, T, hd) float32 post-rotary queries
    keys: torch.Tensor  # (h, T, hd) float32 post-rotary keys of each head's kv head
    values: torch.Tensor  # (h, T, hd) float32 values of each head's kv head
    outputs: torch.Tensor  # (h, T, hd) float32 weights @ values: each head's output before the output projection


def visible(length: int, sliding_window: int | None, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) bool: query q sees key k when k <= q and, with a window w, k > q - w."""
    q = torch.arange(length, device=device)[:, None]
    k = torch.arange(length, device=device)[None, :]
    seen = k <= q
    if sliding_window is not None:
        seen &= k > q - sliding_window
    return seen


def scores_and_weights(queries: torch.Tensor, keys: torch.Tensor, meta: AttentionMeta
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre-softmax scores (h, T, T), weights (h, T, T) and the (T, T) mask of ``queries`` (h, T, hd)
    over ``keys`` (h, T, hd), scored as the layer does: q·k·scaling, then cap·tanh(s/cap) where the
    family soft-caps, masked causally and to any sliding window."""
    scores = torch.einsum("hqd,hkd->hqk", queries.float(), keys.float()) * meta.scaling  # (h, T, T)
    if meta.softcap:
        scores = torch.tanh(scores / meta.softcap) * meta.softcap
    seen = visible(scores.shape[-1], meta.sliding_window, scores.device)
    scores = scores.masked_fill(~seen, float("-inf"))
    return scores, scores.softmax(-1), seen


def kv_head_of(heads: Sequence[int], n_heads: int, n_kv_heads: int) -> list[int]:
    """The key/value head each query head reads (grouped-query attention: ``h // (H / kv)``)."""
    assert n_heads % n_kv_heads == 0, f"{n_heads} query heads over {n_kv_heads} kv heads"
    return [h // (n_heads // n_kv_heads) for h in heads]


def layer_pattern(recorder: Recorder, layer: int, heads: Sequence[int]) -> LayerPattern:
    """The studied ``heads`` of ``layer`` from one recorded forward of a single sequence."""
    q_all = recorder.queries[layer][0]  # (H, T, hd)
    kv = kv_head_of(heads, q_all.shape[0], recorder.keys[layer].shape[1])
    queries = q_all[list(heads)].float()  # (h, T, hd)
    keys = recorder.keys[layer][0, kv].float()  # (h, T, hd)
    values = recorder.values[layer][0, kv].float()  # (h, T, hd)
    scores, weights, seen = scores_and_weights(queries, keys, recorder.meta[layer])
    return LayerPattern(layer, tuple(heads), scores, weights, seen, queries, keys, values,
                        torch.bmm(weights, values))


@torch.no_grad()
def record_sequence(model: torch.nn.Module, family: Family, ids: Sequence[int]) -> Recorder:
    """Run ``ids`` (one sequence, no cache) and return its queries, keys and values per layer.

    The model must have the capture installed (``install_query_capture``); only the last
    position's logits are computed.
    """
    device = next(model.parameters()).device
    with recording(model, family, want_queries=True, want_kv=True) as rec:
        model(input_ids=torch.tensor([list(ids)], device=device), use_cache=False, **last_logits_only(model))
    assert len(rec.queries) == rec.n_layers and len(rec.keys) == rec.n_layers, "every layer's attention must be seen"
    return rec
