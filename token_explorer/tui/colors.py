"""Colour scales: a value on a fixed numeric range mapped to a background colour."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from rich.color import Color
from rich.style import Style

UNAVAILABLE = Style(color="#8a8a8a", italic=True)
"""How a token without a value is drawn (never as if its value were 0)."""

_BUCKETS = 64


def _hex(code: str) -> tuple[int, int, int]:
    code = code.lstrip("#")
    return int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)


@dataclass(frozen=True)
class Gradient:
    """Colours at evenly spaced stops from the low end (first) to the high end (last)."""

    name: str
    stops: tuple[str, ...]
    _styles: dict[int, Style] = field(default_factory=dict, compare=False, repr=False)

    def rgb(self, t: float) -> tuple[int, int, int]:
        """The colour at fraction ``t`` in [0, 1] of the way along the gradient."""
        t = min(1.0, max(0.0, t))
        pos = t * (len(self.stops) - 1)
        i = min(int(pos), len(self.stops) - 2)
        f = pos - i
        a, b = _hex(self.stops[i]), _hex(self.stops[i + 1])
        return tuple(round(x + (y - x) * f) for x, y in zip(a, b))  # type: ignore[return-value]

    def style_at(self, t: float) -> Style:
        """A background style at fraction ``t``, with black or white text, whichever reads better."""
        bucket = round(min(1.0, max(0.0, t)) * _BUCKETS)
        style = self._styles.get(bucket)
        if style is None:
            r, g, b = self.rgb(bucket / _BUCKETS)
            luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
            fg = "#000000" if luminance > 140 else "#ffffff"
            style = Style(color=fg, bgcolor=Color.from_rgb(r, g, b))
            self._styles[bucket] = style
        return style


RED_BLUE = Gradient("red→blue", ("#d73027", "#fc8d59", "#fee090", "#91bfdb", "#4575b4"))
VIRIDIS = Gradient("viridis", ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"))
GREEN_RED = Gradient("green→red", ("#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027"))
DIVERGING = Gradient("red–grey–blue", ("#b2182b", "#ef8a62", "#e0e0e0", "#67a9cf", "#2166ac"))
PLASMA = Gradient("plasma", ("#0d0887", "#7e03a8", "#cc4778", "#f89540", "#f0f921"))


@dataclass(frozen=True)
class Scale:
    """A numeric range drawn with a gradient; values outside are clipped for colour only."""

    lo: float
    hi: float
    unit: str
    gradient: Gradient

    def style(self, value: float | None) -> Style:
        """The style of a value; ``None`` and NaN are unavailable."""
        if value is None or not math.isfinite(value):
            return UNAVAILABLE
        span = self.hi - self.lo
        t = 0.5 if span <= 0 else (value - self.lo) / span
        return self.gradient.style_at(t)


PERCENTILES = (2.0, 98.0)  # a robust scale spans these percentiles of the values it colours


@dataclass(frozen=True)
class Fitted:
    """A scale fitted to values, and what the legend says about the fit."""

    scale: Scale
    note: str  # e.g. "2–98th percentile; 3 above (max 4.83e+03)"; "" for a fixed scale


def fit_scale(kind: str, values, unit: str, *, skip_first: bool = False, top: float | None = None) -> Fitted:
    """The colour scale of ``kind`` for ``values`` (NaN ignored).

    ``probability`` 0..1 and ``bits`` 0..``top`` are absolute; ``cosine`` is −1..1; ``signed`` is
    symmetric about 0 at the 98th percentile of |value|; ``fitted`` spans the 2nd..98th
    percentiles. With ``skip_first`` position 0 (attention sinks, massive activations) does not
    shape a fitted scale. Values outside are clipped for colour only.
    """
    if kind == "probability":
        return Fitted(Scale(0.0, 1.0, unit, RED_BLUE if unit == "" else PLASMA), "")
    if kind in ("bits", "log10_rank"):
        return Fitted(Scale(0.0, float(top or 1.0), unit, VIRIDIS), "")
    if kind == "cosine":
        return Fitted(Scale(-1.0, 1.0, unit, DIVERGING), "")
    arr = np.asarray(values, dtype=float)
    used = arr[1:] if skip_first and arr.size > 1 else arr
    finite = used[np.isfinite(used)]
    if finite.size == 0:
        return Fitted(Scale(0.0, 1.0, unit, PLASMA), "")
    if kind == "signed":
        bound = float(np.percentile(np.abs(finite), PERCENTILES[1]))
        bound = bound if bound > 0 else float(np.abs(finite).max()) or 1.0
        lo, hi, gradient = -bound, bound, DIVERGING
    else:
        lo, hi = (float(x) for x in np.percentile(finite, PERCENTILES))
        if hi <= lo:
            lo, hi = float(finite.min()), float(finite.max())
        hi = hi if hi > lo else lo + 1.0
        gradient = PLASMA
    above, below = int((finite > hi).sum()), int((finite < lo).sum())
    parts = [f"{PERCENTILES[0]:g}–{PERCENTILES[1]:g}th percentile" if kind != "signed" else
             f"±{PERCENTILES[1]:g}th percentile of |value|"]
    if above:
        parts.append(f"{above} above (max {float(finite.max()):.3g})")
    if below:
        parts.append(f"{below} below (min {float(finite.min()):.3g})")
    if skip_first:
        parts.append("#0 left out")
    return Fitted(Scale(lo, hi, unit, gradient), "; ".join(parts))
