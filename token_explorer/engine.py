"""The engine: owns the model, its stepping session and the heavy analyses, behind one lock.

Synchronous and free of any UI; usable from a notebook::

    engine = open_engine("bundled")
    engine.set_tokens(engine.tokenize("Once upon a time"))
    snap = engine.append(int(engine.snapshot().next.top_ids[0]))
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from . import heavy
from .cache import ResultCache, make_key
from .config import Settings
from .errors import Cancelled, UserError
from .model.loading import Loaded, Progress, load_model
from .model.session import Session
from .results import ModelInfo, Snapshot, TokenScores
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
        self._cancelled: Callable[[], bool] | None = None
        self.session = Session(loaded.model, loaded.tokenizer, top_k=top_k, temperature=temperature, lens=lens)
        config = loaded.model.config
        notes = () if self.session.family else (
            f"model family '{config.model_type}' is not in the family table: lens and inner views unavailable",)
        self.info = ModelInfo(
            name=loaded.name,
            family=str(getattr(config, "model_type", "?")),
            device=str(loaded.device),
            dtype=str(loaded.dtype).removeprefix("torch."),
            n_layers=int(getattr(config, "num_hidden_layers", getattr(config, "n_layer", 0))),
            n_heads=int(getattr(config, "num_attention_heads", getattr(config, "n_head", 0))),
            vocab_size=self.session.last_logits_size(),
            max_positions=self.session.max_positions(),
            fingerprint=loaded.fingerprint,
            supported=self.session.family is not None,
            notes=notes,
            dictionaries=tuple(str(entry.get("name") or f"L{entry.get('layer')} {entry.get('hook')}")
                               for entry in self.settings.sae),
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
        with self._lock:
            self.session.set_tokens(ids, progress)
            return self.snapshot()

    def append(self, token_id: int) -> Snapshot:
        """Append one token (one single-token forward)."""
        with self._lock:
            if not self.session.tokens:
                raise UserError("the prompt is empty: set a prompt before appending")
            self.session.append(token_id)
            return self.snapshot()

    def pop(self) -> Snapshot:
        """Remove the last token (a cache crop, no forward)."""
        with self._lock:
            self.session.pop()
            return self.snapshot()

    def fill_lens(self) -> Snapshot:
        """Compute the per-layer lens records a long prefill deferred; the snapshot with them."""
        with self._lock:
            self.session.fill_lens()
            return self.snapshot()

    def sample(self, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               seed: int | None = None) -> int:
        """Draw the next token from the processed distribution (temperature, then top-k, then top-p).

        The raw distribution kept in the records is untouched; only this draw is filtered.
        """
        with self._lock:
            logits = self.session.last_logits().clone()
        if temperature <= 0:
            return int(logits.argmax())
        logits = logits / temperature
        if top_k > 0:
            kth = logits.topk(min(top_k, logits.shape[-1])).values[-1]
            logits[logits < kth] = float("-inf")
        if top_p < 1.0:
            order = logits.argsort(descending=True)
            probs = logits[order].softmax(-1)
            drop = probs.cumsum(-1) - probs >= top_p  # keep the smallest prefix reaching top_p
            logits[order[drop]] = float("-inf")
        generator = torch.Generator(device=logits.device)
        if seed is not None:
            generator.manual_seed(seed)
        return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))

    # -- heavy analyses ------------------------------------------------------------------------
    def analyses(self) -> Mapping[str, str | None]:
        """Heavy analyses by name: None if available, else why not."""
        return {name: entry.available(self) for name, entry in heavy.load_all().items()}

    def analyze(self, name: str, tokens: Sequence[int], cursor: int, params: Mapping[str, Any],
                cancelled: Callable[[], bool] | None = None) -> Any:
        """Run heavy analysis ``name`` for ``tokens`` at ``cursor`` (cached by everything it depends on).

        ``cancelled`` is polled between layers or steps; when it returns True the run stops with
        ``Cancelled`` and nothing is cached.
        """
        entry = heavy.load_all().get(name)
        if entry is None:
            raise UserError(f"unknown analysis '{name}'")
        reason = entry.available(self)
        if reason is not None:
            raise UserError(f"{name} is unavailable: {reason}")
        tokens = [int(t) for t in tokens]
        if not 0 <= cursor < len(tokens):
            raise UserError(f"cursor {cursor} is outside the prompt of {len(tokens)} tokens")
        scope = tokens[: cursor + 1] if entry.needs_prefix_only else tokens
        extra = dict(entry.key_extra(self, params)) if entry.key_extra else {}
        key = make_key(model=self.info.fingerprint, tokens=scope, analysis=f"{name}/v{entry.version}",
                       params={**dict(params), **extra, "cursor": cursor, "n": len(scope)})
        result = self.results.get(key)
        if result is None:
            with self._lock:
                self._cancelled = cancelled
                try:
                    result = entry.run(self, tokens, cursor, params)
                finally:
                    self._cancelled = None
            self.results.put(key, result)
        return _fit(result, len(tokens))

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` if the running analysis was cancelled (called between layers)."""
        if self._cancelled is not None and self._cancelled():
            raise Cancelled()


def _fit(result: Any, n: int) -> Any:
    """A prefix-only result stretched to the whole prompt: NaN (undefined) past its last position."""
    if not isinstance(result, TokenScores) or len(result.values) >= n:
        return result
    values = np.full(n, np.nan, np.float32)
    values[: len(result.values)] = result.values
    grid = result.grid
    if grid is not None and grid.shape[1] < n:
        grid = np.concatenate([grid, np.full((grid.shape[0], n - grid.shape[1]), np.nan, grid.dtype)], axis=1)
    return dataclasses.replace(result, values=values, grid=grid)


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
