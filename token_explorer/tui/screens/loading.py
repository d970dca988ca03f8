"""Shown while the engine factory runs on a worker: progress, or the one-line reason it failed."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static

from token_explorer.printable import printable


class LoadingScreen(Screen):
    """Loading progress; never a frozen terminal."""

    DEFAULT_CSS = """
    LoadingScreen { align: center middle; }
    LoadingScreen > Vertical { width: 70; max-width: 100%; height: auto; border: round $primary; padding: 1 2; }
    LoadingScreen #loading-error { color: $error; margin-top: 1; }
    LoadingScreen ProgressBar { margin-top: 1; }
    """

    def __init__(self, model_name: str) -> None:
        super().__init__()
        self.model_name = model_name
        self.failed: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text.assemble(("token explorer", Style(bold=True)), "  loading ", (printable(self.model_name), Style(italic=True))))
            yield Static(Text("starting…"), id="loading-text")
            yield ProgressBar(total=None, show_eta=False, id="loading-bar")
            yield Static(id="loading-error")
        yield Footer()

    def progress(self, text: str, fraction: float | None) -> None:
        """Show a progress message and, when known, the fraction done."""
        self.query_one("#loading-text", Static).update(Text(printable(text)))
        bar = self.query_one(ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=1.0, progress=min(max(fraction, 0.0), 1.0))

    def fail(self, error: str) -> None:
        """Show why loading failed; the user can only quit."""
        self.failed = error
        self.query_one(ProgressBar).display = False
        self.query_one("#loading-error", Static).update(Text.assemble(("error: ", Style(bold=True)), printable(error), "\n\npress q to quit"))
