"""The view registry: what the prompt is coloured by.

A *light* view reads a number from each :class:`~token_explorer.results.Position` of the current
snapshot. A *heavy* view names an engine analysis (``analysis="attention"``); the app asks the
engine for it on a worker and draws the returned :class:`~token_explorer.results.TokenScores`.
A heavy view whose analysis the engine does not offer is skipped when cycling views.

Per-view parameters are data: ``mode`` is a :class:`Choice` cycled by one key, ``step`` an integer
:class:`Stepper` moved up and down by two keys; both reach ``engine.analyze`` in ``params``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from token_explorer.results import ModelInfo, Position, Snapshot

from .colors import DIVERGING, GREEN_RED, RED_BLUE, VIRIDIS, Scale


@dataclass(frozen=True)
class Choice:
    """A parameter with named options; the first is the default."""

    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class Stepper:
    """An integer parameter from ``lo`` to ``hi`` (an int or a ModelInfo attribute name, e.g. ``"n_layers"``).

    ``default`` is an int, ``None`` for ``hi``, or ``"middle"`` for halfway.
    """

    name: str
    lo: int = 0
    hi: int | str = "n_layers"
    default: int | str | None = None

    def bounds(self, info: ModelInfo) -> tuple[int, int]:
        """(lo, hi) for this model."""
        hi = self.hi if isinstance(self.hi, int) else int(getattr(info, self.hi))
        return self.lo, max(self.lo, hi)

    def initial(self, info: ModelInfo) -> int:
        lo, hi = self.bounds(info)
        if self.default is None:
            return hi
        if self.default == "middle":
            return (lo + hi) // 2
        return min(max(int(self.default), lo), hi)


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
    mode: Choice | None = None  # cycled by m
    step: Stepper | None = None  # stepped by , and . (a layer, or a dictionary)
    pick: Stepper | None = None  # stepped by < and > (a head, or a feature rank)

    @property
    def heavy(self) -> bool:
        return self.analysis is not None


def _probability_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    return Scale(0.0, 1.0, "", RED_BLUE)


def _entropy_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    return Scale(0.0, math.log2(max(info.vocab_size, 2)), "bits", VIRIDIS)


def _energy_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    values = [p.energy for p in snapshot.positions if math.isfinite(p.energy)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    return Scale(lo, hi if hi > lo else lo + 1.0, "nats", GREEN_RED)


def _z_scale(snapshot: Snapshot, info: ModelInfo) -> Scale:
    return Scale(-4.0, 4.0, "σ", DIVERGING)


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
            note=lambda s, i: "no absolute scale: this prompt's min … max; lower = more in-distribution",
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
    # Heavy views: one analysis each; the engine says which it offers.
    View("lens", "logit lens", analysis="lens", mode=Choice("quantity", ("prob", "rank")),
         step=Stepper("layer", 0, "n_layers")),
    View(
        "attention",
        "attention influence",
        analysis="attention",
        mode=Choice("aggregate", ("mean", "max")),
        step=Stepper("layer", -1, "last_block", default=-1),  # -1: all layers
        pick=Stepper("head", -1, "last_head", default=-1),  # -1: all heads
    ),
    View("similarity", "similarity to cursor", analysis="similarity", step=Stepper("layer", 0, "n_layers")),
    View("hidden_similarity", "hidden-state similarity", analysis="hidden_similarity",
         step=Stepper("layer", 0, "n_layers", default="middle")),
    View("residual", "residual stream", analysis="residual", step=Stepper("layer", 0, "n_layers")),
    View(
        "attribution",
        "attribution",
        analysis="attribution",
        mode=Choice("method", ("saliency", "input_x_gradient", "integrated_gradients")),
    ),
    View("sae", "SAE features", analysis="sae", step=Stepper("entry", 0, "last_dictionary", default=0),
         pick=Stepper("rank", 1, 10, default=1)),  # which of the cursor's top features colours the prompt
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


def default_params(view: View, info: ModelInfo) -> dict[str, Any]:
    """A view's parameters at their defaults."""
    params: dict[str, Any] = {}
    if view.mode is not None:
        params[view.mode.name] = view.mode.options[0]
    for stepper in (view.step, view.pick):
        if stepper is not None:
            params[stepper.name] = stepper.initial(info)
    return params
