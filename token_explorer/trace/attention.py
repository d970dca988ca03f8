"""Attention statistics of one step, per layer and head, from the captured query of the position
that predicts the next token and the keys in the KV cache (the model keeps its fused kernel)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..analyses.attention import LayerKeys, attention_row


@dataclass(frozen=True)
class AttentionRecord:
    """One step's attention; n layers, H heads, k = attention top-k, P = positions attended over."""

    layers: tuple[int, ...]
    entropy: np.ndarray  # (n, H) float32, nats
    effective_span: np.ndarray  # (n, H) float32, exp(entropy): positions a uniform row of equal
    # entropy would spread over
    bos_weight: np.ndarray  # (n, H) float32, weight on position 0
    self_weight: np.ndarray  # (n, H) float32, weight on the query's own position
    top1_weight: np.ndarray  # (n, H) float32
    top_positions: np.ndarray  # (n, H, k) int64, most attended positions by descending weight
    top_weights: np.ndarray  # (n, H, k) float32
    mean_top_positions: np.ndarray  # (n, k) int64, of the head-mean row
    mean_top_weights: np.ndarray  # (n, k) float32
    weights: np.ndarray | None = None  # (n, H, P) float32 full rows, kept only for sidecars


def attention_rows(queries: list[torch.Tensor], keys: list[LayerKeys], cursor: int) -> torch.Tensor:
    """(n, H, cursor+1) float32 weights of the query at ``cursor``; ``queries[i]`` is (H, hd)."""
    return torch.stack([attention_row(q, k, cursor) for q, k in zip(queries, keys)])


def attention_record(rows: torch.Tensor, layers: tuple[int, ...], k: int, keep_full: bool) -> AttentionRecord:
    """Statistics of (n, H, P) attention rows (each row sums to 1 over its P positions)."""
    p = rows.double()
    entropy = (-(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)).clamp_min(0)  # (n, H)
    k = min(k, rows.shape[-1])
    top_w, top_pos = rows.topk(k, dim=-1)  # (n, H, k)
    mean_w, mean_pos = rows.mean(1).topk(k, dim=-1)  # (n, k)
    return AttentionRecord(
        layers=layers,
        entropy=entropy.float().cpu().numpy(),
        effective_span=entropy.exp().float().cpu().numpy(),
        bos_weight=rows[..., 0].cpu().numpy(),
        self_weight=rows[..., -1].cpu().numpy(),
        top1_weight=top_w[..., 0].cpu().numpy(),
        top_positions=top_pos.cpu().numpy().astype(np.int64),
        top_weights=top_w.cpu().numpy(),
        mean_top_positions=mean_pos.cpu().numpy().astype(np.int64),
        mean_top_weights=mean_w.cpu().numpy(),
        weights=rows.cpu().numpy() if keep_full else None,
    )


def attention_matrix(queries: torch.Tensor, layer: LayerKeys) -> torch.Tensor:
    """(H, T, T) float32 causal attention weights of T prompt positions (queries (H, T, hd), keys of
    positions 0..T-1 in ``layer``), with the layer's scaling, soft-cap and sliding window."""
    heads, steps = queries.shape[0], queries.shape[1]
    assert layer.start == 0 and layer.keys.shape[1] >= steps, "the prompt's keys must all be cached"
    keys = layer.keys[:, :steps].float().repeat_interleave(heads // layer.keys.shape[0], dim=0)  # (H, T, hd)
    scores = torch.einsum("hqd,hkd->hqk", queries.float(), keys) * layer.scaling  # (H, T, T)
    if layer.softcap:
        scores = torch.tanh(scores / layer.softcap) * layer.softcap
    q = torch.arange(steps, device=scores.device)[:, None]
    kpos = torch.arange(steps, device=scores.device)[None, :]
    seen = kpos <= q
    if layer.sliding_window is not None:
        seen &= kpos > q - layer.sliding_window
    return scores.masked_fill(~seen, float("-inf")).softmax(-1)
