"""The longest common prefix of two sequences: how token paths, and rows of wrapped text, share a start."""

from __future__ import annotations

from collections.abc import Iterable


def common_prefix(a: Iterable, b: Iterable) -> int:
    """How many leading items ``a`` and ``b`` have equal (stops at the shorter one)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
