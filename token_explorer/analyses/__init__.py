"""Analyses: pure functions from a typed context (captured tensors, unembedding, parameters) to a
result dataclass of arrays and numbers, each registered with its declaration.

A new view is one module in this package::

    SPEC = Spec("my_view", "my view", version=1, params=(Param("layer", "layer", computes=False, hi="n_layers"),),
                needs=frozenset({"resid"}), scale="fitted", unit="L2 norm")

    @register(SPEC)
    def my_view(ctx: Context) -> LayerGrid:
        ...

The module imports torch; this file does not (the explorer reads declarations through the engine).
``load_all`` imports every module here once, and each registers its analyses.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .declare import Spec

Available = Callable[[Any, Any], "str | None"]  # (info, settings) -> None if available, else why not


@dataclass(frozen=True)
class Analysis:
    """One registered analysis: its declaration, its function and an availability check."""

    spec: Spec
    run: Callable[[Any], Any]  # Context -> result
    available: Available | None = None
    key_extra: Callable[[Any, dict], dict] | None = None  # (settings, params) -> more cache-key parts


REGISTRY: dict[str, Analysis] = {}
_LOADED = False


def register(spec: Spec, *, available: Available | None = None,
             key_extra: Callable[[Any, dict], dict] | None = None):
    """Decorator adding ``run(ctx) -> result`` to the registry under ``spec.name``.

    ``available(info, settings)`` says why the analysis cannot run for a model (None: it can);
    ``key_extra(settings, params)`` adds what else the result depends on (a dictionary's hash).
    """
    def wrap(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        assert spec.name not in REGISTRY, f"analysis {spec.name!r} registered twice"
        REGISTRY[spec.name] = Analysis(spec, fn, available, key_extra)
        return fn
    return wrap


def load_all() -> dict[str, Analysis]:
    """Import every module of this package once (each registers its analyses); the registry."""
    global _LOADED
    if not _LOADED:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
        _LOADED = True
    return REGISTRY
