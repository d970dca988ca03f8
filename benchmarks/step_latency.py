"""Per-key latency of the engine on the bundled model, against a bare KV-cached decode step.

For prompts of 32, 128, 512 and 1024 tokens it times, as medians:
  decode      a bare single-token forward over a DynamicCache, SDPA, plain transformers model
  recompute   one forward over the whole prompt, no cache (what the earlier tool did per key)
  append_table  engine.append with the lens off: the next-token table ready
  append_all    engine.append then engine.fill_lens: every per-position result, the per-layer lens
                included (a step returns its table first; the lens is filled after)
                (both: successive appends, as when stepping forward)
  reappend_all  engine.append of the token just popped, lens on: copied back from the prefix store
                (the pop kept its rows and record there), no forward
  pop         engine.pop (a cache crop; the removed position's rows go to the prefix store)
  switch      engine.set_tokens to a branch sharing all but the last 8 tokens, and back: the first
                switch runs the 8 tokens, later ones copy them back from the prefix store (median)
and prints the ratios to decode. The last line is a one-line summary.

Run: ./dev.sh bench step_latency   (or .venv/bin/python benchmarks/step_latency.py [--lengths 32,128])
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from baseline import bare_model, decode_ms, median_ms, prompt_ids
from token_explorer.engine import Engine
from token_explorer.model.loading import load_model

def bench_length(n: int, bare, engines: dict[str, Engine], reps: int) -> dict[str, float]:
    plain, full = engines["table"], engines["all"]
    ids = prompt_ids(plain.tokenize, n, reps + 1)
    prompt, extra, steps = ids[:n], ids[n], ids[n : n + reps]
    row: dict[str, float] = {}

    row["decode"] = decode_ms(bare, prompt, extra, reps)
    with torch.no_grad():
        row["recompute"] = median_ms(lambda: bare(torch.tensor([prompt + [extra]])), max(3, reps // 5))

    for key, engine in (("append_table", plain), ("append_all", full)):
        engine.set_tokens(prompt)
        engine.fill_lens()  # the prefill's lens, once (not timed)
        engine.append(extra)  # warm-up
        engine.pop()
        times, pops = [], []
        for token in steps:  # stepping forward: each append on top of the previous one
            start = time.perf_counter()
            engine.append(token)
            if engine is full:
                engine.fill_lens()  # the step returns its table first; the lens is filled after
            times.append((time.perf_counter() - start) * 1000)
        for _ in steps:
            start = time.perf_counter()
            engine.pop()
            pops.append((time.perf_counter() - start) * 1000)
        row[key] = statistics.median(times)
        if key == "append_all":
            row["pop"] = statistics.median(pops)
            again = []
            for _ in range(reps):
                engine.append(extra)
                engine.pop()
                start = time.perf_counter()
                engine.append(extra)
                engine.fill_lens()
                again.append((time.perf_counter() - start) * 1000)
                engine.pop()
            row["reappend_all"] = statistics.median(again)

    branch = prompt[:-8] + list(reversed(prompt[-8:]))
    full.set_tokens(prompt)
    full.fill_lens()
    switches = []
    for _ in range(max(3, reps // 3)):
        for target in (branch, prompt):
            start = time.perf_counter()
            full.set_tokens(target)
            full.fill_lens()
            switches.append((time.perf_counter() - start) * 1000)
    row["switch"] = statistics.median(switches)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="32,128,512,1024")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    bare = bare_model(args.device)
    engines = {
        "table": Engine(load_model("bundled", device=args.device), lens=False),
        "all": Engine(load_model("bundled", device=args.device), lens=True),
    }
    print(f"bundled SmolLM2-135M-Instruct on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.reps} (ms)")
    header = ["tokens", "decode", "recompute", "append_table", "append_all", "reappend_all", "pop", "switch"]
    print("  ".join(f"{h:>12}" for h in header) + "   ratios to decode: table / all / reappend / recompute / switch")
    rows = {}
    for n in lengths:
        row = bench_length(n, bare, engines, args.reps)
        rows[n] = row
        d = row["decode"]
        print("  ".join(f"{v:>12.2f}" for v in [n] + [row[h] for h in header[1:]])
              + f"   {row['append_table'] / d:.2f} / {row['append_all'] / d:.2f} / {row['reappend_all'] / d:.2f} / "
              f"{row['recompute'] / d:.1f} / {row['switch'] / d:.2f}")
    n = max(lengths)
    r = rows[n]
    print(f"append_table/decode@{n}={r['append_table'] / r['decode']:.2f} "
          f"append_all/decode@{n}={r['append_all'] / r['decode']:.2f} pop_ms@{n}={r['pop']:.2f} "
          f"recompute/decode@{n}={r['recompute'] / r['decode']:.1f} switch/decode@{n}={r['switch'] / r['decode']:.2f}")


if __name__ == "__main__":
    main()
