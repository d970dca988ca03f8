"""``token-explorer heads``: per-head attention metrics over a corpus, written as the headvis
``data/`` tree plus ``heads.csv``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError

ALL = "all"


def parse_numbers(value: str, flag: str) -> tuple[int, ...] | None:
    """``all`` -> None; a comma list -> its sorted distinct numbers; UserError naming ``flag`` otherwise."""
    if value.strip() == ALL:
        return None
    try:
        numbers = sorted({int(v) for v in value.split(",")})
    except ValueError:
        raise UserError(f"{flag}: expected 'all' or comma-separated numbers, got {value!r}") from None
    return tuple(numbers)


def resolve(numbers: tuple[int, ...] | None, count: int, flag: str) -> tuple[int, ...]:
    """Every number below ``count`` for None (``all``), else ``numbers``; UserError naming ``flag``
    for one outside 0..count-1."""
    if numbers is None:
        return tuple(range(count))
    bad = [n for n in numbers if not 0 <= n < count]
    if bad:
        raise UserError(f"{flag}: {bad[0]} is outside 0..{count - 1}")
    return numbers


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``token-explorer heads``."""
    from ..cli import _model_flags

    p = argparse.ArgumentParser(
        prog="token-explorer heads",
        description="Scan a corpus once and write every studied head's metrics, decile-sampled sequences, "
        "histograms, top tokens and Q/K/O/V projection clouds as the headvis data/ tree (plus heads.csv).")
    p.add_argument("--layers", default=ALL, metavar="L", help="'all' (default) or e.g. 0,5,8")
    p.add_argument("--heads", default=ALL, metavar="H",
                   help="'all' (default) or e.g. 0,3: these heads of every studied layer")
    p.add_argument("--corpus", metavar="PATH",
                   help="a UTF-8 text file, or a folder of .txt/.md files (default: the text shipped with the package)")
    p.add_argument("--max-sequences", type=int, metavar="N", help="read at most N sequences (default: the whole corpus)")
    p.add_argument("--seq-len", type=int, default=128, metavar="T", help="tokens per sequence (default 128)")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="the data/ folder to write (new, empty, or an earlier heads output, which is replaced)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no closing line")
    _model_flags(p)
    return p


def _check(args: argparse.Namespace) -> None:
    if args.seq_len < 4:
        raise UserError(f"--seq-len must be at least 4, got {args.seq_len}")
    if args.max_sequences is not None and args.max_sequences < 1:
        raise UserError(f"--max-sequences must be at least 1, got {args.max_sequences}")


def run_heads(args: argparse.Namespace) -> int:
    from ..cli import _settings, _stderr_progress
    from ..model.capture import install_query_capture
    from ..model.family import family_of, sizes
    from ..model.loading import load_model
    from ..printable import printable
    from ..trace.cli import ProgressBar
    from .corpus import corpus_files
    from .lab import run_lab
    from .scan import ScanConfig
    from .tree import check_out, write_tree

    _check(args)
    layer_list, head_list = parse_numbers(args.layers, "--layers"), parse_numbers(args.heads, "--heads")
    files = corpus_files(Path(args.corpus) if args.corpus else None)
    out = Path(args.out)
    check_out(out)
    settings = _settings(args)
    loaded = load_model(settings.model.name, device=settings.model.device, dtype=settings.model.dtype,
                        trust_remote_code=settings.model.trust_remote_code, revision=settings.model.revision,
                        progress=(lambda _m, _f: None) if args.quiet else _stderr_progress)
    model, tokenizer = loaded.model, loaded.tokenizer
    family = family_of(model)
    if family is None:
        raise UserError(f"model family '{getattr(model.config, 'model_type', '?')}' is not in the family table")
    if not install_query_capture(model):
        raise UserError("this model's attention queries and keys cannot be captured")
    size = sizes(model.config)
    layers = resolve(layer_list, size.n_layers, "--layers")
    heads = resolve(head_list, size.n_heads, "--heads")
    if size.context and args.seq_len > size.context:
        raise UserError(f"--seq-len {args.seq_len} is longer than the model's context of {size.context}")
    config = ScanConfig(seq_len=args.seq_len,
                        random_length=min(ScanConfig.random_length, ((size.context or 10**9) - 1) // 2))
    bar: list[ProgressBar] = []

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(ProgressBar(total, not args.quiet, label="heads"))
        bar[0](done)

    try:
        lab = run_lab(model, family, tokenizer, loaded.name, files, {layer: heads for layer in layers},
                      size.n_layers, size.n_heads, config, args.max_sequences, progress)
    finally:
        if bar:
            bar[0].close()
    write_tree(out, lab)
    scan = lab.scan
    if not args.quiet:
        print(f"token-explorer heads: {len(scan.studied)} heads over {scan.n_sequences} sequences "
              f"({scan.n_tokens} tokens); wrote {printable(str(out))}", file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    """``token-explorer heads ...``; errors are raised as UserError for the caller to print."""
    return run_heads(build_parser().parse_args(list(argv)))
