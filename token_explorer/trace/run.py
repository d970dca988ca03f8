"""The trace loop: generate over a KV cache, one single-token forward per step, and record each step.

Step t is chosen from the logits of the forward that ran the previous token (the prompt's last
token for step 0); the captures of that same forward (lens, attention, activations, attribution)
describe how the model arrived at step t's distribution. The last chosen token is never forwarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..analyses.attention import LayerKeys
from ..errors import UserError
from ..model.capture import install_query_capture, recording
from ..model.family import Family, blocks, family_of
from ..model.hooks import last_logits_only
from ..model.kv_cache import make_cache
from ..model.unembed import Unembed
from ..sampling import SamplingParams, choose, eos_token_ids, process, raw_logits
from .activations import POINT_OF, ActivationRecord, activation_record
from .attention import AttentionRecord, attention_matrix, attention_record, attention_rows
from .captures import last_position
from .distribution import Probe, probe
from .dla import DlaRecord, FinalNorm, dla_record
from .lens import LensRecord, lens_record

PROMPT_ATTENTION_MAX = 1024  # longer prompts get no prompt attention heatmap (H x T x T floats)


@dataclass(frozen=True)
class CaptureConfig:
    """What to record per step besides the two distributions (None = that capture is off)."""

    min_k: int = 8
    max_k: int = 64
    mass_threshold: float = 0.95
    lens_layers: tuple[int, ...] | None = None
    lens_top_k: int = 8
    attention_layers: tuple[int, ...] | None = None
    attention_top_k: int = 8
    full_attention: bool = False
    prompt_heads: tuple[int, ...] = ()  # heads drawn one by one in the prompt's attention heatmap
    activation_layers: tuple[int, ...] | None = None
    activation_submodules: tuple[str, ...] = ("resid_post", "mlp_out", "o_proj")
    activation_top_k: int = 8
    full_activations: bool = False
    dla: bool = False

    @property
    def needs_family(self) -> bool:
        return any(x is not None for x in (self.lens_layers, self.attention_layers, self.activation_layers)) or self.dla


@dataclass(frozen=True)
class StepRecord:
    """Everything recorded about one generated token."""

    step: int
    token_id: int
    raw: Probe
    processed: Probe
    lens: LensRecord | None = None
    attention: AttentionRecord | None = None
    activations: ActivationRecord | None = None
    dla: DlaRecord | None = None


@dataclass
class TraceResult:
    """A finished trace: the prompt, what was generated, and one record per step."""

    prompt_ids: list[int]
    generated_ids: list[int] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    prompt_attention: np.ndarray | None = None  # (H, T, T) float32, the last layer over the prompt
    prompt_attention_layer: int | None = None
    stop_reason: str = "max_new_tokens"
    seconds: float = 0.0  # generation and captures, not writing


class Tracer:
    """Runs one trace over ``model``; the model is used as loaded, plus hooks while it runs."""

    def __init__(self, model: torch.nn.Module, tokenizer, config: CaptureConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.family: Family | None = family_of(model)
        self.device = next(model.parameters()).device
        self.forward_kwargs = last_logits_only(model)  # full-vocabulary logits of the last position only
        if config.needs_family and self.family is None:
            raise UserError(f"model family '{getattr(model.config, 'model_type', '?')}' is not in the family "
                            "table: the logit lens, attention, activation and attribution captures need it")
        self.n_layers = len(blocks(model, self.family)) if self.family else 0
        for name, layers in (("lens", config.lens_layers), ("attention", config.attention_layers),
                             ("activation", config.activation_layers)):
            bad = [l for l in layers or () if not 0 <= l < self.n_layers]
            if bad:
                raise UserError(f"--{name}-layers: layer {bad[0]} is outside 0..{self.n_layers - 1}")
        if config.attention_layers is not None and not install_query_capture(model):
            raise UserError("--capture-attention: this model's attention queries cannot be captured")
        self.unembed = Unembed(model, self.family) if self.family else None
        self.norm = FinalNorm(model, self.family) if config.dla and self.family else None
        self.heads = int(getattr(model.config, "num_attention_heads", getattr(model.config, "n_head", 0)))
        bad = [h for h in config.prompt_heads if not 0 <= h < self.heads]
        if bad:
            raise UserError(f"--attention-heads: head {bad[0]} is outside 0..{self.heads - 1}")

    def _wanted(self) -> dict[str, set[int]]:
        """The hook points the captures read, by layer."""
        c = self.config
        wanted: dict[str, set[int]] = {}
        if c.lens_layers is not None:
            wanted.setdefault("resid_post", set()).update(c.lens_layers)
        if c.activation_layers is not None:
            for sub in c.activation_submodules:
                wanted.setdefault(POINT_OF[sub], set()).update(c.activation_layers)
        if c.dla:
            wanted.setdefault("resid_pre", set()).add(0)
            wanted.setdefault("resid_post", set()).add(self.n_layers - 1)
            wanted.setdefault("attn_out", set()).update(range(self.n_layers))
            wanted.setdefault("mlp_out", set()).update(range(self.n_layers))
        return wanted

    @torch.no_grad()
    def run(self, prompt_ids: Sequence[int], params: SamplingParams, max_new_tokens: int, *,
            stop: Sequence[str] = (), seed: int | None = None, whitespace_ids: set[int] | None = None,
            on_step: Callable[[StepRecord], StepRecord] | None = None,
            progress: Callable[[int], None] | None = None) -> TraceResult:
        """Generate up to ``max_new_tokens`` tokens after ``prompt_ids``.

        ``on_step`` sees each record first and returns the one to keep (e.g. with its full sidecar
        arrays written out and dropped); ``progress`` gets the number of steps done.
        """
        c = self.config
        result = TraceResult(prompt_ids=[int(i) for i in prompt_ids])
        context = list(result.prompt_ids)
        eos = eos_token_ids(self.model, self.tokenizer)
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=self.device)
            if seed is not None:
                generator.manual_seed(seed)
            else:
                generator.seed()
        cache = make_cache(self.model.config)
        start = time.perf_counter()
        with ExitStack() as stack:
            rec = None
            if c.attention_layers is not None:
                rec = stack.enter_context(recording(self.model, self.family, want_queries=True))
            seen = stack.enter_context(last_position(self.model, self.family, self._wanted())) if self.family else {}
            feed = list(result.prompt_ids)
            for step in range(max_new_tokens):
                out = self.model(input_ids=torch.tensor([feed], device=self.device), past_key_values=cache,
                                 use_cache=True, **self.forward_kwargs)
                logits = out.logits[0, -1].float()  # (V,)
                if step == 0 and rec is not None:
                    self._prompt_attention(rec, cache, result)
                raw = raw_logits(logits, params)
                processed = process(logits, context, step, params, eos, whitespace_ids or ())
                token = choose(processed, params, generator)
                record = self._record(step, token, logits, raw, processed, seen, rec, cache, len(context))
                record = on_step(record) if on_step else record
                result.steps.append(record)
                result.generated_ids.append(token)
                context.append(token)
                feed = [token]
                if progress:
                    progress(step + 1)
                done = step + 1 >= params.min_new_tokens
                if done and token in eos:
                    result.stop_reason = "eos"
                    break
                if done and stop and self._stopped(result.generated_ids, stop):
                    result.stop_reason = "stop_string"
                    break
        result.seconds = time.perf_counter() - start
        return result

    def _stopped(self, generated: list[int], stop: Sequence[str]) -> bool:
        text = self.tokenizer.decode(generated[-64:], skip_special_tokens=False)
        return any(s in text for s in stop)

    def _record(self, step: int, token: int, logits: torch.Tensor, raw: torch.Tensor, processed: torch.Tensor,
                seen: dict, rec, cache, n_total: int) -> StepRecord:
        c = self.config
        record = StepRecord(step=step, token_id=token,
                            raw=probe(raw, token, c.min_k, c.max_k, c.mass_threshold),
                            processed=probe(processed, token, c.min_k, c.max_k, c.mass_threshold))
        if c.lens_layers is not None:
            assert self.unembed is not None
            resid = torch.stack([seen["resid_post"][l] for l in c.lens_layers])  # (n, d)
            record = replace(record, lens=lens_record(self.unembed(resid), c.lens_layers, token, c.lens_top_k))
        if c.attention_layers is not None:
            queries = [rec.queries[l][0, :, -1] for l in c.attention_layers]  # each (H, hd)
            keys = [self._keys(rec, cache, l, n_total) for l in c.attention_layers]
            rows = attention_rows(queries, keys, n_total - 1)  # (n, H, n_total)
            record = replace(record, attention=attention_record(rows, c.attention_layers, c.attention_top_k,
                                                                c.full_attention))
        if c.activation_layers is not None:
            vectors = torch.stack([torch.stack([seen[POINT_OF[s]][l] for s in c.activation_submodules])
                                   for l in c.activation_layers])  # (n, S, d)
            record = replace(record, activations=activation_record(
                vectors, c.activation_layers, c.activation_submodules, c.activation_top_k, c.full_activations))
        if c.dla:
            assert self.norm is not None
            layers = range(self.n_layers)
            record = replace(record, dla=dla_record(
                self.norm, seen["resid_pre"][0], torch.stack([seen["attn_out"][l] for l in layers]),
                torch.stack([seen["mlp_out"][l] for l in layers]), seen["resid_post"][self.n_layers - 1],
                token, float(logits[token])))
        return record

    @staticmethod
    def _keys(rec, cache, layer: int, n_total: int) -> LayerKeys:
        """Layer ``layer``'s cached keys (post-rotary) and how it scores them."""
        keys = cache.layers[layer].keys[0]  # (kv_heads, cached, hd)
        meta = rec.meta[layer]
        return LayerKeys(keys=keys, start=n_total - keys.shape[1], scaling=meta.scaling,
                         softcap=meta.softcap, sliding_window=meta.sliding_window)

    def _prompt_attention(self, rec, cache, result: TraceResult) -> None:
        """The last layer's (H, T, T) attention over the prompt, from the prefill's queries."""
        layer = self.n_layers - 1
        n = len(result.prompt_ids)
        if n > PROMPT_ATTENTION_MAX:
            return
        keys = self._keys(rec, cache, layer, n)
        if keys.start != 0:
            return  # a sliding window already dropped some of the prompt's keys
        result.prompt_attention = attention_matrix(rec.queries[layer][0], keys).cpu().numpy()
        result.prompt_attention_layer = layer
