"""Writing a trace's folder: sidecars as the steps come, then the documents, tables and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..sampling import SamplingParams
from . import sidecars
from .document import ModelFacts, TokenText, params_document, trace_csv, trace_document
from .files import write_atomic, write_json, write_text
from .plots import all_plots
from .run import CaptureConfig, StepRecord, TraceResult


class SidecarSink:
    """The tracer's ``on_step``: writes a step's full arrays to its sidecars and keeps the record
    without them, so a long trace does not hold every step's rows in memory."""

    def __init__(self, out: Path, facts: ModelFacts, config: CaptureConfig) -> None:
        self.out, self.facts, self.config = out, facts, config
        self.refs: dict[str, list[str | None]] = {}

    def __call__(self, record: StepRecord) -> StepRecord:
        a, v = record.attention, record.activations
        if a is not None and a.weights is not None:
            ref = f"attention/step_{record.step:05d}.npz"
            sidecars.write_attention(self.out / ref, record.step, a.weights, a.layers, self.facts.num_heads,
                                     self.facts.num_kv_heads, self.facts.head_dim)
            self.refs.setdefault("attention", []).append(ref)
            record = replace(record, attention=replace(a, weights=None))
        if v is not None and v.vectors is not None:
            ref = f"activations/step_{record.step:05d}.npz"
            sidecars.write_activations(self.out / ref, record.step, v.vectors, v.layers, v.submodules,
                                       self.facts.num_layers)
            self.refs.setdefault("activations", []).append(ref)
            record = replace(record, activations=replace(v, vectors=None))
        return record


def attention_stats(result: TraceResult, k: int) -> dict[str, np.ndarray]:
    """Per step, layer and head statistics the trace schema has no place for (effective span, each
    head's top positions), as arrays (steps, n, H[, k]); positions past a short prefix are -1."""
    steps = [s.attention for s in result.steps]
    stack = lambda name: np.stack([getattr(a, name) for a in steps])  # noqa: E731
    pos = np.full((len(steps),) + steps[0].top_positions.shape[:2] + (k,), -1, np.int64)
    weight = np.zeros(pos.shape, np.float32)
    for i, a in enumerate(steps):
        pos[i, ..., : a.top_positions.shape[-1]] = a.top_positions
        weight[i, ..., : a.top_weights.shape[-1]] = a.top_weights
    return {"layers": np.array(steps[0].layers, np.int64), "entropy": stack("entropy"),
            "effective_span": stack("effective_span"), "bos_weight": stack("bos_weight"),
            "self_weight": stack("self_weight"), "top1_weight": stack("top1_weight"),
            "top_positions": pos, "top_weights": weight}


def write_trace(out: Path, result: TraceResult, facts: ModelFacts, params: SamplingParams, config: CaptureConfig,
                refs: dict[str, list[str | None]], *, prompt: str, system: str | None, chat: bool,
                max_new_tokens: int, seed: int | None, stop: Sequence[str], tokenizer, text: TokenText,
                fingerprint: str, plots: bool) -> list[Path]:
    """Write every file of the trace into ``out``; returns them."""
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
    full = tokenizer.decode(result.prompt_ids + result.generated_ids, skip_special_tokens=True)
    doc = trace_document(result, facts, params, config, prompt=prompt, system=system, chat=chat,
                         max_new_tokens=max_new_tokens, text=text, decode=decode, full_text=full, sidecar_refs=refs)
    files = [out / "trace.json", out / "trace.csv", out / "generated.txt", out / "trace_params.json"]
    write_json(files[0], doc)
    write_text(files[1], trace_csv(result, text))
    write_text(files[2], tokenizer.decode(result.generated_ids, skip_special_tokens=True))
    write_json(files[3], params_document(params, config, result, seed=seed, stop=stop, fingerprint=fingerprint))
    if config.attention_layers is not None and result.steps:
        path = out / "attention_stats.npz"
        arrays = attention_stats(result, config.attention_top_k)
        write_atomic(path, lambda f: np.savez_compressed(f, **arrays))
        files.append(path)
    for kind in ("attention", "activations"):
        files += [out / ref for ref in refs.get(kind, []) if ref]
    if plots:
        files += all_plots(result, out, text, config.max_k, config.prompt_heads)
    return files
