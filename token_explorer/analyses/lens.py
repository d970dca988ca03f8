"""Logit-lens statistics from per-layer logits of one position.

The caller maps each layer's residual stream through the model's own final norm and unembedding
(``model.unembed.Unembed``); this module only summarises the resulting distributions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..results import Lens, LensStats
from . import register
from .context import Context
from .declare import Param, Spec
from .distribution import LN2, entropy_bits


def layer_logprobs(layer_logits: torch.Tensor) -> torch.Tensor:
    """(L+1, V) logits -> (L+1, V) float32 log-probabilities."""
    return torch.log_softmax(layer_logits.float(), dim=-1)


def lens_stats(logp: torch.Tensor, k: int) -> LensStats:
    """Top-k, entropy and KL(final || layer) of each layer's distribution at one position.

    ``logp``: (L+1, V) log-probabilities, last row the model's real distribution.
    """
    top_logp, top_ids = logp.topk(min(k, logp.shape[-1]), dim=-1)  # (L+1, k)
    final = logp[-1]  # (V,)
    kl = (final.exp() * (final - logp)).sum(-1) / LN2  # (L+1,)
    return LensStats(
        top_ids=top_ids.cpu().numpy().astype(np.int64),
        top_probs=top_logp.exp().cpu().numpy(),
        entropy_bits=entropy_bits(logp).cpu().numpy(),
        kl_to_final_bits=kl.clamp_min(0).cpu().numpy(),
    )


def lens_token(logp: torch.Tensor, token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability (L+1,) and 1-based rank (L+1,) of ``token_id`` under each layer's lens."""
    chosen = logp[:, token_id : token_id + 1]  # (L+1, 1)
    rank = (logp > chosen).sum(-1) + 1
    return chosen[:, 0].exp().cpu().numpy(), rank.cpu().numpy().astype(np.int64)


# ------------------------------------------------------------------ the lens view

LENS_BUDGET = 1 << 24  # floats of (layers x positions x vocab) lens logits held at once
TOP = 5
PARTIAL_EVERY = 0.5  # seconds between partial results while the rest fills in

SPEC = Spec(
    "lens", "logit lens", version=2,
    params=(Param("quantity", "mode", computes=False, choices=("prob", "rank")),
            Param("layer", "layer", computes=False, hi="n_layers")),
    reads="prompt", at_cursor=False, needs=frozenset({"resid"}), scale="probability",
)


def _empty(rows: int, n: int, k: int) -> dict[str, np.ndarray]:
    nan = np.full((rows, n), np.nan, np.float32)
    return dict(prob=nan.copy(), rank=nan.copy(), entropy_bits=nan.copy(), kl_bits=nan.copy(),
                top_ids=np.full((rows, n, k), -1, np.int64), top_probs=np.full((rows, n, k), np.nan, np.float32))


def _fill(out: dict[str, np.ndarray], logp: torch.Tensor, rows: slice, cols: range, tokens: Sequence[int],
          final: torch.Tensor | None) -> None:
    """Write the lens of positions ``cols`` at layers ``rows`` from their log-probs (R, b, V).

    ``final`` (b, V): the model's own log-probs at those positions, for the KL column.
    """
    top_logp, top_ids = logp.topk(TOP, dim=-1)  # (R, b, k)
    out["top_ids"][rows, cols.start : cols.stop] = top_ids.cpu().numpy()
    out["top_probs"][rows, cols.start : cols.stop] = top_logp.exp().cpu().numpy()
    out["entropy_bits"][rows, cols.start : cols.stop] = entropy_bits(logp).cpu().numpy()
    if final is not None:
        kl = (final.exp() * (final - logp)).sum(-1) / LN2  # (R, b)
        out["kl_bits"][rows, cols.start : cols.stop] = kl.clamp_min(0).cpu().numpy()
    # token i+1 read at position i
    nxt = [i + 1 for i in cols if i + 1 < len(tokens)]
    if nxt:
        idx = torch.tensor([tokens[i] for i in nxt], device=logp.device)  # (b',)
        chosen = logp[:, : len(nxt)].gather(-1, idx[None, :, None].expand(logp.shape[0], -1, 1))  # (R, b', 1)
        out["prob"][rows, nxt[0] : nxt[-1] + 1] = chosen[..., 0].exp().cpu().numpy()
        out["rank"][rows, nxt[0] : nxt[-1] + 1] = ((logp[:, : len(nxt)] > chosen).sum(-1) + 1).float().cpu().numpy()


def _result(out: dict[str, np.ndarray], ctx: Context, partial: bool = False) -> Lens:
    """The lens from the arrays filled so far (copied for a partial result, which the screen reads
    while the rest is written)."""
    ids = np.unique(out["top_ids"][out["top_ids"] >= 0])
    arrays = {k: v.copy() for k, v in out.items()} if partial else out
    return Lens(**arrays, text_ids=ids.astype(np.int64), texts=tuple(ctx.token_texts(ids.tolist())))


@register(SPEC)
def lens(ctx: Context) -> Lens:
    """Lens of every position at every layer; the chosen layer at the positions on screen first."""
    assert ctx.captures is not None
    resid = ctx.captures.resid  # (L+1, n, d)
    rows, n = resid.shape[0], resid.shape[1]
    tokens = ctx.tokens
    out = _empty(rows, n, TOP)
    done = np.zeros(n, bool)
    records = ctx.records[:n]
    for i, p in enumerate(records):  # what the session already read through the lens
        if p.lens is None:
            continue
        if i > 0 and p.lens.token_prob is not None:
            out["prob"][:, i], out["rank"][:, i] = p.lens.token_prob, p.lens.token_rank
        out["entropy_bits"][:, i], out["kl_bits"][:, i] = p.lens.entropy_bits, p.lens.kl_to_final_bits
        out["top_ids"][:, i], out["top_probs"][:, i] = p.lens.top_ids[:, :TOP], p.lens.top_probs[:, :TOP]
        following = records[i + 1].lens if i + 1 < len(records) else None
        done[i] = i + 1 >= n or (following is not None and following.token_prob is not None)
    vocab = ctx.info.vocab_size
    batch = max(1, LENS_BUDGET // (rows * vocab))
    todo = [i for i in range(n) if not done[i]]
    if ctx.window is not None and len(todo) > batch:  # the screen first: the chosen layer, visible positions
        layer = int(ctx.params["layer"])
        a, b = ctx.window
        seen = [i for i in todo if a <= i < b]
        wide = max(1, LENS_BUDGET // vocab)
        for start in range(0, len(seen), wide):
            ctx.check()
            cols = seen[start : start + wide]
            part = range(cols[0], cols[-1] + 1)
            logp = layer_logprobs(ctx.unembed(resid[layer : layer + 1, part.start : part.stop]))  # (1, b, V)
            _fill(out, logp, slice(layer, layer + 1), part, tokens, None)
        ctx.partial(_result(out, ctx, partial=True))
    last = time.monotonic()
    for start in range(0, len(todo), batch):
        ctx.check()
        ctx.progress(start, len(todo))
        chunk = todo[start : start + batch]
        for run_start, run_stop in _runs(chunk):
            cols = range(run_start, run_stop)
            logp = layer_logprobs(ctx.unembed(resid[:, run_start:run_stop]))  # (L+1, b, V)
            _fill(out, logp, slice(None), cols, tokens, logp[-1:])
        if time.monotonic() - last > PARTIAL_EVERY:
            ctx.partial(_result(out, ctx, partial=True))
            last = time.monotonic()
    return _result(out, ctx)


def _runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted positions as [start, stop) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for i in ids:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs
