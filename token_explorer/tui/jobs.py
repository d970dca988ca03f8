"""Work done on worker threads: plain functions of an engine, no Textual."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from token_explorer.errors import Cancelled, UserError
from token_explorer.protocol import EngineLike
from token_explorer.results import Snapshot
from token_explorer.sampling_params import SamplingParams

from .state import Frame


@dataclass(frozen=True)
class Job:
    """One trip through the serial engine lane for one branch.

    ``base`` is the branch's tokens when the job started; ``sync`` (if set) is handed to
    ``set_tokens`` first, then the optional ``step`` runs. A ``fill`` job computes the lens records
    the steps left out (for the logit-lens view), and stops early when ``stop()`` turns True.
    """

    branch_id: int
    base: tuple[int, ...]
    sync: tuple[int, ...] | None = None
    step: Literal["append", "pop"] | None = None
    token: int | None = None
    fill: bool = False


def frame_of(engine: EngineLike, snapshot: Snapshot, rows: int, params: SamplingParams | None = None) -> Frame:
    """The snapshot plus the display text of its first ``rows`` next-token candidates, and with
    ``params`` their processed probability (the engine must hold exactly ``snapshot``'s tokens)."""
    ids = [int(t) for t in snapshot.next.top_ids[:rows]] if snapshot.positions else []
    processed = None
    if params is not None and ids:
        processed = tuple(float(p) for p in engine.processed_probs(params, ids))
    return Frame(snapshot, tuple(engine.token_texts(ids)) if ids else (), processed)


def run_job(engine: EngineLike, job: Job, rows: int, stop: Callable[[], bool] = lambda: False,
            params: SamplingParams | None = None) -> Frame:
    """Run ``job`` on the engine and return the resulting frame (``stop`` ends a fill early; with
    ``params`` the frame carries the candidates' processed probabilities)."""
    snapshot = None
    if job.sync is not None:
        snapshot = engine.set_tokens(list(job.sync))
    if job.fill:
        try:
            snapshot = engine.fill_lens(stop)
        except Cancelled:
            snapshot = engine.snapshot()
    if job.step == "append":
        assert job.token is not None, "append needs a token"
        snapshot = engine.append(job.token)
    elif job.step == "pop":
        snapshot = engine.pop()
    if snapshot is None:
        snapshot = engine.snapshot()
    return frame_of(engine, snapshot, rows, params)


def start_tokens(engine: EngineLike, text: str | None, tokens: Sequence[int] | None) -> list[int]:
    """The starting prompt's ids: ``tokens`` as given, else ``text`` tokenised."""
    if tokens is not None:
        ids = [int(t) for t in tokens]
    else:
        ids = list(engine.tokenize(text or ""))
    if not ids:
        raise UserError("the starting prompt has no tokens")
    return ids


def one_line(error: BaseException) -> str:
    """An exception as one line: a UserError's message, else its type and first line."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, UserError):
        return message or "error"
    name = type(error).__name__
    return f"{name}: {message}" if message else name



def text_ids(engine: EngineLike, text: str) -> list[int]:
    """Token ids of ``text`` to put after other tokens: tokenised alone, less the special tokens the
    tokenizer adds to every text (those it gives the empty text, at the start and the end)."""
    ids = list(engine.tokenize(text))
    empty = list(engine.tokenize(""))
    lead = 0
    while lead < min(len(ids), len(empty)) and ids[lead] == empty[lead]:
        lead += 1
    trail = empty[lead:]
    if trail and ids[len(ids) - len(trail):] == trail:
        ids = ids[: len(ids) - len(trail)]
    return [int(t) for t in ids[lead:]]


def sample_run(engine: EngineLike, base: Sequence[int], n: int, params: SamplingParams, seed: int | None,
               stop_text: str, rows: int, stopped: Callable[[], bool], on_frame: Callable[[Frame], None],
               show_processed: bool = False) -> str:
    """From the prompt ``base``, draw up to ``n`` tokens with the sampler and append each, calling
    ``on_frame`` after every one. The k-th draw (from 0) uses ``seed + k`` when a seed is given.
    Ends on an EOS token (kept), once the drawn text contains ``stop_text`` (not before
    ``params.min_new_tokens`` tokens), when ``stopped()`` turns True, or after ``n``; says why."""
    engine.set_tokens(list(base))
    eos = engine.eos_ids()
    drawn: list[int] = []
    for k in range(n):
        if stopped():
            return "stopped by a key"
        token = engine.sample(params, step=k, seed=None if seed is None else seed + k)
        drawn.append(token)
        on_frame(frame_of(engine, engine.append(token), rows, params if show_processed else None))
        if token in eos:
            return "end of sequence"
        if stop_text and k + 1 >= params.min_new_tokens and stop_text in engine.decode(drawn):
            return "stop string"
    return "done"
