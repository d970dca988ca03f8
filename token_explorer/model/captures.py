"""Captures for an analysis: copied out of the session when it holds the tokens, else one forward
of their own over a fresh cache (the session is never touched).

``from_session`` and ``cursor_past`` read the session and must run under the engine's lock; they
return copies, so the analysis can run outside the lock while steps change the session.
``own_forward`` only reads the model and runs on the analysis's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..analyses.context import Captures, LayerKeys
from ..errors import UserError
from .capture import recording
from .family import Family
from .hooks import checking
from .kv_cache import GrowingLayer, make_cache

CHUNK = 256  # tokens per forward of our own


def is_prefix(ids: Sequence[int], of: Sequence[int]) -> bool:
    """``ids`` is a prefix of ``of`` (e.g. of the session's prompt)."""
    return len(ids) <= len(of) and list(of[: len(ids)]) == list(ids)


def _session_keys(session, m: int) -> tuple[LayerKeys, ...] | None:
    """Copies of the keys of positions < m, or None if a sliding layer dropped some needed."""
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
        out.append(LayerKeys(keys[:, :stop].clone(), start, meta.scaling, meta.softcap, window))
    return tuple(out)


def from_session(session, ids: Sequence[int], attention: bool) -> Captures | None:
    """A copy of the session's captures of ``ids`` (a prefix of its prompt), or None. Under the lock."""
    m = len(ids)
    if not is_prefix(ids, session.tokens) or session.resid.length < m:
        return None
    resid = session.resid.view()[:, :m].clone()  # (L+1, m, d)
    if not attention:
        return Captures(resid)
    if not session.queries_on or session.queries.length < m:
        return None
    keys = _session_keys(session, m)
    if keys is None:
        return None
    return Captures(resid, session.queries.view()[:, :, :m].clone(), keys)


def cursor_past(session, ids: Sequence[int], cursor: int):
    """A KV-cache copy of ``ids[:cursor]`` from the session, or None when it does not hold them. Under the lock."""
    layers = getattr(session.cache, "layers", [])
    if cursor == 0 or not is_prefix(ids[: cursor + 1], session.tokens) or not layers:
        return None
    if not all(isinstance(layer, GrowingLayer) for layer in layers):
        return None
    past = make_cache(session.model.config)
    for mine, theirs in zip(past.layers, layers):
        mine.update(theirs.keys[..., :cursor, :].clone(), theirs.values[..., :cursor, :].clone())
    return past


@torch.no_grad()
def own_forward(model: torch.nn.Module, family: Family, ids: Sequence[int], attention: bool,
                check: Callable[[], None]) -> Captures:
    """Residual stream (and queries and keys) of ``ids`` from forwards over a fresh cache."""
    device = next(model.parameters()).device
    cache = make_cache(model.config)
    resid, queries, meta = [], [], {}
    for start in range(0, len(ids), CHUNK):
        chunk = torch.tensor([list(ids[start : start + CHUNK])], device=device)  # (1, c)
        with checking(model, family, check), recording(model, family, want_queries=attention) as rec:
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
