"""The engine: owns the model, its stepping session and the analyses.

One lock guards the session. Steps (append, pop, set_tokens) take it for their forward. An
analysis takes it only to copy the captures it needs out of the session, then runs on those
copies outside the lock, so a step never waits on an analysis; and every step first cancels the
running analyses (they stop at their next check, at least once per block), so steps also get
the CPU first. ``cancel_analyses()`` does the same for the quit path.

Synchronous and free of any UI; usable from a notebook::

    engine = open_engine("bundled")
    engine.set_tokens(engine.tokenize("Once upon a time"))
    snap = engine.append(int(engine.snapshot().next.top_ids[0]))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import analyses as registry
from .analyses.context import Context
from .analyses.declare import Spec
from .cache import ResultCache, make_key
from .config import Settings
from .errors import Cancelled, UserError
from .model import captures as capturing
from .model.family import sizes
from .model.loading import Loaded, Progress, load_model
from .model.session import FILL_BATCH, Session
from .results import ModelInfo, Snapshot
from .sampling import SamplingParams, choose, eos_token_ids, process, whitespace_token_ids
from .tokens import piece_text


class Engine:
    """Thread-safe stepping engine over one loaded model (see ``protocol.EngineLike``)."""

    def __init__(self, loaded: Loaded, *, top_k: int = 50, temperature: float = 1.0, lens: bool = True,
                 settings: Settings | None = None) -> None:
        self._lock = threading.RLock()
        self.loaded = loaded
        self.settings = settings or Settings()
        self._notices: list[str] = []  # held until someone listens
        self._listener: Callable[[str], None] | None = None
        self._notice_lock = threading.Lock()
        self.results = ResultCache(self.settings.cache.path if settings else None,
                                   memory_items=self.settings.display.cache_size,
                                   disk_limit_mb=self.settings.cache.disk_limit_mb, report=self._notice)
        self._generation = 0  # bumped by every step and by cancel_analyses(): older analyses stop
        self.session = Session(loaded.model, loaded.tokenizer, top_k=top_k, temperature=temperature, lens=lens,
                               store_mib=self.settings.store.budget_mib)
        self._eos = eos_token_ids(loaded.model, loaded.tokenizer)  # the ids the sampler's EOS bans cover
        self._whitespace: set[int] | None = None  # whitespace-only ids, found on first need
        config = loaded.model.config
        shape = sizes(config)
        notes = () if self.session.family else (
            f"model family '{config.model_type}' is not in the family table: lens and inner views unavailable",)
        self.info = ModelInfo(
            name=loaded.name,
            family=str(getattr(config, "model_type", "?")),
            device=str(loaded.device),
            dtype=str(loaded.dtype).removeprefix("torch."),
            n_layers=shape.n_layers,
            n_heads=shape.n_heads,
            vocab_size=self.session.last_logits_size(),
            max_positions=self.session.max_positions(),
            fingerprint=loaded.fingerprint,
            supported=self.session.family is not None,
            notes=notes,
            dictionaries=tuple(str(entry.get("name") or f"L{entry.get('layer')} {entry.get('hook')}")
                               for entry in self.settings.sae),
            queries=bool(self.session.queries_on),
        )

    # -- notices -------------------------------------------------------------------------------
    def on_notice(self, listener: Callable[[str], None]) -> None:
        """Send one-line notices (the result cache going memory-only or being rebuilt) to
        ``listener``, from any thread; notices from before this call are sent at once."""
        with self._notice_lock:
            self._listener, held, self._notices = listener, self._notices, []
        for line in held:
            listener(line)

    def _notice(self, line: str) -> None:
        with self._notice_lock:
            listener = self._listener
            if listener is None:
                self._notices.append(line)
        if listener is not None:
            listener(line)

    # -- text ----------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, with the special tokens the tokenizer adds by default."""
        return list(self.loaded.tokenizer(text)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a token sequence, decoded as a whole."""
        return self.loaded.tokenizer.decode(list(ids))

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        """Display text of each token (bytes of split characters as <0xNN>)."""
        return [piece_text(self.session.vocab.token_bytes(int(i))) for i in ids]

    # -- stepping ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The current prompt and its per-position records."""
        with self._lock:
            return Snapshot(tuple(self.session.tokens), tuple(self.session.positions))

    def set_tokens(self, ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> Snapshot:
        """Make ``ids`` the prompt, reusing the longest common prefix; ``progress(done, total)``
        after each chunk of the tokens that run."""
        self.cancel_analyses()
        with self._lock:
            self.session.set_tokens(ids, progress)
            return self.snapshot()

    def append(self, token_id: int) -> Snapshot:
        """Append one token (one single-token forward)."""
        self.cancel_analyses()
        with self._lock:
            if not self.session.tokens:
                raise UserError("the prompt is empty: set a prompt before appending")
            self.session.append(token_id)
            return self.snapshot()

    def pop(self) -> Snapshot:
        """Remove the last token (a cache crop, no forward)."""
        self.cancel_analyses()
        with self._lock:
            self.session.pop()
            return self.snapshot()

    def fill_lens(self, cancelled: Callable[[], bool] | None = None) -> Snapshot:
        """Compute the per-layer lens records that steps and prefills leave out; the snapshot with
        them. ``cancelled`` is polled every few positions: when it returns True the fill stops with
        ``Cancelled``, keeping the records done so far. The lock is taken for one batch of
        positions at a time, so a step (or an analysis copying its captures) waits for at most
        one batch, never for the whole fill; the fill then goes on with whatever prompt is current."""

        def check() -> None:
            if cancelled is not None and cancelled():
                raise Cancelled()

        while True:
            check()
            with self._lock:
                if self.session.fill_lens(check, limit=FILL_BATCH):
                    return self.snapshot()

    def sample(self, params: SamplingParams | None = None, *, step: int = 0, seed: int | None = None) -> int:
        """Draw the next token with the sampler of ``sampling.py`` (the one ``trace`` uses): the
        processed distribution of the last position (``step``: new tokens drawn so far, for the
        EOS and whitespace bans), then its arg-max when greedy, else a draw seeded with ``seed``.

        The raw distribution kept in the records is untouched; only this draw is filtered.
        """
        params = params or SamplingParams()
        processed = self._processed(params, step)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=processed.device)
            generator.manual_seed(seed)
        return choose(processed, params, generator)

    def eos_ids(self) -> frozenset[int]:
        """Every id the model or its tokenizer declares as end of sequence."""
        return frozenset(self._eos)

    def processed_probs(self, params: SamplingParams, ids: Sequence[int], *, step: int = 0) -> np.ndarray:
        """(len(ids),) float64: the sampler's processed probability of each of ``ids`` at the last
        position (0 where a filter removed the token)."""
        processed = self._processed(params, step)
        probs = processed.softmax(-1)
        index = torch.tensor([int(i) for i in ids], dtype=torch.long, device=probs.device)
        return probs[index].double().cpu().numpy()

    def _processed(self, params: SamplingParams, step: int) -> torch.Tensor:
        try:
            params.check()
        except ValueError as e:
            raise UserError(f"sampling: {e}") from None
        with self._lock:
            logits = self.session.last_logits().clone()
            context = list(self.session.tokens)
        whitespace: set[int] = set()
        if step < params.block_whitespace_steps:
            if self._whitespace is None:
                self._whitespace = whitespace_token_ids(self.session.vocab.token_bytes, int(logits.shape[-1]))
            whitespace = self._whitespace
        return process(logits, context, step, params, self._eos, whitespace)

    # -- analyses ------------------------------------------------------------------------------
    def cancel_analyses(self) -> None:
        """Cancel every running analysis: each raises ``Cancelled`` at its next check."""
        self._generation += 1

    def specs(self) -> Mapping[str, Spec]:
        """Every analysis's declaration (parameters, scope, scale), by name."""
        return {name: entry.spec for name, entry in registry.load_all().items()}

    def analyses(self) -> Mapping[str, str | None]:
        """Analyses by name: None if available, else why not."""
        return {name: self._unavailable(entry) for name, entry in registry.load_all().items()}

    def _unavailable(self, entry: registry.Analysis) -> str | None:
        if self.session.family is None:
            return f"model family '{self.info.family}' is not in the family table"
        return entry.available(self.info, self.settings) if entry.available else None

    def analysis_key(self, name: str, tokens: Sequence[int], cursor: int, params: Mapping[str, Any]) -> str:
        """The cache key of a result: model, the tokens it reads, the cursor if it depends on it,
        the analysis and its version, and only the parameters that change the computation."""
        entry = self._entry(name)
        spec = entry.spec
        resolved = spec.resolve(params, self.info)
        scope = list(tokens[: cursor + 1]) if spec.reads == "prefix" else list(tokens)
        computing = spec.computing(resolved)
        if entry.key_extra:
            computing.update(entry.key_extra(self.settings, resolved))
        if spec.at_cursor:
            computing["cursor"] = cursor
        return make_key(model=self.info.fingerprint, tokens=scope, analysis=f"{name}/v{spec.version}", params=computing)

    def _entry(self, name: str) -> registry.Analysis:
        entry = registry.load_all().get(name)
        if entry is None:
            raise UserError(f"unknown analysis '{name}'")
        return entry

    def analyze(self, name: str, tokens: Sequence[int], cursor: int, params: Mapping[str, Any],
                cancelled: Callable[[], bool] | None = None, *,
                progress: Callable[[int, int], None] | None = None,
                partial: Callable[[Any], None] | None = None,
                window: tuple[int, int] | None = None) -> Any:
        """The full result of analysis ``name`` for ``tokens`` at ``cursor`` (cached by what it depends on).

        ``params`` may hold every declared parameter; those that only select (a layer, a head) do
        not change the result or its cache key. The run stops with ``Cancelled`` (nothing cached)
        when ``cancelled()`` turns True, when a step is requested, or on ``cancel_analyses()``.
        ``progress(done, total)`` reports long runs; ``partial(result)`` receives results whose
        on-screen part (``window``: positions [start, stop)) is filled before the rest.
        """
        entry = self._entry(name)
        spec = entry.spec
        reason = self._unavailable(entry)
        if reason is not None:
            raise UserError(f"{name} is unavailable: {reason}")
        tokens = [int(t) for t in tokens]
        if not 0 <= cursor < len(tokens):
            raise UserError(f"cursor {cursor} is outside the prompt of {len(tokens)} tokens")
        resolved = spec.resolve(params, self.info)
        key = self.analysis_key(name, tokens, cursor, resolved)
        result = self.results.get(key)
        if result is not None:
            return result
        generation = self._generation

        def check() -> None:
            if self._generation != generation or (cancelled is not None and cancelled()):
                raise Cancelled()

        scope = tokens[: cursor + 1] if spec.reads == "prefix" else tokens
        ctx = self._context(spec, scope, cursor, resolved, check, progress, partial, window)
        result = entry.run(ctx)
        check()
        self.results.put(key, result)
        return result

    def _context(self, spec: Spec, scope: list[int], cursor: int, params: dict[str, Any],
                 check: Callable[[], None], progress, partial, window) -> Context:
        """The analysis's context; the session is read under the lock, and only to copy from it."""
        session = self.session
        assert session.family is not None and session.unembed is not None
        attention = "attention" in spec.needs
        found, past, records = None, None, ()
        with self._lock:
            check()
            if spec.needs & {"resid", "attention"}:
                found = capturing.from_session(session, scope, attention)
            if "cursor_past" in spec.needs:
                past = capturing.cursor_past(session, scope, cursor)
            if capturing.is_prefix(scope, session.tokens):
                records = tuple(session.positions[: len(scope)])
        if found is None and spec.needs & {"resid", "attention"}:
            found = capturing.own_forward(session.model, session.family, scope, attention, check)
        return Context(
            tokens=tuple(scope), cursor=cursor, params=params, info=self.info, model=session.model,
            family=session.family, unembed=session.unembed, token_texts=self.token_texts, check=check,
            progress=progress or (lambda done, total: None), partial=partial or (lambda result: None),
            captures=found, records=records, window=window, settings=self.settings, cursor_past=past,
        )


def open_engine(
    model: str = "bundled",
    *,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
    top_k: int = 50,
    temperature: float = 1.0,
    lens: bool = True,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> Engine:
    """Load ``model`` and wrap it in an engine."""
    loaded = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                        revision=revision, progress=progress or (lambda _m, _f: None))
    return Engine(loaded, top_k=top_k, temperature=temperature, lens=lens, settings=settings)
