"""``trace.json``: a finished trace as a document valid against the Token-Heatmap trace schema v2,
and ``trace.csv``: one row per step."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..sampling import SamplingParams
from .distribution import Probe
from ..printable import printable
from .run import CaptureConfig, StepRecord, TraceResult

SCHEMA_VERSION = "2.0.0"
TokenText = Callable[[int], str]  # display text of one token id (split UTF-8 bytes as <0xNN>)


@dataclass(frozen=True)
class ModelFacts:
    """What the document says about the model and how it ran."""

    name: str
    device: str  # torch device type
    dtype: str
    vocab_size: int
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    architecture: dict[str, Any]
    tokenizer_fingerprint: str


def model_facts(model, tokenizer, name: str) -> ModelFacts:
    """Read the facts from a loaded model and tokenizer."""
    cfg = model.config
    layers = int(getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layer", 0)))
    hidden = int(getattr(cfg, "hidden_size", getattr(cfg, "n_embd", 0)))
    heads = int(getattr(cfg, "num_attention_heads", getattr(cfg, "n_head", 0)))
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or (hidden // heads if heads else 0))
    param = next(model.parameters())
    arch: dict[str, Any] = {
        "model_type": str(getattr(cfg, "model_type", "")), "num_layers": layers, "hidden_size": hidden,
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
        "vocab_size": int(cfg.vocab_size), "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(param.dtype).removeprefix("torch."),
    }
    if getattr(cfg, "architectures", None):
        arch["architecture"] = str(cfg.architectures[0])
    for key in ("intermediate_size", "max_position_embeddings"):
        if isinstance(getattr(cfg, key, None), int):
            arch[key] = int(getattr(cfg, key))
    theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    if isinstance(theta, (int, float)):
        arch["rope_theta"] = float(theta)
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8")
    return ModelFacts(name=name, device=param.device.type, dtype=arch["dtype"], vocab_size=len(tokenizer),
                      num_layers=layers, hidden_size=hidden, num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
                      architecture=arch, tokenizer_fingerprint="sha256:" + hashlib.sha256(vocab).hexdigest()[:16])


def _distribution(p: Probe, text: TokenText) -> dict[str, Any]:
    return {
        "k_used": p.k_used, "entropy": p.entropy, "top_mass_used": p.top_mass_used,
        "selected_prob": p.selected_prob, "selected_logprob": p.selected_logprob, "selected_rank": p.selected_rank,
        "candidates": [
            {"rank": r + 1, "token_id": int(i), "token": text(int(i)), "prob": float(pr), "logprob": float(lp)}
            for r, (i, pr, lp) in enumerate(zip(p.ids, p.probs, p.logprobs))],
    }


def _lens(step: StepRecord, text: TokenText) -> list[dict[str, Any]]:
    lens = step.lens
    assert lens is not None
    return [{
        "layer_idx": layer,
        "top_k": [{"rank": r + 1, "token_id": int(i), "token": text(int(i)), "prob": float(p), "logprob": float(lp)}
                  for r, (i, p, lp) in enumerate(zip(lens.top_ids[j], lens.top_probs[j], lens.top_logprobs[j]))],
        "entropy": float(lens.entropy[j]),
        "selected_token_rank": int(lens.selected_rank[j]),
        "selected_token_prob": float(lens.selected_prob[j]),
    } for j, layer in enumerate(lens.layers)]


def _attention(step: StepRecord) -> list[dict[str, Any]]:
    a = step.attention
    assert a is not None
    return [{
        "layer": layer,
        "entropy": float(a.entropy[j].mean()),
        "self_weight": float(a.self_weight[j].mean()),
        "bos_weight": float(a.bos_weight[j].mean()),
        "top_positions": [{"position": int(p), "weight": float(w)}
                          for p, w in zip(a.mean_top_positions[j], a.mean_top_weights[j])],
        "per_head": {"entropy": a.entropy[j].tolist(), "self_weight": a.self_weight[j].tolist(),
                     "bos_weight": a.bos_weight[j].tolist(), "top1_weight": a.top1_weight[j].tolist()},
    } for j, layer in enumerate(a.layers)]


def _activations(step: StepRecord) -> list[dict[str, Any]]:
    a = step.activations
    assert a is not None
    return [{
        "layer": layer, "submodule": sub,
        "l2_norm": float(a.l2_norm[j, s]), "mean_abs": float(a.mean_abs[j, s]), "sparsity": float(a.sparsity[j, s]),
        "top_neurons": [{"index": int(i), "value": float(v)} for i, v in zip(a.top_index[j, s], a.top_value[j, s])],
    } for j, layer in enumerate(a.layers) for s, sub in enumerate(a.submodules)]


def text_offsets(decode: Callable[[list[int]], str], ids: Sequence[int]) -> list[int]:
    """Character offset of each generated token in the decoded generated text."""
    return [len(decode(list(ids[:i]))) for i in range(len(ids))]


def trace_document(result: TraceResult, facts: ModelFacts, params: SamplingParams, config: CaptureConfig, *,
                   prompt: str, system: str | None, chat: bool, max_new_tokens: int, text: TokenText,
                   decode: Callable[[list[int]], str], full_text: str,
                   sidecar_refs: dict[str, list[str | None]]) -> dict[str, Any]:
    """The trace.json document. ``decode`` is the tokenizer's decode of generated ids (special tokens
    kept); ``full_text`` the prompt and generation decoded with special tokens skipped."""
    metadata: dict[str, Any] = {
        "model": facts.name, "prompt": prompt, "use_chat_template": chat,
        "generated_text": full_text,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "dtype": facts.dtype, "vocab_size": facts.vocab_size,
        "generation_params": {
            "max_new_tokens": max_new_tokens,
            "temperature": 1.0 if params.greedy else params.temperature,  # the raw distribution's T
            "top_p": params.top_p, "sample_top_k": params.top_k,
        },
        "probe_config": {"min_k": config.min_k, "max_k": config.max_k, "mass_threshold": config.mass_threshold},
    }
    if chat:
        metadata["system_prompt"] = system
    if facts.device in ("cpu", "cuda", "mps"):
        metadata["device"] = facts.device
    offsets = text_offsets(decode, result.generated_ids)
    steps = []
    for i, step in enumerate(result.steps):
        entry: dict[str, Any] = {
            "step": step.step,
            "selected": {"token_id": step.token_id, "token": text(step.token_id)},
            "raw": _distribution(step.raw, text),
            "processed": _distribution(step.processed, text),
            "token_id": step.token_id,
            "decoded_text_offset": offsets[i],
        }
        if step.lens is not None:
            entry["logit_lens"] = _lens(step, text)
        if step.attention is not None:
            entry["attention"] = _attention(step)
            entry["attention_sidecar_ref"] = sidecar_refs.get("attention", [None] * len(result.steps))[i]
        if step.activations is not None:
            entry["activations"] = _activations(step)
            if "activations" in sidecar_refs:
                entry["activation_sidecar_ref"] = sidecar_refs["activations"][i]
        steps.append(entry)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "metadata": metadata,
        "model_architecture": facts.architecture,
        "tokens": {"prompt_token_ids": list(result.prompt_ids), "prompt_tokens": [text(i) for i in result.prompt_ids]},
        "steps": steps,
    }
    if config.attention_layers is not None:
        doc["attention_metadata"] = {
            "num_layers": facts.num_layers, "num_attention_heads": facts.num_heads,
            "num_key_value_heads": facts.num_kv_heads, "head_dim": facts.head_dim,
            "captured_layers": list(config.attention_layers),
        }
    if config.activation_layers is not None:
        doc["activation_metadata"] = {
            "captured_submodules": list(config.activation_submodules), "num_layers": facts.num_layers,
            "hidden_dim": facts.hidden_size, "tokenizer_fingerprint": facts.tokenizer_fingerprint,
            "captured_layers": list(config.activation_layers),
        }
    if config.dla:
        doc["direct_logit_attribution"] = {
            "method": "dla_fold_norm", "n_steps": len(result.steps), "num_layers": facts.num_layers,
            "note": "the chosen token's logit split into the embedding and each block's attention and MLP "
                    "updates through the unembedding, the final norm's scale held fixed at its value on the "
                    "final residual stream; error = real logit - embed - attn - mlp - bias",
            "steps": [{
                "step": s.step, "target_token_id": s.dla.target, "total_logit": s.dla.total_logit,
                "embed": s.dla.embed, "bias": s.dla.bias, "error": s.dla.error,
                "layers": [{"layer": l, "attn": float(s.dla.attn[l]), "mlp": float(s.dla.mlp[l])}
                           for l in range(len(s.dla.attn))],
            } for s in result.steps if s.dla is not None],
        }
    return doc


CSV_PROBE = ("k_used", "entropy", "top_mass_used", "selected_prob", "selected_logprob", "selected_rank")


def trace_csv(result: TraceResult, text: TokenText) -> str:
    """One row per step: the token and both distributions' statistics (plus the attribution's total
    and error when it was captured). Token text is made printable (``printable.printable``)."""
    dla = any(s.dla is not None for s in result.steps)
    header = ["step", "token_id", "token"] + [f"{src}_{f}" for src in ("raw", "processed") for f in CSV_PROBE]
    header += ["dla_total_logit", "dla_error"] if dla else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for s in result.steps:
        row: list[Any] = [s.step, s.token_id, printable(text(s.token_id))]
        for p in (s.raw, s.processed):
            row += [getattr(p, f) for f in CSV_PROBE]
        if dla:
            row += [s.dla.total_logit, s.dla.error] if s.dla is not None else ["", ""]
        writer.writerow(row)
    return buf.getvalue()


def params_document(params: SamplingParams, config: CaptureConfig, result: TraceResult, *, seed: int | None,
                    stop: Sequence[str], fingerprint: str) -> dict[str, Any]:
    """``trace_params.json``: every setting of the run, including those the trace schema has no field for."""
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value
    return {
        "sampling": {**{k: plain(v) for k, v in params.__dict__.items()}, "greedy": params.greedy,
                     "seed": seed, "stop": list(stop)},
        "captures": {k: plain(v) for k, v in config.__dict__.items()},
        "model_fingerprint": fingerprint,
        "stop_reason": result.stop_reason,
        "steps": len(result.steps),
        "seconds": round(result.seconds, 4),
        "prompt_attention_layer": result.prompt_attention_layer,
    }
