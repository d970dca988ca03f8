"""The steps a user asked for that the engine has not run yet: every key counts, a held key stops.

Each `l` or `h` becomes one queued step, worked off one engine job at a time. Keys that arrive
together (a paste, keys bunched by a laggy SSH link, a fast typist: less than ``BURST_GAP`` apart by
the time the terminal delivered them) are all kept. Terminals send no key-release events, so a held
key cannot be told apart from repeated presses except by its spacing: keys spaced like auto-repeat
are kept only while the spaced steps already waiting, plus the one running, would be worked off
within ``HOLD_BUDGET`` seconds (estimated from how long recent steps of that kind took). Releasing
a held key therefore stops the stepping within about ``HOLD_BUDGET``; a burst is honoured fully.

The table selection follows the steps as if each key had been pressed after the previous one was
shown: an append takes the row selected when it was queued, and the table it produces starts at
the top row, so table moves made while steps are outstanding apply to the table after the last one.

Plain Python, no Textual: unit-tested with explicit timestamps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

StepKind = Literal["append", "pop"]

HOLD_BUDGET = 0.5  # seconds: a released key stops within about this long
BURST_GAP = 0.005  # seconds: keys closer than this arrived together (one terminal read)


@dataclass(frozen=True)
class Step:
    """One queued key: ``row`` is the table row an append picks."""

    kind: StepKind
    row: int
    spaced: bool  # arrived at key-repeat spacing (not in a burst)


class Lane:
    """Queued steps of one branch, and the table selection that applies after them."""

    def __init__(self, budget: float = HOLD_BUDGET, burst_gap: float = BURST_GAP) -> None:
        self.budget = budget
        self.burst_gap = burst_gap
        self.steps: deque[Step] = deque()
        self.branch_id: int | None = None
        self.running: StepKind | None = None  # the kind of this lane's step in the engine now
        self.selection = 0  # table row for the table after the outstanding steps
        self._last_key: dict[StepKind, float] = {}
        # seconds per step, until measured a cautious guess (a held key queues little at first)
        self._cost: dict[StepKind, float] = {"append": 0.25, "pop": 0.05}
        self._measured: set[StepKind] = set()

    @property
    def outstanding(self) -> bool:
        """A step is queued or running: the table on screen is not the one keys now apply to."""
        return bool(self.steps) or self.running is not None

    def push(self, kind: StepKind, branch_id: int, shown_row: int, at: float) -> bool:
        """Queue one key pressed at ``at`` (seconds, the clock of key events) on ``branch_id``.

        ``shown_row`` is the selected row of the table on screen, used when nothing is outstanding.
        Returns False when the key was dropped as a held key's excess.
        """
        if branch_id != self.branch_id:
            self.clear()
            self.running = None
            self.branch_id = branch_id
        spaced = at - self._last_key.get(kind, float("-inf")) >= self.burst_gap
        self._last_key[kind] = at
        if spaced and not self._fits(kind):
            return False
        row = self.selection if self.outstanding else shown_row
        self.steps.append(Step(kind, row if kind == "append" else 0, spaced))
        if kind == "append":
            self.selection = 0  # the new table starts at its top row
        return True

    def _fits(self, kind: StepKind) -> bool:
        """A spaced key may wait: the spaced steps queued, it, and a running step fit the budget."""
        waiting = [s for s in self.steps if s.spaced]
        if not waiting:
            return True
        running = self._cost[self.running] if self.running is not None else 0.0
        total = running + sum(self._cost[s.kind] for s in waiting) + self._cost[kind]
        return total <= self.budget

    def next(self) -> Step | None:
        """Take the next step to run (the caller sets ``running`` to its kind)."""
        return self.steps.popleft() if self.steps else None

    def next_row(self) -> int:
        """The row to highlight on the table now shown: what the next append will pick."""
        for step in self.steps:
            if step.kind == "append":
                return step.row
            break
        return self.selection

    def move_selection(self, delta: int, rows: int) -> None:
        """A table move while steps are outstanding: applies to the table after them."""
        self.selection = min(max(self.selection + delta, 0), max(rows - 1, 0))

    def finished(self, kind: StepKind, seconds: float) -> None:
        """The running step took ``seconds``: update the estimate used for held keys."""
        self.running = None
        seconds = max(seconds, 0.0)
        old = self._cost[kind] if kind in self._measured else seconds
        self._cost[kind] = 0.5 * old + 0.5 * seconds
        self._measured.add(kind)

    def clear(self) -> int:
        """Drop every queued step; how many were dropped."""
        dropped = len(self.steps)
        self.steps.clear()
        return dropped

    def counts(self) -> tuple[int, int]:
        """(appends, pops) queued."""
        appends = sum(1 for s in self.steps if s.kind == "append")
        return appends, len(self.steps) - appends
