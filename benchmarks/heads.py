"""``token-explorer heads`` on the bundled model against a plain forward over the same tokens.

Sequences of the shipped corpus (``--sequences`` of ``--seq-len`` tokens), every layer and head:
  forward      a plain forward of each sequence (plain transformers model, SDPA, no hooks, no
               cache, last position's logits only, as the head lab runs it)
  heads/pass   the head lab's streaming pass over the same sequences (capture, attention from the
               captured queries and keys, every statistic)
  heads/all    the whole run once the model is loaded: the pass, the repeated-random induction
               diagnostic, the decile picks (and their second read where the corpus is larger than
               30 sequences) and writing the data/ tree
Times come from one process that runs the plain forward before and after the head lab (their mean
is the reference, so load changes hit both alike), per 1000 tokens and as ratios; the bare KV-cached
decode step every benchmark here reports is measured there too. Peak memory comes from two more
processes that load the model the same way, one running the plain forwards and one the whole head
lab: each one's peak resident size from the model loaded to the end (the weights included).

Run: flock /tmp/bench.lock .venv/bin/python benchmarks/heads.py [--sequences 8] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from baseline import bare_model, decode_ms

from token_explorer.heads.corpus import DEFAULT, sequences
from token_explorer.heads.lab import run_lab
from token_explorer.heads.scan import ScanConfig
from token_explorer.heads.tree import write_tree
from token_explorer.model.capture import install_query_capture
from token_explorer.model.family import family_of, sizes
from token_explorer.model.hooks import last_logits_only
from token_explorer.model.loading import load_model


def _peak_mb() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak() -> None:
    """Reset the peak resident size to the current one (Linux), so loading's own peak is left out."""
    Path("/proc/self/clear_refs").write_text("5")


def _forwards(model: torch.nn.Module, seqs: list[list[int]]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for ids in seqs:
            model(torch.tensor([ids]), use_cache=False, **last_logits_only(model))
    return time.perf_counter() - start


def _lab(loaded, seqs: list[list[int]], seq_len: int, marks: list[float]) -> None:
    model = loaded.model
    family = family_of(model)
    assert family is not None and install_query_capture(model)
    size = sizes(model.config)
    heads = {layer: tuple(range(size.n_heads)) for layer in range(size.n_layers)}
    lab = run_lab(model, family, loaded.tokenizer, loaded.name, [DEFAULT], heads, size.n_layers, size.n_heads,
                  ScanConfig(seq_len=seq_len), len(seqs), lambda done, total: marks.append(time.perf_counter()))
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp) / "data", lab)


def _child(phase: str, n: int, seq_len: int) -> dict:
    loaded = load_model("bundled", device="cpu")
    seqs = [ids for _, ids in sequences([DEFAULT], loaded.tokenizer, seq_len, n)]
    out: dict = {"tokens": sum(len(s) for s in seqs)}
    if phase == "memory-forward":
        _reset_peak()
        _forwards(loaded.model, seqs)
        out["peak_mb"] = _peak_mb()
    elif phase == "memory-heads":
        _reset_peak()
        _lab(loaded, seqs, seq_len, [])
        out["peak_mb"] = _peak_mb()
    else:
        bare = bare_model()
        out["decode_ms"] = decode_ms(bare, seqs[0], seqs[1][0], reps=20)
        before = _forwards(bare, seqs)
        marks: list[float] = []
        start = time.perf_counter()
        _lab(loaded, seqs, seq_len, marks)
        out["all_seconds"] = time.perf_counter() - start
        out["pass_seconds"] = marks[-1] - marks[0]  # from the first sequence's start to the last's end
        after = _forwards(bare, seqs)
        out["forward_seconds"] = (before + after) / 2
        out["forward_spread"] = abs(before - after) / out["forward_seconds"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--phase", choices=("timing", "memory-forward", "memory-heads"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(_child(args.phase, args.sequences, args.seq_len)))
        return
    runs = {}
    for phase in ("timing", "memory-forward", "memory-heads"):
        done = subprocess.run([sys.executable, __file__, "--phase", phase, "--sequences", str(args.sequences),
                               "--seq-len", str(args.seq_len)], capture_output=True, text=True, check=True)
        runs[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    t = runs["timing"]
    k = 1000 / t["tokens"]
    plain = t["forward_seconds"] * k
    print(f"bundled model, {args.sequences} sequences x {args.seq_len} tokens ({t['tokens']} tokens), "
          f"{torch.get_num_threads()} threads, every layer and head")
    print(f"decode step (bare, KV cache)   {t['decode_ms']:8.1f} ms")
    print(f"plain forward                  {plain:8.2f} s / 1000 tokens = 1.00x  ({plain / t['decode_ms']:.2f} decode "
          f"steps per token; before and after the head lab differ by {100 * t['forward_spread']:.0f}%)")
    for name, key in (("heads: streaming pass", "pass_seconds"), ("heads: whole run after load", "all_seconds")):
        s = t[key] * k
        print(f"{name:<30} {s:8.2f} s / 1000 tokens = {s / plain:.2f}x plain forward  "
              f"({s / t['decode_ms']:.2f} decode steps per token)")
    fwd, heads = runs["memory-forward"]["peak_mb"], runs["memory-heads"]["peak_mb"]
    print(f"peak memory (process, model included): plain forward {fwd:.0f} MB, heads whole run {heads:.0f} MB "
          f"= {heads / fwd:.2f}x")


if __name__ == "__main__":
    main()
