"""The residual-stream view, and the captures every inner view reads.

``captures(engine, ids)`` hands out the residual stream (and queries and keys) of a token sequence:
sliced from the session's captures when ``ids`` is a prefix of the session's prompt, otherwise from
one forward of its own over a fresh cache (the session is never touched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..analyses.attention import LayerKeys
from ..analyses.residual import block_parts, stream_norms
from ..errors import UserError
from ..model.capture import recording
from ..model.hooks import run_with_hooks
from ..model.kv_cache import GrowingLayer, make_cache
from ..results import Table, TokenScores
from . import needs_family, register

CHUNK = 256  # tokens per forward of our own


@dataclass(frozen=True)
class Captures:
    """What one forward over ``ids`` produced, for m = len(ids) positions."""

    resid: torch.Tensor  # (L+1, m, d): entering each block; last row = last block's output, pre final norm
    queries: torch.Tensor | None = None  # (L, H, m, hd) post-rotary queries
    keys: tuple[LayerKeys, ...] = ()  # one per layer, covering the last positions each layer kept


def is_prefix(ids: Sequence[int], of: Sequence[int]) -> bool:
    """``ids`` is a prefix of ``of`` (e.g. of the session's prompt)."""
    return len(ids) <= len(of) and list(of[: len(ids)]) == list(ids)


def _session_keys(session, m: int) -> tuple[LayerKeys, ...] | None:
    """Keys of positions < m from the session's cache, or None if a sliding layer dropped some needed."""
    total, out = len(session.tokens), []
    for l, layer in enumerate(session.cache.layers):
        meta = session.attention_meta.get(l)
        if meta is None or getattr(layer, "keys", None) is None:
            return None
        keys = layer.keys[0]  # (kv, k, hd)
        start = total - keys.shape[1]  # a sliding-window layer keeps only the last positions
        window = meta.sliding_window
        if start > (0 if window is None else max(0, m - window)):
            return None
        stop = min(keys.shape[1], m - start)
        out.append(LayerKeys(keys[:, :stop], start, meta.scaling, meta.softcap, window))
    return tuple(out)


def captures(engine, ids: Sequence[int], *, attention: bool = False) -> Captures:
    """Residual stream (and, with ``attention``, queries and keys) of ``ids``."""
    session, m = engine.session, len(ids)
    if is_prefix(ids, session.tokens) and session.resid.length >= m:
        resid = session.resid.view()[:, :m]
        if not attention:
            return Captures(resid)
        if session.queries_on and session.queries.length >= m:
            keys = _session_keys(session, m)
            if keys is not None:
                return Captures(resid, session.queries.view()[:, :, :m], keys)
    return _own_forward(engine, ids, attention)


@torch.no_grad()
def _own_forward(engine, ids: Sequence[int], attention: bool) -> Captures:
    session = engine.session
    model = session.model
    cache = make_cache(model.config)
    resid, queries, meta = [], [], {}
    for start in range(0, len(ids), CHUNK):
        engine.check_cancelled()
        chunk = torch.tensor([list(ids[start : start + CHUNK])], device=session.device)  # (1, c)
        with recording(model, session.family, want_queries=attention) as rec:
            model(input_ids=chunk, past_key_values=cache, use_cache=True)
        resid.append(rec.stacked_resid())  # (L+1, c, d)
        if attention:
            q = rec.stacked_queries()
            if q is None:
                raise UserError("attention queries of this model cannot be captured")
            queries.append(q)  # (L, H, c, hd)
            meta.update(rec.meta)
    if not attention:
        return Captures(torch.cat(resid, dim=1))
    m, keys = len(ids), []
    for l, layer in enumerate(cache.layers):
        k = layer.keys[0]  # (kv, k, hd)
        keys.append(LayerKeys(k, m - k.shape[1], meta[l].scaling, meta[l].softcap, meta[l].sliding_window))
    return Captures(torch.cat(resid, dim=1), torch.cat(queries, dim=2), tuple(keys))


def hidden_states(engine, resid: torch.Tensor) -> torch.Tensor:
    """(L+1, m, d) hidden states as transformers' ``output_hidden_states`` gives them.

    Rows 0..L-1 are the residual stream entering each block (row 0: embeddings); row L is the last
    block's output after the model's final norm.
    """
    norm = engine.session.unembed.norm
    with torch.no_grad():
        last = norm(resid[-1])  # (m, d)
    return torch.cat([resid[:-1], last[None].to(resid.dtype)])


def layer_param(params: Mapping[str, Any], n_layers: int, default: int) -> int:
    """The ``layer`` parameter as a row 0..L of the (L+1)-row stream; -1 (or absent: ``default``)."""
    value = params.get("layer", default)
    layer = int(value)
    if layer < 0:
        layer += n_layers + 1
    if not 0 <= layer <= n_layers:
        raise UserError(f"layer must be -1 or 0..{n_layers}, got {value}")
    return layer


def layer_name(layer: int, n_layers: int) -> str:
    """How a residual-stream row is called on screen."""
    if layer == 0:
        return "0 (embeddings)"
    if layer == n_layers:
        return f"{layer} (output of the last block)"
    return f"{layer} (entering block {layer})"


def fmt(x: float, digits: int = 4) -> str:
    """A table cell for a number; NaN as "n/a"."""
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}g}"


