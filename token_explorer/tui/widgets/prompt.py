"""The prompt as coloured token spans, wrapped at token boundaries, scrolled to keep the cursor in view.

Drawn line by line (Textual's line API): only the visible lines are rendered, a step re-wraps only
the new token (``wrap.Wrap``), a cursor move redraws the lines of two tokens, and a recolouring
redraws what is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..render import CURSOR
from ..wrap import Wrap


class PromptView(ScrollView, can_focus=True):
    """Shows the prompt; focus it (tab) to scroll it with the keys, esc gives the keys back."""

    BINDINGS = [
        Binding("up", "scroll_up", "scroll up", show=False),
        Binding("down", "scroll_down", "scroll down", show=False),
        Binding("pageup", "page_up", "page up", show=False),
        Binding("pagedown", "page_down", "page down", show=False),
        Binding("home", "scroll_home", "top", show=False),
        Binding("end", "scroll_end", "bottom", show=False),
    ]

    DEFAULT_CSS = """
    PromptView { scrollbar-gutter: stable; scrollbar-size-vertical: 1; overflow-x: hidden; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._styles: Sequence[Style] = ()
        self._cursor: int | None = None
        self._message: Text | None = Text("loading…")
        self._message_lines: list[Strip] = []
        self._wrap = Wrap(80)
        self._strips: dict[int, Strip] = {}  # drawn lines, by line number
        self._base: Style | None = None  # the widget's own style, kept until its CSS changes

    @property
    def texts(self) -> list[str]:
        """The token texts on screen (none while a message shows)."""
        return [] if self._message is not None else list(self._wrap.texts)

    @property
    def rendered(self) -> Text:
        """The whole prompt as Rich Text with its colours and the cursor (for tests)."""
        if self._message is not None:
            return self._message
        text = Text(end="")
        for y, line in enumerate(self._wrap.lines):
            if y:
                text.append("\n")
            for token, piece in line:
                text.append(piece, self._token_style(token))
        return text

    def show(self, texts: Sequence[str], styles: Sequence[Style], cursor: int | None) -> None:
        """Draw these tokens with these styles; ``cursor`` is marked unless None."""
        was_message = self._message is not None
        self._message = None
        lo, hi = self._wrap.sync(texts)
        synced = hi > lo
        old_cursor, self._cursor = self._cursor, cursor
        if was_message:
            self._styles = styles
            self._strips.clear()
            self._changed(0, len(self._wrap.lines), resized=True)
        else:
            if styles is not self._styles:  # redraw from the first token whose colour changed
                first = _first_change(self._styles, styles, len(self._wrap.texts))
                self._styles = styles
                if first < len(self._wrap.texts):
                    lo = min(lo, self._wrap.line_of(first)) if hi > lo else self._wrap.line_of(first)
                    hi = len(self._wrap.lines)
            if hi > lo:
                self._forget(range(lo, max(hi, max(self._strips, default=-1) + 1)))
                self._changed(lo, hi, resized=True)
            if old_cursor != cursor:
                for token in (old_cursor, cursor):
                    if token is not None:
                        lines = self._wrap.lines_of(token)
                        self._forget(lines)
                        self._changed(lines.start, lines.stop)
        if cursor is not None and cursor != old_cursor or synced:
            self.call_after_refresh(self._reveal)

    def show_message(self, message: Text) -> None:
        """Draw a message instead of the prompt (e.g. while the first snapshot is computed)."""
        self._message = message
        self._message_lines = []
        self._strips.clear()
        self.virtual_size = Size(self._content_width(), 1)
        self.refresh()

    # ------------------------------------------------------------ drawing

    def _content_width(self) -> int:
        return max(self.scrollable_content_region.width, 4) if self.is_mounted else 80

    def on_resize(self) -> None:
        width = self._content_width()
        if width != self._wrap.width:
            texts = list(self._wrap.texts)
            self._wrap = Wrap(width)
            self._wrap.sync(texts)
            self._strips.clear()
            self._message_lines = []
        self._changed(0, len(self._wrap.lines), resized=True)
        if self._cursor is not None:
            self.call_after_refresh(self._reveal)

    def _changed(self, lo: int, hi: int, resized: bool = False) -> None:
        if resized:
            self.virtual_size = Size(self._wrap.width, len(self._wrap.lines))
        top = self.scroll_offset.y
        if hi <= top or lo >= top + self.size.height:
            return
        self.refresh_lines(lo, hi - lo)

    def _forget(self, lines: range) -> None:
        for y in lines:
            self._strips.pop(y, None)

    def _token_style(self, token: int) -> Style:
        style = self._styles[token] if token < len(self._styles) else Style()
        return style + CURSOR if token == self._cursor else style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
        self._strips.clear()
        self._message_lines = []

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        line = self.scroll_offset.y + y
        if self._base is None:
            self._base = self.rich_style
        base = self._base
        if self._message is not None:
            if not self._message_lines:
                lines = self._message.wrap(self.app.console, max(width, 4))
                self._message_lines = [Strip(list(text.render(self.app.console))) for text in lines]
            strip = self._message_lines[line] if line < len(self._message_lines) else Strip([])
            return strip.apply_style(base).crop_extend(0, width, base)
        strip = self._strips.get(line)
        if strip is None:
            if line >= len(self._wrap.lines):
                return Strip.blank(width, base)
            segments = [Segment(piece, base + self._token_style(token)) for token, piece in self._wrap.lines[line]]
            strip = self._strips[line] = Strip(segments).crop_extend(0, width, base)
        return strip

    def _reveal(self) -> None:
        """Scroll so that the cursor's line (else the end) is visible."""
        target = self._wrap.line_of(self._cursor) if self._cursor is not None else len(self._wrap.lines) - 1
        height = self.scrollable_content_region.height
        top = self.scroll_y
        if target < top:
            self.scroll_to(y=target, animate=False, immediate=True, force=True)
        elif target >= top + height:
            self.scroll_to(y=target - height + 1, animate=False, immediate=True, force=True)


def _first_change(old: Sequence[Style], new: Sequence[Style], n: int) -> int:
    """The first of the ``n`` tokens whose style differs between ``old`` and ``new`` (``n`` if none)."""
    for i in range(min(n, len(old), len(new))):
        a, b = old[i], new[i]
        if a is not b and a != b:
            return i
    return min(n, len(old), len(new))
