"""Work done on worker threads: plain functions of an engine, no Textual."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from token_explorer.errors import Cancelled, UserError
from token_explorer.protocol import EngineLike
from token_explorer.results import Snapshot

from .state import Frame


@dataclass(frozen=True)
class Job:
    """One trip through the serial engine lane for one branch.

    ``base`` is the branch's tokens when the job started; ``sync`` (if set) is handed to
    ``set_tokens`` first, then the optional ``step`` runs. A ``fill`` job computes the lens records
    the steps left out (for the logit-lens view), and stops early when ``stop()`` turns True.
    """

    branch_id: int
    base: tuple[int, ...]
    sync: tuple[int, ...] | None = None
    step: Literal["append", "pop"] | None = None
    token: int | None = None
    fill: bool = False


def frame_of(engine: EngineLike, snapshot: Snapshot, rows: int) -> Frame:
    """The snapshot plus the display text of its first ``rows`` next-token candidates."""
    ids = [int(t) for t in snapshot.next.top_ids[:rows]] if snapshot.positions else []
    return Frame(snapshot, tuple(engine.token_texts(ids)) if ids else ())


def run_job(engine: EngineLike, job: Job, rows: int, stop: Callable[[], bool] = lambda: False) -> Frame:
    """Run ``job`` on the engine and return the resulting frame (``stop`` ends a fill early)."""
    snapshot = None
    if job.sync is not None:
        snapshot = engine.set_tokens(list(job.sync))
    if job.fill:
        try:
            snapshot = engine.fill_lens(stop)
        except Cancelled:
            snapshot = engine.snapshot()
    if job.step == "append":
        assert job.token is not None, "append needs a token"
        snapshot = engine.append(job.token)
    elif job.step == "pop":
        snapshot = engine.pop()
    if snapshot is None:
        snapshot = engine.snapshot()
    return frame_of(engine, snapshot, rows)


def start_tokens(engine: EngineLike, text: str | None, tokens: Sequence[int] | None) -> list[int]:
    """The starting prompt's ids: ``tokens`` as given, else ``text`` tokenised."""
    if tokens is not None:
        ids = [int(t) for t in tokens]
    else:
        ids = list(engine.tokenize(text or ""))
    if not ids:
        raise UserError("the starting prompt has no tokens")
    return ids


def one_line(error: BaseException) -> str:
    """An exception as one line: a UserError's message, else its type and first line."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, UserError):
        return message or "error"
    name = type(error).__name__
    return f"{name}: {message}" if message else name

