"""Command palette entries: every command of the bindings table, every view and every view
parameter, each by name with the keys that do the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from .bindings import COMMANDS, keys_of
from .views import unavailable_reason


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
        roles = (("mode", 1, "view_mode"), ("layer", 1, "layer_next"), ("layer", -1, "layer_prev"),
                 ("pick", 1, "pick_next"), ("pick", -1, "pick_prev"))
        for view in app.views:
            if unavailable_reason(view, app.analyses) is not None:
                continue
            yield Entry(f"view: {view.title}", f"show_view({view.id!r})", f"{self._keys('view_next')} cycles the views")
            spec = app.specs.get(view.analysis) if view.analysis else None
            for role, delta, command_id in roles if spec is not None else ():
                param = spec.param(role)
                if param is None:
                    continue
                word = "next" if delta > 0 else "previous"
                choices = f" ({' / '.join(param.choices)})" if param.choices else ""
                yield Entry(f"{view.title}: {word} {param.name}{choices}", f"view_param({view.id!r}, {role!r}, {delta})",
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
