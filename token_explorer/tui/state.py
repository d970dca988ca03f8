"""The explorer's state without Textual: branches of token ids, cursors, word boundaries, an LRU."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any

from token_explorer.results import Snapshot

_ids = count(1)


@dataclass(frozen=True)
class Frame:
    """A snapshot plus the display text of its next-token candidates (``cand_texts[r]`` for
    ``snapshot.next.top_ids[r]``) and, when asked for, their probability under the sampler's
    processed distribution (``processed[r]``; None: not computed)."""

    snapshot: Snapshot
    cand_texts: tuple[str, ...]
    processed: tuple[float, ...] | None = None

    @property
    def tokens(self) -> tuple[int, ...]:
        return self.snapshot.tokens


@dataclass(frozen=True)
class Branch:
    """One prompt the user is stepping: exact token ids (never re-tokenised text) and a cursor.

    ``frame`` is the engine's records for exactly ``tokens``, or None until the engine has run them.
    """

    tokens: tuple[int, ...]
    cursor: int
    frame: Frame | None = None
    id: int = field(default_factory=lambda: next(_ids))

    @classmethod
    def new(cls, tokens: Sequence[int], frame: Frame | None = None) -> Branch:
        tokens = tuple(int(t) for t in tokens)
        if frame is not None and frame.tokens != tokens:
            frame = None
        return cls(tokens=tokens, cursor=max(len(tokens) - 1, 0), frame=frame)

    @property
    def current(self) -> Frame | None:
        """The frame if it matches the tokens."""
        return self.frame if self.frame is not None and self.frame.tokens == self.tokens else None

    def with_frame(self, frame: Frame) -> Branch:
        """The branch moved to ``frame``'s tokens; a cursor on the last token follows the end."""
        n = len(frame.tokens)
        at_end = self.cursor >= len(self.tokens) - 1
        cursor = n - 1 if at_end else min(self.cursor, n - 1)
        return replace(self, tokens=frame.tokens, frame=frame, cursor=max(cursor, 0))

    def with_cursor(self, cursor: int) -> Branch:
        return replace(self, cursor=min(max(cursor, 0), max(len(self.tokens) - 1, 0)))

    def copy(self) -> Branch:
        """A new branch with the same tokens, frame and cursor."""
        return replace(self, id=next(_ids))


def begins_word(texts: Sequence[str], i: int) -> bool:
    """Token ``i`` begins a word: it is the first, starts with whitespace, or follows a newline."""
    if i <= 0:
        return True
    text = texts[i]
    return (text[:1].isspace()) or texts[i - 1].endswith("\n")


def next_word(texts: Sequence[str], cursor: int) -> int:
    """The next token after ``cursor`` that begins a word, else the last token."""
    for i in range(cursor + 1, len(texts)):
        if begins_word(texts, i):
            return i
    return max(len(texts) - 1, 0)


def prev_word(texts: Sequence[str], cursor: int) -> int:
    """The closest token before ``cursor`` that begins a word, else the first token."""
    for i in range(min(cursor, len(texts)) - 1, 0, -1):
        if begins_word(texts, i):
            return i
    return 0


class LRU:
    """A bounded mapping that forgets the least recently used entry."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        if key not in self._data:
            return None
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key: Hashable, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless the count is one: "1 token", "2 tokens"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
