"""The trace's PNG plots, drawn headless with matplotlib's Agg canvas (no pyplot, no display)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..printable import printable
from .files import write_atomic
from .run import TraceResult

TokenText = Callable[[int], str]


def _label(text: str) -> str:
    """A token as a plot label: controls escaped, spaces shown, no mathtext."""
    return printable(text).replace(" ", "·").replace("$", r"\$") or "∅"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, lambda f: f.write(buf.getvalue()))
    return path


def _lines(result: TraceResult, field: str, title: str, ylabel: str, path: Path, log: bool = False) -> Path:
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    steps = [s.step for s in result.steps]
    for source in ("raw", "processed"):
        ax.plot(steps, [getattr(getattr(s, source), field) for s in result.steps], marker=".", label=source)
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    ax.legend()
    return _save(fig, path)


def adaptive_heatmap(result: TraceResult, max_k: int, path: Path) -> Path:
    """Probability of each kept candidate (rows: candidate rank, columns: step), raw and processed;
    cells past a step's adaptive k are blank."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    for row, source in enumerate(("raw", "processed")):
        grid = np.full((max_k, len(result.steps)), np.nan)
        for j, s in enumerate(result.steps):
            probs = getattr(s, source).probs
            grid[: len(probs), j] = probs
        ax = fig.add_subplot(2, 1, row + 1)
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest", origin="upper")
        ax.set(title=f"{source} distribution: probability of the adaptive top-k candidates",
               xlabel="step", ylabel="candidate rank")
        fig.colorbar(im, ax=ax, label="probability")
    return _save(fig, path)


def raw_vs_processed(result: TraceResult, path: Path) -> Path:
    """Adaptive k and the mass it covers, raw against processed."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    steps = [s.step for s in result.steps]
    for row, (field, ylabel) in enumerate((("k_used", "adaptive k"), ("top_mass_used", "mass of the k kept"))):
        ax = fig.add_subplot(2, 1, row + 1)
        for source in ("raw", "processed"):
            ax.plot(steps, [getattr(getattr(s, source), field) for s in result.steps], marker=".", label=source)
        ax.set(xlabel="step", ylabel=ylabel)
        ax.legend()
    fig.suptitle("raw (temperature-scaled) vs processed (after the sampling filters)")
    return _save(fig, path)


def selected_rank_heatmap(result: TraceResult, path: Path) -> Path:
    """log10 rank of each step's chosen token under the logit lens of each captured layer."""
    steps = [s for s in result.steps if s.lens is not None]
    layers = steps[0].lens.layers
    grid = np.array([s.lens.selected_rank for s in steps], dtype=np.float64).T  # (n_layers, steps)
    fig = Figure(figsize=(9, max(3, 0.25 * len(layers) + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.log10(grid), aspect="auto", cmap="magma_r", interpolation="nearest", origin="lower")
    ax.set_yticks(range(len(layers)), [str(l) for l in layers])
    ax.set(title="rank of the chosen token under the logit lens", xlabel="step", ylabel="layer (after the block)")
    fig.colorbar(im, ax=ax, label="log10 rank (0 = top)")
    return _save(fig, path)


def attention_grid(result: TraceResult, path: Path) -> Path:
    """The first step's attention entropy per layer and head."""
    a = result.steps[0].attention
    size = (max(4, 0.5 * a.entropy.shape[1] + 2), max(3, 0.25 * len(a.layers) + 1.5))
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(a.entropy, aspect="auto", cmap="viridis", interpolation="nearest", origin="lower")
    ax.set_yticks(range(len(a.layers)), [str(l) for l in a.layers])
    ax.set(title="step 0: attention entropy of each head", xlabel="head", ylabel="layer")
    fig.colorbar(im, ax=ax, label="entropy (nats)")
    return _save(fig, path)


def final_step_bars(result: TraceResult, text: TokenText, path: Path, top: int = 15) -> Path:
    """The last step's candidates, raw and processed."""
    last = result.steps[-1]
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    for col, source in enumerate(("raw", "processed")):
        p = getattr(last, source)
        n = min(top, len(p.ids))
        ax = fig.add_subplot(1, 2, col + 1)
        ax.barh(range(n)[::-1], p.probs[:n], color="tab:blue" if source == "raw" else "tab:orange")
        ax.set_yticks(range(n)[::-1], [_label(text(int(i))) for i in p.ids[:n]])
        ax.set(title=f"step {last.step}, {source}", xlabel="probability")
    fig.suptitle(f"last step: top candidates (chosen: {_label(text(last.token_id))})")
    return _save(fig, path)


def prompt_attention(result: TraceResult, text: TokenText, path: Path, head: int | None = None) -> Path:
    """The prompt's attention in the last layer: query position (rows) over key position (columns),
    heads averaged, or one head."""
    weights = result.prompt_attention
    grid = weights.mean(0) if head is None else weights[head]
    n = grid.shape[0]
    size = min(12, 3 + 0.12 * n)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", vmin=0, interpolation="nearest")
    if n <= 48:
        labels = [_label(text(i)) for i in result.prompt_ids]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    which = "heads averaged" if head is None else f"head {head}"
    ax.set(title=f"prompt attention, layer {result.prompt_attention_layer}, {which}", xlabel="key position",
           ylabel="query position")
    fig.colorbar(im, ax=ax, label="weight")
    return _save(fig, path)


def all_plots(result: TraceResult, out: Path, text: TokenText, max_k: int, heads: tuple[int, ...]) -> list[Path]:
    """Every plot the trace has data for; returns the files written."""
    if not result.steps:
        return []
    files = [
        adaptive_heatmap(result, max_k, out / "adaptive_heatmap.png"),
        _lines(result, "entropy", "entropy of the next-token distribution", "nats", out / "entropy.png"),
        _lines(result, "selected_prob", "probability of the chosen token", "probability",
               out / "selected_probability.png"),
        raw_vs_processed(result, out / "raw_vs_processed.png"),
        final_step_bars(result, text, out / "final_step_token_probs.png"),
    ]
    if result.steps[0].lens is not None:
        files.append(selected_rank_heatmap(result, out / "selected_rank_heatmap.png"))
    if result.steps[0].attention is not None:
        files.append(attention_grid(result, out / "attention_layer_head_grid.png"))
    if result.prompt_attention is not None:
        files.append(prompt_attention(result, text, out / "prompt_attention_heatmap.png"))
        files += [prompt_attention(result, text, out / f"prompt_attention_head{h}.png", h) for h in heads]
    return files
