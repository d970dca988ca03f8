"""The candidates table: the model's raw distribution after the last token (or, with the cursor
inside the prompt, after the token before it: the alternatives to the token there).

Drawn line by line (Textual's line API) from rows built once per frame: a selection move redraws
two lines, a new frame redraws only the visible rows. (A ``DataTable`` rendered every cell
through Rich again on each change, which cost most of a step's repaint.)
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..render import candidate_cells
from ..state import Frame

_ELLIPSIS = "…"


class Candidates(ScrollView, can_focus=False):
    """Rank, token, probability, logit (and z); the highlighted row is what ``append`` adds.

    Line 0 is the header, fixed while the rows scroll under it. Not focusable: its keys come from
    the app's one bindings table; a click selects a row.
    """

    COMPONENT_CLASSES = {"candidates--header", "candidates--cursor"}

    DEFAULT_CSS = """
    Candidates { background: $surface; color: $foreground; overflow-x: hidden; }
    Candidates > .candidates--header { text-style: bold; background: $panel; color: $foreground; }
    Candidates:ansi > .candidates--header { background: ansi_bright_blue; color: ansi_default; }
    Candidates > .candidates--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._columns: tuple[tuple[str, int, str], ...] = ()  # (label, width, justify)
        self._rows: list[tuple[Text, ...]] = []
        self._cursor = 0
        self._strips: dict[int, Strip] = {}  # drawn lines: -1 the header, else row numbers
        self._styles: tuple[Style, Style, Style] | None = None  # base, header, cursor

    # ------------------------------------------------------------ content

    def show(self, frame: Frame, rows: int, show_z: bool, width: int, selected: int = 0, fork_at: int | None = None,
             fork_texts: Sequence[str] = (), show_processed: bool = False) -> None:
        """Fill the table from ``frame`` to fit ``width`` cells, with row ``selected`` highlighted: the
        next-token candidates, or with ``fork_at`` the alternatives to the token there (from the
        distribution after the position before it; ``fork_texts`` their texts), that token marked.
        ``show_processed`` adds the sampler's processed probability of the next-token candidates."""
        fixed = 3 + 6 + 7 + (6 if show_z else 0) + (6 if show_processed else 0)
        columns = 4 + show_z + show_processed
        token_width = max(4, width - fixed - 2 * columns - 1)
        self._columns = ((("#", 3, "right"), ("token", token_width, "left"), ("prob", 6, "right"))
                         + ((("proc", 6, "right"),) if show_processed else ()) + (("logit", 7, "right"),)
                         + ((("z", 6, "right"),) if show_z else ()))
        positions = frame.snapshot.positions
        if fork_at is None:
            self._rows = candidate_cells(positions[-1], frame.cand_texts, rows, show_z, processed=frame.processed,
                                         show_processed=show_processed)
        else:  # the processed distribution is only known for the next token
            actual = positions[fork_at]
            self._rows = candidate_cells(positions[fork_at - 1], fork_texts, rows, show_z, actual, actual.text,
                                         show_processed=show_processed)
        self._strips.clear()
        self._cursor = min(max(selected, 0), max(self.row_count - 1, 0))
        self.virtual_size = Size(self._line_width(), self.row_count + 1)
        self.refresh()
        self._reveal()

    def clear(self) -> None:
        """No rows (the header stays)."""
        self._rows = []
        self._cursor = 0
        self._strips.clear()
        self.virtual_size = Size(self._line_width(), 1)
        self.refresh()

    @property
    def columns(self) -> tuple[str, ...]:
        """The column labels."""
        return tuple(label for label, _, _ in self._columns)

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def get_row_at(self, row: int) -> tuple[Text, ...]:
        """The cells of row ``row`` (rank, token, probability, logit, z)."""
        return self._rows[row]

    # ------------------------------------------------------------ selection

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected(self) -> int:
        """The highlighted row (its rank - 1)."""
        return self._cursor

    def move_cursor(self, row: int) -> None:
        """Highlight row ``row`` (clamped to the rows) and scroll it into view."""
        row = min(max(row, 0), max(self.row_count - 1, 0))
        if row == self._cursor:
            return
        old, self._cursor = self._cursor, row
        for r in (old, row):
            self._strips.pop(r, None)
            self._refresh_row(r)
        self._reveal()

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor + 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(int(self.scroll_offset.y) + event.y - 1)

    def _refresh_row(self, row: int) -> None:
        if 1 <= row + 1 - int(self.scroll_offset.y) < self.size.height:
            self.refresh_line(row + 1)  # the row's line in virtual coordinates

    def _reveal(self) -> None:
        """Scroll so that the highlighted row is below the header."""
        visible = max(self.scrollable_content_region.height - 1, 1)
        top = int(self.scroll_offset.y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True, force=True)
        elif self._cursor >= top + visible:
            self.scroll_to(y=self._cursor - visible + 1, animate=False, immediate=True, force=True)

    # ------------------------------------------------------------ drawing

    def _line_width(self) -> int:
        return sum(width + 2 for _, width, _ in self._columns)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._strips.clear()

    def _line_styles(self) -> tuple[Style, Style, Style]:
        if self._styles is None:
            base = self.rich_style
            self._styles = (base, base + self.get_component_rich_style("candidates--header"),
                            base + self.get_component_rich_style("candidates--cursor"))
        return self._styles

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base, header, cursor = self._line_styles()
        key = -1 if y == 0 else int(self.scroll_offset.y) + y - 1
        strip = self._strips.get(key)
        if strip is None:
            if key == -1:
                line, style = self._line([label for label, _, _ in self._columns], header=True), header
            elif key < len(self._rows):
                line = self._line([cell.plain for cell in self._rows[key]])
                style = cursor if key == self._cursor else base
            else:
                return Strip.blank(width, base)
            strip = self._strips[key] = Strip([Segment(line, style)]).crop_extend(0, width, style)
        return strip

    def _line(self, cells: list[str], header: bool = False) -> str:
        """The cells padded by one space each side, cropped or justified to their column (the
        header's labels to the left)."""
        out = []
        for (_, width, justify), text in zip(self._columns, cells):
            if cell_len(text) > width:
                text = set_cell_size(text, width - 1) + _ELLIPSIS
            elif justify == "right" and not header:
                text = " " * (width - cell_len(text)) + text
            else:
                text = set_cell_size(text, width)
            out.append(f" {text} ")
        return "".join(out)
