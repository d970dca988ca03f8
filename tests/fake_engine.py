"""A deterministic EngineLike over a byte vocabulary, NumPy only, for the TUI tests.

The "model" is a hash of the last three tokens seeding a random logit vector, with a few boosts so
text looks like text. Every record is computed from those logits the way the real engine does it
(softmax probabilities, entropy in bits, free energy, z-scores), so the numbers are consistent.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from token_explorer.analyses.declare import Param, Spec
from token_explorer.results import Attribution, LayerGrid, ModelInfo, Position, Snapshot
from token_explorer.sampling_params import SamplingParams
from token_explorer.tokens import piece_text

BOS, EOS, MARKUP, CLOSE = 256, 257, 258, 259
SPECIAL = {BOS: b"<|bos|>", EOS: b"<|eos|>", MARKUP: b"[bold]x[/]", CLOSE: b" [/]"}
VOCAB = 260


def piece(token: int) -> bytes:
    """The bytes of one token."""
    return SPECIAL.get(token, bytes([token]) if 0 <= token < 256 else b"?")


class FakeEngine:
    """Deterministic, thread-safe, records every call with the thread it ran on."""

    def __init__(self, *, top_k: int = 50, temperature: float = 1.0, delay: float = 0.0,
                 name: str = "fake-bytes", fingerprint: str = "fake-v1") -> None:
        self.info = ModelInfo(
            name=name, family="fake", device="cpu", dtype="float32", n_layers=4, n_heads=2,
            vocab_size=VOCAB, max_positions=None, fingerprint=fingerprint,
        )
        self.top_k = top_k
        self.temperature = temperature
        self.delay = delay
        self.fail_append = False
        self.calls: list[tuple[str, bool]] = []  # (method, ran on the main thread)
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._tokens: list[int] = []
        self._positions: list[Position] = []
        self._active = 0
        self.max_concurrent = 0

    # ---------------------------------------------------------------- bookkeeping

    def _record(self, name: str) -> None:
        self.calls.append((name, threading.current_thread() is threading.main_thread()))

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)

    def main_thread_calls(self, names: Sequence[str] = ("set_tokens", "append", "pop", "analyze")) -> list[str]:
        """Compute calls that ran on the main (UI) thread."""
        return [n for n, main in self.calls if main and n in names]

    def _slow(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    # ---------------------------------------------------------------- the "model"

    def logits(self, context: Sequence[int]) -> np.ndarray:
        """(V,) float64 logits of the token after ``context``."""
        tail = np.asarray(list(context[-3:]), dtype=np.int32).tobytes()
        rng = np.random.default_rng(zlib.crc32(tail))
        out = rng.normal(0.0, 1.5, VOCAB)
        out[ord("a") : ord("z") + 1] += 2.0
        out[ord(" ")] += 2.5
        out[[ord("."), ord(","), ord("\n")]] += 1.0
        out[[BOS, EOS]] -= 4.0
        out[128:256] -= 3.0
        if context and context[-1] == ord("["):
            out[MARKUP] += 9.0
        return out

    def _position(self, tokens: Sequence[int], i: int) -> Position:
        T = self.temperature
        token = tokens[i]
        own = self.logits(tokens[: i + 1])
        probs = _softmax(own)
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        if i > 0:
            prev = self.logits(tokens[:i])
            prev_p = _softmax(prev)
            token_prob = float(prev_p[token])
            token_rank = int((prev_p > prev_p[token]).sum()) + 1
            token_logit = float(prev[token])
            token_z = float((prev[token] - prev.mean()) / prev.std())
        else:
            token_prob = token_rank = token_logit = token_z = None
        nz = probs[probs > 0]
        return Position(
            index=i,
            token_id=int(token),
            text=piece_text(piece(token)),
            token_prob=token_prob,
            token_rank=token_rank,
            token_logit=token_logit,
            token_z=token_z,
            top_ids=order.astype(np.int64),
            top_probs=probs[order].astype(np.float32),
            top_logits=own[order].astype(np.float32),
            entropy_bits=float(-(nz * np.log2(nz)).sum()),
            energy=float(-T * _logsumexp(own / T)),
            temperature=T,
            logit_mean=float(own.mean()),
            logit_std=float(own.std()),
        )

    # ---------------------------------------------------------------- EngineLike

    def on_notice(self, listener) -> None:
        self.listener = listener

    def tokenize(self, text: str) -> list[int]:
        self._record("tokenize")
        return [BOS, *text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        self._record("decode")
        return b"".join(piece(t) for t in ids if t not in (BOS, EOS)).decode("utf-8", errors="replace")

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        self._record("token_texts")
        return [piece_text(piece(int(t))) for t in ids]

    def snapshot(self) -> Snapshot:
        self._record("snapshot")
        with self._lock:
            return Snapshot(tuple(self._tokens), tuple(self._positions))

    def _enter(self) -> None:
        """Count compute calls running at once (before taking the lock, so overlap shows)."""
        with self._count_lock:
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)

    def _leave(self) -> None:
        with self._count_lock:
            self._active -= 1

    def set_tokens(self, ids: Sequence[int], progress=None) -> Snapshot:
        self._record("set_tokens")
        ids = [int(t) for t in ids]
        self._enter()
        with self._lock:
            try:
                self._slow()
                keep = 0
                while keep < min(len(ids), len(self._tokens)) and ids[keep] == self._tokens[keep]:
                    keep += 1
                self._tokens = ids
                self._positions = self._positions[:keep] + [self._position(ids, i) for i in range(keep, len(ids))]
                if progress is not None:
                    progress(len(ids) - keep, len(ids) - keep)
                return Snapshot(tuple(self._tokens), tuple(self._positions))
            finally:
                self._leave()

    def append(self, token_id: int) -> Snapshot:
        self._record("append")
        self._enter()
        with self._lock:
            try:
                self._slow()
                if self.fail_append:
                    raise RuntimeError("fake failure while appending [boom]")
                tokens = [*self._tokens, int(token_id)]
                self._positions = [*self._positions, self._position(tokens, len(tokens) - 1)]
                self._tokens = tokens
                return Snapshot(tuple(self._tokens), tuple(self._positions))
            finally:
                self._leave()

    def pop(self) -> Snapshot:
        self._record("pop")
        self._enter()
        with self._lock:
            try:
                self._slow()
                if len(self._tokens) <= 1:
                    raise ValueError("cannot remove the only token")
                self._tokens = self._tokens[:-1]
                self._positions = self._positions[:-1]
                return Snapshot(tuple(self._tokens), tuple(self._positions))
            finally:
                self._leave()

    def _processed(self, params: SamplingParams, step: int) -> np.ndarray:
        """(V,) float64 processed logits: a NumPy rendering of the sampler's rules (repetition penalty,
        EOS ban, temperature, top-k, top-p; no n-gram or whitespace bans)."""
        with self._lock:
            context = list(self._tokens)
        out = self.logits(context).copy()
        seen = sorted(set(context))
        if params.repetition_penalty != 1.0 and seen:
            out[seen] = np.where(out[seen] > 0, out[seen] / params.repetition_penalty, out[seen] * params.repetition_penalty)
        if step < max(params.min_new_tokens, params.block_eos_steps):
            out[EOS] = -np.inf
        out = out / (1.0 if params.greedy else params.temperature)
        if 0 < params.top_k < VOCAB:
            out[out < np.sort(out)[-params.top_k]] = -np.inf
        if params.top_p < 1.0:
            order = np.argsort(-out, kind="stable")
            probs = np.exp(out[order] - out[order][0])
            probs /= probs.sum()
            out[order[(np.cumsum(probs) - probs) >= params.top_p]] = -np.inf
        return out

    def sample(self, params: SamplingParams | None = None, *, step: int = 0, seed: int | None = None) -> int:
        self._record("sample")
        params = params or SamplingParams()
        out = self._processed(params, step)
        if params.greedy:
            return int(np.argmax(out))
        probs = np.exp(out - out.max())
        return int(np.random.default_rng(seed).choice(VOCAB, p=probs / probs.sum()))

    def eos_ids(self) -> frozenset[int]:
        return frozenset({EOS})

    def processed_probs(self, params: SamplingParams, ids: Sequence[int], *, step: int = 0) -> np.ndarray:
        out = self._processed(params, step)
        probs = np.exp(out - out.max())
        return (probs / probs.sum())[[int(i) for i in ids]]

    def analyses(self) -> Mapping[str, str | None]:
        self._record("analyses")
        return {"similarity": None, "attribution": None, "attention": "the fake engine has no attention weights"}

    def specs(self) -> Mapping[str, Spec]:
        return FAKE_SPECS

    def cancel_analyses(self) -> None:
        self._record("cancel_analyses")

    def analyze(self, name: str, tokens: Sequence[int], cursor: int, params: Mapping[str, Any],
                cancelled=None, *, progress=None, partial=None, window=None) -> Any:
        self._record("analyze")
        with self._lock:
            self._slow()
        tokens = [int(t) for t in tokens]
        if name == "attribution":
            return self._attribution(tokens, cursor, str(params.get("method", "saliency")))
        if name != "similarity":
            raise ValueError(f"unknown analysis {name!r}")
        n = len(tokens)
        layers = self.info.n_layers + 1
        grid = np.full((layers, n), np.nan)
        for layer in range(layers):
            emb = np.stack([_embedding(t, layer) for t in tokens])
            target = emb[cursor]
            sims = emb @ target / (np.linalg.norm(emb, axis=1) * np.linalg.norm(target))
            grid[layer, : cursor + 1] = sims[: cursor + 1]
        return LayerGrid(grid.astype(np.float32))

    def _attribution(self, tokens: list[int], cursor: int, method: str) -> Attribution:
        """Scores of the tokens before the cursor; each method a different deterministic pattern."""
        salt = {"saliency": 1, "input_x_gradient": 2, "integrated_gradients": 3}[method]
        values = np.full(cursor + 1, np.nan, dtype=np.float32)
        for i in range(cursor):
            values[i] = ((tokens[i] * 31 + i * 7 + salt * 13) % 100) / 100.0
        return Attribution(values, method, -1.5)


FAKE_SPECS: dict[str, Spec] = {
    "similarity": Spec("similarity", "similarity to cursor", 1,
                       params=(Param("space", "mode", computes=True, choices=("raw", "normed")),
                               Param("layer", "layer", computes=False, hi="n_layers")),
                       reads="prompt", at_cursor=True, scale="cosine", unit="cosine"),
    "attribution": Spec("attribution", "attribution", 1,
                        params=(Param("method", "mode", computes=True,
                                      choices=("saliency", "input_x_gradient", "integrated_gradients")),),
                        reads="prefix", at_cursor=True, scale="signed", unit="nats"),
    "attention": Spec("attention", "attention influence", 1,
                      params=(Param("layer", "layer", computes=False, hi="last_block", default="all", allow_all=True),),
                      reads="prefix", at_cursor=True, scale="probability"),
}


def _embedding(token: int, layer: int) -> np.ndarray:
    base = np.random.default_rng(token).normal(size=16)
    drift = np.random.default_rng(1000 + layer).normal(size=16)
    return base + 0.3 * layer * drift


def _logsumexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# ---------------------------------------------------------------- helpers for the TUI tests


def make_settings(prompts_dir, *, keymap: Mapping[str, str] | None = None, max_prompts: int = 9,
                  tokens_to_show: int = 20, show_cursor: bool = True, example_prompt: str = "Once upon a time"):
    """Settings with the prompts folder in ``prompts_dir``."""
    from token_explorer.config import DisplaySettings, EngineSettings, ModelSettings, PromptSettings, Settings

    return Settings(
        model=ModelSettings(name="fake-bytes"),
        prompt=PromptSettings(example_prompt=example_prompt, max_prompts=max_prompts, directory=str(prompts_dir)),
        display=DisplaySettings(tokens_to_show=tokens_to_show, cache_size=16, show_cursor=show_cursor),
        engine=EngineSettings(top_k=50),
        keymap=tuple((keymap or {}).items()),
    )


async def settle(pilot, rounds: int = 200) -> None:
    """Wait until no worker runs and the app has nothing in flight."""
    app = pilot.app
    from textual.worker import WorkerCancelled

    for _ in range(rounds):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # a closed screen's worker (e.g. the prompt browser's) has stopped too
            pass
        await pilot.pause()
        if not getattr(app, "busy", False) and not any(w.is_running for w in app.workers):
            await pilot.pause()
            return
    raise AssertionError("the app did not settle")


async def hammer(app, key: str, times: int, gap: float = 0.01) -> None:
    """Press ``key`` like a held-down key: events posted every ``gap`` seconds without waiting
    for the app to go idle (``pilot.press`` waits, which would hide a backlog)."""
    import asyncio

    from textual import events

    for _ in range(times):
        app.post_message(events.Key(key, key if len(key) == 1 else None))
        await asyncio.sleep(gap)


def screen_text(app) -> str:
    """The visible screen (top screen) as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
