"""Rich ``Text`` for the screen, built with ``Text.append(text, style)`` only: model output is never
parsed as markup, so a token such as ``[bold]x[/]`` is drawn literally.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table as RichTable
from rich.text import Text

from token_explorer.printable import printable
from token_explorer.results import ModelInfo, Position, Snapshot
from token_explorer.tokens import visible

from .colors import UNAVAILABLE, Scale
from .views import View

CURSOR = Style(reverse=True, underline=True, bold=True)
PLAIN = (Style(), Style(bgcolor="#303446"))  # alternate token shades so boundaries show
PENDING = Style(dim=True)


@dataclass(frozen=True)
class Colouring:
    """One style per prompt token plus the scale and words the legend shows."""

    styles: tuple[Style, ...]
    scale: Scale | None
    caption: str
    missing: str = ""  # why some tokens are drawn as unavailable
    note: str = ""  # about the scale's range


@dataclass(frozen=True)
class HeavyRendering:
    """What a heavy view's result becomes on screen: values to colour by and a detail panel."""

    values: np.ndarray  # (n,) float, NaN = unavailable
    scale: Scale
    caption: str
    panel: Callable[[int, int], RenderableType | None]  # (cursor, width) -> detail panel
    note: str = ""  # about the scale's range (percentiles, what was clipped or left out)
    missing: str = "no value at this position"


# ---------------------------------------------------------------- colouring


def light_colouring(view: View, snapshot: Snapshot, info: ModelInfo) -> Colouring:
    """Colouring of a light view (or the plain view) from the snapshot's records."""
    if view.measure is None:
        return Colouring(tuple(PLAIN[i % 2] for i in range(len(snapshot))), None, "plain text; shading marks token boundaries")
    m = view.measure
    scale = m.scale(snapshot, info)
    styles = tuple(scale.style(_finite(m.value(p))) for p in snapshot.positions)
    return Colouring(styles, scale, m.caption(snapshot, info), m.missing, m.note(snapshot, info))


def heavy_colouring(rendering: HeavyRendering, n: int) -> Colouring:
    """Colouring from a heavy view's values; tokens without a value are unavailable."""
    values = rendering.values
    styles = tuple(rendering.scale.style(float(values[i]) if i < len(values) else None) for i in range(n))
    return Colouring(styles, rendering.scale, rendering.caption, rendering.missing, rendering.note)


def pending_colouring(n: int, caption: str) -> Colouring:
    """Colouring while a heavy view is being computed or cannot be shown."""
    return Colouring(tuple(PENDING for _ in range(n)), None, caption)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------- prompt


def shown(text: str, spaces: bool = False) -> str:
    """``text`` safe for the terminal (:func:`~token_explorer.printable.printable`, newlines kept);
    spaces and newlines as marks too when ``spaces``."""
    return visible(text) if spaces else printable(text, multiline=True)


# ---------------------------------------------------------------- legend


