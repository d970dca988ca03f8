"""Every inner view on the bundled model, against a bare KV-cached decode step measured in the same run.

For prompts of 128 and 512 tokens, each just loaded into the engine (one prefill, so the lens
records are deferred as when a file is opened) and with a result cache that stores nothing, it
times, as ratios to the decode step of ``step_latency.py``:

- first: the first useful screen, cold: the first partial result (the chosen layer of the
  positions on screen, about 200 tokens around the cursor as on an 80x24 terminal) or, for views
  without one, the full result;
- full: the whole result (every layer, head, feature);
- step: one parameter step once the result is there. A selecting parameter (layer, head, rank,
  aggregate) is a selection plus the renderer (``tui.findings.render_result``), no model work;
  a computing one (the similarity space) is a new analysis.

Every analysis the engine declares is covered: those not listed in ``CASES`` (a newcomer's view)
get a row of their own, stepping their first layer or head/feature parameter; a view the engine
cannot offer here (no SAE configured) is listed as unavailable. Gradient methods are timed at 128
tokens only unless ``--ig-lengths`` says otherwise. Last, with integrated gradients running at the
longest length, an append is timed from the call to its snapshot: a step cancels the analysis and
never waits on it (``--no-append`` leaves it out).

The last line is a summary: per length, each view's first screen as a ratio to decode
(``first/decode@512: lens=… attention=…``), the worst one that is not a gradient method, and the
append during integrated gradients.

Run: .venv/bin/python benchmarks/views.py [--lengths 128,512] [--ig-lengths 128] [--reps 3]
     [--views lens,attention] (labels as printed; quicker runs)
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from baseline import bare_model, decode_ms, prompt_ids
from token_explorer.analyses.declare import ALL
from token_explorer.cache import ResultCache
from token_explorer.engine import Engine
from token_explorer.errors import Cancelled
from token_explorer.model.loading import load_model
from token_explorer.tui.findings import render_result

SCREEN = 200  # tokens on screen around the cursor (80x24)
# (label, analysis, params, the parameter a step changes and its new value)
CASES = [
    ("lens", "lens", {}, ("layer", 15)),
    ("attention", "attention", {}, ("head", 3)),
    ("similarity", "similarity", {}, ("layer", 15)),
    ("sim:space", "similarity", {}, ("space", "normed")),
    ("hidden_sim", "hidden_similarity", {}, ("layer", 20)),
    ("residual", "residual", {}, ("layer", 20)),
    ("update", "update", {}, ("layer", 20)),
    ("sae", "sae", {}, ("rank", 2)),
]
GRADIENTS = {"saliency", "input_x_grad", "int_grad"}
GRADIENT_CASES = [
    ("saliency", "attribution", {"method": "saliency"}, None),
    ("input_x_grad", "attribution", {"method": "input_x_gradient"}, None),
    ("int_grad", "attribution", {"method": "integrated_gradients"}, None),
]


def declared_cases(engine: Engine) -> list[tuple[str, str, dict, tuple[str, object] | None]]:
    """A case for every declared analysis that ``CASES`` does not list: its first layer or
    head/feature parameter stepped once from its default."""
    listed = {name for _, name, _, _ in CASES + GRADIENT_CASES}
    out = []
    for name, spec in engine.specs().items():
        if name in listed:
            continue
        param = next((p for p in spec.params if p.role in ("layer", "pick")), None)
        change = None
        if param is not None:
            default = spec.defaults(engine.info)[param.name]
            change = (param.name, param.step(default, 1, engine.info))
        out.append((name, name, {}, change))
    return out


def cold(engine: Engine, prompt: list[int], name: str, params: dict) -> tuple[float, float, object]:
    """(ms to the first useful screen, ms to the full result, the result) on a prompt just loaded."""
    engine.set_tokens(prompt[:1])
    engine.set_tokens(prompt)  # one prefill: the lens records are left out, as after opening a file
    n = len(prompt)
    first: list[float] = []
    start = time.perf_counter()
    result = engine.analyze(name, prompt, n - 1, params, window=(max(0, n - SCREEN), n),
                            partial=lambda _r: first.append(time.perf_counter()) if not first else None)
    full = (time.perf_counter() - start) * 1000
    return ((first[0] - start) * 1000 if first else full), full, result


def step_ms(engine: Engine, prompt: list[int], name: str, params: dict, change: tuple[str, object]) -> float:
    """ms of one parameter step once the result exists: selection + rendering, or a new analysis."""
    spec = engine.specs()[name]
    key, value = change
    stepped = spec.resolve({**params, key: value}, engine.info)
    param = next(p for p in spec.params if p.name == key)
    texts = engine.token_texts(prompt)
    start = time.perf_counter()
    if param.computes:
        engine.analyze(name, prompt, len(prompt) - 1, stepped)
    else:
        result = engine.analyze(name, prompt, len(prompt) - 1, stepped)  # the cached full result
        rendering = render_result(spec, result, stepped, info=engine.info, texts=texts, cursor=len(prompt) - 1,
                                  skip_first=False)
        rendering.panel(len(prompt) - 1, 76)
    return (time.perf_counter() - start) * 1000


def append_during_ig(engine: Engine, prompt: list[int], token: int) -> tuple[float, str]:
    """ms of an append while integrated gradients runs on ``prompt``, and how the analysis ended."""
    engine.set_tokens(prompt)
    running, outcome = threading.Event(), {}

    def run() -> None:
        try:
            engine.analyze("attribution", prompt, len(prompt) - 1, {"method": "integrated_gradients"},
                           progress=lambda done, total: running.set())
            outcome["end"] = "finished"
        except Cancelled:
            outcome["end"] = "cancelled"

    worker = threading.Thread(target=run)
    worker.start()
    running.wait()
    time.sleep(0.5)  # well inside its forward and backward passes
    start = time.perf_counter()
    engine.append(token)
    ms = (time.perf_counter() - start) * 1000
    worker.join()
    return ms, outcome.get("end", "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--ig-lengths", default="128")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--views", default="", help="only these view labels (comma-separated)")
    parser.add_argument("--no-append", action="store_true", help="leave out the append during integrated gradients")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    ig_lengths = {int(x) for x in args.ig_lengths.split(",") if x}
    only = {x for x in args.views.split(",") if x}

    bare = bare_model(args.device)
    engine = Engine(load_model("bundled", device=args.device), lens=True)
    engine.results = ResultCache(None, memory_items=64, disk_limit_mb=0)
    offered = engine.analyses()
    every = CASES + declared_cases(engine)
    unknown = only - {label for label, _, _, _ in every + GRADIENT_CASES}
    if unknown:
        parser.error(f"unknown view label(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(label for label, _, _, _ in every + GRADIENT_CASES)}")
    print(f"bundled SmolLM2-135M-Instruct on {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"cold views at the last position of a prompt just loaded, first screen = {SCREEN} tokens; ratios to decode")
    print(f"{'tokens':>6}  {'view':>12}  {'first ms':>9}  {'first x':>8}  {'full ms':>9}  {'full x':>7}  "
          f"{'step ms':>8}  {'step x':>7}  step")
    summary = []
    for n in lengths:
        ids = prompt_ids(engine.tokenize, n + 1)
        prompt = ids[:n]
        decode = decode_ms(bare, prompt, ids[n], max(5, 3 * args.reps))
        print(f"{n:>6}  {'decode':>12}  {decode:>9.2f}  {1.0:>8.2f}")
        cases = every + (GRADIENT_CASES if n in ig_lengths else GRADIENT_CASES[:2])
        firsts: dict[str, float] = {}
        for label, name, params, change in cases:
            if only and label not in only:
                continue
            if offered.get(name, "not declared") is not None:
                print(f"{n:>6}  {label:>12}  unavailable: {offered.get(name, 'not declared')}", flush=True)
                continue
            engine.results = ResultCache(None, memory_items=64, disk_limit_mb=0)  # cold
            first, full, _ = cold(engine, prompt, name, params)
            firsts[label] = first / decode
            line = f"{n:>6}  {label:>12}  {first:>9.1f}  {first / decode:>8.2f}  {full:>9.1f}  {full / decode:>7.2f}"
            if change is not None:
                steps = [step_ms(engine, prompt, name, params, change) for _ in range(args.reps)]
                ms = statistics.median(steps)
                kind = "computes" if next(p for p in engine.specs()[name].params if p.name == change[0]).computes \
                    else "selects"
                value = "all" if change[1] == ALL else change[1]
                line += f"  {ms:>8.2f}  {ms / decode:>7.3f}  {change[0]}={value} ({kind})"
            print(line, flush=True)
        plain = {k: v for k, v in firsts.items() if k not in GRADIENTS}
        worst = max(plain, key=plain.get) if plain else None
        summary.append(f"first/decode@{n}: " + " ".join(f"{k}={v:.2f}" for k, v in firsts.items())
                       + (f" worst_non_gradient={worst}:{plain[worst]:.2f}" if worst else ""))
    if not args.no_append:
        n = max(lengths)
        ids = prompt_ids(engine.tokenize, n + 1)
        decode = decode_ms(bare, ids[:n], ids[n], max(5, 3 * args.reps))
        ms, end = append_during_ig(engine, ids[:n], ids[n])
        print(f"append at {n} tokens while integrated gradients runs: {ms:.1f} ms = {ms / decode:.2f} x decode "
              f"(the analysis was {end})")
        summary.append(f"append_during_ig/decode@{n}={ms / decode:.2f}")
    print("; ".join(summary))


if __name__ == "__main__":
    main()
