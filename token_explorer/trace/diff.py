"""``token-explorer trace diff A B``: the activations of two traces compared step by step, per layer
and submodule, from their full activation sidecars.

Steps align by token id when both traces share a tokenizer (step i of A with step i of B, while
their chosen tokens agree), else by the character offset of each token in the generated text.
Two traces of different prompts, or with no aligned step, are refused.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import UserError
from ..printable import printable
from . import sidecars
from .files import write_atomic, write_json

SCHEMA_VERSION = "1.0.0"


@dataclass(frozen=True)
class Trace:
    """What the diff reads of one trace folder."""

    name: str  # as given on the command line
    folder: Path
    doc: dict[str, Any]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.doc["steps"]

    @property
    def fingerprint(self) -> str:
        return self.doc.get("activation_metadata", {}).get("tokenizer_fingerprint", "")


def load_trace(given: str) -> Trace:
    """A trace folder (or its trace.json), with every step's activation sidecar present."""
    path = Path(given)
    file = path / "trace.json" if path.is_dir() else path
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{given}: no trace.json there") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: not a readable trace ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or "metadata" not in doc:
        raise UserError(f"{file}: not a trace (no metadata or steps)")
    if not str(doc.get("schema_version", "")).startswith("2."):
        raise UserError(f"{file}: trace schema version {doc.get('schema_version')!r}, expected 2.x")
    missing = [s.get("step") for s in doc["steps"] if not s.get("activation_sidecar_ref")]
    if missing:
        raise UserError(f"{file}: step {missing[0]} has no activation sidecar "
                        "(trace it with --capture-full-activations)")
    return Trace(given, file.parent, doc)


def align(a: Trace, b: Trace) -> tuple[str, list[tuple[int, int]], list[dict[str, Any]]]:
    """The alignment mode, the aligned (step of A, step of B) pairs and the unaligned steps."""
    pairs: list[tuple[int, int]] = []
    mismatches: list[dict[str, Any]] = []
    if a.fingerprint and a.fingerprint == b.fingerprint:
        mode = "token_id"
        for i in range(max(len(a.steps), len(b.steps))):
            if i >= len(b.steps):
                mismatches.append({"step_a": i, "step_b": None, "reason": "trailing_steps_in_a"})
            elif i >= len(a.steps):
                mismatches.append({"step_a": None, "step_b": i, "reason": "trailing_steps_in_b"})
            elif a.steps[i]["token_id"] == b.steps[i]["token_id"]:
                pairs.append((i, i))
            else:
                mismatches.append({"step_a": i, "step_b": i, "reason": "token_id_divergence"})
        return mode, pairs, mismatches
    by_offset = {s["decoded_text_offset"]: i for i, s in enumerate(b.steps)}
    used = set()
    for i, s in enumerate(a.steps):
        j = by_offset.get(s["decoded_text_offset"])
        if j is None:
            mismatches.append({"step_a": i, "step_b": None, "reason": "offset_gap"})
        else:
            pairs.append((i, j))
            used.add(j)
    mismatches += [{"step_a": None, "step_b": j, "reason": "offset_gap"} for j in range(len(b.steps)) if j not in used]
    return "position", pairs, mismatches


