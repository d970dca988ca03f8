"""What an analysis declares about itself: its parameters, what it reads, what its number is.

Pure data, free of torch: the explorer builds its mode / layer / pick controls from these
declarations (through ``engine.specs()``), and the engine validates parameters and builds cache
keys from them. A parameter either *computes* (changes the computation: part of the cache key) or
*selects* (picks part of a full result: stepping it never runs the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import UserError
from ..results import ModelInfo

ALL = "all"
"""The value of a layer or head parameter that means every layer or every head."""

Role = Literal["mode", "layer", "pick", "setting"]  # the control: m, `,` `.`, `<` `>`; setting: no key
Scale = Literal["probability", "bits", "signed", "fitted", "cosine", "log10_rank"]


@dataclass(frozen=True)
class Param:
    """One parameter of an analysis.

    ``choices`` makes it a choice (the first is the default unless ``default`` says otherwise);
    otherwise it is an integer from ``lo`` to ``hi``, where ``hi`` is an int or the name of a
    :class:`ModelInfo` attribute (e.g. ``"n_layers"``), with :data:`ALL` as an extra value below
    ``lo`` when ``allow_all``. ``default`` for an integer: an int, ``"hi"``, ``"middle"`` or ALL.
    """

    name: str
    role: Role
    computes: bool
    choices: tuple[str, ...] = ()
    lo: int = 0
    hi: int | str = 0
    default: Any = None
    allow_all: bool = False

    def bounds(self, info: ModelInfo) -> tuple[int, int]:
        """(lo, hi) of an integer parameter for this model."""
        hi = self.hi if isinstance(self.hi, int) else int(getattr(info, self.hi))
        return self.lo, max(self.lo, hi)

    def initial(self, info: ModelInfo) -> Any:
        """The default value for this model."""
        if self.choices:
            return self.default if self.default is not None else self.choices[0]
        lo, hi = self.bounds(info)
        if self.default is None or self.default == "hi":
            return hi
        if self.default == "middle":
            return (lo + hi) // 2
        if self.default == ALL:
            return ALL
        return min(max(int(self.default), lo), hi)

    def check(self, value: Any, info: ModelInfo) -> Any:
        """``value`` as this parameter holds it; UserError naming the parameter if it is not one."""
        if self.choices:
            if value not in self.choices:
                raise UserError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.allow_all and value == ALL:
            return ALL
        lo, hi = self.bounds(info)
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, bool) or not lo <= number <= hi:
            allowed = f"{ALL} or " if self.allow_all else ""
            raise UserError(f"{self.name} must be {allowed}{lo}..{hi}, got {value!r}")
        return number

    def step(self, value: Any, delta: int, info: ModelInfo) -> Any:
        """The value ``delta`` steps away, clamped; ALL sits just below ``lo``. Choices wrap around."""
        if self.choices:
            return self.choices[(self.choices.index(value) + delta) % len(self.choices)]
        lo, hi = self.bounds(info)
        index = lo - 1 if value == ALL else int(value)
        index = min(max(index + delta, lo - 1 if self.allow_all else lo), hi)
        return ALL if index < lo else index


@dataclass(frozen=True)
class Spec:
    """An analysis as the rest of the program sees it, before it runs.

    ``reads``: ``"prompt"`` (the result covers every token) or ``"prefix"`` (only tokens up to the
    cursor matter). ``at_cursor``: the result depends on the cursor position (else moving the
    cursor reuses it). ``needs``: what the engine captures for it (``"resid"``, ``"attention"``).
    ``scale`` says how its colour scale is built (see ``tui.colors``); ``unit`` is its unit.
    """

    name: str
    title: str
    version: int
    params: tuple[Param, ...] = ()
    reads: Literal["prompt", "prefix"] = "prompt"
    at_cursor: bool = True
    needs: frozenset[str] = frozenset()
    scale: Scale = "fitted"
    unit: str = ""

    def __post_init__(self) -> None:
        roles = [p.role for p in self.params if p.role != "setting"]
        assert len(roles) == len(set(roles)), f"{self.name}: one parameter per role, got {roles}"

    def param(self, role: Role) -> Param | None:
        """The parameter the given control steps, if any."""
        return next((p for p in self.params if p.role == role), None)

    def defaults(self, info: ModelInfo) -> dict[str, Any]:
        """Every parameter at its default."""
        return {p.name: p.initial(info) for p in self.params}

    def resolve(self, params: Mapping[str, Any], info: ModelInfo) -> dict[str, Any]:
        """``params`` checked and completed with defaults; UserError for an unknown name or bad value."""
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserError(f"{self.name} has no parameter {unknown[0]!r} (it has: {', '.join(sorted(known)) or 'none'})")
        return {p.name: p.check(params[p.name], info) if p.name in params else p.initial(info) for p in self.params}

    def computing(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters that change the computation (the rest only select): the cache key's part."""
        return {p.name: params[p.name] for p in self.params if p.computes and p.name in params}
