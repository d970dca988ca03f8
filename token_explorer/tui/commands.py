"""Command palette entries: every command of the bindings table, every view and every view
parameter, each by name with the keys that do the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from .bindings import COMMANDS, keys_of
from .views import VIEWS, unavailable_reason


@dataclass(frozen=True)
class Entry:
    """One palette line: its name, what it runs, and the keys shown beneath it."""

    name: str
    action: str
    keys: str


class ExplorerCommands(Provider):
    """Commands, views ("view: entropy") and parameters ("logit lens: next layer") by name."""

    def _keys(self, command_id: str) -> str:
        command = next(c for c in COMMANDS if c.id == command_id)
        keymap = getattr(self.app, "keymap", {})
        return ", ".join(self.app.get_key_display(Binding(k, command.action)) for k in keys_of(command, keymap))

    def _entries(self) -> Iterator[Entry]:
        app = self.app
        for command in COMMANDS:
            if app.check_action(command.action.split("(")[0], ()):
                yield Entry(command.description, command.action, self._keys(command.id))
        if getattr(app, "engine", None) is None:
            return
        for view in VIEWS:
            if unavailable_reason(view, app.analyses) is not None:
                continue
            yield Entry(f"view: {view.title}", f"show_view({view.id!r})", f"{self._keys('view_next')} cycles the views")
            if view.mode is not None:
                yield Entry(f"{view.title}: next {view.mode.name} ({' / '.join(view.mode.options)})",
                            f"view_param({view.id!r}, 'mode', 1)", self._keys("view_mode"))
            for part, stepper, ids in (("step", view.step, ("layer_next", "layer_prev")),
                                       ("pick", view.pick, ("pick_next", "pick_prev"))):
                if stepper is None:
                    continue
                for delta, command_id in zip((1, -1), ids):
                    word = "next" if delta > 0 else "previous"
                    yield Entry(f"{view.title}: {word} {stepper.name}", f"view_param({view.id!r}, {part!r}, {delta})",
                                self._keys(command_id))

    async def discover(self) -> Hits:
        for entry in self._entries():
            yield DiscoveryHit(entry.name, partial(self.app.run_action, entry.action), help=f"keys: {entry.keys}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self._entries():
            score = matcher.match(entry.name)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.name), partial(self.app.run_action, entry.action),
                          help=f"keys: {entry.keys}")
