"""``token-explorer trace`` and ``token-explorer trace diff``: argument parsing and the run."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError

ALL = "all"


def _layers_arg(value: str) -> str:
    if value != ALL:
        try:
            [int(v) for v in value.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected 'all' or comma-separated layer numbers, got {value!r}") from None
    return value


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``token-explorer trace``."""
    from ..cli import _model_flags

    p = argparse.ArgumentParser(
        prog="token-explorer trace",
        description="Generate headless and record every step (trace.json, trace.csv, generated.txt, plots). "
        "Compare two traces' activations with: token-explorer trace diff A B --out DIR.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", "-p", metavar="TEXT", help="the prompt text")
    source.add_argument("--input", "-i", metavar="FILE", help="read the prompt from a UTF-8 text file")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the tokenizer's chat template")
    p.add_argument("--system", metavar="TEXT", help="system message for --chat")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created; files in it replaced)")
    s = p.add_argument_group("sampling")
    s.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="default 64")
    s.add_argument("--min-new-tokens", type=int, default=0, metavar="N",
                   help="EOS is banned and stop strings ignored before this many tokens (default 0)")
    s.add_argument("--temperature", type=float, default=1.0, metavar="T", help="0 = greedy (default 1)")
    s.add_argument("--top-k", type=int, default=0, metavar="K", help="sample from the K most likely (0 = off)")
    s.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus mass (1 = off)")
    s.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                   help="tokens already present: positive logits divided by R, negative multiplied (1 = off)")
    s.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="N",
                   help="ban repeating any N-gram (0 = off)")
    s.add_argument("--block-eos-steps", type=int, default=0, metavar="N", help="ban EOS in the first N steps")
    s.add_argument("--block-whitespace-steps", type=int, default=0, metavar="N",
                   help="ban whitespace-only tokens in the first N steps")
    s.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop once TEXT is generated (repeatable)")
    s.add_argument("--seed", type=int, metavar="N", help="seed of the sampler")
    a = p.add_argument_group("adaptive probe")
    a.add_argument("--min-k", type=int, default=8, help="fewest candidates kept per step (default 8)")
    a.add_argument("--max-k", type=int, default=64, help="most candidates kept per step (default 64)")
    a.add_argument("--mass-threshold", type=float, default=0.95, metavar="M",
                   help="keep the fewest candidates whose mass reaches M (default 0.95)")
    c = p.add_argument_group("captures (off unless asked)")
    c.add_argument("--capture-logit-lens", action="store_true", help="the logit lens at --lens-layers")
    c.add_argument("--lens-layers", type=_layers_arg, default=ALL, metavar="L", help="'all' (default) or e.g. 0,7,15")
    c.add_argument("--lens-top-k", type=int, default=8, metavar="K", help="lens candidates per layer (default 8)")
    c.add_argument("--capture-attention", action="store_true", help="attention statistics per layer and head")
    c.add_argument("--attention-layers", type=_layers_arg, default=ALL, metavar="L", help="'all' (default) or a list")
    c.add_argument("--attention-top-k", type=int, default=8, metavar="K", help="attended positions kept (default 8)")
    c.add_argument("--capture-full-attention", action="store_true",
                   help="also write each step's full attention rows to attention/step_NNNNN.npz "
                   "(implies --capture-attention)")
    c.add_argument("--attention-heads", type=_ints, default=(), metavar="H",
                   help="heads drawn one by one in the prompt's attention heatmap, e.g. 0,3")
    c.add_argument("--capture-activations", action="store_true", help="top neurons per layer and submodule")
    c.add_argument("--activation-layers", type=_layers_arg, default=ALL, metavar="L", help="'all' (default) or a list")
    c.add_argument("--activation-submodules", default="resid_post,mlp_out,o_proj", metavar="S",
                   help="from resid_pre, resid_post, mlp_out, o_proj (default resid_post,mlp_out,o_proj)")
    c.add_argument("--activation-top-k", type=int, default=8, metavar="K", help="neurons kept (default 8)")
    c.add_argument("--capture-full-activations", action="store_true",
                   help="also write each step's vectors to activations/step_NNNNN.npz (implies --capture-activations; "
                   "trace diff needs them)")
    c.add_argument("--dla", action="store_true", help="direct logit attribution of each chosen token")
    o = p.add_argument_group("output")
    o.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no text on stdout")
    _model_flags(p)
    return p


def build_diff_parser() -> argparse.ArgumentParser:
    """The parser of ``token-explorer trace diff``."""
    p = argparse.ArgumentParser(
        prog="token-explorer trace diff",
        description="Compare the activations of two traces (made with --capture-full-activations) step by step, "
        "per layer and submodule; writes activation_diff.json and activation_delta.png.")
    p.add_argument("a", metavar="A", help="a trace folder or its trace.json")
    p.add_argument("b", metavar="B", help="another trace folder or trace.json")
    p.add_argument("--metric", choices=("l2", "cosine"), default="l2", help="what the heatmap shows (default l2)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--top-k", type=int, default=8, metavar="K", help="most changed neurons kept (default 8)")
    return p


def _check(args: argparse.Namespace) -> None:
    positive = ("max_new_tokens", "min_k", "max_k", "lens_top_k", "attention_top_k", "activation_top_k")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.min_k > args.max_k:
        raise UserError(f"--min-k ({args.min_k}) is larger than --max-k ({args.max_k})")
    if not 0 < args.mass_threshold <= 1:
        raise UserError(f"--mass-threshold must be in (0, 1], got {args.mass_threshold}")
    if args.system is not None and not args.chat:
        raise UserError("--system needs --chat")
    if args.min_new_tokens > args.max_new_tokens:
        raise UserError(f"--min-new-tokens ({args.min_new_tokens}) is larger than "
                        f"--max-new-tokens ({args.max_new_tokens})")


