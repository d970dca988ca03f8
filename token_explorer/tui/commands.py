"""Command palette entries generated from the one bindings table."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .bindings import COMMANDS


class ExplorerCommands(Provider):
    """Every command of the bindings table, by its description."""

    async def discover(self) -> Hits:
        for command in COMMANDS:
            if self.app.check_action(command.action.split("(")[0], ()):
                yield DiscoveryHit(command.description, partial(self.app.run_action, command.action), help=command.id)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in COMMANDS:
            if not self.app.check_action(command.action.split("(")[0], ()):
                continue
            score = matcher.match(command.description)
            if score > 0:
                yield Hit(score, matcher.highlight(command.description), partial(self.app.run_action, command.action), help=command.id)
