"""The Textual app: state, the serial engine lane, heavy-view requests and the actions of the
bindings table. The engine comes from a factory run on a worker; nothing here imports torch."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime
from pathlib import Path
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import Footer

from token_explorer.errors import Cancelled, UserError
from token_explorer.printable import printable
from token_explorer.prompts import SavedPrompt, save_prompt
from token_explorer.protocol import EngineLike
from token_explorer.compare import compare
from token_explorer.results import Snapshot
from token_explorer.sampling_params import SamplingParams
from token_explorer.sessions import OpenBranch, Session, for_model, load_session, save_session
from token_explorer.tree import Removal, Tree

from . import messages as m
from .bindings import COMMANDS, READY_ONLY_EXEMPT, textual_bindings, unknown_ids
from .commands import ExplorerCommands
from .export import Shown, write_export
from .jobs import Job, frame_of, one_line, run_job, sample_run, start_tokens, text_ids
from .findings import param_text, render_result
from .render import (
    Colouring,
    HeavyRendering,
    detail,
    heavy_colouring,
    legend,
    light_colouring,
    pending_colouring,
    repr_token,
)
from .screens.browser import PromptBrowser
from .screens.help import HelpScreen
from .screens.loading import LoadingScreen
from .screens.compare import CompareScreen
from .screens.sessions import SessionBrowser
from .screens.text_input import TextInput
from .screens.tree import TreeScreen
from .lane import Lane, StepKind
from .state import LRU, Branch, Frame, next_word, plural, prev_word
from .views import LENS_VIEW, VIEW_IDS, VIEWS, View, cycle, heavy_views, unavailable_reason, view_by_id
from .widgets.candidates import Candidates
from .widgets.panels import Detail, Legend, StatusLine, ViewPanel
from .widgets.prompt import PromptView

Progress = Callable[[str, "float | None"], None]
EngineFactory = Callable[[Progress], EngineLike]

FILL_FIRST = 16  # at most this many missing lens records are filled before the lens view runs
_BUSY_WIDTH = 13  # the status line's first segment keeps this width, so nothing after it moves
# An engine job marks the status line busy only once it has run this long: a quick step (a pop,
# an append) then draws its result in one frame, instead of a "working" frame first and the
# result a whole frame period (16.7 ms at Textual's 60 fps) later.
BUSY_AFTER = 0.15
_NEEDS_ENGINE = frozenset(c.action.split("(")[0] for c in COMMANDS if c.id not in READY_ONLY_EXEMPT)


@dataclass(frozen=True)
class ViewError:
    """A heavy view's analysis failed for one key; kept so it is not retried in a loop."""

    error: str