def legend(title: str, colouring: Colouring, width: int) -> Text:
    """Two lines: the view and what the colour means, then the colour bar with its range."""
    text = Text(end="")
    text.append(f"{printable(title)}: ", Style(bold=True))
    text.append(printable(colouring.caption))
    text.append("\n")
    scale = colouring.scale
    if scale is not None:
        bar = max(8, min(32, width // 3))
        text.append(_number(scale.lo, scale.unit) + " ")
        for j in range(bar):
            text.append(" ", scale.gradient.style_at(j / (bar - 1)))
        text.append(" " + _number(scale.hi, scale.unit))
        if scale.lo < 0 < scale.hi:
            text.append("  (grey = 0)")
    if colouring.note:
        text.append("  " + printable(colouring.note))
    if colouring.missing:
        text.append("   ")
        text.append("unavailable", UNAVAILABLE)
        text.append(f": {colouring.missing}")
    return text


def _number(value: float, unit: str) -> str:
    body = f"{value:.3g}"
    return f"{body} {unit}" if unit else body


# ---------------------------------------------------------------- detail line


def detail(
    snapshot: Snapshot, cursor: int, view_title: str | None = None, value: float | None = None, unit: str = ""
) -> Text:
    """One line about the token at the cursor, from its record only (nothing is invented)."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    if not snapshot.positions:
        return text
    cursor = min(max(cursor, 0), len(snapshot) - 1)
    p: Position = snapshot.positions[cursor]
    text.append(f"#{p.index} ", Style(bold=True))
    text.append(f"id {p.token_id} ")
    text.append(repr_token(p.text), Style(bold=True))
    if p.token_prob is None:
        text.append("  given prefix: ")
        text.append("n/a (first token)", UNAVAILABLE)
    else:
        text.append(f"  p {p.token_prob:.4g}")
        text.append(f"  rank {p.token_rank}")
        text.append(f"  logit {p.token_logit:.3f}")
        if p.token_z is not None:
            text.append(f"  z {p.token_z:+.2f}")
    text.append("  │ next: ")
    text.append(f"H {p.entropy_bits:.3f} bits  F {p.energy:.3f} nats (T={p.temperature:g})")
    if view_title is not None:
        text.append(f"  │ {printable(view_title)} ")
        if value is None or not math.isfinite(value):
            text.append("n/a", UNAVAILABLE)
        else:
            text.append(_number(value, unit))
    return text


def repr_token(text: str) -> str:
    """A token's text quoted with its whitespace visible."""
    return "'" + shown(text, spaces=True) + "'"


# ---------------------------------------------------------------- candidates


def candidate_cells(p: Position, cand_texts: Sequence[str], rows: int, show_z: bool,
                    actual: Position | None = None, actual_text: str = "",
                    processed: Sequence[float] | None = None, show_processed: bool = False) -> list[tuple[Text, ...]]:
    """Rows of a candidates table from the distribution after position ``p``: rank, token,
    probability, logit (and z). With ``actual`` (the record of the token that follows ``p``), its
    row is marked ``●``, or added last with its own rank when it is not among the rows. With
    ``show_processed`` a column of ``processed[r]`` (the sampler's probability; "—" when not
    computed) follows the raw probability."""
    n = min(rows, len(p.top_ids))
    zs = p.top_z() if show_z else None
    mark = actual.token_id if actual is not None else None
    out = []
    for r in range(n):
        here = int(p.top_ids[r]) == mark
        cells = [
            Text(("●" if here else "") + str(r + 1), justify="right"),
            Text(shown(cand_texts[r], spaces=True) if r < len(cand_texts) else "?", no_wrap=True, overflow="ellipsis",
                 style=Style(bold=True) if here else ""),
            Text(f"{float(p.top_probs[r]):.4f}", justify="right"),
        ]
        if show_processed:
            known = processed is not None and r < len(processed)
            cells.append(Text(f"{processed[r]:.4f}" if known else "—", justify="right"))  # type: ignore[index]
        cells.append(Text(f"{float(p.top_logits[r]):.2f}", justify="right"))
        if zs is not None:
            cells.append(Text(f"{float(zs[r]):+.2f}", justify="right"))
        out.append(tuple(cells))
    if actual is not None and mark not in [int(t) for t in p.top_ids[:n]] and actual.token_prob is not None:
        cells = [
            Text(f"●{actual.token_rank}", justify="right", overflow="ellipsis"),
            Text(shown(actual_text, spaces=True), no_wrap=True, overflow="ellipsis", style=Style(bold=True)),
            Text(f"{actual.token_prob:.4f}", justify="right"),
        ]
        if show_processed:
            cells.append(Text("—", justify="right"))
        cells.append(Text(f"{actual.token_logit:.2f}", justify="right"))
        if zs is not None:
            z = actual.token_z
            cells.append(Text("n/a" if z is None else f"{z:+.2f}", justify="right"))
        out.append(tuple(cells))
    return out


# ---------------------------------------------------------------- heatmap


class Drawn:
    """Lines of segments drawn once: Rich and Textual measure and paint it without laying it out
    again (a ``Text`` of thousands of one-cell spans, or a ``Table`` of padded cells, is rendered
    anew for every measurement, height and paint of every frame). Never wraps: a panel holding it
    scrolls sideways instead.
    """

    def __init__(self, lines: list[list[Segment]]) -> None:
        self.lines = lines
        self.width = max((Segment.get_line_length(line) for line in lines), default=0)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)


_PAINTER = Console(width=1000, color_system=None, legacy_windows=False, force_terminal=False)


def grid_heatmap(grid: np.ndarray, title: str, rows_label: Sequence[str], cursor: int, width: int,
                 scale: Scale, note: str = "") -> Drawn:
    """A rows × positions heatmap, one cell per token, a window of columns around the cursor.

    The first line names what it shows; the second labels the columns with token positions (a
    tick every 10); each row starts with its label. NaN is drawn as unavailable.
    """
    grid = np.asarray(grid, dtype=float)
    rows, n = grid.shape
    label_w = max((len(r) for r in rows_label), default=1) + 1
    cols = max(1, width - label_w - 1)
    start = 0 if n <= cols else min(max(cursor - cols // 2, 0), n - cols)
    stop = min(n, start + cols)
    head = [Segment(title, Style(bold=True)),
            Segment(f"  colour {_number(scale.lo, scale.unit)} … {_number(scale.hi, scale.unit)}")]
    if note:
        head.append(Segment(f" ({note})"))
    ticks = [" "] * (stop - start)
    for c in range(start, stop):
        if c % 10 == 0 or c == cursor:
            label = "^" if c == cursor else str(c)
            if all(t == " " for t in ticks[c - start : c - start + len(label)]):
                ticks[c - start : c - start + len(label)] = list(label)
    lines = [head, [Segment(" " * (label_w + 1) + "".join(ticks)[: stop - start])]]
    underline = Style(underline=True)
    for r in range(rows):
        line = [Segment(f"{rows_label[r]:>{label_w}} ")]
        for c in range(start, stop):
            v = grid[r, c] if c < n else math.nan
            style = scale.style(float(v))
            if c == cursor:
                style = style + underline
            line.append(Segment("▪" if not math.isfinite(v) else " ", style))
        lines.append(line)
    return Drawn(lines)


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[str]], token_cols: Sequence[int] = ()) -> Drawn:
    """A detail table, drawn once at its natural width; cells of ``token_cols`` show their whitespace."""
    out = RichTable(expand=False, padding=(0, 1), box=box.SIMPLE_HEAD)
    for col in columns:
        out.add_column(Text(col), no_wrap=True)
    for row in rows:
        out.add_row(*(Text(shown(str(cell), spaces=j in token_cols)) for j, cell in enumerate(row)))
    width = Measurement.get(_PAINTER, _PAINTER.options, out).maximum
    return Drawn(_PAINTER.render_lines(out, _PAINTER.options.update(width=width), pad=False))


def number(x: float, digits: int = 4) -> str:
    """A table cell for a number; NaN as "n/a"."""
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}g}"
