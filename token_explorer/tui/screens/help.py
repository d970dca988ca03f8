"""Keys and views, generated from the bindings table and the view registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..bindings import COMMANDS, keys_of
from ..views import VIEWS, View, unavailable_reason


class HelpScreen(ModalScreen[None]):
    """Every command with its current keys, and which views this engine offers; scrolls with the
    arrow, page and home/end keys (and j / k)."""

    AUTO_FOCUS = "#help-scroll"
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "close", show=False),
        Binding("j", "scroll('down')", "scroll down", show=False),
        Binding("k", "scroll('up')", "scroll up", show=False),
    ]

    def action_dismiss(self, result: object = None) -> None:
        if self.app.screen is self:  # a second close key queued before the first one closed it
            self.dismiss(result)

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: 90%; border: round $primary; padding: 0 1; background: $surface; overflow-x: hidden; }
    HelpScreen Static { width: 100%; }
    """

    def __init__(self, keymap: Mapping[str, str], analyses: Mapping[str, str | None],
                 views: Sequence[View] = VIEWS) -> None:
        super().__init__()
        self.keymap = keymap
        self.analyses = analyses
        self.views = views  # the built-in views and those added through the analyses' declarations

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll(id="help-scroll")
        scroll.border_title = "keys (esc closes; ↑ ↓ pgup pgdn home end scroll)"
        with scroll:
            yield Static(self.keys_table(), id="help-keys")
            yield Static(self.views_table(), id="help-views")

    def action_scroll(self, direction: str) -> None:
        scroll = self.query_one("#help-scroll", VerticalScroll)
        scroll.scroll_down(animate=False) if direction == "down" else scroll.scroll_up(animate=False)

    def keys_table(self) -> Table:
        table = Table(box=None, expand=True, show_header=True, padding=(0, 1))
        table.add_column(Text("keys"), no_wrap=True, style=Style(bold=True))
        table.add_column(Text("command"))
        group = None
        for command in COMMANDS:
            if command.group != group:
                group = command.group
                table.add_row(Text(""), Text(group, style=Style(italic=True, underline=True)))
            keys = ", ".join(self.app.get_key_display(Binding(key, command.action)) for key in keys_of(command, self.keymap))
            table.add_row(Text(keys), Text(command.description))
        table.add_row(Text(""), Text(""))
        table.add_row(Text("^p"), Text("command palette: every command above by name"))
        return table

    def views_table(self) -> Table:
        table = Table(box=None, expand=True, show_header=True, padding=(0, 1), title=Text("views (e / E cycle)", style=Style(bold=True)), title_justify="left")
        table.add_column(Text("view"), no_wrap=True)
        table.add_column(Text("status"))
        for view in self.views:
            reason = unavailable_reason(view, self.analyses)
            status = Text("available") if reason is None else Text(f"unavailable: {reason}", style=Style(dim=True))
            table.add_row(Text(view.title), status)
        return table