class TokenExplorerApp(App):
    """Step through a causal LM's generation one token at a time."""

    TITLE = "token explorer"
    AUTO_FOCUS = None
    BINDINGS = textual_bindings()
    COMMANDS = App.COMMANDS | {ExplorerCommands}

    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    #body { height: 1fr; }
    #left { width: 1fr; }
    #prompt { height: 1fr; border: round $primary; padding: 0 1; }
    #panel { height: auto; max-height: 50%; border: round $secondary; padding: 0 1; display: none; }
    #prompt:focus, #panel:focus { border: double $accent; }
    #side { width: 40; border: round $primary; }
    #candidates { height: 1fr; scrollbar-size-vertical: 1; overflow-x: hidden; }
    #legend { height: 2; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    #detail { height: 2; padding: 0 1; background: $panel; }
    """

    def __init__(
        self,
        settings: Any,
        engine_factory: EngineFactory,
        *,
        initial_text: str | None = None,
        initial_tokens: Sequence[int] | None = None,
        initial_saved: SavedPrompt | None = None,
        start_view: str | None = None,
        session_path: Path | None = None,
        initial_session: Session | None = None,
        seed: int | None = None,
    ) -> None:
        if start_view is not None and start_view not in VIEW_IDS:
            raise UserError(f"unknown view {start_view!r} (known: {', '.join(VIEW_IDS)})")
        super().__init__()
        self.settings = settings
        self.engine_factory = engine_factory
        self.initial_text = initial_text
        self.initial_tokens = list(initial_tokens) if initial_tokens is not None else None
        self.initial_saved = initial_saved
        self.session_path = session_path  # where S saves; None: a new file in the sessions folder
        self.seed = seed  # the sampler's seed (--seed); None: not reproducible
        self._sample_stop: threading.Event | None = None  # set while sampling; a key sets it
        self._processed_tried: tuple[int, ...] | None = None  # tokens whose processed column was asked for
        self.initial_session = initial_session
        self.keymap: dict[str, str] = dict(settings.keymap)
        self.engine: EngineLike | None = None
        self.load_error: str | None = None  # why the model could not be loaded, if it could not
        self.analyses: dict[str, str | None] = {}
        self.specs: dict[str, Any] = {}  # analysis declarations, from the engine
        self.views: tuple[View, ...] = VIEWS
        self.skip_first = False  # leave position 0 out of fitted colour scales
        self.branches: list[Branch] = []
        self.current = 0
        self.start: Frame | None = None
        self.view_id = start_view or "plain"
        self.show_cursor = bool(settings.display.show_cursor)
        self.show_z = False
        self.show_processed = False  # the sampler's processed probability beside the raw one
        self.params: dict[str, dict[str, Any]] = {}
        self._before_lens = "plain"
        # the serial engine lane: one job in flight, the branch's queued steps
        self._inflight: Job | None = None
        self._inflight_since = 0.0  # when the job in flight started (time.monotonic)
        self.lane = Lane()
        self._key_time: float | None = None  # arrival of the key being dispatched
        self._removed: tuple[int, Branch] | None = None  # the last removed branch, for undo
        # the branch tree: every path visited on any branch, and the frames recently shown
        self.branch_tree = Tree()
        self._tree_removed: list[Removal] = []
        self._tree_noted: tuple[int, ...] | None = None  # the current path last visited in the tree
        self._frames = LRU(32)  # token ids -> Frame, so a node opened again shows at once
        self._width = 80  # the terminal's width, kept from the last resize event
        self._lens_filled: tuple[int, ...] | None = None  # tokens whose lens records are all filled
        self._engine_tokens: tuple[int, ...] | None = None
        self._sync_failed: tuple[int, tuple[int, ...]] | None = None
        # heavy views
        self._view_cache = LRU(settings.display.cache_size)
        self._view_inflight: Hashable | None = None
        self._view_partial: tuple[Hashable, Any] | None = None  # the running view's on-screen part
        self._view_progress: tuple[Hashable, int, int] | None = None  # (key, done, total)
        self._rendering_memo: tuple[tuple[Any, ...], HeavyRendering] | None = None
        self._table_shown: tuple[Frame, tuple[Any, ...]] | None = None  # (frame, options) in the table
        self._colouring_memo: tuple[tuple[Any, str, Any], Colouring] | None = None

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                prompt = PromptView(id="prompt")
                prompt.border_title = "prompt"
                yield prompt
                panel = ViewPanel(id="panel")
                panel.border_title = "view details"
                yield panel
            side = Vertical(id="side")
            side.border_title = "next token"
            side.border_subtitle = "raw softmax, no filter"
            with side:
                yield Candidates(id="candidates")
        yield Legend(id="legend")
        yield Detail(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        unknown = unknown_ids(self.keymap)
        for name in unknown:
            self.notify(f"[keymap] {name}: no such binding id; see the help screen (?) for the ids",
                        severity="warning", markup=False)
        self.set_keymap({k: v for k, v in self.keymap.items() if k not in unknown})
        self._width = self.size.width
        self._fit_side()
        self.push_screen(LoadingScreen(str(self.settings.model.name)))
        self._load(self.engine_factory)

    def on_resize(self, event: events.Resize) -> None:
        # runs before App's own resize handler, so ``self.size`` still holds the old size here
        self._width = event.size.width
        self._fit_side()
        self._refresh()

    def _fit_side(self) -> None:
        self.query_one("#side").styles.width = self._side_width

    @property
    def _side_width(self) -> int:
        """Width of the candidates panel: wider on wide terminals and with the z column."""
        return (40 if self._width < 120 else 56) + (4 if self.show_z else 0) + (4 if self.show_processed else 0)

    # ------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, factory: EngineFactory) -> None:
        def progress(text: str, fraction: float | None = None) -> None:
            self.post_message(m.LoadProgress(str(text), fraction))

        try:
            engine = factory(progress)
            text, tokens = self.initial_text or self.settings.prompt.example_prompt, self.initial_tokens
            saved = self.initial_saved
            session, note = self._prepare_session(engine, self.initial_session, self.session_path)
            if session is not None:
                tokens = session.branches[session.current].tokens
            if saved is not None and saved.model_fingerprint == engine.info.fingerprint:
                tokens = saved.token_ids
            elif saved is not None:
                text, tokens = saved.text, None
                self.post_message(m.Notice(f"{saved.path.name} was saved with another model ({saved.model}): "
                                           "its text was re-tokenised instead of reusing its token ids", "warning"))
            ids = start_tokens(engine, text, tokens)
            progress(f"running the starting prompt ({len(ids)} tokens)…", 0.0)
            snapshot = engine.set_tokens(
                ids, lambda done, total: progress(f"running the starting prompt: {done}/{total} tokens…", done / total))
            frame = frame_of(engine, snapshot, self.settings.display.tokens_to_show)
            analyses = dict(engine.analyses())
        except Exception as e:  # noqa: BLE001 - every failure becomes one line on the loading screen
            self.post_message(m.LoadFailed(one_line(e)))
            return
        self.post_message(m.EngineReady(engine, analyses, frame))
        if session is not None:
            self.post_message(m.SessionReady(session, self.session_path, note))

    def on_load_progress(self, message: m.LoadProgress) -> None:
        if isinstance(self.screen, LoadingScreen):
            self.screen.progress(message.text, message.fraction)

    def on_load_failed(self, message: m.LoadFailed) -> None:
        self.load_error = message.error
        if isinstance(self.screen, LoadingScreen):
            self.screen.fail(message.error)

    def on_engine_ready(self, message: m.EngineReady) -> None:
        self.engine = message.engine
        self.engine.on_notice(lambda line: self.post_message(m.Notice(line, "warning")))
        self.analyses = dict(message.analyses)
        self.specs = dict(self.engine.specs())
        self.views = heavy_views(self.specs)
        self.start = message.start
        self._engine_tokens = message.start.tokens
        self._keep_frame(message.start)
        self.branches = [Branch.new(message.start.tokens, message.start)]
        self.current = 0
        reason = unavailable_reason(self.view, self.analyses)
        if reason is not None:
            self.notify(f"view {self.view.title} unavailable: {reason}", severity="warning", markup=False)
            self.view_id = "plain"
        if isinstance(self.screen, LoadingScreen):
            self.pop_screen()
        self.refresh_bindings()
        self._refresh()

    def get_system_commands(self, screen):
        """Textual's own palette commands, less its Quit (the bindings table has one)."""
        return (c for c in super().get_system_commands(screen) if c.title != "Quit")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _NEEDS_ENGINE and self.engine is None:
            return False
        return True

    # ------------------------------------------------------------ state helpers

    @property
    def branch(self) -> Branch:
        return self.branches[self.current]

    @property
    def view(self) -> View:
        return view_by_id(self.view_id, self.views)

    def view_params(self, view: View | None = None) -> dict[str, Any]:
        """The current parameters of ``view`` (default: the shown view)."""
        view = view or self.view
        if view.id not in self.params:
            assert self.engine is not None
            spec = self.specs.get(view.analysis) if view.analysis else None
            self.params[view.id] = spec.defaults(self.engine.info) if spec is not None else {}
        return self.params[view.id]

    def _set_branch(self, branch: Branch) -> None:
        self.branches[self.current] = branch

    @property
    def busy(self) -> bool:
        """An engine job or a heavy-view analysis is in flight."""
        return self._inflight is not None or self._view_inflight is not None

    # ------------------------------------------------------------ the engine lane

    def on_key(self, event: events.Key) -> None:
        """Remember when the key being dispatched arrived (runs before the app's bindings); while
        sampling, any key stops it and does nothing else."""
        self._key_time = event.time
        if self._sample_stop is not None:
            self._sample_stop.set()
            event.prevent_default()
            event.stop()

    def _request_step(self, step: StepKind) -> None:
        """Queue an append or pop for the current branch (see ``lane``: every key counts)."""
        if self.engine is None:
            return
        self._sync_failed = None
        at = self._key_time if self._key_time is not None else time.monotonic()
        self._key_time = None
        self.lane.push(step, self.branch.id, self.query_one(Candidates).selected, at)
        self._pump()

    def _drop_steps(self) -> int:
        """Drop the queued steps (the running one still lands on its branch); how many."""
        dropped = self.lane.clear()
        self._refresh_status()
        return dropped

    def _pump(self) -> None:
        """Start the next engine job if none is running: the branch's sync, then its next step."""
        if self.engine is None or self._inflight is not None:
            self._refresh_status()
            return
        b = self.branch
        if self.lane.branch_id != b.id:
            self.lane.clear()
        need_sync = self._engine_tokens != b.tokens or b.current is None
        sync = b.tokens if need_sync else None
        job = None
        while job is None and b.current is not None and self.lane.steps and self.lane.branch_id == b.id:
            step = self.lane.next()
            if step.kind == "append":
                ids = b.current.snapshot.next.top_ids
                job = Job(b.id, b.tokens, sync=sync, step="append", token=int(ids[min(step.row, len(ids) - 1)]))
            elif len(b.tokens) > 1:
                job = Job(b.id, b.tokens, sync=sync, step="pop")
            else:
                self.lane.clear()
                self.notify("the prompt keeps at least one token", severity="warning")
        if job is None and need_sync and self._sync_failed != (b.id, b.tokens):
            job = Job(b.id, b.tokens, sync=b.tokens)
        if job is None and self._needs_lens(b):
            job = Job(b.id, b.tokens, fill=True)
        if (job is None and self.show_processed and b.current is not None and b.current.processed is None
                and self._processed_tried != b.tokens):  # the frame again, with the processed column
            self._processed_tried = b.tokens
            job = Job(b.id, b.tokens, sync=b.tokens)
        if job is None:
            self._request_view()
            self._refresh_status()
            return
        self._inflight = job
        self._inflight_since = time.monotonic()
        self.set_timer(BUSY_AFTER, self._refresh_status)
        self.lane.running = job.step
        self._run_job(self.engine, job)
        self._refresh_status()

    def _needs_lens(self, b: Branch) -> bool:
        """The logit-lens view is shown and the engine's lens records of this branch are incomplete
        (steps leave them out): fill them on the lane, after the steps. A few missing (after steps)
        are filled before the view runs, so it finds them all; many (a long prefill) after the view
        has been drawn, since the view shows the visible part of a long prompt first."""
        if self.view.analysis != LENS_VIEW or b.current is None or self._engine_tokens != b.tokens:
            return False
        if unavailable_reason(self.view, self.analyses) is not None or self._lens_filled == b.tokens:
            return False
        missing = sum(1 for p in b.current.snapshot.positions if p.lens is None)
        return 0 < missing and (missing <= FILL_FIRST or self._view_key() in self._view_cache)

    @work(thread=True, exit_on_error=False, group="engine")
    def _run_job(self, engine: EngineLike, job: Job) -> None:
        start = time.perf_counter()
        try:
            # a fill gives way to any step the user asks for meanwhile
            frame = run_job(engine, job, self.settings.display.tokens_to_show, stop=lambda: bool(self.lane.steps),
                            params=self._sampling_params() if self.show_processed else None)
        except Exception as e:  # noqa: BLE001 - becomes a notice; the branch keeps its tokens
            self.post_message(m.JobFailed(job, one_line(e)))
            return
        self.post_message(m.JobDone(job, frame, time.perf_counter() - start))

    def on_job_done(self, message: m.JobDone) -> None:
        job, frame = message.job, message.frame
        self._inflight = None
        if job.step is not None:
            self.lane.finished(job.step, message.seconds)
        self._engine_tokens = frame.tokens
        self._keep_frame(frame)
        if job.fill:  # the records live in the engine; the frame on screen stays, selection and all
            if all(p.lens is not None for p in frame.snapshot.positions):
                self._lens_filled = frame.tokens
            self._pump()
            return
        for i, b in enumerate(self.branches):
            if b.id != job.branch_id:
                continue
            if job.step is None:
                more = frame.processed is not None and b.current is not None and b.current.processed is None
                if frame.tokens == b.tokens and (b.current is None or more):  # else keep the frame shown
                    self.branches[i] = replace(b, frame=frame)
            elif b.tokens == job.base:  # not reset meanwhile
                self.branches[i] = b.with_frame(frame)
        self._refresh()
        self._pump()

    def on_job_failed(self, message: m.JobFailed) -> None:
        job = message.job
        self._inflight = None
        if job.step is not None:
            self.lane.finished(job.step, 0.0)
        dropped = 0 if job.fill else self.lane.clear()
        self._engine_tokens = None  # unknown: the next job syncs first
        if job.fill:
            self._lens_filled = job.base  # not retried: the lens view computes what it needs itself
        elif job.step is None:
            self._sync_failed = (job.branch_id, job.base)
        what = "filling the lens records" if job.fill else {"append": "append", "pop": "pop", None: "running the prompt"}[job.step]
        more = f"; {plural(dropped, 'queued step')} dropped" if dropped else ""
        self.notify(f"{what} failed: {message.error}{more}", severity="error", markup=False)
        self._refresh()
        self._pump()

    # ------------------------------------------------------------ heavy views

    def _view_key(self) -> Hashable | None:
        """What the shown heavy view's result depends on: the tokens it reads, the cursor if it
        depends on it, and only the parameters that change the computation (not those that select)."""
        view = self.view
        if not view.heavy or self.engine is None or view.analysis not in self.specs:
            return None
        spec = self.specs[view.analysis]
        b = self.branch
        tokens = b.tokens[: b.cursor + 1] if spec.reads == "prefix" else b.tokens
        cursor = b.cursor if spec.at_cursor else None
        computing = tuple(sorted(spec.computing(self.view_params(view)).items()))
        return (tokens, cursor, view.id, computing)

    def _window(self) -> tuple[int, int]:
        """Positions [start, stop) about as many as the prompt panel shows, around the cursor."""
        b = self.branch
        size = self.query_one(PromptView).size
        cells = max(1, size.width) * max(1, size.height)
        texts = self._texts()
        chars = max(1.0, sum(len(t) for t in texts) / max(1, len(texts)))  # characters per token
        half = int(cells / chars / 2) + 1
        return max(0, b.cursor - half), min(len(b.tokens), b.cursor + half)

    def _request_view(self) -> None:
        """Ask a worker for the shown heavy view unless cached, already running, or stepping."""
        key = self._view_key()
        if key is None or key in self._view_cache or self._view_inflight is not None:
            return
        if self._inflight is not None or self.lane.steps:
            return  # steps first; asked again when the lane is idle
        if self._needs_lens(self.branch):
            self._pump()  # the lens records first; asked again when the lane is idle
            return
        view = self.view
        if unavailable_reason(view, self.analyses) is not None:
            return
        self._view_inflight = key
        self._view_partial = None
        self._view_progress = None
        b = self.branch
        self._run_view(self.engine, view.analysis, key, b.tokens, b.cursor, dict(self.view_params(view)),
                       self._window())
        self._refresh_status()

    @work(thread=True, exit_on_error=False, group="view")
    def _run_view(self, engine, analysis, key, tokens, cursor, params, window) -> None:
        """One analysis at a time (``_view_inflight``); ``exclusive`` is not used because cancelling a
        thread worker does not stop it, and its finishing result would be reported as cancelled."""
        try:
            # the engine polls this at least once per layer: stop once the screen wants another result
            result = engine.analyze(analysis, list(tokens), cursor, params,
                                    cancelled=lambda: self._view_key() != key,
                                    progress=lambda done, total: self.post_message(m.ViewProgress(key, done, total)),
                                    partial=lambda part: self.post_message(m.ViewPartial(key, part)),
                                    window=window)
        except Cancelled:
            self.post_message(m.ViewCancelled(key))
            return
        except Exception as e:  # noqa: BLE001 - becomes a notice and a legend line
            self.post_message(m.ViewFailed(key, one_line(e)))
            return
        self.post_message(m.ViewDone(key, result))

    def on_view_done(self, message: m.ViewDone) -> None:
        self._view_inflight = None
        self._view_partial = None
        self._view_progress = None
        self._view_cache.put(message.key, message.result)
        self._view_arrived(message.key)
        self._pump()  # e.g. the lens records a long prefill left out, now that the view is drawn

    def on_view_partial(self, message: m.ViewPartial) -> None:
        if message.key == self._view_inflight:
            self._view_partial = (message.key, message.result)
            if message.key == self._view_key():
                self._refresh()

    def on_view_progress(self, message: m.ViewProgress) -> None:
        if message.key == self._view_inflight:
            self._view_progress = (message.key, message.done, message.total)
            self._refresh_status()

    def on_view_cancelled(self, message: m.ViewCancelled) -> None:
        self._view_inflight = None
        self._view_partial = None
        self._view_progress = None
        self._view_arrived(message.key)

    def on_view_failed(self, message: m.ViewFailed) -> None:
        self._view_inflight = None
        self._view_partial = None
        self._view_progress = None
        self._view_cache.put(message.key, ViewError(message.error))
        self.notify(f"{message.key[2]} view failed: {message.error}", severity="error", markup=False)
        self._view_arrived(message.key)

    def _view_arrived(self, key: Hashable) -> None:
        if key == self._view_key():
            self._refresh()
        else:
            self._refresh_status()
            self._request_view()  # the screen moved on: ask for what it shows now

    # ------------------------------------------------------------ drawing

    def _colouring(self, frame: Frame) -> tuple[Colouring, HeavyRendering | None]:
        view = self.view
        n = len(frame.tokens)
        if not view.heavy:
            key = (frame.snapshot, view.id, None)
            if not self._memo_hit(key):
                self._colouring_memo = (key, light_colouring(view, frame.snapshot, self.engine.info))
            return self._colouring_memo[1], None
        reason = unavailable_reason(view, self.analyses)
        if reason is not None:
            return pending_colouring(n, f"unavailable: {reason}"), None
        key = self._view_key()
        result = self._view_cache.get(key)
        partial = self._view_partial is not None and self._view_partial[0] == key and result is None
        if partial:
            result = self._view_partial[1]
        if isinstance(result, ViewError):
            return pending_colouring(n, f"failed: {result.error}"), None
        if result is None:
            return pending_colouring(n, "computing…"), None
        rendering = self._rendering(frame, result)
        memo = (frame.snapshot, view.id, rendering)
        if not self._memo_hit(memo):
            self._colouring_memo = (memo, heavy_colouring(rendering, n))
        colouring = self._colouring_memo[1]
        if partial:
            colouring = replace(colouring, caption=colouring.caption + " (filling in…)")
        return colouring, rendering

    def _rendering(self, frame: Frame, result: Any) -> HeavyRendering:
        """The result drawn for the current selecting parameters; memoised, never computed."""
        view = self.view
        params = self.view_params(view)
        memo = (id(result), view.id, tuple(sorted(params.items())), self.skip_first, self.branch.cursor)
        if self._rendering_memo is None or self._rendering_memo[0] != memo:
            texts = [p.text for p in frame.snapshot.positions]
            rendering = render_result(self.specs[view.analysis], result, params, info=self.engine.info,
                                      texts=texts, cursor=self.branch.cursor, skip_first=self.skip_first)
            self._rendering_memo = (memo, rendering)
        return self._rendering_memo[1]

    def _memo_hit(self, key: tuple[Any, str, Any]) -> bool:
        """The memo holds the colouring of this very snapshot, view and result (by identity)."""
        if self._colouring_memo is None:
            return False
        old = self._colouring_memo[0]
        return old[0] is key[0] and old[1] == key[1] and old[2] is key[2]

    def _refresh(self) -> None:
        """Redraw from the state: prompt, legend, detail, panel, and the table if its frame changed."""
        if self.engine is None or not self.branches:
            return
        b = self.branch
        if b.tokens != self._tree_noted:  # the user is on another path: visit it in the tree
            self.branch_tree.add(b.tokens)
            self._tree_noted = b.tokens
        frame = b.current
        prompt = self.query_one(PromptView)
        title = self._view_title()
        if frame is None:
            if self._sync_failed == (b.id, b.tokens):
                message = Text(f"could not run this prompt ({plural(len(b.tokens), 'token')}); see the notice. "
                               "h removes a token and retries, w / s switch branch, a removes it", style=Style(italic=True))
            else:
                message = Text(f"running the prompt ({plural(len(b.tokens), 'token')})…", style=Style(italic=True))
            prompt.show_message(message)
            self.query_one(Legend).update(Text(title))
            self.query_one(Detail).update(Text(""))
            self.query_one(ViewPanel).show(None)
            self.query_one(Candidates).clear()
            self._table_shown = None
        else:
            colouring, rendering = self._colouring(frame)
            texts = [p.text for p in frame.snapshot.positions]
            prompt.show(texts, colouring.styles, b.cursor if self.show_cursor else None)
            self.query_one(Legend).update(legend(self.view.title, colouring, self._width - 2))
            if rendering is not None:
                value = float(rendering.values[b.cursor]) if b.cursor < len(rendering.values) else math.nan
                line = detail(frame.snapshot, b.cursor, self.view.title, value, rendering.scale.unit)
                panel = rendering.panel(b.cursor, max(20, self.query_one("#left").size.width - 5))
            else:
                line = detail(frame.snapshot, b.cursor)
                panel = None
            self.query_one(Detail).update(line)
            self.query_one(ViewPanel).show(panel)
            options = (self.show_z, self._side_width, self._fork_at(), self.show_processed)
            if self._table_shown is None or self._table_shown[0] is not frame or self._table_shown[1] != options:
                self._show_table(frame, options)
        self._refresh_status()
        self._request_view()

    def _show_table(self, frame: Frame, options: tuple[Any, ...]) -> None:
        """Fill the table from ``frame``, highlighting the row the keys now apply to: the next-token
        candidates, or with the cursor inside the prompt the alternatives to the token there."""
        table = self.query_one(Candidates)
        fork_at = options[2]
        side = self.query_one("#side")
        same = self._table_shown is not None and self._table_shown[0] is frame
        if fork_at is not None:
            p = frame.snapshot.positions[fork_at - 1]
            ids = [int(t) for t in p.top_ids[: self.settings.display.tokens_to_show]]
            actual = frame.tokens[fork_at]
            keep = same and self._table_shown[1][2] == fork_at
            row = table.selected if keep else (ids.index(actual) if actual in ids else len(ids))
            table.show(frame, self.settings.display.tokens_to_show, self.show_z, self._side_width - 2, row,
                       fork_at=fork_at, fork_texts=self.engine.token_texts(ids), show_processed=self.show_processed)
            side.border_title = f"at #{fork_at}: l / enter forks"
            self._table_shown = (frame, options)
            return
        side.border_title = "next token"
        if self.lane.outstanding and self.lane.branch_id == self.branch.id:
            row = self.lane.next_row()  # what the next queued append will pick
        elif same and self._table_shown[1][2] is None:
            row = table.selected  # same frame, new columns or width
        else:
            row, self.lane.selection = self.lane.selection, 0  # the table after the last step
        table.show(frame, self.settings.display.tokens_to_show, self.show_z, self._side_width - 2, row,
                   show_processed=self.show_processed)
        self._table_shown = (frame, options)

    def _view_title(self) -> str:
        view = self.view
        params = self.params.get(view.id) if view.heavy else None
        if not params:
            return view.title
        return view.title + " (" + ", ".join(f"{k} {param_text(v)}" for k, v in params.items()) + ")"

    def _refresh_status(self) -> None:
        if self.engine is None or not self.branches:
            return
        b = self.branch
        info = self.engine.info
        text = Text(no_wrap=True, overflow="ellipsis")
        queued = len(self.lane.steps) if self.lane.branch_id == b.id else 0
        progress = self._view_progress
        if queued:
            text.append(f"● {queued} queued".ljust(_BUSY_WIDTH), Style(bold=True, color="yellow"))
        elif self._view_inflight is not None or (
                self._inflight is not None and time.monotonic() - self._inflight_since >= BUSY_AFTER):
            text.append("● working".ljust(_BUSY_WIDTH), Style(bold=True, color="yellow"))
        else:
            text.append("○ ready".ljust(_BUSY_WIDTH), Style(dim=True))
        if self._view_inflight is not None and progress is not None and progress[0] == self._view_inflight:
            text.append(f" {self.view.title} {progress[1]}/{progress[2]}", Style(color="yellow"))
        text.append(" │ ")
        text.append(f"branch {self.current + 1}/{len(self.branches)}", Style(bold=True))
        text.append(f" │ {plural(len(b.tokens), 'token')} │ cursor #{b.cursor} ")
        frame = b.current
        if frame is not None and b.cursor < len(frame.snapshot.positions):
            text.append(repr_token(frame.snapshot.positions[b.cursor].text))
        text.append(" │ view: ")
        text.append(self._view_title(), Style(bold=True))
        text.append(f" │ {printable(info.name)} · {info.device}")
        try:
            status = self.query_one(StatusLine)
        except NoMatches:  # the app is closing: a busy-mark timer fired after the main screen went
            return
        status.update(text)

    # ------------------------------------------------------------ actions: stepping

    def action_table_up(self) -> None:
        self._move_selection(-1)

    def action_table_down(self) -> None:
        self._move_selection(1)

    def _move_selection(self, delta: int) -> None:
        """Move the table selection; while steps are outstanding, the one of the table after them."""
        table = self.query_one(Candidates)
        if self._fork_at() is None and self.lane.outstanding and self.lane.branch_id == self.branch.id:
            self.lane.move_selection(delta, max(table.row_count, 1))
            self._refresh_status()
        elif delta < 0:
            table.action_cursor_up()
        else:
            table.action_cursor_down()

    def action_drop_pending(self) -> None:
        """Esc: drop the queued steps and give the keys back from a focused panel."""
        self.set_focus(None)
        dropped = self._drop_steps()
        if dropped:
            self.notify(f"dropped {plural(dropped, 'queued step')}", markup=False)

    def action_append(self) -> None:
        if self._fork_at() is not None:
            self._fork()
        else:
            self._request_step("append")

    def _fork_at(self) -> int | None:
        """The cursor's position when it is shown inside the prompt (not on the first or last
        token) over a drawn frame: the table shows the alternatives there and append forks."""
        b = self.branch if self.branches else None
        if b is None or not self.show_cursor or b.current is None or not 0 < b.cursor < len(b.tokens) - 1:
            return None
        return b.cursor

    def _fork(self) -> None:
        """A new path: the tokens before the cursor and the alternative selected in the table."""
        b, at = self.branch, self._fork_at()
        assert b.current is not None and at is not None
        p = b.current.snapshot.positions[at - 1]
        ids = [int(t) for t in p.top_ids[: self.settings.display.tokens_to_show]]
        row = self.query_one(Candidates).selected
        token = ids[row] if row < len(ids) else b.tokens[at]
        if token == b.tokens[at]:
            self.notify(f"#{at} already holds that token: select another row to fork", severity="warning")
            return
        self._goto(b.tokens[:at] + (token,))
        text = self.engine.token_texts([token])[0]
        self.notify(f"forked at #{at} with {repr_token(text)} (rank {row + 1})", markup=False)

    def action_pop(self) -> None:
        self._request_step("pop")

    def action_reset(self) -> None:
        assert self.start is not None
        dropped = self._drop_steps()
        self.lane.selection = 0
        if dropped:
            self.notify(f"reset: {plural(dropped, 'queued step')} dropped", markup=False)
        self._set_branch(replace(Branch.new(self.start.tokens, self.start), id=self.branch.id))
        self._refresh()
        self._pump()

    # ------------------------------------------------------------ actions: branches

    def _branches_full(self) -> bool:
        """True (with a notice) when every branch slot of ``[prompt] max_prompts`` is in use."""
        cap = self.settings.prompt.max_prompts
        if len(self.branches) < cap:
            return False
        self.notify(f"all {cap} branches are in use ([prompt] max_prompts); remove one with a", severity="warning", markup=False)
        return True

    def action_branch_copy(self) -> None:
        if self._branches_full():
            return
        self._leave_branch()
        self.branches.insert(self.current + 1, self.branch.copy())
        self.current += 1
        self._refresh()
        self.notify(f"branch {self.current + 1}/{len(self.branches)}: a copy of the prompt", markup=False)

    def action_branch_remove(self) -> None:
        if len(self.branches) == 1:
            self.notify("the last branch cannot be removed", severity="warning")
            return
        self._leave_branch()
        removed = self.branches.pop(self.current)
        self._removed = (self.current, removed)
        self.current = min(self.current, len(self.branches) - 1)
        self._switched()
        self.notify(f"removed a branch of {plural(len(removed.tokens), 'token')}; u brings it back", markup=False)

    def action_branch_undo(self) -> None:
        if self._removed is None:
            self.notify("no removed branch to bring back", severity="warning")
            return
        if self._branches_full():
            return
        self._leave_branch()
        index, branch = self._removed
        self._removed = None
        self.current = min(index, len(self.branches))
        self.branches.insert(self.current, branch)
        self._switched()

    def action_branch_next(self) -> None:
        self._leave_branch()
        self.current = (self.current + 1) % len(self.branches)
        self._switched()

    def action_branch_prev(self) -> None:
        self._leave_branch()
        self.current = (self.current - 1) % len(self.branches)
        self._switched()

    def _leave_branch(self) -> None:
        """Steps queued on the branch being left are dropped (the running one still lands on it)."""
        dropped = self._drop_steps()
        self.lane.selection = 0
        if dropped:
            self.notify(f"left the branch: {plural(dropped, 'queued step')} dropped", markup=False)

    def _switched(self) -> None:
        self._refresh()
        self._pump()

    # ------------------------------------------------------------ actions: the branch tree

    def _keep_frame(self, frame: Frame) -> None:
        """Remember a frame the engine produced: in the tree (its path, unvisited, and the
        probability of each token given its prefix) and in the LRU of frames by tokens."""
        if not frame.tokens:
            return
        self.branch_tree.add(frame.tokens, visit=False)
        self.branch_tree.set_probs(frame.tokens, [p.token_prob for p in frame.snapshot.positions])
        self._frames.put(frame.tokens, frame)

    def _goto(self, tokens: Sequence[int]) -> None:
        """Move this branch to the path ``tokens`` (a branch switch: its queued steps are dropped)."""
        tokens = tuple(int(t) for t in tokens)
        self._leave_branch()
        self._set_branch(Branch.new(tokens, self._frames.get(tokens)))
        self._switched()

    def action_tree_parent(self) -> None:
        target = self.branch_tree.to_parent(self.branch.tokens)
        if target is None:
            self.notify("this node has no parent: it is at the top of the tree", severity="warning")
            return
        self._goto(target)

    def action_tree_child(self) -> None:
        target = self.branch_tree.to_child(self.branch.tokens)
        if target is None:
            self.notify("this node has no children: append (l) or fork (enter) to make one", severity="warning")
            return
        self._goto(target)

    def action_tree_sibling(self, delta: int) -> None:
        target = self.branch_tree.to_sibling(self.branch.tokens, delta)
        if target is None:
            self.notify("this node has no siblings", severity="warning")
            return
        self._goto(target)

    def _sampling_params(self) -> SamplingParams:
        """The sampler's settings from ``[sampling]``."""
        s = self.settings.sampling
        return SamplingParams(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                              repetition_penalty=s.repetition_penalty, no_repeat_ngram_size=s.no_repeat_ngram_size,
                              min_new_tokens=s.min_new_tokens)

    def action_toggle_processed(self) -> None:
        self.show_processed = not self.show_processed
        self.query_one("#side").border_subtitle = ("prob raw · proc: sampler ([sampling])" if self.show_processed
                                                   else "raw softmax, no filter")
        self._processed_tried = None
        self._fit_side()
        self._refresh()
        self._pump()

    def action_sample(self) -> None:
        b = self.branch
        if b.current is None or self._inflight is not None or self.lane.steps:
            self.notify("sampling starts once the queued steps are done (esc drops them)", severity="warning")
            return
        s = self.settings.sampling
        params = self._sampling_params()
        self._sample_stop = threading.Event()
        self._inflight = Job(b.id, b.tokens)  # holds the engine lane until the sampling ends
        self._sample(self.engine, b.id, b.tokens, s.tokens, params, s.stop, self._sample_stop)
        self._refresh_status()

    @work(thread=True, exit_on_error=False, group="engine")
    def _sample(self, engine: EngineLike, branch_id: int, base: tuple[int, ...], n: int, params: SamplingParams,
                stop_text: str, stop: threading.Event) -> None:
        count = 0

        def landed(frame: Frame) -> None:
            nonlocal count
            count += 1
            self.post_message(m.SampleStep(branch_id, frame))

        try:
            reason = sample_run(engine, base, n, params, self.seed, stop_text, self.settings.display.tokens_to_show,
                                stop.is_set, landed, self.show_processed)
        except Exception as e:  # noqa: BLE001 - becomes a notice; what landed stays
            self.post_message(m.SampleDone(branch_id, count, "", one_line(e)))
            return
        self.post_message(m.SampleDone(branch_id, count, reason))

    def on_sample_step(self, message: m.SampleStep) -> None:
        frame = message.frame
        self._engine_tokens = frame.tokens
        self._keep_frame(frame)
        for i, b in enumerate(self.branches):
            if b.id == message.branch_id and b.tokens == frame.tokens[:-1]:
                self.branches[i] = b.with_frame(frame)
        self._refresh()

    def on_sample_done(self, message: m.SampleDone) -> None:
        self._inflight = None
        self._sample_stop = None
        if message.error:
            self._engine_tokens = None  # unknown: the next job syncs first
            self.notify(f"sampling failed after {plural(message.count, 'token')}: {message.error}", severity="error",
                        markup=False)
        else:
            self.notify(f"sampled {plural(message.count, 'token')} ({message.reason})", markup=False)
        self._refresh()
        self._pump()

    def action_compare(self) -> None:
        b = self.branch
        other = self.branch_tree.nearest_other(b.tokens)
        name = "other path"  # the one visited last of those forking off nearest
        if other is None and len(self.branches) > 1:
            other, name = self.branches[(self.current + 1) % len(self.branches)].tokens, "next branch"
        if other is None or other == b.tokens:
            self.notify("nothing to compare with: fork (enter on an alternative) or open another branch",
                        severity="warning")
            return
        if b.current is None or self._inflight is not None or self.lane.steps:
            self.notify("compare once the queued steps are done (esc drops them)", severity="warning")
            return
        frame = self._frames.get(other)
        if frame is not None:
            self._show_comparison(b.current.snapshot, frame.snapshot, name)
            return
        self._inflight = Job(b.id, b.tokens)  # holds the engine lane while the other path runs
        self._compare_run(self.engine, b.tokens, other, name)
        self._refresh_status()

    @work(thread=True, exit_on_error=False, group="engine")
    def _compare_run(self, engine: EngineLike, tokens: tuple[int, ...], other: tuple[int, ...], name: str) -> None:
        rows = self.settings.display.tokens_to_show
        try:
            theirs = frame_of(engine, engine.set_tokens(list(other)), rows)
            ours = frame_of(engine, engine.set_tokens(list(tokens)), rows)
        except Exception as e:  # noqa: BLE001
            self.post_message(m.CompareReady(None, None, name, one_line(e)))
            return
        self.post_message(m.CompareReady(ours, theirs, name))

    def on_compare_ready(self, message: m.CompareReady) -> None:
        self._inflight = None
        if message.error:
            self._engine_tokens = None
            self.notify(f"compare failed: {message.error}", severity="error", markup=False)
        else:
            self._engine_tokens = message.ours.tokens
            self._keep_frame(message.theirs)
            self._keep_frame(message.ours)
            if self.branch.tokens == message.ours.tokens:
                self._show_comparison(message.ours.snapshot, message.theirs.snapshot, message.name)
        self._refresh()
        self._pump()

    def _show_comparison(self, ours: Snapshot, theirs: Snapshot, name: str) -> None:
        result = compare(ours, theirs)
        tail = "".join(p.text for p in ours.positions[max(0, result.common - 8): result.common])
        self.push_screen(CompareScreen(result, tail, "this branch", name))

    def action_type_text(self) -> None:
        b = self.branch
        at = b.cursor if self.show_cursor else len(b.tokens) - 1
        where = "append to the prompt" if at >= len(b.tokens) - 1 else f"fork after #{at}, in place of what follows"
        self.push_screen(TextInput(f"type text to {where} (enter; esc cancels)"),
                         lambda text: self._typed(text, b.id, b.tokens[: at + 1]))

    def _typed(self, text: str | None, branch_id: int, before: tuple[int, ...]) -> None:
        if text:
            self._tokenize_typed(self.engine, text, branch_id, before)

    @work(thread=True, exit_on_error=False, group="files")
    def _tokenize_typed(self, engine: EngineLike, text: str, branch_id: int, before: tuple[int, ...]) -> None:
        try:
            ids = text_ids(engine, text)
        except Exception as e:  # noqa: BLE001
            self.post_message(m.Notice(f"cannot tokenise the text: {one_line(e)}", "error"))
            return
        self.post_message(m.TextReady(branch_id, before, tuple(ids)))

    def on_text_ready(self, message: m.TextReady) -> None:
        if not message.ids:
            self.notify("the text has no tokens", severity="warning")
            return
        if self.branch.id != message.branch_id or self.branch.tokens[: len(message.before)] != message.before:
            self.notify("the branch changed while the text was tokenised: not added", severity="warning")
            return
        self._goto(message.before + message.ids)
        self.notify(f"added {plural(len(message.ids), 'token')} of typed text", markup=False)

    def action_tree(self) -> None:
        self.push_screen(TreeScreen(self.branch_tree, self.branch.tokens, self.engine, self._tree_remove, self._tree_undo),
                         self._tree_opened)

    def _tree_opened(self, tokens: tuple[int, ...] | None) -> None:
        if tokens is not None and tokens != self.branch.tokens:
            self._goto(tokens)

    def _tree_remove(self, node: int) -> str:
        """Remove ``node``'s subtree; branches inside it move to where it forked off. The notice."""
        path = self.branch_tree.path(node)
        fork = self.branch_tree.path(self.branch_tree.parent(node))
        inside = [i for i, b in enumerate(self.branches) if b.tokens[: len(path)] == path]
        if inside and not fork:
            return "a top-level node with a branch inside cannot be removed (remove the branch with a first)"
        removal = self.branch_tree.remove(node)
        self._tree_removed.append(removal)
        for i in inside:
            if i == self.current:
                self._goto(fork)
            else:
                self.branches[i] = Branch.new(fork, self._frames.get(fork))
        moved = f"; {len(inside)} open branch(es) moved to where it forked off" if inside else ""
        return f"removed a subtree of {plural(len(removal.runs), 'node')}{moved}; u (in the tree) brings it back"

    def _tree_undo(self) -> str:
        if not self._tree_removed:
            return "no removed subtree to bring back"
        removal = self._tree_removed.pop()
        self.branch_tree.restore(removal)
        return f"brought back a subtree of {plural(len(removal.runs), 'node')}"

    # ------------------------------------------------------------ actions: sessions

    @property
    def sessions_dir(self) -> Path:
        """Where sessions are listed (``o`` lists prompts; ``O`` lists these)."""
        return self.settings.prompt.path / "sessions"

    @staticmethod
    def _prepare_session(engine: EngineLike, session: Session | None, path: Path | None) -> tuple[Session | None, str]:
        """``session`` made ready for ``engine``'s model (on a worker), and the notice to give."""
        if session is None:
            return None, ""
        info = engine.info
        ready, retokenised = for_model(session, info.fingerprint, info.vocab_size, engine.tokenize)
        name = path.name if path is not None else "the session"
        if retokenised:
            return ready, (f"{name} was saved with another model ({session.model}): its texts were re-tokenised, "
                           "so the tree's probabilities and visit order start afresh")
        return ready, f"opened {name}: {len(ready.tree) - 1} tree nodes, {len(ready.branches)} open branch(es)"

    def action_session_save(self) -> None:
        path = self.session_path
        if path is None:
            path = self.sessions_dir / f"session-{datetime.now():%Y%m%d-%H%M%S}.json"
            self.session_path = path
        tree = Tree.from_dict(self.branch_tree.to_dict())  # a copy: the worker reads it while keys go on
        branches = [(b.tokens, b.cursor) for b in self.branches]
        self._save_session(self.engine, path, tree, branches, self.current)

    @work(thread=True, exit_on_error=False, group="files")
    def _save_session(self, engine: EngineLike, path: Path, tree: Tree, branches: list[tuple[tuple[int, ...], int]],
                      current: int) -> None:
        try:
            session = Session(engine.info.name, engine.info.fingerprint, tree,
                              [engine.decode(list(leaf)) for leaf in tree.leaves()],
                              [OpenBranch(t, c, engine.decode(list(t))) for t, c in branches], current)
            save_session(path, session)
        except Exception as e:  # noqa: BLE001
            self.post_message(m.Notice(f"saving the session failed: {one_line(e)}", "error"))
            return
        self.post_message(m.Notice(f"saved the session ({len(tree) - 1} tree nodes, {len(branches)} open "
                                   f"branch(es)) to {path}"))

    def action_session_open(self) -> None:
        self.push_screen(SessionBrowser(self.sessions_dir), self._session_chosen)

    def _session_chosen(self, path: Path | None) -> None:
        if path is not None:
            self._open_session(self.engine, path)

    @work(thread=True, exit_on_error=False, group="files")
    def _open_session(self, engine: EngineLike, path: Path) -> None:
        try:
            session, note = self._prepare_session(engine, load_session(path), path)
        except Exception as e:  # noqa: BLE001
            self.post_message(m.Notice(f"cannot open {path.name}: {one_line(e)}", "error"))
            return
        self.post_message(m.SessionReady(session, path, note))

    def on_session_ready(self, message: m.SessionReady) -> None:
        session: Session = message.session
        cap = self.settings.prompt.max_prompts
        kept = session.branches[:cap]
        self._leave_branch()
        self.branch_tree = session.tree
        self._tree_removed = []
        self._removed = None
        self.branches = [replace(Branch.new(b.tokens, self._frames.get(b.tokens)), cursor=b.cursor) for b in kept]
        self.current = min(session.current, len(self.branches) - 1)
        self._tree_noted = self.branch.tokens  # opening is not a visit: the saved order stands
        self.session_path = message.path
        note = message.note
        if len(session.branches) > cap:
            note += f"; only the first {cap} of its {len(session.branches)} branches are open ([prompt] max_prompts)"
        self.notify(note, severity="warning" if "another model" in note or len(session.branches) > cap
                    else "information", markup=False)
        self._switched()

    # ------------------------------------------------------------ actions: files

    def action_save(self) -> None:
        self._save(self.engine, self.branch.tokens)

    @work(thread=True, exit_on_error=False, group="files")
    def _save(self, engine: EngineLike, tokens: tuple[int, ...]) -> None:
        try:
            text = engine.decode(list(tokens))
            path = save_prompt(self.settings.prompt.path, text, list(tokens), engine.info.name, engine.info.fingerprint)
        except Exception as e:  # noqa: BLE001
            self.post_message(m.Notice(f"save failed: {one_line(e)}", "error"))
            return
        self.post_message(m.Notice(f"saved {len(tokens)} tokens to {path}"))

    def action_export(self) -> None:
        """Write what is on screen (see ``export.py``) to a new folder beside the prompts folder."""
        frame = self.branch.current
        if frame is None:
            self.notify("nothing to export yet: the prompt is still running", severity="warning")
            return
        view, result = self.view, None
        status = "no values" if view.measure is None and not view.heavy else "ready"
        if view.heavy:
            reason = unavailable_reason(view, self.analyses)
            key = self._view_key()
            cached = self._view_cache.get(key) if reason is None and key is not None else None
            if reason is not None or key is None:
                status = f"unavailable: {reason or 'no analysis'}"
            elif isinstance(cached, ViewError):
                status = f"failed: {cached.error}"
            elif cached is not None:
                result = cached
            elif self._view_partial is not None and self._view_partial[0] == key:
                result, status = self._view_partial[1], "partial"
            else:
                status = "computing"
        info = self.engine.info
        shown = Shown(view, status, dict(self.view_params(view)), frame.snapshot, frame.cand_texts,
                      self.settings.display.tokens_to_show, self.branch.cursor, info.name, info.fingerprint,
                      self.export_screenshot(), result, {"skip_first": self.skip_first})
        self._export(self.settings.prompt.path.parent / "exports", shown)

    @work(thread=True, exit_on_error=False, group="files")
    def _export(self, root, shown: Shown) -> None:
        try:
            folder, names = write_export(root, shown)
        except Exception as e:  # noqa: BLE001
            self.post_message(m.Notice(f"export failed: {one_line(e)}", "error"))
            return
        self.post_message(m.Notice(f"exported to {folder}: {', '.join(names)}"))

    def notify(self, message: str, **kwargs: Any) -> None:
        """Show a notice; file names, model names and errors in it pass through ``printable``."""
        super().notify(printable(message), **kwargs)

    def on_notice(self, message: m.Notice) -> None:
        self.notify(message.text, severity=message.severity, markup=False)  # type: ignore[arg-type]

    def action_open(self) -> None:
        self.push_screen(PromptBrowser(self.settings.prompt.path), self._opened)

    def _opened(self, saved: SavedPrompt | None) -> None:
        if saved is None:
            return
        if self._branches_full():
            return
        info = self.engine.info
        bad = [t for t in saved.token_ids if t >= info.vocab_size]
        if saved.model_fingerprint == info.fingerprint and bad:
            self.notify(f"cannot open {saved.path.name}: token id {bad[0]} is outside the model's vocabulary "
                        f"of {info.vocab_size}", severity="error", markup=False)
            return
        if saved.model_fingerprint == info.fingerprint:
            self.post_message(m.PromptReady(saved.token_ids, f"opened {saved.path.name} ({len(saved.token_ids)} tokens)"))
        else:
            self._retokenize(self.engine, saved)

    @work(thread=True, exit_on_error=False, group="files")
    def _retokenize(self, engine: EngineLike, saved: SavedPrompt) -> None:
        try:
            ids = tuple(engine.tokenize(saved.text))
        except Exception as e:  # noqa: BLE001
            self.post_message(m.Notice(f"cannot open {saved.path.name}: {one_line(e)}", "error"))
            return
        note = (f"opened {saved.path.name}: saved with another model ({saved.model}), so its text was "
                f"re-tokenised ({len(ids)} tokens) instead of reusing its token ids")
        self.post_message(m.PromptReady(ids, note))

    def on_prompt_ready(self, message: m.PromptReady) -> None:
        if not message.tokens:
            self.notify("the saved prompt has no tokens", severity="error")
            return
        if self._branches_full():
            return
        self._leave_branch()
        self.branches.insert(self.current + 1, Branch.new(message.tokens))
        self.current += 1
        self.notify(message.note, markup=False)
        self._switched()

    # ------------------------------------------------------------ actions: views

    def _show_view(self, view_id: str) -> None:
        self.view_id = view_id
        self._refresh()

    def action_view_next(self) -> None:
        self._show_view(cycle(self.view_id, self.analyses, 1, self.views))

    def action_view_prev(self) -> None:
        self._show_view(cycle(self.view_id, self.analyses, -1, self.views))

    def action_lens(self) -> None:
        spec = self._spec()
        if self.view_id == "sae" and spec is not None and spec.param("layer") is not None:  # p cycles the dictionaries
            param = spec.param("layer")
            params = self.view_params()
            lo, hi = param.bounds(self.engine.info)
            params[param.name] = lo if params[param.name] >= hi else params[param.name] + 1
            self._refresh()
            return
        if self.view_id == LENS_VIEW:
            self._show_view(self._before_lens)
            return
        reason = unavailable_reason(view_by_id(LENS_VIEW), self.analyses)
        if reason is not None:
            self.notify(f"layer view unavailable: {reason}", severity="warning", markup=False)
            return
        self._before_lens = self.view_id
        self._show_view(LENS_VIEW)

    def action_show_view(self, view_id: str) -> None:
        """Show a view by id (from the command palette)."""
        if view_id != self.view_id:
            self._show_view(view_id)

    def action_view_param(self, view_id: str, role: str, delta: int) -> None:
        """Show a view and step its parameter of ``role`` (mode, layer, pick) (from the command palette)."""
        self.action_show_view(view_id)
        self._step(role, role, delta)

    def _spec(self):
        view = self.view
        return self.specs.get(view.analysis) if view.analysis else None

    def action_view_mode(self) -> None:
        self._step("mode", "mode to cycle", 1)

    def action_layer_step(self, delta: int) -> None:
        self._step("layer", "layer", delta)

    def action_pick_step(self, delta: int) -> None:
        self._step("pick", "head or feature", delta)

    def _step(self, role: str, what: str, delta: int) -> None:
        """Step the view's parameter of ``role`` (as its analysis declares it); a selecting one only re-renders."""
        view, spec = self.view, self._spec()
        param = spec.param(role) if spec is not None else None
        if param is None:
            self.notify(f"the {view.title} view has no {what}", severity="warning", markup=False)
            return
        params = self.view_params(view)
        params[param.name] = param.step(params[param.name], delta, self.engine.info)
        self._refresh()

    def action_toggle_scale_first(self) -> None:
        self.skip_first = not self.skip_first
        self.notify("position 0 " + ("left out of" if self.skip_first else "back in") + " the colour scale",
                    markup=False)
        self._refresh()

    def action_toggle_z(self) -> None:
        self.show_z = not self.show_z
        self._fit_side()
        self._refresh()

    def action_toggle_cursor(self) -> None:
        self.show_cursor = not self.show_cursor
        self._refresh()

    # ------------------------------------------------------------ actions: cursor

    def _move_cursor(self, position: int) -> None:
        self._set_branch(self.branch.with_cursor(position))
        self._refresh()

    def _texts(self) -> list[str]:
        frame = self.branch.current
        if frame is None:
            return ["" for _ in self.branch.tokens]
        return [p.text for p in frame.snapshot.positions]

    def action_cursor_next(self) -> None:
        self._move_cursor(self.branch.cursor + 1)

    def action_cursor_prev(self) -> None:
        self._move_cursor(self.branch.cursor - 1)

    def action_word_next(self) -> None:
        self._move_cursor(next_word(self._texts(), self.branch.cursor))

    def action_word_prev(self) -> None:
        self._move_cursor(prev_word(self._texts(), self.branch.cursor))

    def action_cursor_start(self) -> None:
        self._move_cursor(0)

    def action_cursor_end(self) -> None:
        self._move_cursor(len(self.branch.tokens) - 1)

    # ------------------------------------------------------------ actions: app

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.keymap, self.analyses, self.views))

    async def action_quit(self) -> None:
        """Quit; the return code is 1 when the model failed to load."""
        if self.engine is not None:
            self.engine.cancel_analyses()  # a running analysis stops at its next check
        self.exit(return_code=1 if self.load_error else 0)


