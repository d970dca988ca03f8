"""One-purpose text panels: status line, legend, detail line, heavy-view panel."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


class StatusLine(Static):
    """Branch, tokens, cursor, view, model, device and a busy mark."""


class Legend(Static):
    """What the prompt's colours mean, with the numeric scale."""


class Detail(Static):
    """The token at the cursor, from its record."""


class ViewPanel(VerticalScroll, can_focus=False):
    """A heavy view's tables and heatmap; hidden when the view has none."""

    DEFAULT_CSS = """
    ViewPanel { overflow-x: hidden; scrollbar-size-vertical: 1; }
    ViewPanel > Static { width: 100%; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def compose(self):
        yield Static(id="panel-body")

    def show(self, renderable: RenderableType | None) -> None:
        self.display = renderable is not None
        self.query_one("#panel-body", Static).update(renderable if renderable is not None else Text())
