"""Switching between two branches on the bundled model, against a bare KV-cached decode step.

At a prompt of N tokens (default 1024) two branches share all but their last 8 tokens. Both are
visited once (set_tokens, then fill_lens: every per-position record, the lens included); then the
engine switches back and forth between them (set_tokens + fill_lens, as the explorer does on a
branch key), timed as medians:
  decode      a bare single-token forward over a DynamicCache holding the prompt, timed between
              the switches (interleaved, so that both see the same load on a shared machine)
  switch      with the prefix store (the default budget): the differing tail is copied back
  recompute   with the store off ([store] budget_mib = 0): the differing tail runs again
and prints each as a ratio to decode, and the memory the store holds per 1000 positions (MiB),
measured from the rows it holds after the switches. Then, once each (not a median):
  cut         set_tokens to the first N - 1000 tokens: a crop that hands 1000 positions to the store
  back        set_tokens to the whole prompt again: those positions copied back
The last line is a one-line summary.

Run: ./dev.sh bench branch_switch   (or .venv/bin/python benchmarks/branch_switch.py [--tokens 1024])
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable

import torch
from baseline import bare_model, decode_step, prompt_ids, timed
from token_explorer.config import Settings, StoreSettings
from token_explorer.engine import Engine
from token_explorer.model.loading import load_model

DIFFER = 8  # tokens at the end that differ between the two branches


def switch_ms(engine: Engine, branches: tuple[list[int], list[int]], reps: int,
              decode: Callable[[], float]) -> tuple[float, float]:
    """Median ms of one switch (set_tokens + fill_lens) after both branches were visited, and the
    median ms of the decode steps timed between the switches (the same load for both)."""
    for target in branches:  # visit both (not timed)
        engine.set_tokens(target)
        engine.fill_lens()
    times, decodes = [], []
    for _ in range(reps):
        for target in branches:
            decodes.append(decode())
            times.append(timed(lambda: (engine.set_tokens(target), engine.fill_lens())))
    return statistics.median(times), statistics.median(decodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    n = args.tokens

    bare = bare_model(args.device)
    loaded = load_model("bundled", device=args.device)
    stored = Engine(loaded, lens=True)
    plain = Engine(loaded, lens=True, settings=dataclasses.replace(Settings(), store=StoreSettings(budget_mib=0)))
    ids = prompt_ids(stored.tokenize, n, DIFFER + 1)
    prompt = ids[:n]
    branch = prompt[:-DIFFER] + ids[n : n + DIFFER]  # the same length, the last 8 tokens differ
    assert branch[-DIFFER:] != prompt[-DIFFER:]

    step = decode_step(bare, prompt, ids[-1])
    switch, decode = switch_ms(stored, (prompt, branch), args.reps, step)
    recompute, decode_plain = switch_ms(plain, (prompt, branch), max(3, args.reps // 3), step)
    store = stored.session.store
    assert store is not None
    per_1000 = store.nbytes / store.positions * 1000 / 2**20
    moved = n - max(1, n - 1000)  # positions the cut hands to the store
    decode_cut = step()
    cut = timed(lambda: (stored.set_tokens(prompt[: n - moved]), stored.fill_lens()))
    back = timed(lambda: (stored.set_tokens(prompt), stored.fill_lens()))
    decode_cut = statistics.median([decode_cut, step(), step()])

    print(f"bundled SmolLM2-135M-Instruct on {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; two branches of {n} tokens differing in the last {DIFFER}")
    print(f"decode     {decode:9.2f} ms   (median of the steps timed between the switches; "
          f"{decode_plain:.2f} between the recomputes, {decode_cut:.2f} around the cut)")
    print(f"switch     {switch:9.2f} ms   {switch / decode:6.3f} x decode   (prefix store, default budget "
          f"{Settings().store.budget_mib} MiB)")
    print(f"recompute  {recompute:9.2f} ms   {recompute / decode_plain:6.3f} x decode   (store off)")
    print(f"store      {store.positions} positions, {store.nbytes / 2**20:.2f} MiB: {per_1000:.1f} MiB per 1000 positions")
    print(f"cut        {cut:9.2f} ms   {cut / decode_cut:6.3f} x decode   ({moved} positions into the store, once)")
    print(f"back       {back:9.2f} ms   {back / decode_cut:6.3f} x decode   (the {moved} positions copied back, once)")
    print(f"switch/decode@{n}={switch / decode:.3f} recompute/decode@{n}={recompute / decode_plain:.2f} "
          f"store_mib_per_1000={per_1000:.1f} cut{moved}/decode={cut / decode_cut:.2f} back{moved}/decode={back / decode_cut:.2f} "
          f"decode_ms={decode:.2f}")


if __name__ == "__main__":
    main()
