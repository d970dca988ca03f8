"""The export key's files: what the explorer shows, written to a new folder.

A folder per export holds ``values.csv`` / ``values.json`` (the view's number per position),
``grid.csv`` (rows × positions, when the view's result has one), ``candidates.csv`` /
``candidates.json`` (the next-token table), ``screenshot.svg`` and ``meta.json``. Values the screen
cannot show (no prefix, still computing, failed) are empty in CSV and ``null`` in JSON. Every file is
written atomically; nothing here computes a model number or imports torch.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from token_explorer.printable import printable
from token_explorer.results import Attention, Features, LayerGrid, Lens, Residual, Snapshot
from token_explorer.trace.files import write_json, write_text

from .views import View


@dataclass(frozen=True)
class Shown:
    """What is on screen when the export key is pressed."""

    view: View
    status: str  # "ready", "partial", "computing", "failed: ...", "unavailable: ...", "no values"
    params: Mapping[str, Any]
    snapshot: Snapshot
    cand_texts: tuple[str, ...]  # display text of snapshot.next.top_ids[r]
    rows: int  # candidate rows the table shows
    cursor: int
    model: str
    fingerprint: str
    svg: str
    result: Any = None  # the heavy view's (possibly partial) result, None when there is none
    extra: Mapping[str, Any] = field(default_factory=dict)  # other display settings (skip_first, ...)


def view_values(shown: Shown) -> np.ndarray | None:
    """(n,) float64 of the view's number per position, NaN where it has none; None for no values."""
    n = len(shown.snapshot)
    view = shown.view
    if view.measure is not None:
        raw = [view.measure.value(p) for p in shown.snapshot.positions]
        return np.array([math.nan if v is None else float(v) for v in raw], dtype=np.float64)
    if shown.result is None:
        return None if not view.heavy else np.full(n, math.nan)
    colour = np.asarray(shown.result.colour(shown.params), dtype=np.float64)[:n]
    out = np.full(n, math.nan)
    out[: len(colour)] = colour
    return out


def grid_of(result: Any, params: Mapping[str, Any]) -> tuple[list[str], np.ndarray] | None:
    """The rows × positions grid a result shows in its panel, with row labels; None when it has none."""
    if isinstance(result, LayerGrid):
        return [str(result.first + r) for r in range(result.values.shape[0])], result.values
    if isinstance(result, Lens):
        grid = result.grid(params)
        return [f"layer {r}" for r in range(grid.shape[0])], grid
    if isinstance(result, Residual):
        return [f"layer {r}" for r in range(result.norms.shape[0])], result.norms
    if isinstance(result, Attention):
        per_layer = result.picked("all", params["head"]).mean(1)  # (L, cursor+1), as the panel draws it
        return [f"layer {r}" for r in range(per_layer.shape[0])], per_layer
    if isinstance(result, Features):
        return [f"feature {int(f)}" for f in result.ids], result.acts
    return None


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _csv_number(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ""


def _csv(rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _new_folder(root: Path, view_id: str) -> Path:
    """A folder under ``root`` that did not exist: ``YYYYmmdd-HHMMSS-<view>`` (then ``-2``, ``-3``...)."""
    root.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d-%H%M%S") + "-" + view_id
    for i in range(1, 1000):
        folder = root / (stem if i == 1 else f"{stem}-{i}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{root}: too many exports named {stem}")


def write_export(root: Path, shown: Shown) -> tuple[Path, list[str]]:
    """Write the export of ``shown`` into a new folder under ``root``; its path and file names."""
    folder = _new_folder(root, shown.view.id)
    snap = shown.snapshot
    written: list[str] = []

    def text(name: str, content: str) -> None:
        write_text(folder / name, content)
        written.append(name)

    def document(name: str, doc: Any) -> None:
        write_json(folder / name, doc)
        written.append(name)

    values = view_values(shown)
    vals = values if values is not None else np.full(len(snap), math.nan)
    positions = snap.positions
    text("values.csv", _csv([("index", "token_id", "text", "value"),
                             *((p.index, p.token_id, printable(p.text), _csv_number(v)) for p, v in zip(positions, vals))]))
    grid = grid_of(shown.result, shown.params) if shown.result is not None else None
    values_doc: dict[str, Any] = {
        "view": shown.view.id,
        "status": shown.status,
        "positions": [{"index": p.index, "token_id": p.token_id, "text": p.text, "value": _json_number(v)}
                      for p, v in zip(positions, vals)],
    }
    if grid is not None:
        labels, cells = grid
        values_doc["grid"] = {"rows": labels, "values": [[_json_number(x) for x in row] for row in cells.tolist()]}
        width = cells.shape[1]
        text("grid.csv", _csv([("row", *(str(i) for i in range(width))),
                               *((label, *(_csv_number(x) for x in row)) for label, row in zip(labels, cells.tolist()))]))
    document("values.json", values_doc)

    nxt = snap.next
    rows = min(shown.rows, len(nxt.top_ids))
    zs = nxt.top_z()
    cands = [{"rank": r + 1, "token_id": int(nxt.top_ids[r]),
              "text": shown.cand_texts[r] if r < len(shown.cand_texts) else None,
              "prob": _json_number(float(nxt.top_probs[r])), "logit": _json_number(float(nxt.top_logits[r])),
              "z": _json_number(float(zs[r]))} for r in range(rows)]
    text("candidates.csv", _csv([("rank", "token_id", "text", "prob", "logit", "z"),
                                 *((c["rank"], c["token_id"], printable(c["text"] or ""), _csv_number(float(nxt.top_probs[r])),
                                    _csv_number(float(nxt.top_logits[r])), _csv_number(float(zs[r])))
                                   for r, c in enumerate(cands))]))
    document("candidates.json", {"after_position": nxt.index, "candidates": cands})
    text("screenshot.svg", shown.svg)
    document("meta.json", {
        "model": shown.model, "fingerprint": shown.fingerprint,
        "view": shown.view.id, "view_title": shown.view.title, "status": shown.status,
        "parameters": {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                       for k, v in shown.params.items()},
        "cursor": shown.cursor, "tokens": list(snap.tokens), **dict(shown.extra),
        "files": [*written, "meta.json"],
    })
    return folder, written
