"""SAE feature view latency on the bundled model, against a bare KV-cached decode step.

The dictionary is random, of realistic size: 4096 features on layer 15 resid_post of the bundled
SmolLM2-135M-Instruct (d 576), SAELens layout (``--features``/``--layer``/``--hook`` change it; with
``--sae FILE`` a trained one is used instead). For prompts of the given lengths, with the cursor on
the last token, it times as medians:
  decode   a bare single-token forward over a DynamicCache (as benchmarks/step_latency.py)
  cold     engine.analyze("sae") with nothing cached (hook read + encode + top table)
  memory   the same call again (memory LRU hit)
  disk     the same call from a new ResultCache on the same folder (disk hit, decode of the record)
and prints ratios to decode, then a one-line summary.

Run: .venv/bin/python benchmarks/sae_features.py [--lengths 32,128,512] [--hook mlp_in]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from baseline import bare_model, decode_ms, prompt_ids, timed
from token_explorer.cache import ResultCache
from token_explorer.config import CacheSettings, Settings
from token_explorer.engine import Engine
from token_explorer.model.loading import load_model

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="32,128,512")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--hook", default="resid_post")
    parser.add_argument("--sae", metavar="FILE", help="a trained dictionary instead of random weights")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    work = Path(tempfile.mkdtemp(prefix="sae-bench-"))

    bare = bare_model()
    d = int(bare.config.hidden_size)
    path = args.sae
    if path is None:
        g = torch.Generator().manual_seed(0)
        W_dec = torch.randn(args.features, d, generator=g)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        path = str(work / "random.safetensors")
        save_file({"W_enc": W_dec.T.contiguous(), "b_enc": torch.zeros(args.features) - 0.5,
                   "W_dec": W_dec, "b_dec": torch.zeros(d)}, path)
    settings = dataclasses.replace(
        Settings(), sae=(dict(layer=args.layer, hook=args.hook, path=path),),
        cache=CacheSettings(directory=str(work / "results"), disk_limit_mb=256))
    engine = Engine(load_model("bundled", device="cpu"), lens=False, settings=settings)
    what = "trained " + path if args.sae else f"random {args.features}-feature"
    print(f"bundled SmolLM2-135M-Instruct on cpu, {torch.get_num_threads()} threads; {what} dictionary at "
          f"layer {args.layer} {args.hook}; median of {args.reps} (ms)")
    print(f"{'tokens':>8} {'decode':>9} {'cold':>9} {'memory':>9} {'disk':>9}   ratios to decode: cold / memory / disk")
    row = {}
    for n in lengths:
        ids = prompt_ids(engine.tokenize, n)
        engine.set_tokens(ids)
        cursor = len(ids) - 1
        dec = decode_ms(bare, ids[:-1], ids[-1], args.reps * 3)
        engine.analyze("sae", ids, 0, {"entry": 0, "feature": -1})  # load the dictionary once
        colds, mems, disks = [], [], []
        for rep in range(args.reps):
            params = {"entry": 0, "feature": -1, "rep": rep}  # a fresh key per repetition
            colds.append(timed(lambda: engine.analyze("sae", ids, cursor, params)))
            mems.append(timed(lambda: engine.analyze("sae", ids, cursor, params)))
            engine.results.close()
            engine.results = ResultCache(work / "results", memory_items=100, disk_limit_mb=256)
            disks.append(timed(lambda: engine.analyze("sae", ids, cursor, params)))
        row = {"decode": dec, "cold": statistics.median(colds), "memory": statistics.median(mems),
               "disk": statistics.median(disks), "n": n}
        print(f"{n:>8} {dec:>9.2f} {row['cold']:>9.2f} {row['memory']:>9.3f} {row['disk']:>9.3f}   "
              f"{row['cold'] / dec:.2f} / {row['memory'] / dec:.4f} / {row['disk'] / dec:.3f}")
    n, dec = row["n"], row["decode"]
    print(f"sae_cold/decode@{n}={row['cold'] / dec:.2f} sae_memory/decode@{n}={row['memory'] / dec:.4f} "
          f"sae_disk/decode@{n}={row['disk'] / dec:.3f} sae_cold_ms@{n}={row['cold']:.1f}")


if __name__ == "__main__":
    main()
