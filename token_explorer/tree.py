"""The branch tree: every token path the user has visited, as a radix tree of exact token ids.

A node holds a run of token ids (its *segment*) that follows its parent's path; the root holds
none, and the children of a node start with distinct tokens. A path (a prompt) is any prefix of a
root-to-leaf run; it ends inside exactly one node (the node *at* it). Visiting a path stamps every
position on it with a clock, so each parent knows which child was visited last. Removing a node
removes its subtree and returns a record that puts it back. Each position may carry the model's
probability of its token given its prefix, from records the engine already computed (None: not
computed).

Plain Python: no torch, no Textual. Node ids are stable while a node exists; splitting a node keeps
its id on the first part.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass
class Node:
    """One run of tokens after ``parent``'s path; ``probs[i]`` and ``stamps[i]`` belong to ``segment[i]``."""

    id: int
    parent: int | None
    depth: int  # path length before the segment
    segment: list[int]
    probs: list[float | None]
    stamps: list[int]  # the clock of the last visit that passed through each token (0: never)
    children: dict[int, int] = field(default_factory=dict)  # first token -> child id, in creation order

    @property
    def end(self) -> int:
        """Path length at the end of this node."""
        return self.depth + len(self.segment)


@dataclass(frozen=True)
class Removal:
    """A removed subtree, enough to put it back: each node's path before it, tokens, probs and stamps
    (parents before children)."""

    runs: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[float | None, ...], tuple[int, ...]], ...]

    @property
    def path(self) -> tuple[int, ...]:
        """The removed node's own path (its prefix and segment)."""
        before, segment, _, _ = self.runs[0]
        return before + segment

    @property
    def fork(self) -> tuple[int, ...]:
        """The path the removed subtree hung from."""
        return self.runs[0][0]