def layer_delta(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    """L2 of x - y, cosine of x and y (0 when either is zero), and the k largest |x - y| (indices, deltas)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    delta = x - y
    norms = np.linalg.norm(x) * np.linalg.norm(y)
    cosine = float(np.clip(x @ y / norms, -1.0, 1.0)) if norms > 0 else 0.0
    top = np.argsort(-np.abs(delta), kind="stable")[:k]
    return float(np.linalg.norm(delta)), cosine, top, delta[top]


def diff_document(a: Trace, b: Trace, k: int) -> dict[str, Any]:
    """The activation-diff document of two traces (refuses mismatched ones)."""
    prompt_a, prompt_b = a.doc["metadata"].get("prompt"), b.doc["metadata"].get("prompt")
    if prompt_a != prompt_b:
        raise UserError(f"{a.name} and {b.name} are traces of different prompts; refusing to compare them")
    mode, pairs, mismatches = align(a, b)
    if not pairs:
        raise UserError(f"{a.name} and {b.name} have no aligned steps; refusing to compare them")
    steps = []
    for out_step, (i, j) in enumerate(pairs):
        layers_a, subs_a, va = sidecars.activation_vectors(a.folder / a.steps[i]["activation_sidecar_ref"])
        layers_b, subs_b, vb = sidecars.activation_vectors(b.folder / b.steps[j]["activation_sidecar_ref"])
        if va.shape[-1] != vb.shape[-1]:
            raise UserError(f"{a.name} and {b.name} have different hidden sizes ({va.shape[-1]} and {vb.shape[-1]})")
        common = [(la, lb) for la, layer in enumerate(layers_a) for lb, other in enumerate(layers_b) if layer == other]
        subs = [(sa, subs_b.index(sub)) for sa, sub in enumerate(subs_a) if sub in subs_b]
        if not common or not subs:
            raise UserError(f"{a.name} and {b.name} captured no layer and submodule in common")
        delta = []
        for la, lb in common:
            for sa, sb in subs:
                l2, cosine, top, values = layer_delta(va[la, sa], vb[lb, sb], k)
                changed = [{"index": int(n), "delta": float(d)} for n, d in zip(top, values)]
                delta.append({"layer": layers_a[la], "submodule": subs_a[sa], "l2": l2, "cosine": cosine,
                              "top_changed_neurons": changed})
        sa_, sb_ = a.steps[i], b.steps[j]
        steps.append({"step": out_step, "token_id_a": sa_["token_id"], "token_id_b": sb_["token_id"],
                      "decoded_text_offset_a": sa_["decoded_text_offset"],
                      "decoded_text_offset_b": sb_["decoded_text_offset"], "delta": delta})
    return {"schema_version": SCHEMA_VERSION,
            "alignment": {"mode": mode, "tokenizer_a_fingerprint": a.fingerprint,
                          "tokenizer_b_fingerprint": b.fingerprint, "mismatches": mismatches},
            "steps": steps}


def delta_heatmap(doc: dict[str, Any], metric: str, path: Path) -> Path:
    """One layer x step heatmap of ``metric`` per submodule."""
    subs = list(dict.fromkeys(d["submodule"] for d in doc["steps"][0]["delta"]))
    layers = sorted({d["layer"] for d in doc["steps"][0]["delta"]})
    fig = Figure(figsize=(9, 2.2 + 2.4 * len(subs)), layout="constrained")
    for row, sub in enumerate(subs):
        grid = np.full((len(layers), len(doc["steps"])), np.nan)
        for j, step in enumerate(doc["steps"]):
            for d in step["delta"]:
                if d["submodule"] == sub:
                    grid[layers.index(d["layer"]), j] = d[metric]
        ax = fig.add_subplot(len(subs), 1, row + 1)
        im = ax.imshow(grid, aspect="auto", origin="lower", interpolation="nearest",
                       cmap="magma" if metric == "l2" else "viridis")
        ax.set(title=f"{sub}: {'L2 of A - B' if metric == 'l2' else 'cosine of A and B'}",
               xlabel="aligned step", ylabel="layer")
        fig.colorbar(im, ax=ax, label=metric)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, lambda f: f.write(buf.getvalue()))
    return path


def run_diff(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    doc = diff_document(load_trace(args.a), load_trace(args.b), args.top_k)
    out = Path(args.out)
    write_json(out / "activation_diff.json", doc)
    delta_heatmap(doc, args.metric, out / "activation_delta.png")
    print(f"token-explorer trace diff: {len(doc['steps'])} aligned steps ({doc['alignment']['mode']}), "
          f"{len(doc['alignment']['mismatches'])} unaligned; wrote activation_diff.json and activation_delta.png "
          f"in {printable(str(out))}", file=sys.stderr)
    return 0