def cursor_activations(engine, tokens: Sequence[int], cursor: int, points: Sequence[str]) -> dict[str, torch.Tensor]:
    """Named activations of the cursor position only, each (L, d).

    When the session holds the cursor's prefix, one single-token forward of the cursor's token runs
    over a copy of the session's KV cache cut to the positions before it (the session is untouched);
    otherwise the whole prefix runs from scratch.
    """
    session = engine.session
    ids = [int(t) for t in tokens[: cursor + 1]]
    layers = getattr(session.cache, "layers", [])
    if cursor > 0 and is_prefix(ids, session.tokens) and layers and all(isinstance(l, GrowingLayer) for l in layers):
        past = make_cache(session.model.config)
        for mine, theirs in zip(past.layers, layers):
            mine.update(theirs.keys[..., :cursor, :].clone(), theirs.values[..., :cursor, :].clone())
        acts = run_with_hooks(session.model, session.family, ids[cursor:], points, past=past)  # (L, 1, d)
        return {name: value[:, 0] for name, value in acts.items()}
    acts = run_with_hooks(session.model, session.family, ids, points)  # (L, cursor+1, d)
    return {name: value[:, cursor] for name, value in acts.items()}


@register("residual", 1, needs_family, needs_prefix_only=False)
def residual(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    """L2 norm of the residual stream per layer and position; each block's updates at the cursor."""
    cap = captures(engine, tokens)
    n_layers = cap.resid.shape[0] - 1
    layer = layer_param(params, n_layers, n_layers)
    grid = stream_norms(cap.resid)  # (L+1, n)
    engine.check_cancelled()
    acts = cursor_activations(engine, tokens, cursor, ("resid_pre", "attn_out", "mlp_out", "resid_post"))
    parts = block_parts(*(acts[k] for k in ("resid_pre", "attn_out", "mlp_out", "resid_post")))
    rows = tuple((str(l), fmt(parts.attn_norm[l]), fmt(parts.mlp_norm[l]), fmt(parts.delta_norm[l]),
                  f"{parts.max_error[l]:.1e}") for l in range(n_layers))
    values = grid[layer].astype(np.float32)
    finite = grid[np.isfinite(grid)]
    return TokenScores(
        view="residual",
        values=values,
        lo=0.0,
        hi=float(values.max()) if values.size else 1.0,
        unit="L2 norm",
        caption=(f"L2 norm of the residual stream at layer {layer_name(layer, n_layers)}, raw (before any norm); "
                 f"grid: every layer, range {finite.min():.3g} … {finite.max():.3g}"),
        tables=(Table(f"block updates at the cursor (token {cursor})",
                      ("block", "|attn_out|", "|mlp_out|", "|Δresid|", "max|attn+mlp−Δ|"), rows),),
        grid=grid,
        grid_label=f"residual norm: rows = layers 0 (embeddings) … {n_layers} (last block's output), columns = tokens",
    )
