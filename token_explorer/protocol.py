"""The engine as the rest of the program sees it: a typing Protocol, free of torch.

The TUI and headless code talk to any object with these methods; the real one is
``token_explorer.engine.Engine`` and tests may pass a deterministic fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .analyses.declare import Spec
from .results import ModelInfo, Snapshot
from .sampling_params import SamplingParams


class EngineLike(Protocol):
    """Synchronous, thread-safe stepping engine over one model."""

    info: ModelInfo

    def on_notice(self, listener: Callable[[str], None]) -> None:
        """Send the engine's one-line notices to ``listener`` (from any thread), held ones at once."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (with the model's BOS where it uses one)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a token sequence, decoded as a whole."""

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        """Display text of each token in ``ids`` (partial bytes as <0xNN>)."""

    def snapshot(self) -> Snapshot:
        """The current prompt and its per-position records."""

    def set_tokens(self, ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> Snapshot:
        """Make ``ids`` the prompt, reusing the longest common prefix; runs only the rest, calling
        ``progress(done, total)`` as it goes."""

    def fill_lens(self, cancelled: Callable[[], bool] | None = None) -> Snapshot:
        """Compute the per-layer lens records steps and prefills leave out (cancellable, keeping
        what is done); the snapshot with them."""

    def append(self, token_id: int) -> Snapshot:
        """Append one token: one single-token forward over the KV cache."""

    def pop(self) -> Snapshot:
        """Remove the last token: a KV-cache crop, no forward."""

    def sample(self, params: SamplingParams | None = None, *, step: int = 0, seed: int | None = None) -> int:
        """The next token drawn by the sampler (greedy by default); ``step`` counts tokens drawn so
        far (the EOS and whitespace bans read it); the same ``seed`` draws the same token."""
        ...

    def eos_ids(self) -> frozenset[int]:
        """Every id the model or its tokenizer declares as end of sequence (where sampling stops)."""
        ...

    def processed_probs(self, params: SamplingParams, ids: Sequence[int], *, step: int = 0) -> Any:
        """The sampler's processed probability of each of ``ids`` at the last position (0 if removed)."""
        ...

    def analyses(self) -> Mapping[str, str | None]:
        """Analyses by name, each mapped to None if available or the reason it is not."""

    def specs(self) -> Mapping[str, Spec]:
        """Every analysis's declaration: its parameters (and which only select), scope and scale."""

    def cancel_analyses(self) -> None:
        """Make every running analysis stop at its next check (steps do this themselves; so can quit)."""

    def analyze(self, name: str, tokens: Sequence[int], cursor: int, params: Mapping[str, Any],
                cancelled: Callable[[], bool] | None = None, *,
                progress: Callable[[int, int], None] | None = None,
                partial: Callable[[Any], None] | None = None,
                window: tuple[int, int] | None = None) -> Any:
        """The full result of an analysis of ``tokens`` at ``cursor`` (plain data).

        ``cancelled`` is polled at least once per layer or integration step; when it returns True
        (or a step is requested) the run raises ``errors.Cancelled``. ``progress(done, total)``
        reports long runs; ``partial(result)`` gets results whose ``window`` of positions is
        filled first.
        """
