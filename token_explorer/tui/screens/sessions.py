"""Saved sessions in the sessions folder; enter opens one (its tree and branches replace the open ones)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from token_explorer.printable import printable


def session_files(directory: Path) -> list[Path]:
    """The ``*.json`` files in ``directory``, newest first (none when it does not exist)."""
    try:
        paths = [p for p in directory.glob("*.json") if not p.name.startswith(".") and p.is_file()]
        return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []


class SessionBrowser(ModalScreen[Path | None]):
    """Lists session files; dismisses with the chosen path or None."""

    BINDINGS = [Binding("escape,q", "dismiss_none", "close", show=False)]

    DEFAULT_CSS = """
    SessionBrowser { align: center middle; }
    SessionBrowser > Vertical { width: 90; max-width: 100%; height: 80%; border: round $primary; background: $surface; }
    SessionBrowser OptionList { height: 1fr; }
    """

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.paths = session_files(directory)

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = printable(f"sessions in {self.directory}")
        with box:
            yield Static(Text(f"{len(self.paths)} session(s); enter opens one in place of the open branches; "
                              "S saves the current one"), id="sessions-status")
            options = OptionList(id="sessions-list")
            for p in self.paths:
                label = Text(no_wrap=True, overflow="ellipsis")
                label.append(printable(p.name), Style(bold=True))
                try:
                    label.append(f"  {datetime.fromtimestamp(p.stat().st_mtime):%Y-%m-%d %H:%M}")
                except OSError:
                    pass
                options.add_option(Option(label))
            yield options

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.paths:
            options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.app.screen is self:
            self.dismiss(self.paths[event.option_index])

    def action_dismiss_none(self) -> None:
        if self.app.screen is self:
            self.dismiss(None)
