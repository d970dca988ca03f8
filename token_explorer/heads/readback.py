"""Reading a written head-lab tree back: its corpus metrics per (layer, head), for the heads view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"heads_folder: {path} does not exist (write it with token-explorer heads --out)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"heads_folder: cannot read {path}: {exc}") from None


def stamp(folder: str) -> str:
    """What the tree's metrics depend on: the path, size and modification time of its two files read."""
    parts = []
    for name in ("config.json", "scatter_data.json"):
        path = Path(folder).expanduser() / name
        try:
            st = path.stat()
        except OSError:
            parts.append(f"{path}:missing")
            continue
        parts.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def corpus_metrics(folder: str, names: tuple[str, ...], model_name: str, n_layers: int, n_heads: int) -> np.ndarray:
    """(M, L, H) float32 the tree's value of each of ``names`` per head; NaN for a head it did not
    study or a metric it could not compute. UserError naming the file when the tree is not one
    written for this model."""
    root = Path(folder).expanduser()
    config = _json(root / "config.json")
    written_for = config.get("model_name") if isinstance(config, dict) else None
    if written_for != model_name:
        raise UserError(f"heads_folder: {root / 'config.json'} was written for model {written_for!r}, not {model_name!r}")
    rows = _json(root / "scatter_data.json")
    out = np.full((len(names), n_layers, n_heads), np.nan, dtype=np.float32)
    if not isinstance(rows, list):
        raise UserError(f"heads_folder: {root / 'scatter_data.json'} is not a list of heads")
    for row in rows:
        layer, head = (row.get("layer"), row.get("head")) if isinstance(row, dict) else (None, None)
        if not (isinstance(layer, int) and isinstance(head, int) and 0 <= layer < n_layers and 0 <= head < n_heads):
            raise UserError(f"heads_folder: {root / 'scatter_data.json'} has a row that is not a head of this model: "
                            f"{str(row)[:80]}")
        for i, name in enumerate(names):
            value = row.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[i, layer, head] = value
    return out