def _resolve(value: str, n_layers: int) -> tuple[int, ...]:
    return tuple(range(n_layers)) if value == ALL else tuple(sorted(set(int(v) for v in value.split(","))))


def _prompt_ids(tokenizer, text: str, chat: bool, system: str | None) -> list[int]:
    if not chat:
        return list(tokenizer(text)["input_ids"])
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("--chat: this model's tokenizer has no chat template")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


class ProgressBar:
    """Steps done on stderr: one redrawn line on a terminal, a line per tenth otherwise."""

    def __init__(self, total: int, enabled: bool, label: str = "trace") -> None:
        self.total, self.enabled, self.label = total, enabled, label
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.shown = -1

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        rate = done / max(1e-9, time.perf_counter() - self.start)
        if self.tty:
            filled = int(30 * done / self.total)
            print(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} tokens, {rate:.1f} tok/s",
                  end="", file=sys.stderr, flush=True)
        elif done * 10 // self.total > self.shown:
            self.shown = done * 10 // self.total
            print(f"{self.label}: {done}/{self.total} tokens, {rate:.1f} tok/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)


def run_trace(args: argparse.Namespace) -> int:
    from ..cli import _settings, _stderr_progress
    from ..model.loading import load_model
    from ..model.vocab import Vocab
    from ..prompts import read_text_prompt
    from ..sampling import SamplingParams, whitespace_token_ids
    from ..tokens import piece_text
    from .activations import ALIASES, SUBMODULES
    from .document import model_facts
    from .output import SidecarSink, write_trace
    from .run import CaptureConfig, Tracer

    _check(args)
    params = SamplingParams(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size, min_new_tokens=args.min_new_tokens,
        block_eos_steps=args.block_eos_steps, block_whitespace_steps=args.block_whitespace_steps)
    try:
        params.check()
    except ValueError as exc:
        raise UserError(f"--{exc}") from None
    submodules = tuple(ALIASES.get(s.strip(), s.strip()) for s in args.activation_submodules.split(",") if s.strip())
    unknown = [s for s in submodules if s not in SUBMODULES]
    if unknown or not submodules:
        raise UserError(f"--activation-submodules: unknown submodule {unknown[0] if unknown else '(none)'!r}; "
                        f"known: {', '.join(SUBMODULES)}")
    text = read_text_prompt(Path(args.input)) if args.input else args.prompt
    if not text:
        raise UserError("--prompt is empty")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")
    settings = _settings(args)
    loaded = load_model(settings.model.name, device=settings.model.device, dtype=settings.model.dtype,
                        trust_remote_code=settings.model.trust_remote_code, revision=settings.model.revision,
                        progress=(lambda _m, _f: None) if args.quiet else _stderr_progress)
    model, tokenizer = loaded.model, loaded.tokenizer
    facts = model_facts(model, tokenizer, loaded.name)
    n = facts.num_layers
    attention = args.capture_attention or args.capture_full_attention
    activations = args.capture_activations or args.capture_full_activations
    config = CaptureConfig(
        min_k=args.min_k, max_k=args.max_k, mass_threshold=args.mass_threshold,
        lens_layers=_resolve(args.lens_layers, n) if args.capture_logit_lens else None, lens_top_k=args.lens_top_k,
        attention_layers=_resolve(args.attention_layers, n) if attention else None,
        attention_top_k=args.attention_top_k, full_attention=args.capture_full_attention,
        prompt_heads=tuple(args.attention_heads),
        activation_layers=_resolve(args.activation_layers, n) if activations else None,
        activation_submodules=tuple(dict.fromkeys(submodules)), activation_top_k=args.activation_top_k,
        full_activations=args.capture_full_activations, dla=args.dla)
    tracer = Tracer(model, tokenizer, config)
    ids = _prompt_ids(tokenizer, text, args.chat, args.system)
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit and len(ids) + args.max_new_tokens > limit:
        raise UserError(f"the prompt has {len(ids)} tokens; with --max-new-tokens {args.max_new_tokens} that is "
                        f"more than the model's context of {limit}")
    vocab = Vocab(tokenizer)
    whitespace = (whitespace_token_ids(vocab.token_bytes, len(tokenizer)) if args.block_whitespace_steps else set())
    sink = SidecarSink(out, facts, config)
    bar = ProgressBar(args.max_new_tokens, not args.quiet)
    try:
        result = tracer.run(ids, params, args.max_new_tokens, stop=args.stop, seed=args.seed,
                            whitespace_ids=whitespace, on_step=sink, progress=bar)
    finally:
        bar.close()
    text_of = lambda i: piece_text(vocab.token_bytes(int(i)))  # noqa: E731
    files = write_trace(out, result, facts, params, config, sink.refs, prompt=text, system=args.system,
                        chat=args.chat, max_new_tokens=args.max_new_tokens, seed=args.seed, stop=args.stop,
                        tokenizer=tokenizer, text=text_of, fingerprint=loaded.fingerprint, plots=not args.no_plots)
    if not args.quiet:
        from ..printable import printable

        generated = tokenizer.decode(result.generated_ids, skip_special_tokens=True)
        print(printable(generated, multiline=True))
        print(f"token-explorer trace: {len(result.steps)} steps (stopped: {result.stop_reason}) in "
              f"{result.seconds:.2f} s; {len(files)} files in {printable(str(out))}", file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    """``token-explorer trace ...``; errors are raised as UserError for the caller to print."""
    argv = list(argv)
    if argv and argv[0] == "diff":
        from .diff import run_diff

        return run_diff(build_diff_parser().parse_args(argv[1:]))
    return run_trace(build_parser().parse_args(argv))

