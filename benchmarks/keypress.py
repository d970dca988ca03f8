"""Key arrival to the end of the paint that shows its result, through the real explorer.

How it measures. The benchmark runs the real app (Textual, the real engine, the bundled model) with
its terminal on a pseudo-terminal that this process owns: file descriptors 0 and 1 become the pty's
slave side (120x40, TERM=xterm-256color), so Textual's Linux driver reads keys from it on its input
thread and writes every frame to it as escape codes (a thread drains the master side, as a terminal
would). A measuring thread writes one key byte to the master side at t0. Every frame the app paints
goes through ``App._display`` (which turns the compositor's update into escape codes and hands them
to the driver's writer); the benchmark wraps it and takes t1 when the first frame whose state shows
the key's result has been handed over. So a figure covers the terminal read, key parsing, message
passing, the action, the engine job on its worker, the repaint and the escape-code rendering; it
leaves out only the kernel write of the finished frame.

Results, per prompt length (32, 128, 512, 1024 tokens), medians of several presses:
  decode          a bare single-token forward over a KV cache (SDPA, plain transformers, no hooks),
                  timed in this same run while the app is idle
  append_table    `l` in the plain view until the new token is in the prompt and its table shown
  append_lens     `l` in the logit-lens view: table shown (append_lens_table), then lens view updated
                  (the lens records of the starting prompt are filled before the app starts: the
                  one-time fill a prefilled prompt needs when the lens view is first opened)
  pop             `h` until the prompt and table are back one token
  table_move      `j` / `k` until the highlighted row moved
  cursor_move     `[` / `]` until the cursor moved
  view_switch     `e` / `E` between the plain and probability views until the prompt is recoloured
The engine's prefix store is off, so each append runs its single-token forward (with it on, the
append after a pop would copy the rows it stored back instead), and the explorer's memory of view
results is emptied before each append in the lens view, so the view is computed for the new token.
Appends are printed as ratios to decode, the others in ms (the targets: append with its table within
1.3x decode, the lens view within 1.8x, the others within 16 ms). The last line is a summary.

Run: flock /tmp/bench.lock .venv/bin/python benchmarks/keypress.py [--lengths 32,1024] [--reps 7]
(Cross-checked in tmux: see the issue-9 note; tmux adds its own parsing and drawing.)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import statistics
import struct
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable

from baseline import bare_model, decode_ms, prompt_ids

from token_explorer.cache import ResultCache
from token_explorer.config import Settings
from token_explorer.engine import Engine, open_engine
from token_explorer.tui import make_app
from token_explorer.tui.state import LRU
from token_explorer.tui.widgets.candidates import Candidates

COLS, ROWS = 120, 40
TIMEOUT = 60.0


class Probe:
    """Times keys written to the pty until a frame is painted with ``done(app)`` true."""

    def __init__(self, app, master: int) -> None:
        self.app = app
        self.master = master
        self._done: Callable[[object], bool] | None = None
        self._early: Callable[[object], bool] | None = None
        self._hit = threading.Event()
        self._t1 = self._t_early = 0.0
        original = app._display

        def display(screen, renderable):
            original(screen, renderable)
            if renderable is None:
                return
            if self._early is not None and self._early(app):
                self._t_early, self._early = time.perf_counter(), None
            if self._done is not None and self._done(app):
                self._t1, self._done = time.perf_counter(), None
                self._hit.set()

        app._display = display

    def press(self, key: bytes, done: Callable[[object], bool],
              early: Callable[[object], bool] | None = None) -> tuple[float, float]:
        """Milliseconds from writing ``key`` to the end of the first frame painted with ``done`` true,
        and to the first with ``early`` true (an intermediate state, e.g. the table before the view)."""
        self._hit.clear()
        self._done, self._early = done, early
        t0 = time.perf_counter()
        os.write(self.master, key)
        if not self._hit.wait(TIMEOUT):
            raise RuntimeError(f"no frame showed the result of {key!r} within {TIMEOUT} s")
        early_ms = (self._t_early - t0) * 1000 if early is not None and self._early is None else float("nan")
        return (self._t1 - t0) * 1000, early_ms

    def ms(self, key: bytes, done: Callable[[object], bool]) -> float:
        return self.press(key, done)[0]

    def wait(self, done: Callable[[object], bool]) -> None:
        """Until ``done`` holds and the app is idle, then a little more for the frame to land."""
        deadline = time.monotonic() + TIMEOUT
        while not self.app.is_running and time.monotonic() < deadline:
            time.sleep(0.05)
        while time.monotonic() < deadline:
            if self.app.call_from_thread(lambda: self.app.engine is not None and done(self.app) and not self.app.busy):
                time.sleep(0.05)
                return
            time.sleep(0.02)
        raise RuntimeError("the app did not settle")


def table_shows(app, n: int) -> bool:
    """The prompt has ``n`` tokens and the table on screen is its next-token table."""
    b = app.branch
    return len(b.tokens) == n and b.current is not None and app._table_shown is not None and app._table_shown[0] is b.current


def coloured_by(app, view_id: str) -> bool:
    """The prompt on screen is coloured by the light view ``view_id``."""
    memo = app._colouring_memo
    return app.view_id == view_id and memo is not None and memo[0][1] == view_id


def view_shows(app, n: int) -> bool:
    """The heavy view for the current prompt and cursor has arrived and is drawn."""
    return table_shows(app, n) and app._view_key() in app._view_cache


def forget_views(app, engine: Engine) -> None:
    """Empty the explorer's and the engine's memories of view results (the app is idle)."""
    app.call_from_thread(setattr, app, "_view_cache", LRU(app.settings.display.cache_size))
    engine.results = ResultCache(None, memory_items=engine.settings.display.cache_size, disk_limit_mb=0)


def measure_length(engine: Engine, ids: list[int], reps: int) -> dict[str, float]:
    n = len(ids)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    saved = os.dup(0), os.dup(1), os.dup(2)
    for fd in (0, 1, 2):  # Textual reads fd 0 and draws on fd 2
        os.dup2(slave, fd)
    stop = threading.Event()

    def drain() -> None:  # the "terminal": read and forget what the app draws
        while not stop.is_set():
            try:
                os.read(master, 1 << 16)
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    settings = Settings().with_overrides("cache", disk_limit_mb=0)
    app = make_app(settings, lambda progress: engine, initial_tokens=ids)
    probe = Probe(app, master)
    rows: dict[str, list[float]] = {k: [] for k in (
        "append_table", "pop", "append_lens_table", "append_lens", "table_move", "cursor_move", "view_switch")}
    error: list[BaseException] = []

    def run() -> None:
        try:
            probe.wait(lambda a: table_shows(a, n))
            for _ in range(reps):
                rows["append_table"].append(probe.ms(b"l", lambda a: table_shows(a, n + 1)))
                probe.wait(lambda a: table_shows(a, n + 1))
                rows["pop"].append(probe.ms(b"h", lambda a: table_shows(a, n)))
                probe.wait(lambda a: table_shows(a, n))
            for _ in range(reps):
                rows["table_move"].append(probe.ms(b"j", lambda a: a.query_one(Candidates).cursor_row == 1))
                rows["table_move"].append(probe.ms(b"k", lambda a: a.query_one(Candidates).cursor_row == 0))
                rows["cursor_move"].append(probe.ms(b"[", lambda a: a.branch.cursor == n - 2))
                rows["cursor_move"].append(probe.ms(b"]", lambda a: a.branch.cursor == n - 1))
                rows["view_switch"].append(probe.ms(b"e", lambda a: coloured_by(a, "probability")))
                rows["view_switch"].append(probe.ms(b"E", lambda a: coloured_by(a, "plain")))
            os.write(master, b"p")  # the logit-lens view
            probe.wait(lambda a: a.view_id == "lens" and view_shows(a, n))
            for _ in range(reps):
                forget_views(app, engine)
                view, table = probe.press(b"l", lambda a: view_shows(a, n + 1), early=lambda a: table_shows(a, n + 1))
                rows["append_lens"].append(view)
                rows["append_lens_table"].append(table)
                probe.wait(lambda a: view_shows(a, n + 1))
                probe.ms(b"h", lambda a: view_shows(a, n))
                probe.wait(lambda a: view_shows(a, n))
        except BaseException as e:  # noqa: BLE001 - reported after the app is closed
            error.append(e)
        finally:
            app.call_from_thread(app.exit)

    threading.Thread(target=run, daemon=True).start()
    try:
        app.run()
    finally:
        stop.set()
        for fd in (0, 1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        os.close(slave)
        os.close(master)
    if error:
        raise error[0]
    return {k: statistics.median(v) for k, v in rows.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="32,128,512,1024")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    os.environ["TERM"] = "xterm-256color"
    # the prefix store off: every append runs its forward (with it, re-appending the token just popped
    # is a copy of the stored rows, and the benchmark would time that instead of a step)
    engine = open_engine("bundled", settings=Settings().with_overrides("cache", disk_limit_mb=0)
                         .with_overrides("store", budget_mib=0))
    bare = bare_model()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    print(f"torch threads {__import__('torch').get_num_threads()}; terminal {COLS}x{ROWS}; medians of {args.reps}",
          file=out)
    header = (f"{'tokens':>6} {'decode':>8} {'append/dec':>10} {'lens:table/dec':>14} {'lens:view/dec':>13} "
              f"{'pop ms':>7} {'table ms':>8} {'cursor ms':>9} {'view ms':>7}")
    print(header, file=out)
    summary = {}
    for n in lengths:
        ids = prompt_ids(engine.tokenize, n, 0)
        engine.set_tokens(ids)
        engine.fill_lens()  # the lens view's one-time fill of a prefilled prompt: not timed here
        before = decode_ms(bare, ids, ids[-1], 9)
        row = measure_length(engine, ids, args.reps)
        after = decode_ms(bare, ids, ids[-1], 9)
        dec = statistics.median([before, after])
        print(f"{n:>6} {dec:>6.1f}ms {row['append_table'] / dec:>10.2f} {row['append_lens_table'] / dec:>14.2f} "
              f"{row['append_lens'] / dec:>13.2f} {row['pop']:>7.1f} {row['table_move']:>8.1f} "
              f"{row['cursor_move']:>9.1f} {row['view_switch']:>7.1f}", file=out)
        summary[n] = (dec, row)
    n = max(lengths)
    dec, row = summary[n]
    print(f"tui_append/decode@{n}={row['append_table'] / dec:.2f} tui_lens_table/decode@{n}={row['append_lens_table'] / dec:.2f} "
          f"tui_lens_view/decode@{n}={row['append_lens'] / dec:.2f} tui_pop_ms@{n}={row['pop']:.1f} "
          f"tui_table_ms@{n}={row['table_move']:.1f} tui_cursor_ms@{n}={row['cursor_move']:.1f} "
          f"tui_view_ms@{n}={row['view_switch']:.1f} decode_ms@{n}={dec:.1f}", file=out)


if __name__ == "__main__":
    sys.exit(main())