def make_app(
    settings: Any,
    engine_factory: EngineFactory,
    *,
    initial_text: str | None = None,
    initial_tokens: list[int] | None = None,
    initial_saved: SavedPrompt | None = None,
    start_view: str | None = None,
    session_path: Path | None = None,
    initial_session: Session | None = None,
    seed: int | None = None,
) -> TokenExplorerApp:
    """The app; ``engine_factory(progress)`` runs on a worker while a loading screen shows progress.

    ``initial_tokens`` (exact ids) win over ``initial_text``; with neither, the settings'
    ``[prompt] example_prompt`` is tokenised. ``initial_saved`` (a saved prompt file) wins over both:
    its token ids when its model fingerprint is the engine's, else its text re-tokenised, with a
    notice. ``start_view`` is a view id (``VIEW_IDS``). ``initial_session`` (read from
    ``session_path``) wins over all of them: its tree and branches are opened; ``S`` saves to
    ``session_path`` (default: a new file in the sessions folder, kept for later saves). ``seed``
    makes the sample key's draws reproducible.
    """
    return TokenExplorerApp(settings, engine_factory, initial_text=initial_text, initial_tokens=initial_tokens,
                            initial_saved=initial_saved, start_view=start_view, session_path=session_path,
                            initial_session=initial_session, seed=seed)
