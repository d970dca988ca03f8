"""Writing the headvis ``data/`` tree (``shared/formats/headvis-data.md``) and ``heads.csv``.

The whole tree is written into a temporary folder beside ``out`` and moved into place at the end,
so an interrupted run leaves the previous output (or nothing), never half a tree. Floats are cast
to float64 and rounded to 4 decimals; a value that could not be computed is written as null.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .histograms import value_histogram
from .lab import LabResult, point_sequences
from .metrics import DESCRIPTIONS, METRICS
from .pca import STACKS, pca3

HEAD_PATTERN = "L{layer}H{head}.json"
TOP_TOKENS = 20
RANDOM_INDUCTION = "repeated_random_induction_score"
RANDOM_DESCRIPTION = ("mean attention, in the second copy of random tokens repeated twice, to the token "
                      "after the current token's first copy")


def r4(x) -> float | None:
    """A float64 rounded to 4 decimals; None for NaN or infinity."""
    value = float(np.float64(x))
    return round(value, 4) if math.isfinite(value) else None


def r4s(values) -> list[float | None]:
    """Each value as float64 rounded to 4 decimals; None for NaN or infinity."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    rounded = np.round(arr, 4).tolist()
    if np.isfinite(arr).all():
        return rounded
    return [r if math.isfinite(r) else None for r in rounded]


def _dump(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, allow_nan=False), encoding="utf-8")


def _config(lab: LabResult, umap: list[list[int]]) -> dict:
    stats = {m: {"label": m.replace("_", " "), "format": ".4f"} for m in METRICS}
    stats[RANDOM_INDUCTION] = {"label": "induction (repeated random tokens)", "format": ".4f"}
    stats["n_sequences"] = {"label": "sequences scanned", "format": "d"}
    stats["n_tokens"] = {"label": "tokens scanned", "format": "d"}
    return {
        "model_name": lab.model_name,
        "heads": [[layer, head] for layer, head in lab.scan.studied],
        "n_layers": lab.n_layers,
        "n_heads": lab.n_heads,
        "n_intervals": lab.scan.config.n_intervals,
        "metrics": list(METRICS),
        "metric_descriptions": dict(DESCRIPTIONS),
        "head_data_pattern": HEAD_PATTERN,
        "has_umap": bool(umap),
        "umap_heads": umap,
        "statistics_display": stats,
    }


def _tokens(pairs: list[tuple[int, float]], text_of: Callable[[int], str]) -> list[dict]:
    return [{"token": text_of(i), "weight": r4(w)} for i, w in pairs]


def _head_file(lab: LabResult, index: int) -> dict:
    scan, samples = lab.scan, lab.samples[index]
    edges, counts = value_histogram(scan.reservoir.column(index)[1])
    stats = {m: r4(lab.metrics[m][index]) for m in METRICS}
    stats[RANDOM_INDUCTION] = r4(lab.random_induction[index])
    stats["n_sequences"], stats["n_tokens"] = scan.n_sequences, scan.n_tokens
    return {
        "sequences": [{
            "sequence_id": s.seq_id, "interval": s.interval, "tokens": lab.texts[s.seq_id],
            "attention_indices": [int(i) for i in s.indices], "attention_values": r4s(s.values),
            "seq_len": s.seq_len, "max_activation": r4(s.max_activation)} for s in samples],
        "qk_distance_histogram": {"bin_edges": r4s(scan.edges), "bin_values": r4s(scan.histogram.fractions(index))},
        "top_query_tokens": _tokens(scan.tally.query.top(index, TOP_TOKENS), lab.token_text),
        "top_key_tokens": _tokens(scan.tally.key.top(index, TOP_TOKENS), lab.token_text),
        "histogram": {"bin_edges": r4s(edges), "bin_values": r4s(counts)},
        "statistics": stats,
    }


def _umap_file(seq: np.ndarray, q: np.ndarray, k: np.ndarray, vectors: dict[str, np.ndarray]) -> dict:
    pca = {}
    for s in STACKS:
        coords = pca3(vectors[s])  # (P, 3)
        pca[s] = {f"d{i}": r4s(coords[:, i]) for i in range(3)}
    return {"seq_idx": [int(i) for i in seq], "top_q": [int(i) for i in q], "top_k": [int(i) for i in k],
            "norms": r4s(np.linalg.norm(vectors["O"].astype(np.float64), axis=-1)), "pca": pca, "clusters": []}


def _csv(path: Path, lab: LabResult) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "head", *METRICS, RANDOM_INDUCTION])
        for index, (layer, head) in enumerate(lab.scan.studied):
            values = [r4(lab.metrics[m][index]) for m in METRICS] + [r4(lab.random_induction[index])]
            writer.writerow([layer, head, *("" if v is None else v for v in values)])


def _fill(root: Path, lab: LabResult) -> None:
    scan = lab.scan
    scatter, umap = [], []
    for index, (layer, head) in enumerate(scan.studied):
        scatter.append({"layer": layer, "head": head, **{m: r4(lab.metrics[m][index]) for m in METRICS}})
        name = HEAD_PATTERN.format(layer=layer, head=head)
        _dump(root / "heads" / name, _head_file(lab, index))
        seq, q, k, vectors = scan.points[layer].head(scan.heads[layer].index(head))
        if len(seq):
            _dump(root / "umap" / name, _umap_file(seq, q, k, vectors))
            umap.append([layer, head])
    referred = sorted(point_sequences(scan))
    _dump(root / "umap" / "sequences.json", {str(i): lab.texts[i] for i in referred})
    _dump(root / "scatter_data.json", scatter)
    _dump(root / "config.json", _config(lab, umap))
    _dump(root / "server_config.json", {})
    _dump(root / "attributions" / "manifest.json", {})
    for folder in ("attributions/qk", "attributions/ov", "custom_sequences"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    _csv(root / "heads.csv", lab)


def check_out(out: Path) -> None:
    """UserError unless ``out`` can take the tree: absent, an empty folder, or an earlier tree."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise UserError(f"--out: {out} is a folder with other files in it (not an earlier heads output); "
                        "name a new or empty folder")


def write_tree(out: Path, lab: LabResult) -> None:
    """Write the tree to ``out``, replacing an earlier one only once the new one is complete."""
    check_out(out)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _fill(tmp, lab)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
