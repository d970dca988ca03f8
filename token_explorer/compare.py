"""Two branches compared from their common ancestor: plain numbers from the records the engine kept.

Pure Python over ``results.Snapshot`` records (no torch, no Textual); the explorer's compare screen
formats the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .prefix import common_prefix
from .results import Snapshot


@dataclass(frozen=True)
class Continuation:
    """One branch after the common prefix: its tokens and each one's p(token | everything before it)."""

    ids: tuple[int, ...]
    texts: tuple[str, ...]
    probs: tuple[float | None, ...]  # None only for position 0, which has no prefix
    ranks: tuple[int | None, ...]  # 1-based rank of each token in the distribution it was drawn from

    @property
    def logprob(self) -> float | None:
        """Sum of ln p over the continuation (0 when it is empty); None when a token has no prefix."""
        if any(p is None for p in self.probs):
            return None
        return sum(math.log(p) if p > 0 else -math.inf for p in self.probs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Comparison:
    """Branches ``a`` and ``b`` from their common prefix of ``common`` tokens.

    At the fork both first tokens were scored by the same distribution (the one after the common
    prefix), so their ranks and probabilities compare directly; ``fork_a`` / ``fork_b`` are
    (rank, p) of each branch's first token there, None when that branch ends at the fork.
    """

    common: int
    a: Continuation
    b: Continuation

    @property
    def fork_a(self) -> tuple[int, float] | None:
        return _first(self.a)

    @property
    def fork_b(self) -> tuple[int, float] | None:
        return _first(self.b)


def _first(c: Continuation) -> tuple[int, float] | None:
    if not c.ids or c.probs[0] is None or c.ranks[0] is None:
        return None
    return c.ranks[0], c.probs[0]


def compare(a: Snapshot, b: Snapshot) -> Comparison:
    """The two snapshots' continuations after their common prefix."""
    common = common_prefix(a.tokens, b.tokens)
    return Comparison(common, _continuation(a, common), _continuation(b, common))


def _continuation(s: Snapshot, start: int) -> Continuation:
    rest = s.positions[start:]
    return Continuation(tuple(p.token_id for p in rest), tuple(p.text for p in rest),
                        tuple(p.token_prob for p in rest), tuple(p.token_rank for p in rest))
