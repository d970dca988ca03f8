"""Two branches side by side from their common ancestor: each token's probability, the summed
log-probability of each continuation, and at the fork the two tokens' ranks and probabilities."""

from __future__ import annotations

import math

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from token_explorer.compare import Comparison, Continuation
from token_explorer.tokens import visible

UNKNOWN = Style(dim=True, italic=True)


def _logprob(c: Continuation) -> Text:
    lp = c.logprob
    if lp is None:
        return Text("n/a (a token has no prefix)", UNKNOWN)
    return Text(f"{lp:.3f} nats over {len(c.ids)} token(s)" + ("" if not c.ids else f"  (p {math.exp(lp):.3g})"))


def _fork(c: Continuation, fork: tuple[int, float] | None) -> Text:
    if fork is None:
        return Text("ends at the fork", UNKNOWN)
    rank, p = fork
    line = Text()
    line.append(repr_visible(c.texts[0]), Style(bold=True))
    line.append(f"  rank {rank}  p {p:.4g}")
    return line


def repr_visible(text: str) -> str:
    return "'" + visible(text) + "'"


def comparison_view(result: Comparison, prefix_tail: str, name_a: str, name_b: str) -> Group:
    """The whole comparison as rich renderables (the numbers come from ``result``, unchanged)."""
    head = Table(box=None, show_header=True, padding=(0, 2), expand=True)
    head.add_column(Text(""), no_wrap=True)
    head.add_column(Text(name_a, Style(bold=True)))
    head.add_column(Text(name_b, Style(bold=True)))
    head.add_row(Text(f"at the fork (#{result.common})"), _fork(result.a, result.fork_a), _fork(result.b, result.fork_b))
    head.add_row(Text("sum of ln p"), _logprob(result.a), _logprob(result.b))
    body = Table(show_header=True, padding=(0, 1), expand=True)
    body.add_column(Text("#"), justify="right", no_wrap=True)
    for name in (name_a, name_b):
        body.add_column(Text(f"{name} token"), no_wrap=True, overflow="ellipsis", ratio=2)
        body.add_column(Text("p"), justify="right", no_wrap=True)
    for i in range(max(len(result.a.ids), len(result.b.ids))):
        row = [Text(str(result.common + i), justify="right")]
        for c in (result.a, result.b):
            if i < len(c.ids):
                p = c.probs[i]
                row += [Text(repr_visible(c.texts[i])), Text("n/a" if p is None else f"{p:.4f}", justify="right")]
            else:
                row += [Text(""), Text("")]
        body.add_row(*row)
    title = Text()
    title.append(f"common prefix: {result.common} token(s), ending …")
    title.append(visible(prefix_tail), Style(bold=True))
    return Group(title, head, Text(""), body)


class CompareScreen(ModalScreen[None]):
    """Shows one comparison; scrolls with the arrow, page and home/end keys; esc closes."""

    AUTO_FOCUS = "#compare-scroll"
    BINDINGS = [Binding("escape,q,v", "close", "close", show=False)]

    DEFAULT_CSS = """
    CompareScreen { align: center middle; }
    CompareScreen > VerticalScroll { width: 100%; height: 100%; border: round $primary; padding: 0 1;
                                     background: $surface; overflow-x: hidden; }
    """

    def __init__(self, result: Comparison, prefix_tail: str, name_a: str, name_b: str) -> None:
        super().__init__()
        self.result = result
        self.view = comparison_view(result, prefix_tail, name_a, name_b)

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll(id="compare-scroll")
        scroll.border_title = "compare two branches from their common ancestor (raw probabilities; esc closes)"
        with scroll:
            yield Static(self.view)

    def action_close(self) -> None:
        if self.app.screen is self:
            self.dismiss(None)
