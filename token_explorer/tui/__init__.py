"""The Textual interface: ``make_app(settings, engine_factory)``. Never imports torch or transformers."""

from __future__ import annotations

from .app import TokenExplorerApp, make_app
from .bindings import BINDING_IDS, COMMANDS
from .views import VIEW_IDS, VIEWS

__all__ = ["BINDING_IDS", "COMMANDS", "VIEWS", "VIEW_IDS", "TokenExplorerApp", "make_app"]
