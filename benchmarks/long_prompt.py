"""Opening a long prompt: the engine's prefill against a bare chunked prefill of the same tokens.

Prints, for the bundled model on the chosen device, a bare KV-cached decode step (the unit of every
benchmark here), a bare prefill (plain transformers, SDPA, no hooks, chunks of the engine's size,
logits of every position computed as the engine needs them) and ``engine.set_tokens`` of the same
ids, with the ratios between them and the process's peak memory after each.

    flock /tmp/bench.lock python benchmarks/long_prompt.py --tokens 8191
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import DynamicCache

from baseline import bare_model, decode_ms, prompt_ids
from token_explorer.engine import open_engine
from token_explorer.model.session import PREFILL_CHUNK


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_prefill_s(bare: torch.nn.Module, ids: list[int]) -> float:
    """Seconds for a plain chunked prefill of ``ids`` over a DynamicCache, logits kept per chunk only."""
    cache = DynamicCache(config=bare.config)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(ids), PREFILL_CHUNK):
            bare(torch.tensor([ids[i : i + PREFILL_CHUNK]]), past_key_values=cache, use_cache=True).logits.float()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8191)
    args = parser.parse_args()
    bare = bare_model()
    engine = open_engine("bundled", device="cpu", lens=False)
    ids = prompt_ids(engine.tokenize, args.tokens, extra=0)
    step_ms = decode_ms(bare, ids[:512], ids[512], reps=10)
    print(f"decode step at 512 tokens: {step_ms:.1f} ms; peak {peak_mb():.0f} MB", flush=True)
    bare_s = bare_prefill_s(bare, ids)
    print(f"bare prefill of {len(ids)} tokens: {bare_s:.1f} s = {bare_s * 1000 / step_ms:.0f} decode steps; "
          f"peak {peak_mb():.0f} MB", flush=True)
    del bare
    start = time.perf_counter()
    engine.set_tokens(ids)
    engine_s = time.perf_counter() - start
    print(f"engine.set_tokens of {len(ids)} tokens: {engine_s:.1f} s = {engine_s * 1000 / step_ms:.0f} decode steps "
          f"= {engine_s / bare_s:.2f}x the bare prefill; peak {peak_mb():.0f} MB", flush=True)


if __name__ == "__main__":
    main()
