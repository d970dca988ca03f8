"""``token-explorer sae train``: train a small ReLU SAE and print its ``[[sae]]`` entry."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from ..model.hooks import POINTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="token-explorer sae", description="Sparse dictionaries (SAEs).")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a small ReLU SAE on one hook point (CPU, minutes)",
                       description="Train a small ReLU SAE on one hook point of a model and write it "
                       "as <out>/sae-L<layer>-<hook>.safetensors (SAELens layout) with its [[sae]] entry.")
    t.add_argument("--layer", type=int, required=True, metavar="L", help="block index (0-based)")
    t.add_argument("--hook", default="resid_post", choices=POINTS, help="hook point (default resid_post)")
    t.add_argument("--text", nargs="+", metavar="FILE", help="UTF-8 training text (default: the shipped text)")
    t.add_argument("--features", type=int, default=2048, metavar="N", help="dictionary size (default 2048)")
    t.add_argument("--model", "-m", default="bundled", metavar="M", help="model (default: bundled)")
    t.add_argument("--device", default="cpu", metavar="D", help="cpu (default), cuda, cuda:N or mps")
    t.add_argument("--steps", type=int, default=2000, metavar="S", help="Adam steps (default 2000)")
    t.add_argument("--l1", type=float, default=1.5, metavar="C", help="L1 coefficient (default 1.5)")
    t.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    t.add_argument("--batch", type=int, default=512, help="activations per step (default 512)")
    t.add_argument("--context", type=int, default=128, help="tokens per chunk (default 128)")
    t.add_argument("--log-every", type=int, default=100, metavar="N", help="progress line every N steps")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    return parser


def _log(message: str) -> None:
    print(f"token-explorer sae: {message}", file=sys.stderr, flush=True)


def run_train(args: argparse.Namespace) -> int:
    from ..model.family import family_of
    from ..model.loading import load_model
    from .train import TrainConfig, default_texts, train

    for name in ("features", "steps", "batch", "log_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.context < 2:
        raise UserError(f"--context must be at least 2, got {args.context}")
    if args.l1 < 0:
        raise UserError(f"--l1 must be >= 0, got {args.l1}")
    files = [Path(p) for p in args.text] if args.text else default_texts()
    texts = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"--text: no such file {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--text: cannot read {path} as UTF-8 text: {e}") from None
    loaded = load_model(args.model, device=args.device, progress=lambda m, _f: _log(m))
    family = family_of(loaded.model)
    if family is None:
        raise UserError(f"model family '{loaded.model.config.model_type}' is not in the family table")
    n_layers = int(loaded.model.config.num_hidden_layers)
    if not 0 <= args.layer < n_layers:
        raise UserError(f"--layer must be 0..{n_layers - 1} for this model, got {args.layer}")
    cfg = TrainConfig(layer=args.layer, hook=args.hook, features=args.features, steps=args.steps,
                      l1=args.l1, lr=args.lr, batch=args.batch, context=args.context, seed=args.seed,
                      log_every=args.log_every)
    try:
        result = train(loaded.model, family, loaded.tokenizer, texts, cfg, Path(args.out),
                       model_name=loaded.name, model_fingerprint=loaded.fingerprint, log=_log)
    except ValueError as e:
        raise UserError(str(e)) from None
    i, f = result.initial, result.final
    _log(f"held-out ({f.tokens} tokens): FVE {f.fve:.3f} (initial {i.fve:.3f}), mean L0 {f.l0:.1f}, "
         f"dead {f.dead}/{f.n_features}")
    _log(f"wrote {result.path} and {result.path.with_suffix('.toml')}")
    print(result.snippet, end="")
    return 0


def main(argv: Sequence[str]) -> int:
    """``token-explorer sae ...`` (argv without the ``sae``)."""
    args = build_parser().parse_args(list(argv))
    return run_train(args)
