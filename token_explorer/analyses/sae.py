"""SAE / transcoder features: the cursor's most active features of one configured dictionary, and
their activations at every position up to the cursor.

The dictionary (``entry``, an index into the ``[[sae]]`` entries) changes the computation; which
of the cursor's top features colours the prompt (``rank``) only selects. Activations are read at
the entry's own hook point (e.g. ``mlp_in`` for an MLP transcoder), for ``tokens[: cursor + 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..model.hooks import checking, run_with_hooks
from ..results import Features
from ..sae.entries import SaeEntry, parse_entries
from ..sae.weights import fingerprint, load_dictionary, load_labels
from . import register
from .context import Context
from .declare import Param, Spec

TOP = 10  # features kept at the cursor

SPEC = Spec(
    "sae", "SAE features", version=3,
    params=(Param("entry", "layer", computes=True, hi="last_dictionary", default=0),
            Param("rank", "pick", computes=False, lo=1, hi=TOP, default=1)),
    reads="prefix", at_cursor=True, needs=frozenset({"resid"}), scale="fitted", unit="",
)


def entries(settings) -> tuple[SaeEntry, ...]:
    """The configured dictionaries (UserError for a bad ``[[sae]]`` table)."""
    return parse_entries(settings.sae)


def available(info, settings) -> str | None:
    if not settings.sae:
        return "no [[sae]] entries in config"
    try:
        found = entries(settings)
    except UserError as e:
        return str(e)
    for entry in found:
        if entry.layer >= info.n_layers:
            return f"{entry.where}: layer {entry.layer} does not exist (the model has {info.n_layers} blocks)"
    return None


def pick(settings, params: Mapping[str, Any]) -> SaeEntry:
    """The entry ``params["entry"]`` names (default the first)."""
    found = entries(settings)
    i = int(params.get("entry", 0))
    if not 0 <= i < len(found):
        raise UserError(f"sae entry {i} does not exist ({len(found)} [[sae]] entries configured)")
    return found[i]


def key_extra(settings, params: Mapping[str, Any]) -> dict[str, Any]:
    """The dictionary's fingerprint (weights file hash + config entry + labels)."""
    entry = pick(settings, params)
    return {"sae": fingerprint(entry), "sae_layer": entry.layer, "sae_hook": entry.hook}


def hook_acts(ctx: Context, entry: SaeEntry) -> torch.Tensor:
    """(T, d) float32 activations at ``entry``'s hook point and layer for the context's tokens.

    resid_pre / resid_post are rows of the captured residual stream; every other point comes from
    one hooked forward.
    """
    if entry.hook in ("resid_pre", "resid_post"):
        assert ctx.captures is not None
        row = entry.layer + (1 if entry.hook == "resid_post" else 0)
        return ctx.captures.resid[row].float()  # (T, d)
    with checking(ctx.model, ctx.family, ctx.check):
        acts = run_with_hooks(ctx.model, ctx.family, list(ctx.tokens), [entry.hook])[entry.hook]  # (L, T, d)
    return acts[entry.layer].float()


@register(SPEC, available=available, key_extra=key_extra)
def sae_features(ctx: Context) -> Features:
    """The cursor's top features and their activations at every position up to it."""
    entry = pick(ctx.settings, ctx.params)
    dictionary = load_dictionary(entry, int(ctx.model.config.hidden_size), device=ctx.device)
    labels = load_labels(entry)
    ctx.check()
    with torch.no_grad():
        x = hook_acts(ctx, entry)  # (T, d)
        ctx.check()
        at_cursor = dictionary.encode(x[-1:])[0]  # (F,)
        top = at_cursor.topk(min(TOP, dictionary.n_features))
        keep = top.values > 0
        ids = top.indices[keep]
        acts = [dictionary.feature_acts(x, int(f)) for f in ids.tolist()]  # K of (T,)
        ctx.check()
    acts_np = (torch.stack(acts).cpu().numpy() if acts else np.zeros((0, x.shape[0]))).astype(np.float32)
    return Features(
        ids=ids.cpu().numpy().astype(np.int64),
        at_cursor=top.values[keep].cpu().numpy().astype(np.float32),
        acts=acts_np,
        labels=tuple(labels.get(int(f), "") for f in ids.tolist()),
        n_active=int((at_cursor > 0).sum()),
        n_features=int(dictionary.n_features),
        dictionary=entry.title,
        architecture=str(dictionary.architecture),
        hook=entry.hook,
        layer=entry.layer,
        output_hook=entry.output_hook if entry.is_transcoder else None,
    )
