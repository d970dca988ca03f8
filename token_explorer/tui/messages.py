"""Messages that workers post to the app; each handler turns one into a state change."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from token_explorer.protocol import EngineLike

from .jobs import Job
from .state import Frame


@dataclass
class LoadProgress(Message):
    """The engine factory reports progress (fraction None: unknown)."""

    text: str
    fraction: float | None


@dataclass
class EngineReady(Message):
    """The engine is loaded and the starting prompt has run."""

    engine: EngineLike
    analyses: Mapping[str, str | None]
    start: Frame


@dataclass
class LoadFailed(Message):
    """The engine could not be made; ``error`` is one line."""

    error: str


@dataclass
class JobDone(Message):
    """An engine-lane job finished after ``seconds`` on the worker."""

    job: Job
    frame: Frame
    seconds: float = 0.0


@dataclass
class JobFailed(Message):
    """An engine-lane job raised; the branch keeps its tokens."""

    job: Job
    error: str


@dataclass
class ViewDone(Message):
    """A heavy view's analysis finished for ``key`` (tokens, cursor, view, computing params)."""

    key: Hashable
    result: Any


@dataclass
class ViewPartial(Message):
    """Part of a heavy view's result (what is on screen first) for ``key``; the rest follows."""

    key: Hashable
    result: Any


@dataclass
class ViewProgress(Message):
    """A heavy view's analysis for ``key`` has done ``done`` of ``total`` steps."""

    key: Hashable
    done: int
    total: int


@dataclass
class ViewCancelled(Message):
    """A heavy view's analysis for ``key`` stopped because the screen moved on."""

    key: Hashable


@dataclass
class ViewFailed(Message):
    """A heavy view's analysis raised for ``key``."""

    key: Hashable
    error: str


@dataclass
class Notice(Message):
    """A one-line notice from a worker."""

    text: str
    severity: str = "information"


@dataclass
class PromptReady(Message):
    """A saved prompt's token ids, ready to become a new branch."""

    tokens: tuple[int, ...]
    note: str


@dataclass
class SessionReady(Message):
    """A session read from ``path`` and made ready for the loaded model (``note``: a notice, or "")."""

    session: Any  # sessions.Session
    path: Any  # pathlib.Path
    note: str


@dataclass
class TextReady(Message):
    """Typed text tokenised: ``ids`` go after ``before`` on branch ``branch_id``."""

    branch_id: int
    before: tuple[int, ...]
    ids: tuple[int, ...]


@dataclass
class SampleStep(Message):
    """One sampled token landed on branch ``branch_id``: ``frame`` is the prompt with it."""

    branch_id: int
    frame: Frame


@dataclass
class SampleDone(Message):
    """Sampling on branch ``branch_id`` ended after ``count`` tokens, for ``reason`` (or failed: ``error``)."""

    branch_id: int
    count: int
    reason: str
    error: str = ""


@dataclass
class CompareReady(Message):
    """The frames of this branch and of the path it is compared with (or the error)."""

    ours: Frame | None
    theirs: Frame | None
    name: str
    error: str = ""
