"""Tier-2 sidecars: one ``.npz`` per step with the full attention rows or activation vectors.

An archive holds plain arrays only (strings as fixed-width unicode), so it loads with
``allow_pickle=False``; ``read_*`` turn one back into the dictionary that the Token-Heatmap
attention- and activation-sidecar schemas describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .files import write_atomic

ATTENTION_VERSION = "2.0.0"
ACTIVATION_VERSION = "1.0.0"


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def write_attention(path: Path, step: int, weights: np.ndarray, layers: tuple[int, ...],
                    heads: int, kv_heads: int, head_dim: int) -> None:
    """``weights``: (n, H, P) rows of the step's query over positions 0..P-1 in ``layers``."""
    _save(path, {
        "schema_version": np.array(ATTENTION_VERSION), "step": np.array(step),
        "num_attention_heads": np.array(heads), "num_key_value_heads": np.array(kv_heads),
        "head_dim": np.array(head_dim), "layers": np.array(layers, dtype=np.int64),
        "attention_weights": weights.astype(np.float32),
    })


def write_activations(path: Path, step: int, vectors: np.ndarray, layers: tuple[int, ...],
                      submodules: tuple[str, ...], num_layers: int) -> None:
    """``vectors``: (n, S, d) of ``submodules`` in ``layers`` at the step's position."""
    _save(path, {
        "schema_version": np.array(ACTIVATION_VERSION), "step": np.array(step),
        "num_layers": np.array(num_layers), "hidden_dim": np.array(vectors.shape[-1]),
        "captured_submodules": np.array(submodules), "captured_layers": np.array(layers, dtype=np.int64),
        "vectors": vectors.astype(np.float32),
    })


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def read_attention(path: Path) -> dict[str, Any]:
    """The attention-sidecar dictionary of one archive."""
    a = _load(path)
    return {
        "schema_version": str(a["schema_version"]), "step": int(a["step"]),
        "num_attention_heads": int(a["num_attention_heads"]), "num_key_value_heads": int(a["num_key_value_heads"]),
        "head_dim": int(a["head_dim"]),
        "layers": [{"layer": int(l), "attention_weights": w.tolist()}
                   for l, w in zip(a["layers"], a["attention_weights"])],
    }


def activation_vectors(path: Path) -> tuple[tuple[int, ...], tuple[str, ...], np.ndarray]:
    """Captured layers, submodules and the (n, S, d) float32 vectors of one activation archive."""
    a = _load(path)
    return (tuple(int(l) for l in a["captured_layers"]), tuple(str(s) for s in a["captured_submodules"]),
            a["vectors"])


def read_activations(path: Path) -> dict[str, Any]:
    """The activation-sidecar dictionary of one archive."""
    a = _load(path)
    subs = [str(s) for s in a["captured_submodules"]]
    return {
        "schema_version": str(a["schema_version"]), "step": int(a["step"]),
        "num_layers": int(a["num_layers"]), "hidden_dim": int(a["hidden_dim"]),
        "captured_submodules": subs, "captured_layers": [int(l) for l in a["captured_layers"]],
        "layers": [{"layer": int(l), "submodule_tensors": {s: v.tolist() for s, v in zip(subs, row)}}
                   for l, row in zip(a["captured_layers"], a["vectors"])],
    }
