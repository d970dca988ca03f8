"""Saved prompts in the prompts folder; enter opens one as a new branch."""

from __future__ import annotations

from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from token_explorer.printable import printable
from token_explorer.prompts import SavedPrompt, list_prompts

from ..jobs import one_line


class PromptBrowser(ModalScreen[SavedPrompt | None]):
    """Lists saved prompts (read on a worker), newest first."""

    BINDINGS = [Binding("escape,q", "dismiss_none", "close", show=False)]

    DEFAULT_CSS = """
    PromptBrowser { align: center middle; }
    PromptBrowser > Vertical { width: 90; max-width: 100%; height: 80%; border: round $primary; background: $surface; }
    PromptBrowser OptionList { height: 1fr; }
    """

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.prompts: list[SavedPrompt] = []

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = printable(f"saved prompts in {self.directory}")
        with box:
            yield Static(Text("reading…"), id="browser-status")
            yield OptionList(id="browser-list")

    def on_mount(self) -> None:
        self.read_prompts()

    @work(thread=True, exclusive=True, exit_on_error=False, group="browser")
    def read_prompts(self) -> None:
        try:
            prompts, problems = list_prompts(self.directory)
        except Exception as e:  # noqa: BLE001 - shown to the user as a notice
            self.app.call_from_thread(self.app.notify, one_line(e), severity="error", markup=False)
            return
        self.app.call_from_thread(self._fill, prompts, problems)

    def _fill(self, prompts: list[SavedPrompt], problems: list[str]) -> None:
        self.prompts = prompts
        options = self.query_one(OptionList)
        for p in prompts:
            first = p.text.strip().splitlines()[0] if p.text.strip() else ""
            label = Text(no_wrap=True, overflow="ellipsis")
            label.append(printable(p.path.name), Style(bold=True))
            label.append(f"  {p.saved_at:%Y-%m-%d %H:%M}  {len(p.token_ids)} tokens  {printable(p.model)}\n")
            label.append(printable(first[:200]), Style(dim=True))
            options.add_option(Option(label))
        status = f"{len(prompts)} saved prompt(s); enter opens one as a new branch"
        if problems:
            status += f"; {len(problems)} file(s) could not be read"
            for problem in problems:
                self.app.notify(problem, severity="warning", markup=False)
        self.query_one("#browser-status", Static).update(Text(status))
        if prompts:
            options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.app.screen is self:  # a second enter queued before the first closed the browser
            self.dismiss(self.prompts[event.option_index])

    def action_dismiss_none(self) -> None:
        if self.app.screen is self:
            self.dismiss(None)
