"""SAE / transcoder features: one feature's activation at every position up to the cursor, and the
top features at the cursor.

Params: ``entry`` (index into the ``[[sae]]`` entries) or ``layer`` (the first entry at that layer),
``feature`` (-1: the top feature at the cursor). Activations are read at the entry's own hook point
(e.g. ``mlp_in`` for an MLP transcoder), for ``tokens[: cursor + 1]`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..model.hooks import run_with_hooks
from ..results import Table, TokenScores
from ..sae.entries import SaeEntry, parse_entries
from ..sae.weights import fingerprint, load_dictionary, load_labels
from . import register
from .residual import captures

TOP = 10  # features listed at the cursor


def entries(engine) -> tuple[SaeEntry, ...]:
    """The engine's configured dictionaries (UserError for a bad ``[[sae]]`` table)."""
    return parse_entries(engine.settings.sae)


def available(engine) -> str | None:
    if not engine.settings.sae:
        return "no [[sae]] entries in config"
    if engine.session.family is None:
        return f"model family '{engine.info.family}' is not supported (not in the family table)"
    try:
        found = entries(engine)
    except UserError as e:
        return str(e)
    for entry in found:
        if entry.layer >= engine.info.n_layers:
            return f"{entry.where}: layer {entry.layer} does not exist (the model has {engine.info.n_layers} blocks)"
    return None


def pick(engine, params: Mapping[str, Any]) -> SaeEntry:
    """The entry ``params`` select: ``entry`` by index, else the first at ``layer``, else the first."""
    found = entries(engine)
    if "entry" in params:
        i = int(params["entry"])
        if not 0 <= i < len(found):
            raise UserError(f"sae entry {i} does not exist ({len(found)} [[sae]] entries configured)")
        return found[i]
    if "layer" in params:
        at = [e for e in found if e.layer == int(params["layer"])]
        if not at:
            layers = ", ".join(str(e.layer) for e in found)
            raise UserError(f"no [[sae]] entry at layer {params['layer']} (configured layers: {layers})")
        return at[0]
    return found[0]


def key_extra(engine, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """The dictionary's fingerprint (weights file hash + config entry + labels)."""
    entry = pick(engine, params)
    return {"sae": fingerprint(entry), "sae_layer": entry.layer, "sae_hook": entry.hook}


def hook_acts(engine, entry: SaeEntry, ids: Sequence[int]) -> torch.Tensor:
    """(T, d) activations at ``entry``'s hook point and layer for ``ids`` (float32).

    resid_pre / resid_post come from the session's captures when the session holds ``ids`` as a
    prefix; every other point (and any other prefix) from one hooked forward over ``ids``.
    """
    session = engine.session
    if entry.hook in ("resid_pre", "resid_post"):  # the residual stream the engine already captures
        row = entry.layer + (1 if entry.hook == "resid_post" else 0)
        return captures(engine, ids).resid[row].float()  # (T, d)
    acts = run_with_hooks(session.model, session.family, ids, [entry.hook])[entry.hook]  # (L, T, d)
    return acts[entry.layer].float()


@register("sae", 2, available, key_extra=key_extra)
def sae_features(engine, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> TokenScores:
    entry = pick(engine, params)
    d_model = int(engine.loaded.model.config.hidden_size)
    dictionary = load_dictionary(entry, d_model, device=engine.session.device)
    labels = load_labels(entry)
    engine.check_cancelled()
    ids = list(tokens[: cursor + 1])
    with torch.no_grad():
        x = hook_acts(engine, entry, ids)  # (T, d)
        engine.check_cancelled()
        at_cursor = dictionary.encode(x[-1:])[0]  # (F,)
        top = at_cursor.topk(min(TOP, dictionary.n_features))
        feature, rank = int(params.get("feature", -1)), int(params.get("rank", 1))
        if feature < 0:  # the rank-th most active feature at the cursor (1 = the top one)
            if not 1 <= rank <= len(top.indices):
                raise UserError(f"rank must be 1..{len(top.indices)}, got {rank}")
            feature = int(top.indices[rank - 1])
        if feature >= dictionary.n_features:
            raise UserError(f"feature {feature} does not exist ({entry.title} has {dictionary.n_features} features)")
        engine.check_cancelled()
        values = dictionary.feature_acts(x, feature).cpu().numpy().astype(np.float32)  # (T,)
    hi = float(values.max()) if values.size else 0.0
    active = int((at_cursor > 0).sum())
    rows = tuple(
        (str(int(i)), f"{float(v):.3f}", labels.get(int(i), ""), "●" if int(i) == feature else "")
        for i, v in zip(top.indices.tolist(), top.values.tolist()) if v > 0
    )
    label = f" ({labels[feature]})" if feature in labels else ""
    how = f"number {rank} at the cursor" if int(params.get("feature", -1)) < 0 else "chosen"
    kind = f"transcoder {entry.hook}->{entry.output_hook}" if entry.is_transcoder else f"SAE on {entry.hook}"
    caption = (f"activation of feature {feature}{label} ({how}) of {entry.title}: {kind} at layer "
               f"{entry.layer}, {dictionary.architecture}, {dictionary.n_features} features; "
               f"{active} features active at the cursor")
    table = Table(f"top features at the cursor ({entry.title})", ("feature", "activation", "label", "shown"),
                  rows or (("-", "no feature active", "", ""),))
    return TokenScores(view="sae", values=values, lo=0.0, hi=hi if hi > 0 else 1.0, unit="",
                       caption=caption, tables=(table,))
