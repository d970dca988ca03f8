"""The registry of heavy analyses: the views that need more than the per-position records.

Each entry is a name, a version (bumped when its output changes, so cached results are not reused),
an availability check and a run function. ``run(engine, tokens, cursor, params)`` reads the engine's
captures (``engine.session``) or runs its own forward, may call ``engine.check_cancelled()`` between
layers or steps, and returns a ``results.TokenScores``. The engine calls these under its lock and
caches the results (memory + disk) by model, tokens, name, version and parameters. Every module in
this package registers its analyses when imported; ``load_all`` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..results import TokenScores

Run = Callable[[Any, Sequence[int], int, Mapping[str, Any]], TokenScores]
Check = Callable[[Any], str | None]  # engine -> None if available, else the reason


@dataclass(frozen=True)
class Heavy:
    """One heavy analysis."""

    name: str
    version: int
    run: Run
    available: Check
    needs_prefix_only: bool = True  # the result depends only on tokens[: cursor + 1]
    key_extra: Callable[[Any, Mapping[str, Any]], Mapping[str, Any]] | None = None  # more cache-key parts


REGISTRY: dict[str, Heavy] = {}
_LOADED = False


def register(name: str, version: int, available: Check, *, needs_prefix_only: bool = True,
             key_extra: Callable[[Any, Mapping[str, Any]], Mapping[str, Any]] | None = None):
    """Decorator adding a run function to the registry under ``name``.

    ``key_extra(engine, params)`` adds what else the result depends on (e.g. a dictionary's
    fingerprint) to the cache key.
    """
    def wrap(fn: Run) -> Run:
        assert name not in REGISTRY, f"heavy analysis {name!r} registered twice"
        REGISTRY[name] = Heavy(name, version, fn, available, needs_prefix_only, key_extra)
        return fn
    return wrap


def needs_family(engine) -> str | None:
    """Availability check shared by views that need the family table."""
    if engine.session.family is None:
        return f"model family '{engine.info.family}' is not in the family table"
    return None


def load_all() -> dict[str, Heavy]:
    """Import every module of this package once (each registers its analyses); the registry."""
    global _LOADED
    if not _LOADED:
        import importlib
        import pkgutil

        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _LOADED = True
    return REGISTRY
