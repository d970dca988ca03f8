"""The prompt as coloured token spans, wrapped at token boundaries, scrolled to keep the cursor in view."""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style as RichStyle
from rich.text import Text
from textual.containers import VerticalScroll
from textual.content import Content, Span
from textual.style import Style
from textual.widgets import Static

from ..render import PromptLayout, layout_prompt


class PromptView(VerticalScroll, can_focus=False):
    """Shows the prompt. Lays it out again only when tokens, colours or width change; a cursor move
    re-styles one token."""

    DEFAULT_CSS = """
    PromptView { scrollbar-gutter: stable; scrollbar-size-vertical: 1; overflow-x: hidden; }
    PromptView > Static { width: 100%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._texts: Sequence[str] = ()
        self._styles: Sequence[RichStyle] = ()
        self._cursor: int | None = None
        self._message: Text | None = Text("loading…")
        self._layout: PromptLayout | None = None
        self._width = 0
        self._converted: dict[RichStyle, Style] = {}

    def compose(self):
        yield Static(id="prompt-text")

    @property
    def rendered(self) -> Text:
        """What is on screen, as Rich Text (for tests)."""
        if self._message is not None or self._layout is None:
            return self._message or Text()
        return self._layout.text(self._cursor)

    def show(self, texts: Sequence[str], styles: Sequence[RichStyle], cursor: int | None) -> None:
        """Draw these tokens; ``cursor`` is marked unless None."""
        if texts is not self._texts or styles is not self._styles or self._message is not None:
            self._layout = None
        self._texts, self._styles, self._cursor, self._message = texts, styles, cursor, None
        self._draw()

    def show_message(self, message: Text) -> None:
        """Draw a message instead of the prompt (e.g. while the first snapshot is computed)."""
        self._message = message
        self._layout = None
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        width = self.scrollable_content_region.width
        if width <= 0:
            return
        static = self.query_one("#prompt-text", Static)
        if self._message is not None:
            static.update(self._message)
            return
        if self._layout is None or width != self._width:
            self._layout = layout_prompt(self._texts, self._styles, width)
            self._width = width
        spans = [Span(s, e, self._style(style)) for s, e, style in self._layout.styled_runs(self._cursor)]
        static.update(Content(self._layout.plain, spans, strip_control_codes=False))
        if self._cursor is not None:
            self.call_after_refresh(self._reveal, self._layout.line_of(self._cursor))

    def _style(self, style: RichStyle) -> Style:
        """The Textual style of a Rich style, converted once."""
        converted = self._converted.get(style)
        if converted is None:
            converted = self._converted[style] = Style.from_rich_style(style)
        return converted

    def _reveal(self, line: int) -> None:
        """Scroll so that ``line`` is visible."""
        height = self.scrollable_content_region.height
        top = self.scroll_y
        if line < top:
            self.scroll_to(y=line, animate=False)
        elif line >= top + height:
            self.scroll_to(y=line - height + 1, animate=False)
