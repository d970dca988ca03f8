"""The prompt's tokens wrapped at token boundaries to a width, kept up to date incrementally.

Appending tokens continues from where the last one ended and removing tokens from the end rewinds,
so a step costs the new token, not the whole prompt; only a new width (or a different prompt)
wraps everything again. Colours are not part of the wrap: they are applied when a line is drawn.

Newlines show as ``↵`` followed by a real line break; tabs, carriage returns and other control
characters as marks (``render.shown``); a token wider than the line is split. Leading spaces keep
their token's colour, so they read as part of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len

from token_explorer.prefix import common_prefix

from .render import shown

NEWLINE = "↵"
EMPTY = "∅"


class Wrap:
    """Token ``i`` lies on ``first_line[i]`` onwards; ``lines[y]`` holds ``(token, piece)`` fragments."""

    def __init__(self, width: int) -> None:
        self.width = max(width, 4)
        self.texts: list[str] = []
        self.first_line: list[int] = []  # the line each token starts on
        self.ends: list[tuple[int, int]] = []  # (line, column) after each token
        self.lines: list[list[tuple[int, str]]] = [[]]

    def sync(self, texts: Sequence[str]) -> tuple[int, int]:
        """Make the wrap hold ``texts``; returns the range of lines that changed, ``[lo, hi)``."""
        old = len(self.texts)
        keep = old if len(texts) >= old and list(texts[:old]) == self.texts else common_prefix(texts, self.texts)
        if keep == old and len(texts) == old:
            return 0, 0
        lo = self.ends[keep - 1][0] if keep else 0
        self.truncate(keep)
        for text in texts[keep:]:
            self._add(text)
        return lo, len(self.lines)

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens."""
        if n >= len(self.texts):
            return
        line, _ = self.ends[n - 1] if n else (0, 0)
        del self.texts[n:], self.first_line[n:], self.ends[n:]
        del self.lines[line + 1 :]
        self.lines[line] = [(t, piece) for t, piece in self.lines[line] if t < n]

    def line_of(self, token: int) -> int:
        return self.first_line[token] if 0 <= token < len(self.first_line) else 0

    def lines_of(self, token: int) -> range:
        """The lines token ``token`` has fragments on."""
        if not 0 <= token < len(self.texts):
            return range(0)
        end_line, end_col = self.ends[token]
        last = end_line if end_col > 0 or end_line == self.first_line[token] else end_line - 1
        return range(self.first_line[token], max(last, self.first_line[token]) + 1)

    def _add(self, raw: str) -> None:
        i = len(self.texts)
        line, col = self.ends[-1] if self.ends else (0, 0)
        width = self.width

        def emit(piece: str) -> None:
            self.lines[line].append((i, piece))

        def newline() -> None:
            nonlocal line, col
            line += 1
            col = 0
            if line == len(self.lines):
                self.lines.append([])

        segments = (raw or EMPTY).split("\n")
        for s, segment in enumerate(segments):
            last = s == len(segments) - 1
            piece = shown(segment) + ("" if last else NEWLINE)
            if col and col + cell_len(piece) > width:
                newline()
            if s == 0:
                self.first_line.append(line)
            while cell_len(piece) > width - col:  # a token longer than a line
                head, piece = _split_cells(piece, width - col)
                emit(head)
                newline()
            if piece:
                emit(piece)
                col += cell_len(piece)
            if not last:
                newline()
        self.texts.append(raw)
        self.ends.append((line, col))




def _split_cells(text: str, cells: int) -> tuple[str, str]:
    """``text`` cut after at most ``cells`` cells (at least one character)."""
    used = 0
    for j, ch in enumerate(text):
        used += cell_len(ch)
        if used > cells:
            return text[: max(j, 1)], text[max(j, 1) :]
    return text, ""
