"""``token-explorer peek``: the analysis of every prompt position, as a table or as JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from .printable import json_safe, printable
from .protocol import EngineLike
from .results import Position, Snapshot
from .tokens import visible

SCHEMA = "token_explorer.peek/1"


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _candidates(engine: EngineLike, ids, probs, logits=None) -> list[dict[str, Any]]:
    texts = engine.token_texts([int(i) for i in ids])
    rows = []
    for j, (token_id, text) in enumerate(zip(ids, texts)):
        row = {"id": int(token_id), "text": text, "prob": float(probs[j])}
        if logits is not None:
            row["logit"] = float(logits[j])
        rows.append(row)
    return rows


def _position(engine: EngineLike, pos: Position, top_k: int, lens: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": pos.index,
        "id": pos.token_id,
        "text": pos.text,
        "prob": _num(pos.token_prob),
        "rank": pos.token_rank,
        "logit": _num(pos.token_logit),
        "z": _num(pos.token_z),
        "entropy_bits": pos.entropy_bits,
        "energy": pos.energy,
        "top_k": _candidates(engine, pos.top_ids[:top_k], pos.top_probs[:top_k], pos.top_logits[:top_k]),
    }
    if lens:
        if pos.lens is None:
            entry["lens"] = None
        else:
            layers = []
            for layer in range(pos.lens.n_layers):
                layers.append({
                    "layer": layer,
                    "prob": None if pos.lens.token_prob is None else float(pos.lens.token_prob[layer]),
                    "rank": None if pos.lens.token_rank is None else int(pos.lens.token_rank[layer]),
                    "entropy_bits": float(pos.lens.entropy_bits[layer]),
                    "kl_to_final_bits": float(pos.lens.kl_to_final_bits[layer]),
                    "top_k": _candidates(engine, pos.lens.top_ids[layer][:top_k], pos.lens.top_probs[layer][:top_k]),
                })
            entry["lens"] = layers
    return entry


def peek_document(engine: EngineLike, snap: Snapshot, top_k: int, lens: bool) -> dict[str, Any]:
    """The JSON document of ``peek --json`` (schema in the README)."""
    return {
        "schema": SCHEMA,
        "model": engine.info.name,
        "model_fingerprint": engine.info.fingerprint,
        "temperature": snap.next.temperature,
        "tokens": [{"id": p.token_id, "text": p.text} for p in snap.positions],
        "positions": [_position(engine, p, top_k, lens) for p in snap.positions],
    }


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def peek_table(engine: EngineLike, snap: Snapshot, top_k: int, lens: bool) -> str:
    """A readable table: one line per position (plus one lens line per position with ``lens``)."""
    shown = min(top_k, 3)
    lines = [
        f"model: {printable(engine.info.name)}   energy T={snap.next.temperature:g}",
        f"{'pos':>4}  {'token':<16} {'p(tok|prefix)':>13} {'rank':>6} {'entropy':>8} {'energy':>8}  next-token top-{shown}",
    ]
    for pos in snap.positions:
        texts = engine.token_texts([int(i) for i in pos.top_ids[:shown]])
        top = "  ".join(f"{visible(t)!s}:{p:.3f}" for t, p in zip(texts, pos.top_probs[:shown]))
        lines.append(
            f"{pos.index:>4}  {visible(pos.text)[:16]:<16} {_fmt(pos.token_prob, '.4f'):>13} "
            f"{_fmt(pos.token_rank, 'd'):>6} {pos.entropy_bits:>8.3f} {pos.energy:>8.3f}  {top}"
        )
        if lens and pos.lens is not None and pos.lens.token_prob is not None:
            probs = " ".join(f"{p:.2f}" for p in pos.lens.token_prob)
            lines.append(f"{'':>4}  lens p(tok) by layer 0..{pos.lens.n_layers - 1}: {probs}")
    lines.append("entropy in bits of the next-token distribution at each position; energy = -T logsumexp(logits/T), nats")
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (inf, NaN) replaced by None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def dumps(document: dict[str, Any]) -> str:
    """Strict JSON text of a peek document: no Infinity or NaN (null instead), and no raw control
    characters even inside strings."""
    return json_safe(json.dumps(_finite(document), ensure_ascii=False, indent=1, allow_nan=False))