class Tree:
    """Token paths as a radix tree (see the module docstring)."""

    ROOT = 0

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {self.ROOT: Node(self.ROOT, None, 0, [], [], [])}
        self.clock = 0
        self._next_id = 1

    # ------------------------------------------------------------ reading

    def path(self, node: int) -> tuple[int, ...]:
        """Token ids from the root to the end of ``node``."""
        runs: list[list[int]] = []
        n: int | None = node
        while n is not None:
            runs.append(self.nodes[n].segment)
            n = self.nodes[n].parent
        return tuple(t for run in reversed(runs) for t in run)

    def locate(self, tokens: Sequence[int]) -> int | None:
        """The node whose segment holds the end of ``tokens`` (the root for ``()``), or None when the
        path is not in the tree."""
        node, offset = self._walk(tokens)
        return node if offset == len(tokens) else None

    def _walk(self, tokens: Sequence[int]) -> tuple[int, int]:
        """Follow ``tokens`` as far as the tree has them: (node reached, tokens matched). The match
        ends inside the returned node's segment, or at its end."""
        node, i = self.ROOT, 0
        while i < len(tokens):
            n = self.nodes[node]
            if i == n.end:
                child = n.children.get(int(tokens[i]))
                if child is None:
                    return node, i
                node = child
                continue
            if n.segment[i - n.depth] != int(tokens[i]):
                return node, i
            i += 1
        return node, i

    def parent(self, node: int) -> int | None:
        return self.nodes[node].parent

    def children(self, node: int) -> list[int]:
        """Child ids in creation order."""
        return list(self.nodes[node].children.values())

    def last_child(self, node: int) -> int | None:
        """The child visited most recently (the first-made among ties), or None for a leaf."""
        children = self.children(node)
        if not children:
            return None
        return max(children, key=lambda c: (self.nodes[c].stamps[0], -children.index(c)))

    def siblings(self, node: int) -> list[int]:
        """The children of ``node``'s parent (``node`` among them), in creation order."""
        parent = self.nodes[node].parent
        return [node] if parent is None else self.children(parent)

    def walk(self) -> Iterator[tuple[int, int]]:
        """(node id, level) of every node but the root, depth first, children in creation order."""
        stack = [(c, 0) for c in reversed(self.children(self.ROOT))]
        while stack:
            node, level = stack.pop()
            yield node, level
            stack.extend((c, level + 1) for c in reversed(self.children(node)))

    def leaves(self) -> list[tuple[int, ...]]:
        """The path of every leaf (the maximal paths)."""
        return [self.path(n) for n, _ in self.walk() if not self.nodes[n].children]

    def logprob(self, node: int) -> float | None:
        """Sum of ln p(token | prefix) over the node's tokens that have a prefix; None when any of
        them is not computed yet, or none has a prefix."""
        n = self.nodes[node]
        probs = [p for i, p in enumerate(n.probs) if n.depth + i > 0]
        if not probs or any(p is None for p in probs):
            return None
        return sum(math.log(p) if p > 0 else -math.inf for p in probs)  # type: ignore[arg-type]

    # ------------------------------------------------------------ moving (path in, path out)

    def to_parent(self, tokens: Sequence[int]) -> tuple[int, ...] | None:
        """The path where the node at ``tokens`` forks off its parent; None at the top level."""
        node = self.locate(tokens)
        if node is None or self.nodes[node].parent in (None, self.ROOT):
            return None
        return self.path(self.nodes[node].parent)  # type: ignore[arg-type]

    def to_child(self, tokens: Sequence[int]) -> tuple[int, ...] | None:
        """From inside a node, its end; from a node's end, the end of its last-visited child; None at
        a leaf's end."""
        node = self.locate(tokens)
        if node is None:
            return None
        if len(tokens) < self.nodes[node].end:
            return self.path(node)
        child = self.last_child(node)
        return None if child is None else self.path(child)

    def to_sibling(self, tokens: Sequence[int], delta: int) -> tuple[int, ...] | None:
        """The end of the sibling ``delta`` places after the node at ``tokens`` (wrapping around);
        None when it has no siblings."""
        node = self.locate(tokens)
        if node is None or node == self.ROOT:
            return None
        siblings = self.siblings(node)
        if len(siblings) < 2:
            return None
        return self.path(siblings[(siblings.index(node) + delta) % len(siblings)])

    def descend(self, node: int) -> tuple[int, ...]:
        """The path from ``node`` down through each last-visited child to a leaf."""
        while (child := self.last_child(node)) is not None:
            node = child
        return self.path(node)

    def nearest_other(self, tokens: Sequence[int]) -> tuple[int, ...] | None:
        """The path visited last that forks off ``tokens`` nearest to its end: from the closest
        ancestor (or the node itself) with a sibling, that sibling's last-visited descent; None
        when no path forks off it."""
        node = self.locate(tokens)
        while node is not None and node != self.ROOT:
            others = [s for s in self.siblings(node) if s != node]
            if others:
                return self.descend(max(others, key=lambda s: self.nodes[s].stamps[0]))
            node = self.nodes[node].parent
        return None

    def __len__(self) -> int:
        """Number of nodes, the root included."""
        return len(self.nodes)

    # ------------------------------------------------------------ changing

    def add(self, tokens: Sequence[int], *, visit: bool = True) -> int:
        """Make ``tokens`` (non-empty) a path of the tree and return the node at it; with ``visit``,
        stamp every position on it, so its ancestors remember this as their last-visited child."""
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("a path has at least one token")
        node, i = self._walk(tokens)
        n = self.nodes[node]
        if i < n.end:  # diverges (or ends) inside the segment
            if i < len(tokens):
                node = self._split(node, i - n.depth)
        if i < len(tokens):
            n = self.nodes[node]
            rest = tokens[i:]
            if not n.children and node != self.ROOT:  # a leaf grows in place
                n.segment.extend(rest)
                n.probs.extend([None] * len(rest))
                n.stamps.extend([0] * len(rest))
            else:
                node = self._new(node, rest)
        if visit:
            self.visit(tokens)
        return node

    def visit(self, tokens: Sequence[int]) -> None:
        """Stamp every position of ``tokens`` (a path of the tree) with the next clock value."""
        self.clock += 1
        self._each(tokens, lambda n, j: n.stamps.__setitem__(j, self.clock))

    def set_probs(self, tokens: Sequence[int], probs: Sequence[float | None]) -> None:
        """Record p(token i | tokens before it) for the positions of path ``tokens`` (as far as the
        tree has it) where ``probs[i]`` is not None."""
        def put(n: Node, j: int) -> None:
            p = probs[n.depth + j]
            if p is not None:
                n.probs[j] = float(p)
        self._each(tokens[: len(probs)], put, strict=False)

    def _each(self, tokens: Sequence[int], fn, strict: bool = True) -> None:
        """Call ``fn(node, index in segment)`` for each position of ``tokens`` along the tree."""
        node, i = self.ROOT, 0
        while i < len(tokens):
            n = self.nodes[node]
            if i == n.end:
                child = n.children.get(int(tokens[i]))
                if child is None:
                    break
                node = child
                continue
            if n.segment[i - n.depth] != int(tokens[i]):
                break
            fn(n, i - n.depth)
            i += 1
        if strict and i < len(tokens):
            raise KeyError("path not in the tree")

    def remove(self, node: int) -> Removal:
        """Remove ``node`` and its subtree; the record ``restore`` takes to put them back."""
        if node == self.ROOT:
            raise ValueError("the root cannot be removed")
        runs = []
        before = self.path(self.nodes[node].parent)  # type: ignore[arg-type]
        stack = [(node, before)]
        while stack:
            nid, prefix = stack.pop()
            n = self.nodes[nid]
            runs.append((prefix, tuple(n.segment), tuple(n.probs), tuple(n.stamps)))
            stack.extend((c, prefix + tuple(n.segment)) for c in reversed(self.children(nid)))
        self._drop(node)
        return Removal(tuple(runs))

    def restore(self, removal: Removal) -> int:
        """Put a removed subtree back (stamps: the later of its own and any made since); the node at
        the removed node's path."""
        for prefix, segment, probs, stamps in removal.runs:
            path = prefix + segment
            self.add(path, visit=False)

            def put(n: Node, j: int, probs=probs, stamps=stamps, start=len(prefix)) -> None:
                k = n.depth + j - start
                if k >= 0:
                    if probs[k] is not None:
                        n.probs[j] = probs[k]
                    n.stamps[j] = max(n.stamps[j], stamps[k])
            self._each(path, put)
        node = self.locate(removal.path)
        assert node is not None
        return node

    def _new(self, parent: int, segment: list[int]) -> int:
        p = self.nodes[parent]
        nid = self._next_id
        self._next_id += 1
        self.nodes[nid] = Node(nid, parent, p.end, list(segment), [None] * len(segment), [0] * len(segment))
        p.children[segment[0]] = nid
        return nid

    def _split(self, node: int, at: int) -> int:
        """Cut ``node``'s segment after ``at`` tokens (0 < at < len): it keeps the head and its id,
        a new child takes the tail and the children. Returns ``node``."""
        n = self.nodes[node]
        assert 0 < at < len(n.segment), "a split leaves both parts non-empty"
        nid = self._next_id
        self._next_id += 1
        tail = Node(nid, node, n.depth + at, n.segment[at:], n.probs[at:], n.stamps[at:], n.children)
        for child in tail.children.values():
            self.nodes[child].parent = nid
        self.nodes[nid] = tail
        del n.segment[at:], n.probs[at:], n.stamps[at:]
        n.children = {tail.segment[0]: nid}
        return node

    def _drop(self, node: int) -> None:
        n = self.nodes[node]
        parent = self.nodes[n.parent]  # type: ignore[index]
        del parent.children[n.segment[0]]
        stack = [node]
        while stack:
            nid = stack.pop()
            stack.extend(self.nodes[nid].children.values())
            del self.nodes[nid]

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict:
        """Plain JSON data: every node (parents first) with its parent's index, tokens, probs, stamps."""
        order = [self.ROOT] + [n for n, _ in self.walk()]
        index = {nid: i for i, nid in enumerate(order)}
        nodes = []
        for nid in order[1:]:
            n = self.nodes[nid]
            nodes.append({"parent": index[n.parent], "tokens": list(n.segment),  # type: ignore[index]
                          "probs": [None if p is None or not math.isfinite(p) else p for p in n.probs],
                          "visited": list(n.stamps)})
        return {"clock": self.clock, "nodes": nodes}

    @classmethod
    def from_dict(cls, data: dict) -> Tree:
        """The tree ``to_dict`` wrote; ValueError naming what is wrong."""
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise ValueError("tree: expected an object with a list of nodes")
        tree = cls()
        clock = data.get("clock", 0)
        if not isinstance(clock, int) or isinstance(clock, bool) or clock < 0:
            raise ValueError("tree.clock: expected a non-negative integer")
        ids = [cls.ROOT]
        for k, raw in enumerate(data["nodes"]):
            where = f"tree.nodes[{k}]"
            if not isinstance(raw, dict):
                raise ValueError(f"{where}: expected an object")
            parent, tokens = raw.get("parent"), raw.get("tokens")
            probs, stamps = raw.get("probs"), raw.get("visited")
            if not isinstance(parent, int) or isinstance(parent, bool) or not 0 <= parent < len(ids):
                raise ValueError(f"{where}.parent: expected the index of an earlier node")
            if (not isinstance(tokens, list) or not tokens
                    or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens)):
                raise ValueError(f"{where}.tokens: expected a non-empty list of token ids")
            if (not isinstance(probs, list) or len(probs) != len(tokens)
                    or not all(p is None or (isinstance(p, (int, float)) and not isinstance(p, bool)
                                             and 0.0 <= p <= 1.0) for p in probs)):
                raise ValueError(f"{where}.probs: expected one probability (0..1) or null per token")
            if (not isinstance(stamps, list) or len(stamps) != len(tokens)
                    or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= clock for s in stamps)):
                raise ValueError(f"{where}.visited: expected one integer (0..clock) per token")
            p = tree.nodes[ids[parent]]
            if tokens[0] in p.children or (p.id != cls.ROOT and not p.segment):
                raise ValueError(f"{where}.tokens: a sibling already starts with token {tokens[0]}")
            nid = tree._new(p.id, tokens)
            tree.nodes[nid].probs = [None if q is None else float(q) for q in probs]
            tree.nodes[nid].stamps = list(stamps)
            ids.append(nid)
        tree.clock = clock
        return tree
