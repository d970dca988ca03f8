"""A one-line text input over the explorer: enter gives the text, esc gives None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input


class TextInput(ModalScreen[str | None]):
    """Asks for one line of text; ``title`` says what it is for."""

    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)]

    DEFAULT_CSS = """
    TextInput { align: center middle; }
    TextInput > Vertical { width: 90%; height: auto; border: round $primary; background: $surface; }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = self.title_text
        with box:
            yield Input(id="text-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.app.screen is self:
            self.dismiss(event.value)

    def action_cancel(self) -> None:
        if self.app.screen is self:
            self.dismiss(None)
