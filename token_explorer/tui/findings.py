"""Analysis results as they are drawn: captions, number formats, tables and heatmaps.

Results are plain data (``token_explorer.results``); the words and formats live here. Every
function takes the full result and the view's parameters, selects with ``result.colour(params)``
and never asks for more computation, so stepping a layer, head or feature only re-renders.
A result type without its own function here (e.g. the :class:`LayerGrid` of a newly added
analysis) is drawn generically from its declaration's title, unit and scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Text

from token_explorer.analyses.declare import ALL, Spec
from token_explorer.results import Attention, Attribution, Features, HeadMetrics, LayerGrid, Lens, ModelInfo, Residual

from .colors import Fitted, fit_scale
from .render import HeavyRendering, grid_heatmap, number, rich_table

TOP = 8  # rows of "largest" tables


def layer_name(layer: int, n_layers: int) -> str:
    """How a residual-stream row 0..L is called on screen."""
    if layer == 0:
        return "0 (embeddings)"
    if layer == n_layers:
        return f"{layer} (output of the last block)"
    return f"{layer} (entering block {layer})"


def param_text(value: Any) -> str:
    """A parameter value as the status line and legend show it."""
    return "all" if value == ALL else str(value)


def _fit(spec: Spec, values: np.ndarray, info: ModelInfo, skip_first: bool, kind: str | None = None,
         unit: str | None = None) -> Fitted:
    kind = kind or spec.scale
    top = math.log2(max(info.vocab_size, 2)) if kind == "bits" else math.log10(max(info.vocab_size, 2))
    return fit_scale(kind, values, spec.unit if unit is None else unit, skip_first=skip_first, top=top)


def _panel(*parts: RenderableType | None) -> RenderableType | None:
    kept = [p for p in parts if p is not None]
    return Group(*kept) if kept else None


def _title(text: str) -> Text:
    return Text(text, style=Style(bold=True))


def _rows_labels(count: int, first: int = 0) -> list[str]:
    return [str(first + r) for r in range(count)]


# ---------------------------------------------------------------- one function per result type


def _lens(spec, result: Lens, params, ctx) -> HeavyRendering:
    info, n_layers = ctx["info"], result.prob.shape[0] - 1
    layer, quantity = int(params["layer"]), params["quantity"]
    values = result.colour(params)
    kind, unit = ("probability", "") if quantity == "prob" else ("log10_rank", "log10 rank")
    fitted = _fit(spec, values, info, ctx["skip_first"], kind, unit)
    what = "probability" if quantity == "prob" else "log10 of the 1-based rank"
    caption = (f"{what} of each token under the lens at layer {layer_name(layer, n_layers)}: its residual stream "
               f"at the previous position through the final norm and unembedding (layer {n_layers} is the "
               f"model's own distribution)")
    text_of = dict(zip(result.text_ids.tolist(), result.texts))

    def panel(cursor: int, width: int) -> RenderableType | None:
        heat = grid_heatmap(result.grid(params), f"lens {what} of the actual token, layer × token",
                            _rows_labels(n_layers + 1), cursor, width, fitted.scale)
        if cursor >= result.entropy_bits.shape[1] or not np.isfinite(result.entropy_bits[:, cursor]).any():
            return _panel(heat, Text("lens at the cursor: computing…", style=Style(italic=True)))
        rows = []
        for l in range(n_layers + 1):
            tops = "  ".join(f"{text_of.get(int(t), '?')} {p:.3f}"
                             for t, p in zip(result.top_ids[l, cursor], result.top_probs[l, cursor]) if t >= 0)
            rows.append((layer_name(l, n_layers), number(float(result.entropy_bits[l, cursor]), 3),
                         number(float(result.kl_bits[l, cursor]), 3), tops or "…"))
        table = rich_table(("layer", "entropy bits", "KL(final‖layer) bits", f"top {result.top_ids.shape[-1]}"), rows)
        return _panel(heat, _title(f"lens at the cursor (token {cursor}): next-token distribution per layer"), table)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note, "the first token has no prefix")


def _attention(spec, result: Attention, params, ctx) -> HeavyRendering:
    info, texts = ctx["info"], ctx["texts"]
    n_layers, n_heads = result.weights.shape[0], result.weights.shape[1]
    layer, head, how = params["layer"], params["head"], params["aggregate"]
    values = result.colour(params)
    fitted = _fit(spec, values, info, ctx["skip_first"], "fitted" if ctx["skip_first"] else "probability", "")
    over = (f"{'all ' + str(n_layers) + ' layers' if layer == ALL else 'layer ' + str(layer)} × "
            f"{'all ' + str(n_heads) + ' heads' if head == ALL else 'head ' + str(head)}")
    caption = f"{how} over {over} of the attention weight from the cursor's query to each token up to it"

    def panel(cursor: int, width: int) -> RenderableType | None:
        order = np.argsort(-np.nan_to_num(values, nan=-1.0), kind="stable")[:TOP]
        top = rich_table(("position", "token", "weight"),
                         [(str(int(i)), texts[i] if i < len(texts) else "?", f"{values[i]:.4f}") for i in order], (1,))
        per_layer = result.picked(ALL, head).mean(1)  # (L, cursor+1)
        heat = grid_heatmap(per_layer, f"attention from the cursor, {'mean over heads' if head == ALL else 'head ' + str(head)}, "
                            "layer × token", _rows_labels(n_layers), cursor, width,
                            fit_scale("probability", per_layer, "").scale)
        entropy = rich_table(("layer", *(f"h{h}" for h in range(n_heads))),
                             [(str(l), *(f"{result.entropy_bits[l, h]:.2f}" for h in range(n_heads))) for l in range(n_layers)])
        return _panel(heat, _title(f"most attended tokens ({how} over {over})"), top,
                      _title("entropy (bits) of each head's attention row at the cursor"), entropy)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note, "after the cursor: not attended")


HEAD_COLUMNS = ("induction_score", "previous_token_score", "pattern_entropy")  # always shown, besides the sort metric
HEAD_LABELS = {"self_attention_score": "self", "previous_token_score": "prev", "pattern_entropy": "entropy",
               "qk_distance": "|q-k|", "qk_distance_variance": "|q-k| var", "induction_score": "induction",
               "logit_std": "score sd", "top_logit_margin": "margin", "logit_z_score": "score z"}


def _heads(spec, result: HeadMetrics, params, ctx) -> HeavyRendering:
    info, texts = ctx["info"], ctx["texts"]
    layer, head, metric = int(params["layer"]), int(params["head"]), params["metric"]
    values = result.colour(params)
    fitted = _fit(spec, values, info, ctx["skip_first"], "fitted" if ctx["skip_first"] else "probability", "")
    caption = f"layer {layer} head {head}: attention from the cursor's query to each token up to it"
    columns = tuple(dict.fromkeys((metric, *HEAD_COLUMNS)))

    def panel(cursor: int, width: int) -> RenderableType | None:
        order = np.argsort(-np.nan_to_num(values, nan=-1.0), kind="stable")[:TOP]
        top = rich_table(("position", "token", "weight"),
                         [(str(int(i)), texts[i] if i < len(texts) else "?", f"{values[i]:.4f}") for i in order], (1,))
        rows = []
        for l, h in result.ranked(metric)[: 2 * TOP]:
            marks = " ".join(m for m, on in (("ind", result.induction[l, h]), ("prev", result.previous[l, h])) if on)
            picked = "▸" if (l, h) == (layer, head) else ""
            corpus = () if result.corpus is None else (number(float(result.corpus[result.names.index(metric), l, h])),)
            rows.append((picked + str(l), str(h), marks, *(number(float(result.values[result.names.index(c), l, h]))
                                                            for c in columns), *corpus))
        beside = () if result.corpus is None else (f"{HEAD_LABELS.get(metric, metric)} (corpus)",)
        table = rich_table(("layer", "head", "marks", *(HEAD_LABELS.get(c, c) for c in columns), *beside), rows)
        return _panel(_title(f"heads over the prompt by {metric} (m: another metric; marks: ind = induction "
                             "head, prev = previous-token head)"), table,
                      _title(f"most attended from the cursor, layer {layer} head {head}"), top)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note, "after the cursor: not attended")


SPACE_WORDS = {"raw": "raw residual stream", "normed": "residual stream through the final norm"}


def _grid(spec, result: LayerGrid, params, ctx) -> HeavyRendering:
    info = ctx["info"]
    rows = result.values.shape[0]
    layer = int(params["layer"])
    values = result.colour(params)
    fitted = _fit(spec, values, info, ctx["skip_first"])
    last = result.first + rows - 1
    name = layer_name(layer, last) if rows == info.n_layers + 1 else str(layer)
    space = SPACE_WORDS.get(params.get("space", ""), "")
    if spec.name == "similarity":
        caption = f"cosine of each token's state to the cursor's at layer {name}, both in the {space}"
    elif spec.name == "hidden_similarity":
        caption = (f"cosine of each token's state at layer {name} to its own state at layer {last}, "
                   f"both in the {space}")
    else:
        caption = f"{spec.title}{', ' + spec.unit if spec.unit else ''} at layer {name}"

    def panel(cursor: int, width: int) -> RenderableType | None:
        return grid_heatmap(result.values, f"{spec.title}, layer × token", _rows_labels(rows, result.first),
                            cursor, width, _fit(spec, result.values[:, 1:] if ctx["skip_first"] else result.values,
                                                info, False).scale)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note)


def _residual(spec, result: Residual, params, ctx) -> HeavyRendering:
    info = ctx["info"]
    n_layers = result.norms.shape[0] - 1
    layer = int(params["layer"])
    values = result.colour(params)
    fitted = _fit(spec, values, info, ctx["skip_first"])
    caption = f"L2 norm of the raw residual stream (before any norm) at layer {layer_name(layer, n_layers)}"

    def panel(cursor: int, width: int) -> RenderableType | None:
        grid = result.norms[:, 1:] if ctx["skip_first"] else result.norms
        heat = grid_heatmap(result.norms, "residual norm, layer × token", _rows_labels(n_layers + 1), cursor, width,
                            fit_scale("fitted", grid, "").scale)
        rows = [(str(l), number(float(result.attn_norm[l])), number(float(result.mlp_norm[l])),
                 number(float(result.delta_norm[l])), f"{float(result.max_error[l]):.1e}") for l in range(n_layers)]
        table = rich_table(("block", "|attn_out|", "|mlp_out|", "|Δresid|", "max|attn+mlp−Δ|"), rows)
        return _panel(heat, _title(f"block updates at the cursor (token {ctx['cursor']})"), table)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note)


METHOD_WORDS = {
    "saliency": "saliency |∂f/∂e_i| (nats per unit of embedding)",
    "input_x_gradient": "input × gradient Σ_d e_i·∂f/∂e_i (nats)",
    "integrated_gradients": "integrated gradients (nats; they add up to f(input) − f(baseline))",
}


def completeness_line(result: Attribution, texts_of: Callable[[int], str]) -> Text | None:
    """The integrated-gradients completeness check, in words, or None for other methods."""
    done = result.completeness
    if done is None:
        return None
    diff = done.f_input - done.f_baseline
    base = f"the embedding of {texts_of(done.baseline_token)!r}" if done.baseline_token is not None else "the baseline"
    line = Text(no_wrap=False)
    line.append(f"completeness: Σ attributions = {done.total:.4f} vs f(input) − f(baseline) = {diff:.4f} nats "
                f"(gap {done.gap:+.2e}, {abs(done.gap) / max(abs(diff), 1e-12):.1%}) after {done.steps} path points")
    if done.converged:
        line.append(f"; within {done.tolerance:.0%}")
    else:
        line.append(f"; NOT CONVERGED: the gap is above {done.tolerance:.0%}, read the scores with care",
                    Style(bold=True, color="red"))
    if done.baseline_token is not None:
        line.append(f"; baseline: {base} at every position")
    line.append("; path: the first token moves first (its score is that exact change of f), then the others "
                "together in a straight line")
    return line


def _attribution(spec, result: Attribution, params, ctx) -> HeavyRendering:
    info, texts, cursor = ctx["info"], ctx["texts"], ctx["cursor"]
    values = result.colour(params)
    kind = "fitted" if result.method == "saliency" else "signed"
    fitted = _fit(spec, values, info, ctx["skip_first"], kind, "nats" if result.method != "saliency" else "")
    if not math.isfinite(result.f_input):
        caption = "attribution: the first token has no prefix to attribute to"
    else:
        caption = (f"{METHOD_WORDS[result.method]} of f = log p(token {cursor} | tokens before it) = "
                   f"{result.f_input:.4f} nats (p = {math.exp(result.f_input):.4g}) to each earlier token's input embedding")
        if result.completeness is not None and result.completeness.baseline_token is None:
            caption += f"; baseline: the {params.get('baseline', 'mean')} embedding at every position"

    def panel(_cursor: int, width: int) -> RenderableType | None:
        scores = values[:cursor]
        if not scores.size:
            return None
        order = np.argsort(-np.abs(np.nan_to_num(scores)), kind="stable")[:TOP]
        table = rich_table(("position", "token", "score"),
                           [(str(int(i)), texts[i] if i < len(texts) else "?", f"{scores[i]:+.4g}") for i in order], (1,))
        line = completeness_line(result, lambda t: ctx["token_text"](t))
        return _panel(line, _title(f"largest |attribution| ({result.method})"), table)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note,
                          "the cursor and what follows are not inputs of f")


def _features(spec, result: Features, params, ctx) -> HeavyRendering:
    info = ctx["info"]
    rank = int(params["rank"])
    values = result.colour(params)
    fitted = _fit(spec, values, info, ctx["skip_first"])
    kind = f"transcoder {result.hook}->{result.output_hook}" if result.output_hook else f"SAE on {result.hook}"
    if rank <= len(result.ids):
        feature = int(result.ids[rank - 1])
        label = f" ({result.labels[rank - 1]})" if result.labels[rank - 1] else ""
        caption = (f"activation of feature {feature}{label}, number {rank} at the cursor, of {result.dictionary}: "
                   f"{kind} at layer {result.layer}, {result.architecture}, {result.n_features} features; "
                   f"{result.n_active} active at the cursor")
    else:
        caption = f"{result.dictionary}: only {len(result.ids)} features are active at the cursor (rank {rank} has none)"

    def panel(_cursor: int, width: int) -> RenderableType | None:
        rows = [(str(int(f)), f"{float(a):.3f}", result.labels[i], "●" if i == rank - 1 else "")
                for i, (f, a) in enumerate(zip(result.ids, result.at_cursor))]
        table = rich_table(("feature", "activation", "label", "shown"), rows or [("-", "no feature active", "", "")])
        return _panel(_title(f"top features at the cursor ({result.dictionary})"), table)

    return HeavyRendering(values, fitted.scale, caption, panel, fitted.note)


RENDERERS: dict[type, Callable[..., HeavyRendering]] = {
    Lens: _lens, Attention: _attention, LayerGrid: _grid, Residual: _residual, HeadMetrics: _heads,
    Attribution: _attribution, Features: _features,
}


def render_result(spec: Spec, result: Any, params: Mapping[str, Any], *, info: ModelInfo, texts: Sequence[str],
                  cursor: int, skip_first: bool, token_text: Callable[[int], str] = lambda t: str(t)) -> HeavyRendering:
    """A result as drawn for the given (selecting) parameters; nothing is computed."""
    renderer = RENDERERS.get(type(result))
    if renderer is None:
        raise TypeError(f"no renderer for a {type(result).__name__} result of {spec.name!r}")
    ctx = {"info": info, "texts": list(texts), "cursor": cursor, "skip_first": skip_first, "token_text": token_text}
    return renderer(spec, result, params, ctx)
