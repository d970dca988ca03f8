"""One-purpose text panels: status line, legend, detail line, heavy-view panel."""

from __future__ import annotations

from rich.console import RenderableType
from rich.measure import Measurement
from rich.text import Text
from textual.containers import ScrollableContainer
from textual.widgets import Static


class _Line(Static):
    """A panel of fixed height (set in the app's CSS): an update repaints it, without a layout pass
    (which would also re-render every scrollbar on screen), and only when its text changed."""

    _shown: RenderableType | None = None

    def update(self, content: RenderableType = "", *, layout: bool = False) -> None:
        if content == self._shown:
            return
        self._shown = content
        super().update(content, layout=layout)


class StatusLine(_Line):
    """Branch, tokens, cursor, view, model, device and a busy mark."""


class Legend(_Line):
    """What the prompt's colours mean, with the numeric scale."""


class Detail(_Line):
    """The token at the cursor, from its record."""


class ViewPanel(ScrollableContainer, can_focus=True):
    """A heavy view's tables and heatmap; hidden when the view has none. Focus it (tab) to scroll
    it both ways with the arrow, page and home/end keys; esc gives the keys back."""

    DEFAULT_CSS = """
    ViewPanel { overflow-x: auto; overflow-y: auto; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 1; }
    ViewPanel > Static { width: auto; text-wrap: nowrap; }
    """

    def compose(self):
        yield Static(id="panel-body")

    def show(self, renderable: RenderableType | None) -> None:
        """Show ``renderable`` at its natural width (tables are not squeezed: scroll sideways)."""
        if renderable is None and not self.display:
            return  # hidden and staying hidden: nothing to lay out again
        self.display = renderable is not None
        body = self.query_one("#panel-body", Static)
        if renderable is not None and self.is_mounted:
            console = self.app.console
            natural = Measurement.get(console, console.options.update(max_width=1000), renderable).maximum
            body.styles.width = max(natural, 1)
        body.update(renderable if renderable is not None else Text())
