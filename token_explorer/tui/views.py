"""The view registry: what the prompt is coloured by.

A *light* view reads a number from each :class:`~token_explorer.results.Position` of the current
snapshot. A *heavy* view names an engine analysis (``analysis="attention"``); the app asks the
engine for it on a worker and draws the returned result. A heavy view whose analysis the engine
does not offer is skipped when cycling views.

A heavy view's parameters, and the keys that step them, come from its analysis's declaration
(``engine.specs()``): the parameter with role ``mode`` is cycled by ``m``, ``layer`` by ``,`` ``.``
and ``pick`` by ``<`` ``>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from token_explorer.results import ModelInfo, Position, Snapshot

from .colors import DIVERGING, GREEN_RED, RED_BLUE, VIRIDIS, Scale, fit_scale


@dataclass(frozen=True)
class Measure:
    """How a light view reads and scales one number per position."""

    value: Callable[[Position], float | None]
    scale: Callable[[Snapshot, ModelInfo], Scale]
    caption: Callable[[Snapshot, ModelInfo], str]
    note: Callable[[Snapshot, ModelInfo], str] = lambda s, i: ""  # about the scale's range
    missing: str = ""  # why some positions have no value (shown in the legend)


@dataclass(frozen=True)
class View:
    """One way of colouring the prompt."""

    id: str
    title: str
    measure: Measure | None = None  # light views
    analysis: str | None = None  # heavy views: the engine analysis to run

    @property
    def heavy(self) -> bool:
        return self.analysis is not None


def _probability_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    return Scale(0.0, 1.0, "", RED_BLUE)


def _entropy_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    return Scale(0.0, math.log2(max(info.vocab_size, 2)), "bits", VIRIDIS)


def _energy_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    fitted = fit_scale("fitted", [p.energy for p in snapshot.positions], "nats").scale
    return Scale(fitted.lo, fitted.hi, "nats", GREEN_RED)


Z_BOUND = 4.0  # σ: the z-score scale spans at least ±4σ, wider when the prompt's 98th percentile is


def _z_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    zs = [abs(p.token_z) for p in snapshot.positions if p.token_z is not None and math.isfinite(p.token_z)]
    bound = max(Z_BOUND, float(np.percentile(zs, 98))) if zs else Z_BOUND
    return Scale(-bound, bound, "σ", DIVERGING)


def _temperature(snapshot: Snapshot) -> str:
    return f"{snapshot.positions[0].temperature:g}" if snapshot.positions else "?"


NO_PREFIX = "the first token has no prefix"

VIEWS: tuple[View, ...] = (
    View("plain", "plain"),
    View(
        "probability",
        "probability",
        Measure(
            value=lambda p: p.token_prob,
            scale=_probability_scale,
            caption=lambda s, i: "probability of each token given its prefix (raw softmax, no sampling filter)",
            missing=NO_PREFIX,
        ),
    ),
    View(
        "entropy",
        "entropy",
        Measure(
            value=lambda p: p.entropy_bits,
            scale=_entropy_scale,
            caption=lambda s, i: "entropy of the next-token distribution at each position",
            note=lambda s, i: f"top = log2 of the {i.vocab_size}-token vocabulary",
        ),
    ),
    View(
        "energy",
        "free energy",
        Measure(
            value=lambda p: p.energy,
            scale=_energy_scale,
            caption=lambda s, i: f"free energy −T·logsumexp(logits/T) of the next-token distribution, T={_temperature(s)}",
            note=lambda s, i: "no absolute scale: 2–98th percentile of this prompt; lower = more in-distribution",
        ),
    ),
    View(
        "zscore",
        "z-score",
        Measure(
            value=lambda p: p.token_z,
            scale=_z_scale,
            caption=lambda s, i: "z-score of each token's logit given its prefix: (logit − mean) / std over the vocabulary",
            missing=NO_PREFIX,
        ),
    ),
    # Heavy views: one analysis each; the engine says which it offers and declares their parameters.
    View("lens", "logit lens", analysis="lens"),
    View("attention", "attention influence", analysis="attention"),
    View("similarity", "similarity to cursor", analysis="similarity"),
    View("hidden_similarity", "hidden-state similarity", analysis="hidden_similarity"),
    View("residual", "residual stream", analysis="residual"),
    View("attribution", "attribution", analysis="attribution"),
    View("sae", "SAE features", analysis="sae"),
)
"""Every view, in cycling order."""

VIEW_IDS: tuple[str, ...] = tuple(v.id for v in VIEWS)
LENS_VIEW = "lens"


def view_by_id(view_id: str, views: Sequence[View] = VIEWS) -> View:
    """The view with this id; KeyError names the known ones."""
    for view in views:
        if view.id == view_id:
            return view
    raise KeyError(f"unknown view {view_id!r} (known: {', '.join(v.id for v in views)})")


def unavailable_reason(view: View, analyses: Mapping[str, str | None]) -> str | None:
    """Why a view cannot be shown with this engine, or None when it can."""
    if view.analysis is None:
        return None
    if view.analysis not in analyses:
        return f"the engine does not offer the {view.analysis!r} analysis"
    return analyses[view.analysis]


def cycle(current: str, analyses: Mapping[str, str | None], step: int, views: Sequence[View] = VIEWS) -> str:
    """The id of the next (``step=1``) or previous (``-1``) available view after ``current``."""
    ids = [v.id for v in views]
    start = ids.index(current) if current in ids else 0
    for n in range(1, len(views) + 1):
        view = views[(start + step * n) % len(views)]
        if unavailable_reason(view, analyses) is None:
            return view.id
    return current


def heavy_views(specs: Mapping[str, Any]) -> tuple[View, ...]:
    """The built-in views, then one for every other analysis the engine declares (its title from the spec)."""
    known = {v.analysis for v in VIEWS}
    return VIEWS + tuple(View(name, spec.title, analysis=name) for name, spec in specs.items() if name not in known)
