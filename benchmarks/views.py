"""Cold latency of each inner view on the bundled model, against a bare KV-cached decode step.

For prompts of 128 and 512 tokens (already stepped into the engine) it times, as medians of a few
runs, ``engine.analyze(view, tokens, last position, params)`` with a result cache that stores nothing
(no memory items, no disk), so every run is cold, and the decode step of
``step_latency.py`` (one single-token forward over a DynamicCache, SDPA, plain transformers model).
It prints each view's time and its ratio to decode; the last line is a one-line summary.

Integrated gradients runs with ``--ig-steps`` steps (default 4, far fewer than the engine's default
32, to keep the run short; its time grows about linearly with steps). A view whose first run takes
more than 5 s is timed once instead of ``--reps`` times.

Run: .venv/bin/python benchmarks/views.py [--lengths 128,512] [--reps 3] [--ig-steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from baseline import bare_model, decode_ms, prompt_ids
from token_explorer.cache import ResultCache
from token_explorer.engine import Engine
from token_explorer.model.loading import load_model

def cases(ig_steps: int) -> list[tuple[str, str, dict]]:
    """(label, analysis, params) of every timed view."""
    return [
        ("lens", "lens", {}),
        ("attention", "attention", {}),
        ("similarity", "similarity", {}),
        ("hidden_sim", "hidden_similarity", {}),
        ("residual", "residual", {}),
        ("saliency", "attribution", {"method": "saliency"}),
        ("input_x_grad", "attribution", {"method": "input_x_gradient"}),
        (f"ig{ig_steps}", "attribution", {"method": "integrated_gradients", "steps": ig_steps}),
    ]


SLOW_MS = 5000.0  # a view slower than this once is timed once


def view_ms(engine: Engine, tokens: list[int], name: str, params: dict, reps: int) -> tuple[float, int]:
    """Median ms of a cold ``engine.analyze`` at the last position, and how many runs it took."""
    times: list[float] = []
    while len(times) < reps and not (times and times[0] > SLOW_MS):
        start = time.perf_counter()
        engine.analyze(name, tokens, len(tokens) - 1, params)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ig-steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    bare = bare_model(args.device)
    engine = Engine(load_model("bundled", device=args.device), lens=True)
    engine.results = ResultCache(None, memory_items=0, disk_limit_mb=0)  # stores nothing: every run is cold
    timed = cases(args.ig_steps)
    print(f"bundled SmolLM2-135M-Instruct on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, cold views at the last position, median of up to {args.reps} (ms); "
          f"integrated gradients with {args.ig_steps} steps")
    print(f"{'tokens':>6}  {'view':>12}  {'ms':>10}  {'x decode':>9}")
    ratios: dict[int, dict[str, float]] = {}
    for n in lengths:
        ids = prompt_ids(engine.tokenize, n)
        prompt = ids[:n]
        engine.set_tokens(prompt)
        decode = decode_ms(bare, prompt, ids[n], max(5, 3 * args.reps))
        print(f"{n:>6}  {'decode':>12}  {decode:>10.2f}  {1.0:>9.2f}")
        ratios[n] = {}
        for label, name, params in timed:
            ms, runs = view_ms(engine, prompt, name, params, args.reps)
            ratios[n][label] = ms / decode
            print(f"{n:>6}  {label:>12}  {ms:>10.2f}  {ms / decode:>9.1f}  ({runs} run{'s' * (runs > 1)})")
    n = max(lengths)
    print(" ".join(f"{label}/decode@{n}={ratios[n][label]:.1f}" for label, _, _ in timed))


if __name__ == "__main__":
    main()
