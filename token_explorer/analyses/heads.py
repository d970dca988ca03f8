"""The heads view: every head's attention metrics over the prompt (the head lab's per-head metrics,
``token_explorer.heads.metrics``), and the chosen head's attention from the cursor.

The patterns are recomputed from the captured queries and the cached keys, one layer at a time, so
the model keeps its fused kernel. The metric, layer and head parameters only select.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..heads.attention import kv_head_of, scores_and_weights
from ..heads.metrics import PATTERN_METRICS, induction_targets, pattern_means, sequence_sums
from ..heads.readback import corpus_metrics, stamp
from ..model.capture import AttentionMeta
from ..results import HeadMetrics
from . import register
from .context import Context
from .declare import Param, Spec

INDUCTION_MARK = 0.3  # marked an induction head: at least this share of attention, in rows that have an
# earlier copy of their token, goes to the tokens that followed those copies
PREVIOUS_MARK = 0.5  # marked a previous-token head: previous_token_score at least this

SPEC = Spec(
    "heads", "heads", version=1,
    params=(Param("metric", "mode", computes=False, choices=PATTERN_METRICS, default="induction_score"),
            Param("layer", "layer", computes=False, hi="last_block", default=0),
            Param("head", "pick", computes=False, hi="last_head", default=0)),
    reads="prompt", at_cursor=True, needs=frozenset({"attention"}), scale="probability", unit="weight",
)


def _available(info, settings) -> str | None:
    return None if info.queries else "attention queries of this model cannot be captured"


def _folder(settings) -> str | None:
    return getattr(getattr(settings, "engine", None), "heads_folder", None)


def _key_extra(settings, params) -> dict:
    """The configured corpus folder's files (path, size, time): a rewritten tree is read again."""
    folder = _folder(settings)
    return {"corpus": stamp(folder) if folder else None}


@register(SPEC, available=_available, key_extra=_key_extra)
def heads(ctx: Context) -> HeadMetrics:
    """(M, L, H) metrics of every head over the prompt and (L, H, cursor+1) rows from the cursor."""
    cap = ctx.captures
    assert cap is not None and cap.queries is not None
    n_layers, n_heads, m = cap.queries.shape[0], cap.queries.shape[1], cap.queries.shape[2]
    tokens = torch.tensor(ctx.tokens[:m], device=cap.queries.device)  # (m,)
    targets = induction_targets(tokens)  # (m, m)
    with_copy = targets.any(-1)  # (m,) rows that have an earlier copy of their token
    values = np.full((len(PATTERN_METRICS), n_layers, n_heads), np.nan, dtype=np.float32)
    induction_rows = np.full((n_layers, n_heads), np.nan, dtype=np.float32)
    rows = np.zeros((n_layers, n_heads, ctx.cursor + 1), dtype=np.float32)
    for layer, keys in enumerate(cap.keys):
        ctx.check()
        if keys.start != 0 or keys.keys.shape[1] < m:
            raise UserError(f"the heads view needs every key of the prompt; layer {layer}'s cache dropped some")
        kv = kv_head_of(range(n_heads), n_heads, keys.keys.shape[0])
        meta = AttentionMeta(keys.scaling, keys.softcap, keys.sliding_window)
        scores, weights, seen = scores_and_weights(cap.queries[layer].float(), keys.keys[kv, :m].float(), meta)
        means = pattern_means(sequence_sums(weights, scores, seen, tokens, targets))
        for i, name in enumerate(PATTERN_METRICS):
            values[i, layer] = means[name]
        if bool(with_copy.any()):
            induction_rows[layer] = (weights * targets).sum(-1)[:, with_copy].mean(-1).cpu().numpy()
        rows[layer] = weights[:, ctx.cursor, : ctx.cursor + 1].cpu().numpy()
        ctx.progress(layer + 1, n_layers)
    score = values[PATTERN_METRICS.index("previous_token_score")]
    folder = _folder(ctx.settings)
    corpus = corpus_metrics(folder, PATTERN_METRICS, ctx.info.name, n_layers, n_heads) if folder else None
    return HeadMetrics(names=PATTERN_METRICS, values=values, rows=rows,
                       induction=np.nan_to_num(induction_rows, nan=0.0) >= INDUCTION_MARK,
                       previous=np.nan_to_num(score, nan=0.0) >= PREVIOUS_MARK, corpus=corpus)

