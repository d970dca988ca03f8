"""Entry points: ``token-explorer`` (the explorer) and ``token-explorer peek`` (headless)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .config import Settings, load_settings
from .errors import UserError
from .printable import printable

SUBCOMMANDS = ("peek", "sae", "trace", "heads")


def _config_path(given: str | None) -> Path | None:
    """``--config`` if given, else ./config.toml if present, else the user's config file if present."""
    if given:
        return Path(given)
    here = Path("config.toml")
    if here.is_file():
        return here
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "token_explorer" / "config.toml"
    return xdg if xdg.is_file() else None


def _model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="configuration file (default: ./config.toml if present)")
    parser.add_argument("--model", "-m", metavar="M", help="'bundled' (SmolLM2-135M-Instruct), a local folder, or a hub id")
    parser.add_argument("--device", metavar="D", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="weights dtype (default float32)")
    parser.add_argument("--bf16", action="store_true", help="same as --dtype bfloat16")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run")


def build_parser(command: str) -> argparse.ArgumentParser:
    """The argument parser of ``command`` ('explore' or 'peek')."""
    if command == "peek":
        parser = argparse.ArgumentParser(prog="token-explorer peek",
                                         description="Print the analysis of every position of a prompt.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--prompt", "-p", metavar="TEXT", help="the prompt text")
        source.add_argument("--input", "-i", metavar="FILE", help="read the prompt from a UTF-8 text file")
        parser.add_argument("--top-k", type=int, default=5, metavar="K", help="candidates per position (default 5)")
        parser.add_argument("--lens", action="store_true", help="add the per-layer logit lens")
        parser.add_argument("--json", action="store_true", help="print one JSON document (schema in README)")
        _model_flags(parser)
        return parser
    parser = argparse.ArgumentParser(
        prog="token-explorer",
        description="Step through a language model's generation one token at a time. "
        "Subcommands: peek (token-explorer peek --help), sae train (token-explorer sae train --help).",
    )
    parser.add_argument("--input", "-i", metavar="FILE", help="start from the text of this file")
    parser.add_argument("--session", metavar="FILE",
                        help="open this saved session (branch tree and branches); S saves to it (created if new)")
    parser.add_argument("--seed", type=int, metavar="N", help="seed of the sample key's draws (reproducible)")
    parser.add_argument("--layer_prob", "--layer-prob", action="store_true", help="start in the layer (logit lens) view")
    _model_flags(parser)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(_config_path(args.config))
    dtype = "bfloat16" if args.bf16 else args.dtype
    settings = settings.with_overrides("model", name=args.model, device=args.device, dtype=dtype,
                                       trust_remote_code=True if args.trust_remote_code else None)
    if getattr(args, "layer_prob", False):
        settings = settings.with_overrides("engine", lens=True)
    return settings


def _engine(settings: Settings, progress=None, top_k: int | None = None, lens: bool | None = None):
    from .engine import open_engine

    return open_engine(
        settings.model.name, device=settings.model.device, dtype=settings.model.dtype,
        trust_remote_code=settings.model.trust_remote_code, revision=settings.model.revision,
        top_k=top_k or settings.engine.top_k, temperature=settings.engine.temperature,
        lens=settings.engine.lens if lens is None else lens, progress=progress, settings=settings,
    )


def _stderr_progress(message: str, _fraction: float | None) -> None:
    print(f"token-explorer: {printable(message)}", file=sys.stderr, flush=True)


def _prefill_progress(total: int):
    """A ``progress(done, total)`` for a long prompt: a line on stderr about every tenth of the way."""
    shown = [0]

    def report(done: int, _total: int) -> None:
        if done == total or done - shown[0] >= total / 10:
            shown[0] = done
            _stderr_progress(f"running the prompt: {done}/{total} tokens", done / total)

    return report


def run_peek(args: argparse.Namespace) -> int:
    from .peek import dumps, peek_document, peek_table
    from .prompts import read_text_prompt

    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}")
    text = read_text_prompt(Path(args.input)) if args.input else args.prompt
    if not text.strip():
        raise UserError("--prompt is empty or only whitespace")
    settings = _settings(args)
    engine = _engine(settings, progress=None if args.json else _stderr_progress,
                     top_k=max(args.top_k, settings.engine.top_k), lens=args.lens)
    engine.on_notice(lambda line: print(f"token-explorer: {printable(line)}", file=sys.stderr, flush=True))
    ids = engine.tokenize(text)
    snap = engine.set_tokens(ids, None if args.json or len(ids) <= 1024 else _prefill_progress(len(ids)))
    if args.lens:
        snap = engine.fill_lens()
    if args.json:
        print(dumps(peek_document(engine, snap, args.top_k, args.lens)))
    else:
        print(peek_table(engine, snap, args.top_k, args.lens))
    return 0


class _Workers(ThreadPoolExecutor):
    """The event loop's executor (Textual's thread workers run on it), counting jobs in flight."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="worker")
        self._lock = threading.Lock()
        self._running = 0

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running > 0

    def submit(self, fn, /, *args, **kwargs):
        def counted():
            with self._lock:
                self._running += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self._running -= 1

        return super().submit(counted)


def run_explore(args: argparse.Namespace) -> int:
    from .prompts import load_prompt, read_text_prompt
    from .sessions import load_session
    from .tui.app import make_app
    from .tui.keymap import check_keymap

    config = _config_path(args.config)
    settings = _settings(args)
    check_keymap(settings.keys, str(config or "config"))
    saved = load_prompt(args.input) if args.input and args.input.lower().endswith(".json") else None
    text = read_text_prompt(Path(args.input)) if args.input and saved is None else settings.prompt.example_prompt
    session_path = Path(args.session) if args.session else None
    session = load_session(session_path) if session_path is not None and session_path.exists() else None
    app = make_app(settings, lambda progress: _engine(settings, progress), initial_text=text,
                   initial_saved=saved, start_view="lens" if args.layer_prob else None,
                   session_path=session_path, initial_session=session, seed=args.seed)
    loop, workers = asyncio.new_event_loop(), _Workers()
    loop.set_default_executor(workers)
    app.run(loop=loop)
    code = app.return_code or 0
    if app.load_error is not None:
        print(f"token-explorer: error: {printable(app.load_error)}", file=sys.stderr)
        code = 2
    elif app.engine is None:
        print("token-explorer: quit before the model finished loading", file=sys.stderr)
        code = 130
    if workers.busy:
        # a model load, prefill or analysis is still running on a worker and cannot be interrupted:
        # leave at once (the screen is already restored) instead of waiting for it to finish
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    workers.shutdown()
    loop.close()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command line (default: ``sys.argv``) and return its exit code. As the program itself
    (no ``argv``) it leaves at once after flushing its output, skipping the interpreter's teardown
    of torch and the model (a second or two after the explorer's screen has closed)."""
    code = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


def _main(argv: list[str]) -> int:
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "explore"
    if command != "explore":
        argv = argv[1:]
    try:
        if command == "sae":
            from .sae.cli import main as sae_main

            return sae_main(argv)
        if command == "trace":
            from .trace.cli import main as trace_main

            return trace_main(argv)
        if command == "heads":
            from .heads.cli import main as heads_main

            return heads_main(argv)
        args = build_parser(command).parse_args(argv)
        return run_peek(args) if command == "peek" else run_explore(args)
    except UserError as exc:
        print(f"token-explorer: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (``peek ... | head``): stop quietly, as a program killed by SIGPIPE
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
