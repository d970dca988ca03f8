"""The stepping session: a prompt as token ids, its KV cache, and one record per position.

Appending a token runs one single-token forward over the KV cache; removing one crops the cache
and runs nothing; replacing the prompt keeps the longest common prefix and runs only the rest.
What a crop removes goes to a prefix store (``prefix_store.py``), and positions it holds for the
new prompt are copied back from it instead of being run again, so switching between branches
that were both visited runs nothing. The store is used only when every KV-cache layer is a plain
full-attention one, which can be cut and refilled exactly; with a sliding-window layer (mistral or
gemma2 configs with a window) the removed rows are not kept and the rest is recomputed.
Each forward also captures the residual stream (and attention queries) of the new positions, so
views read captures instead of re-running the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from ..analyses.distribution import next_stats, token_stats
from ..analyses.lens import layer_logprobs, lens_stats, lens_token
from ..errors import UserError
from ..results import LensStats, Position
from ..tokens import piece_text
from .buffer import GrowBuffer
from .capture import AttentionMeta, install_query_capture, recording
from .family import Family, family_of, sizes
from .kv_cache import GrowingLayer, keep_prefix, make_cache, reserve
from ..prefix import common_prefix
from .prefix_store import PrefixStore, Rows
from .unembed import Unembed
from .vocab import Vocab

PREFILL_CHUNK = 256  # tokens per forward when many are added at once
LENS_BUDGET = 1 << 24  # floats of (layers x positions x vocab) lens logits held at once
FILL_BATCH = 4  # positions per batch of fill_lens, so that a step waits for at most four
# The per-layer lens records are never computed by a step: a step returns the next-token table at
# once and ``fill_lens`` adds the lens afterwards, when something needs it (on a CPU the lens of
# one position costs about half a decode step, and a whole prefill's several decode steps each).


class Session:
    """KV-cached stepping over one model. Not thread-safe: the engine holds the lock."""

    def __init__(self, model: torch.nn.Module, tokenizer, *, top_k: int = 50,
                 temperature: float = 1.0, lens: bool = True, store_mib: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.temperature = temperature
        self.family: Family | None = family_of(model)
        self.unembed = Unembed(model, self.family) if self.family else None
        self.lens_on = lens and self.unembed is not None
        self.queries_on = self.family is not None and install_query_capture(model)
        self.vocab = Vocab(tokenizer)
        self.device = next(model.parameters()).device
        self.tokens: list[int] = []
        self.positions: list[Position] = []
        self.cache = make_cache(model.config)
        self.resid = GrowBuffer(dim=1)  # (L+1, n, d)
        self.queries = GrowBuffer(dim=2)  # (L, H, n, hd)
        self.attention_meta: dict[int, AttentionMeta] = {}
        self._last_logits: torch.Tensor | None = None  # (V,) at the last position
        self._lens_at: tuple[int, torch.Tensor] | None = None  # (position, its (L+1, V) lens log-probs)
        exact = all(isinstance(layer, GrowingLayer) for layer in self.cache.layers)
        self.store = PrefixStore(store_mib << 20) if store_mib > 0 and exact else None

    # -- public operations -------------------------------------------------------------------
    def set_tokens(self, ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> None:
        """Make ``ids`` the prompt; reuses the longest common prefix, runs only the rest.
        ``progress(done, total)`` is called after each chunk of a long run."""
        ids = [int(i) for i in ids]
        if not ids:
            raise UserError("the prompt is empty: give at least one token")
        self._check_ids(ids)
        keep = common_prefix(self.tokens, ids)
        if keep == len(ids) == len(self.tokens):
            return
        self._truncate(keep)
        self._restore(ids)
        if len(self.tokens) < len(ids):
            self._run(ids[len(self.tokens):], progress)

    def append(self, token_id: int) -> None:
        """Add one token: copied back from the store when it holds it, else one single-token forward."""
        ids = self.tokens + [int(token_id)]
        self._check_ids(ids)
        self._restore(ids)
        if len(self.tokens) < len(ids):
            self._run([int(token_id)])

    def pop(self) -> None:
        """Remove the last token: crops the cache, runs nothing."""
        if len(self.tokens) <= 1:
            raise UserError("cannot remove the only token of the prompt")
        self._truncate(len(self.tokens) - 1)

    def last_logits(self) -> torch.Tensor:
        """(V,) float32 logits of the next-token distribution."""
        if self._last_logits is None:
            self._refresh_last()
        assert self._last_logits is not None
        return self._last_logits

    # -- internals ---------------------------------------------------------------------------
    def max_positions(self) -> int | None:
        return sizes(self.model.config).context

    def _check_ids(self, ids: list[int]) -> None:
        limit = self.max_positions()
        if limit is not None and len(ids) > limit:
            raise UserError(f"the prompt has {len(ids)} tokens, more than the model's context of {limit}")
        vocab = self.model.get_output_embeddings().weight.shape[0] if self.model.get_output_embeddings() is not None else None
        bad = [i for i in ids if i < 0 or (vocab is not None and i >= vocab)]
        if bad:
            raise UserError(f"token id {bad[0]} is outside the model's vocabulary of {vocab}")

    def _truncate(self, keep: int) -> None:
        if keep == len(self.tokens):
            return
        self._keep_in_store(keep)
        self._crop_cache(keep)
        del self.tokens[keep:]
        del self.positions[keep:]
        self.resid.truncate(min(keep, self.resid.length))
        self.queries.truncate(min(keep, self.queries.length))
        self._last_logits = None
        if self._lens_at is not None and self._lens_at[0] >= keep:
            self._lens_at = None

    def _keep_in_store(self, keep: int) -> None:
        """Hand the positions from ``keep`` on to the store before a crop removes them: as many as
        its budget holds (the first ones: a restore needs them in order), copied only where the
        store lacks them."""
        if self.store is None or not all(getattr(layer, "is_initialized", False) for layer in self.cache.layers):
            return
        fit = self.store.budget // self._rows(keep, keep + 1).nbytes  # positions the budget holds
        self.store.insert(self.tokens[: keep + fit], keep, self._rows, self._renew)

    def _rows(self, lo: int, hi: int) -> Rows:
        """Copies of the rows of positions ``lo..hi``."""
        n = hi - lo
        resid = self.resid.view()[:, lo:hi].clone() if self.resid.length >= hi else None  # (L+1, n, d)
        queries = (self.queries.view()[:, :, lo:hi].clone()
                   if self.queries_on and self.queries.length >= hi else None)  # (L, H, n, hd)
        layers = self.cache.layers
        rows = Rows(keys=tuple(layer.keys[..., lo:hi, :].clone() for layer in layers),  # (1, kv, n, hd)
                    values=tuple(layer.values[..., lo:hi, :].clone() for layer in layers),
                    resid=resid, queries=queries, positions=tuple(self.positions[lo:hi]))
        assert len(rows) == n
        return rows

    def _renew(self, rows: Rows, lo: int) -> Rows | None:
        """``rows`` with the session's records of the same positions where those gained their lens."""
        mine = self.positions[lo : lo + len(rows)]
        if all(old.lens is not None or new.lens is None for old, new in zip(rows.positions, mine)):
            return None
        return dataclasses.replace(rows, positions=tuple(mine))

    def _restore(self, ids: list[int]) -> None:
        """Copy back what the store holds of ``ids`` past the current prompt (a prefix of ``ids``):
        KV rows, captures and records, no forward."""
        if self.store is None:
            return
        for rows in self.store.lookup(ids, len(self.tokens)):
            if (self.family is not None and rows.resid is None) or (self.queries_on and rows.queries is None):
                return  # held without a capture this session needs
            for layer, keys, values in zip(self.cache.layers, rows.keys, rows.values):
                layer.update(keys, values)
            if rows.resid is not None:
                self.resid.extend(rows.resid)
            if self.queries_on and rows.queries is not None:
                self.queries.extend(rows.queries)
            n0 = len(self.tokens)
            self.positions.extend(rows.positions)
            self.tokens.extend(ids[n0 : n0 + len(rows)])
            self._last_logits = None

    def _crop_cache(self, keep: int) -> None:
        """Keep the first ``keep`` positions of the KV cache (no forward unless a window overflowed)."""
        if keep == 0:
            self.cache = make_cache(self.model.config)
            return
        if keep_prefix(self.cache, keep):
            return
        # a sliding-window layer already dropped old keys: rebuild the cache of the kept prefix
        self.cache = make_cache(self.model.config)
        with torch.no_grad():
            for start in range(0, keep, PREFILL_CHUNK):
                ids = torch.tensor([self.tokens[start : min(keep, start + PREFILL_CHUNK)]], device=self.device)
                self.model(input_ids=ids, past_key_values=self.cache, use_cache=True)

    def _refresh_last(self) -> None:
        """Recompute the last position's full logits (and lens) after a crop."""
        if self.unembed is not None and self.resid.length == len(self.tokens):
            self._last_logits = self.unembed(self.resid.view()[-1, -1])  # (V,)
            return
        # unknown family: nothing captured, so re-run the last token over the cache cropped by one
        self._crop_cache(len(self.tokens) - 1)
        logits, _, _ = self._forward([self.tokens[-1]])
        self._last_logits = logits[-1]

    @torch.no_grad()
    def _forward(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One forward of ``ids`` over the cache: logits (m, V), resid (L+1, m, d), queries."""
        input_ids = torch.tensor([ids], device=self.device)  # (1, m)
        if self.family is None:
            out = self.model(input_ids=input_ids, past_key_values=self.cache, use_cache=True)
            return out.logits[0].float(), None, None
        with recording(self.model, self.family, want_queries=self.queries_on) as rec:
            out = self.model(input_ids=input_ids, past_key_values=self.cache, use_cache=True)
        self.attention_meta.update(rec.meta)
        return out.logits[0].float(), rec.stacked_resid(), rec.stacked_queries()

    def _run(self, ids: list[int], progress: Callable[[int, int], None] | None = None) -> None:
        """Forward ``ids`` over the cache in chunks of ``PREFILL_CHUNK``: memory holds one chunk's
        logits (chunk x V) at a time, and the captures and KV cache are sized once for the whole
        run when it is longer than a chunk (no doubling slack)."""
        if len(ids) > PREFILL_CHUNK:
            total = len(self.tokens) + len(ids)
            self.resid.reserve(total)
            self.queries.reserve(total)
            reserve(self.cache, total)
        if self.tokens:  # the distribution that scores the first new token, before captures grow
            self.last_logits()
        for start in range(0, len(ids), PREFILL_CHUNK):
            chunk = ids[start : start + PREFILL_CHUNK]
            logits, resid, queries = self._forward(chunk)  # (m, V), (L+1, m, d), (L, H, m, hd)
            if resid is not None:
                self.resid.extend(resid)
            if queries is not None:
                self.queries.extend(queries)
            else:
                self.queries_on = False
            self._absorb(chunk, logits)
            if progress is not None:
                progress(start + len(chunk), len(ids))

    def _absorb(self, chunk: list[int], logits: torch.Tensor) -> None:
        """Build the records of the new positions from their logits (m, V) and captures."""
        n0, m = len(self.tokens), len(chunk)
        # row r of `scored` predicts chunk[r + skip]; position 0 of a prompt has no prefix
        skip = 0 if n0 > 0 else 1
        if n0 > 0:
            assert self._last_logits is not None, "prepared by _run"
            scored = torch.cat([self._last_logits[None], logits[:-1]])  # (m, V)
        else:
            scored = logits[:-1]  # (m-1, V)
        targets = torch.tensor(chunk[skip:], device=logits.device, dtype=torch.long)
        tok = token_stats(scored, targets) if len(targets) else None  # a lone first token has no prefix
        nxt = next_stats(logits, self.top_k, self.temperature)
        for j, token_id in enumerate(chunk):
            first, t = j < skip, j - skip
            self.positions.append(Position(
                index=n0 + j,
                token_id=token_id,
                text=piece_text(self.vocab.token_bytes(token_id)),
                token_prob=None if first else float(tok.prob[t]),
                token_rank=None if first else int(tok.rank[t]),
                token_logit=None if first else float(tok.logit[t]),
                token_z=None if first else float(tok.z[t]),
                top_ids=nxt.top_ids[j], top_probs=nxt.top_probs[j], top_logits=nxt.top_logits[j],
                entropy_bits=float(nxt.entropy_bits[j]), energy=float(nxt.energy[j]),
                temperature=self.temperature,
                logit_mean=float(nxt.logit_mean[j]), logit_std=float(nxt.logit_std[j]),
            ))
        self.tokens.extend(chunk)
        self._last_logits = logits[-1]

    def fill_lens(self, check: Callable[[], None] = lambda: None, limit: int | None = None) -> bool:
        """Compute the lens records that steps and prefills left out (each once); ``check`` runs
        between batches and may raise to stop, keeping what is done. After a step this is one
        position, scored with the lens of the position before it, kept from the previous fill.
        With ``limit``, stops after the batch that reaches that many positions; True when no
        record lacks its lens any more."""
        if not self.lens_on:
            return True
        i, n, filled = 0, len(self.positions), 0
        while i < n:
            if self.positions[i].lens is not None:
                i += 1
                continue
            stop = i
            while stop < n and self.positions[stop].lens is None:
                stop += 1
            if i == 0:
                prev = None
            elif self._lens_at is not None and self._lens_at[0] == i - 1:
                prev = self._lens_at[1]
            else:
                prev = layer_logprobs(self.unembed(self.resid.view()[:, i - 1]))
            batch = min(self._lens_batch(), FILL_BATCH)
            for start in range(i, stop, batch):
                check()
                end = min(stop, start + batch)
                stats, prev = self._lens_range(start, self.tokens, prev, end)
                for j, lens in enumerate(stats, start):
                    self.positions[j] = dataclasses.replace(self.positions[j], lens=lens)
                filled += end - start
                if limit is not None and filled >= limit:
                    return all(p.lens is not None for p in self.positions[end:])
            i = stop
        return True

    def _lens_batch(self) -> int:
        layers = self.resid.view().shape[0]
        return max(1, LENS_BUDGET // (layers * self.last_logits_size()))

    def _lens_range(self, start: int, tokens: list[int], prev: torch.Tensor | None,
                    stop: int | None = None) -> tuple[list[LensStats], torch.Tensor | None]:
        """Lens records of positions ``start..stop`` (default: to the end of ``tokens``), in batches
        that bound memory, and the lens log-probs (L+1, V) of position ``stop - 1``. ``prev``: those
        of ``start - 1``, which score the token at ``start``. The last log-probs stay in ``_lens_at``
        for the next fill."""
        assert self.unembed is not None
        resid = self.resid.view()  # (L+1, n, d)
        stop = len(tokens) if stop is None else stop
        out: list[LensStats] = []
        for b0 in range(start, stop, self._lens_batch()):
            b1 = min(stop, b0 + self._lens_batch())
            logp = layer_logprobs(self.unembed(resid[:, b0:b1]))  # (L+1, b, V)
            for j in range(b0, b1):
                here = logp[:, j - b0]  # (L+1, V)
                stats = lens_stats(here, self.top_k)
                if prev is not None:
                    prob, rank = lens_token(prev, tokens[j])
                    stats = dataclasses.replace(stats, token_prob=prob, token_rank=rank)
                out.append(stats)
                prev = here
        if prev is not None:
            prev = prev.clone()  # detach from the batch
            self._lens_at = (stop - 1, prev)
        return out, prev

    def last_logits_size(self) -> int:
        head = self.model.get_output_embeddings()
        return int(head.weight.shape[0])
