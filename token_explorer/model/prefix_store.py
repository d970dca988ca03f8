"""A prefix-sharing store of computed positions: a radix tree keyed by token ids.

What a crop removes from the stepping session (each removed position's KV rows, residual-stream
and query rows, and its record) is kept here under the token path that leads to it, as SGLang's
RadixAttention keeps its KV cache. Going back to a path that was computed before copies its rows
back instead of running the model. Rows depend on every token before them, so a node's rows are
valid for exactly one path: the edge labels from the root down to it.

A node holds a run of tokens (its edge label) and, optionally, the rows of those positions: the
part of a path that the session still held when its tail was stored has no rows. The store keeps
within a byte budget by dropping rows from the least-recently used leaves, tail first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import torch

from ..prefix import common_prefix
from ..results import Position


class Segment(Protocol):
    """Rows of consecutive positions of one path, as the store sees them."""

    nbytes: int

    def __len__(self) -> int: ...

    def part(self, lo: int, hi: int) -> Segment:
        """Positions ``lo..hi`` (relative to the segment's first) as a copy of their own."""

    def view(self, lo: int, hi: int) -> Segment:
        """Positions ``lo..hi`` (relative), possibly sharing memory with this segment."""


@dataclass
class Rows:
    """Everything the session keeps about ``m`` consecutive positions of one token path."""

    keys: tuple[torch.Tensor, ...]  # per layer (1, kv_heads, m, head_dim)
    values: tuple[torch.Tensor, ...]  # per layer (1, kv_heads, m, head_dim)
    resid: torch.Tensor | None  # (L+1, m, d), None where the session captures none
    queries: torch.Tensor | None  # (L, H, m, hd), None where the session captures none
    positions: tuple[Position, ...]  # m records

    @cached_property
    def nbytes(self) -> int:
        """Bytes of the tensors and the records' arrays."""
        tensors = [*self.keys, *self.values, self.resid, self.queries]
        size = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return size + sum(_record_bytes(p) for p in self.positions)

    def __len__(self) -> int:
        return len(self.positions)

    def part(self, lo: int, hi: int) -> Rows:
        """Positions ``lo..hi`` (relative) as tensors of their own (no view keeps the whole alive)."""
        return Rows(
            keys=tuple(k[..., lo:hi, :].clone() for k in self.keys),
            values=tuple(v[..., lo:hi, :].clone() for v in self.values),
            resid=None if self.resid is None else self.resid[:, lo:hi].clone(),
            queries=None if self.queries is None else self.queries[:, :, lo:hi].clone(),
            positions=self.positions[lo:hi],
        )

    def view(self, lo: int, hi: int) -> Rows:
        """Positions ``lo..hi`` (relative) as views, to copy from at once."""
        return Rows(
            keys=tuple(k[..., lo:hi, :] for k in self.keys),
            values=tuple(v[..., lo:hi, :] for v in self.values),
            resid=None if self.resid is None else self.resid[:, lo:hi],
            queries=None if self.queries is None else self.queries[:, :, lo:hi],
            positions=self.positions[lo:hi],
        )


def _record_bytes(position: Position) -> int:
    """Bytes of a record's arrays (the lens dominates when it is filled)."""
    arrays = [position.top_ids, position.top_probs, position.top_logits]
    if position.lens is not None:
        lens = position.lens
        arrays += [lens.top_ids, lens.top_probs, lens.entropy_bits, lens.kl_to_final_bits,
                   lens.token_prob, lens.token_rank]
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


class _Node:
    """A run of tokens at positions ``depth..depth + len(tokens)`` of every path through it."""

    __slots__ = ("tokens", "depth", "rows", "children", "parent", "used")

    def __init__(self, tokens: tuple[int, ...], depth: int, parent: _Node | None) -> None:
        self.tokens = tokens
        self.depth = depth
        self.rows: Segment | None = None
        self.children: dict[int, _Node] = {}  # by first token
        self.parent = parent
        self.used = 0  # the store's clock when last inserted or looked up


class PrefixStore:
    """Rows of computed positions by token path, within ``budget`` bytes (0 keeps nothing)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.nbytes = 0  # bytes of all rows held
        self.positions = 0  # positions whose rows are held
        self.evicted = 0  # positions dropped to keep within the budget, all told
        self._root = _Node((), 0, None)
        self._clock = itertools.count(1)

    # -- public -------------------------------------------------------------------------------
    def insert(self, path: Sequence[int], start: int, take: Callable[[int, int], Segment],
               renew: Callable[[Segment, int], Segment | None] = lambda rows, lo: None) -> None:
        """Hold the rows of positions ``start..len(path)`` of ``path``. ``take(lo, hi)`` gives the
        rows of positions ``lo..hi`` (absolute); it is called only for those the store lacks.
        ``renew(rows, lo)`` may replace rows already held for positions from ``lo`` on (records
        completed since they were stored) with the same positions' newer rows."""
        n = len(path)
        if self.budget <= 0 or start >= n:
            return
        tick = next(self._clock)
        node, i = self._root, 0
        while i < n:
            child = node.children.get(path[i])
            if child is None:
                end = n if i >= start else start  # a path node without rows up to ``start``
                child = _Node(tuple(path[i:end]), i, node)
                node.children[path[i]] = child
                if i >= start:
                    self._give(child, take(i, end))
            else:
                same = common_prefix(child.tokens, itertools.islice(path, i, None))
                if same < len(child.tokens) and child.rows is not None and i + same == n:
                    child.used = tick  # the path ends inside rows held already: nothing to cut or add
                    break
                if same < len(child.tokens):
                    self._split(child, same)  # copies the rows of both parts (each frees on its own)
                if child.rows is None and i < start < i + same:
                    self._split(child, start - i)  # the part from ``start`` on gets rows next round
                elif child.rows is None and i >= start:
                    self._give(child, take(i, i + same))
                elif child.rows is not None and (newer := renew(child.rows, i)) is not None:
                    self._drop_rows(child)
                    self._give(child, newer)
            child.used = tick
            node, i = child, i + len(child.tokens)
        self._evict()

    def lookup(self, path: Sequence[int], start: int) -> list[Segment]:
        """Rows of positions ``start..start + k`` of ``path`` for the largest k the store holds,
        as consecutive segments (views: copy them before the store changes)."""
        out: list[Segment] = []
        tick = next(self._clock)
        node, i, n = self._root, 0, len(path)
        while i < n:
            child = node.children.get(path[i])
            if child is None:
                break
            same = common_prefix(child.tokens, itertools.islice(path, i, None))
            end = i + same
            if end > start:
                if child.rows is None:
                    break
                out.append(child.rows.view(max(start, i) - i, same))
            child.used = tick
            if same < len(child.tokens):
                break
            node, i = child, end
        return out

    def paths(self) -> dict[tuple[int, ...], int]:
        """Every held position as (its path up to and including it) -> its index in the node's rows;
        for tests and statistics."""
        out: dict[tuple[int, ...], int] = {}
        for node, prefix in self._walk():
            if node.rows is not None:
                for j in range(len(node.tokens)):
                    out[prefix + node.tokens[: j + 1]] = j
        return out

    # -- internals ----------------------------------------------------------------------------
    def _walk(self) -> Iterator[tuple[_Node, tuple[int, ...]]]:
        """Every node but the root with the path above it (iterative: paths may be long chains)."""
        stack = [(child, ()) for child in self._root.children.values()]
        while stack:
            node, prefix = stack.pop()
            yield node, prefix
            stack.extend((c, prefix + node.tokens) for c in node.children.values())

    def _nodes(self) -> Iterator[_Node]:
        """Every node but the root."""
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    def _give(self, node: _Node, rows: Segment) -> None:
        assert len(rows) == len(node.tokens), "one row per token of the node"
        node.rows = rows
        self.nbytes += rows.nbytes
        self.positions += len(rows)

    def _drop_rows(self, node: _Node) -> None:
        if node.rows is not None:
            self.nbytes -= node.rows.nbytes
            self.positions -= len(node.rows)
            node.rows = None

    def _split(self, node: _Node, at: int) -> None:
        """Cut ``node`` after its first ``at`` tokens; the rest becomes its only child."""
        tail = _Node(node.tokens[at:], node.depth + at, node)
        tail.children, tail.used = node.children, node.used
        for child in tail.children.values():
            child.parent = tail
        rows = node.rows
        if rows is not None:
            self._drop_rows(node)
            self._give(tail, rows.part(at, len(rows)))
        node.tokens = node.tokens[:at]
        if rows is not None:
            self._give(node, rows.part(0, at))
        node.children = {tail.tokens[0]: tail}

    def _evict(self) -> None:
        """Drop rows of least-recently used leaves until the store is within its budget; a leaf
        larger than the excess loses only its tail (its head stays usable)."""
        while self.nbytes > self.budget:
            leaf = min((node for node in self._nodes() if not node.children), key=lambda node: node.used)
            rows = leaf.rows
            assert rows is not None, "leaves without rows are removed at once"
            excess = self.nbytes - self.budget
            per = rows.nbytes / len(rows)
            keep = len(rows) - int(-(-excess // per))  # drop ceil(excess / per) positions
            self.evicted += len(rows) - max(keep, 0)
            if keep > 0:
                self._drop_rows(leaf)
                leaf.tokens = leaf.tokens[:keep]
                self._give(leaf, rows.part(0, keep))
                continue
            self._drop_rows(leaf)
            self._remove(leaf)

    def _remove(self, node: _Node) -> None:
        """Take a leaf out, and with it the ancestors left without rows or children."""
        while node.parent is not None and not node.children and node.rows is None:
            parent = node.parent
            del parent.children[node.tokens[0]]
            node = parent
