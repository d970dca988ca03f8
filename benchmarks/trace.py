"""``token-explorer trace`` on the bundled model against plain transformers ``generate()``.

From a 128-token prompt, 64 greedy tokens (EOS banned so every run makes all 64), timed as medians:
  decode       a bare single-token forward over a DynamicCache, SDPA, plain transformers model
  generate     plain ``model.generate(do_sample=False)`` of the same 64 tokens (same bare model)
  trace/plain  the tracer with nothing captured (raw and processed probes only)
  trace/lens+attn   logit lens at --lens-layers and attention statistics of every layer and head
  trace/all-lens+attn  the same with the lens at every layer
  trace/everything  lens at --lens-layers, attention, activations (4 submodules, every layer), DLA
and prints each trace's ratio to generate() and, per token, to the decode step (medians of runs
interleaved so that load changes hit every contender alike); then the time to write the trace's files
and plots, and the process's peak memory after each contender's first run.

Run: ./dev.sh bench trace   (or .venv/bin/python benchmarks/trace.py [--reps 3] [--lens-layers 0,10,20,29])
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from baseline import bare_model, decode_ms, prompt_ids
from token_explorer.model.loading import load_model
from token_explorer.model.vocab import Vocab
from token_explorer.sampling import SamplingParams
from token_explorer.tokens import piece_text
from token_explorer.trace.document import model_facts
from token_explorer.trace.output import SidecarSink, write_trace
from token_explorer.trace.run import CaptureConfig, Tracer

NEW = 64


def peak_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="interleaved timed runs (default 3)")
    parser.add_argument("--lens-layers", default="0,10,20,29", help="layers of the lens runs (default 0,10,20,29)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_grad_enabled(False)

    bare = bare_model(args.device)
    loaded = load_model("bundled", device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = prompt_ids(lambda t: tokenizer(t)["input_ids"], 128, extra=0)
    dev = next(bare.parameters()).device
    print(f"bundled model on {dev}, {torch.get_num_threads()} threads; prompt {len(ids)} tokens, {NEW} new, greedy")
    with torch.no_grad():  # page both copies' weights in, so the peaks below show what each run adds
        for m in (bare, model):
            m(torch.tensor([ids], device=dev))
    print(f"peak memory after loading two copies of the model and one forward of each: {peak_mb():.0f} MiB")


    eos = tokenizer.eos_token_id

    def generate():
        out = bare.generate(torch.tensor([ids], device=dev), do_sample=False, max_new_tokens=NEW,
                            min_new_tokens=NEW, pad_token_id=eos)
        return out[0, len(ids):].tolist()

    lens = tuple(int(v) for v in args.lens_layers.split(","))
    n_layers = model.config.num_hidden_layers
    every = tuple(range(n_layers))
    configs = {
        "trace/plain": CaptureConfig(),
        "trace/lens+attn": CaptureConfig(lens_layers=lens, attention_layers=every),
        "trace/all-lens+attn": CaptureConfig(lens_layers=every, attention_layers=every),
        "trace/everything": CaptureConfig(lens_layers=lens, attention_layers=every, activation_layers=every,
                                          activation_submodules=("resid_pre", "resid_post", "mlp_out", "o_proj"),
                                          dla=True),
    }
    params = SamplingParams(temperature=0, min_new_tokens=NEW)
    runs = {"generate()": generate}
    for name, config in configs.items():
        tracer = Tracer(model, tokenizer, config)
        runs[name] = lambda tracer=tracer: tracer.run(ids, params, NEW)
    # first pass, in order: warm-up, the peak memory each adds, and the greedy tokens must agree
    peaks, results, gen_ids = {}, {}, None
    for name, fn in runs.items():
        value = fn()
        peaks[name] = peak_mb()
        if name == "generate()":
            gen_ids = value
        else:
            assert value.generated_ids == gen_ids, f"{name}: the greedy trace differs from generate()"
            results[name] = (configs[name], value)
    # timed passes, interleaved so that a change of machine load hits every contender alike
    times: dict[str, list[float]] = {name: [] for name in runs}
    decodes = []
    for _ in range(args.reps):
        decodes.append(decode_ms(bare, ids, ids[-1], reps=20) / 1000)
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    decode = statistics.median(decodes)
    med = {name: statistics.median(t) for name, t in times.items()}
    gen_s = med["generate()"]
    print(f"\n{'':24} {'total s':>8} {'ms/token':>9} {'x generate':>11} {'x decode/token':>15} {'peak MiB':>9}")
    print(f"{'decode step':24} {'':8} {decode * 1000:9.2f} {'':11} {1.0:15.2f}")
    for name, seconds in med.items():
        per = seconds / NEW
        print(f"{name:24} {seconds:8.3f} {per * 1000:9.2f} {seconds / gen_s:11.2f} {per / decode:15.2f} "
              f"{peaks[name]:9.0f}")
    print(f"(medians of {args.reps} interleaved runs; lens layers {list(lens)} of 0..{n_layers - 1}; attention: "
          "every layer and head; peak MiB is the process's so far, both model copies included)")

    facts = model_facts(model, tokenizer, loaded.name)
    vocab = Vocab(tokenizer)
    text = lambda i: piece_text(vocab.token_bytes(int(i)))  # noqa: E731
    config, result = results["trace/lens+attn"]
    with tempfile.TemporaryDirectory() as tmp:
        for plots in (False, True):
            start = time.perf_counter()
            write_trace(Path(tmp), result, facts, params, config, SidecarSink(Path(tmp), facts, config).refs,
                        prompt="", system=None, chat=False, max_new_tokens=NEW, seed=None, stop=(),
                        tokenizer=tokenizer, text=text, fingerprint=loaded.fingerprint, plots=plots)
            print(f"writing trace/lens+attn's files {'with' if plots else 'without'} plots: "
                  f"{time.perf_counter() - start:.2f} s")
    print(f"\nsummary: trace/plain {med['trace/plain'] / gen_s:.2f}x generate() (target 1.2), trace/lens+attn "
          f"{med['trace/lens+attn'] / gen_s:.2f}x (target 2); generate {gen_s / NEW / decode:.2f}x decode per token, "
          f"decode {decode * 1000:.1f} ms")


if __name__ == "__main__":
    main()
