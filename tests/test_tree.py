"""The branch tree against a plain-Python model of it: a prefix-closed set of token paths, the list
of visits in order, and a dict of probabilities by path; random operation sequences."""

from __future__ import annotations

import json
import math
import random

import pytest

from token_explorer.tree import Tree


class Model:
    """What the tree should hold, with no structure at all."""

    def __init__(self) -> None:
        self.known: set[tuple[int, ...]] = set()
        self.visits: list[tuple[int, ...]] = []
        self.probs: dict[tuple[int, ...], float] = {}
        self.removed: list[tuple[set[tuple[int, ...]], dict[tuple[int, ...], float]]] = []

    def add(self, path: tuple[int, ...]) -> None:
        self.known |= {path[: i + 1] for i in range(len(path))}
        self.visits.append(path)

    def set_probs(self, path: tuple[int, ...], probs: list[float | None]) -> None:
        for i, p in enumerate(probs):
            if p is not None and path[: i + 1] in self.known:
                self.probs[path[: i + 1]] = p

    def remove(self, fork: tuple[int, ...], first: int) -> None:
        head = fork + (first,)
        gone = {q for q in self.known if q[: len(head)] == head}
        probs = {q: p for q, p in self.probs.items() if q in gone}
        self.known -= gone
        for q in gone:
            self.probs.pop(q, None)
        self.removed.append((gone, probs))

    def restore(self) -> None:
        gone, probs = self.removed.pop()
        self.known |= gone
        self.probs.update(probs)

    def last_child_token(self, path: tuple[int, ...]) -> int | None:
        """The token after ``path`` on the latest visit that went on past it into a path still known."""
        for v in reversed(self.visits):
            if len(v) > len(path) and v[: len(path)] == path and v[: len(path) + 1] in self.known:
                return v[len(path)]
        return None


def prefixes_of(tree: Tree) -> set[tuple[int, ...]]:
    return {leaf[: i + 1] for leaf in tree.leaves() for i in range(len(leaf))}


def check(tree: Tree, model: Model, rng: random.Random) -> None:
    assert prefixes_of(tree) == model.known
    for nid, node in tree.nodes.items():
        if nid != Tree.ROOT:
            assert node.segment, "only the root has no tokens"
            parent = tree.nodes[node.parent]
            assert node.depth == parent.end
            assert parent.children[node.segment[0]] == nid
        assert len(node.probs) == len(node.segment) == len(node.stamps)
        children = tree.children(nid)
        expected = model.last_child_token(tree.path(nid))
        if children:
            assert tree.nodes[tree.last_child(nid)].segment[0] == expected
        else:
            assert tree.last_child(nid) is None
    for q in model.known:
        nid = tree.locate(q)
        assert nid is not None
        node = tree.nodes[nid]
        assert node.depth < len(q) <= node.end
        assert tree.path(nid)[: len(q)] == q
        assert node.probs[len(q) - 1 - node.depth] == model.probs.get(q)
    for _ in range(5):
        q = tuple(rng.randint(1, 3) for _ in range(rng.randint(1, 8)))
        assert (tree.locate(q) is not None) == (q in model.known)


def random_path(rng: random.Random, model: Model) -> tuple[int, ...]:
    """A known path cut somewhere, plus a random tail (so paths share prefixes often)."""
    base: tuple[int, ...] = ()
    if model.known and rng.random() < 0.8:
        base = rng.choice(sorted(model.known))
        base = base[: rng.randint(0, len(base))]
    tail = tuple(rng.randint(1, 3) for _ in range(rng.randint(0 if base else 1, 4)))
    return base + tail


@pytest.mark.parametrize("seed", range(40))
def test_random_operations_match_the_plain_model(seed):
    rng = random.Random(seed)
    tree, model = Tree(), Model()
    removals = []
    for _ in range(120):
        op = rng.random()
        if op < 0.45 or not model.known:
            path = random_path(rng, model)
            node = tree.add(path)
            model.add(path)
            assert tree.path(node)[: len(path)] == path
        elif op < 0.6:
            path = random_path(rng, model)
            probs = [rng.choice([None, rng.random()]) for _ in path]
            tree.set_probs(path, probs)
            model.set_probs(path, probs)
        elif op < 0.7:
            path = rng.choice(sorted(model.known))
            tree.visit(path)
            model.visits.append(path)
        elif op < 0.85:
            nid = rng.choice([n for n in tree.nodes if n != Tree.ROOT])
            fork = tree.path(tree.parent(nid))
            first = tree.nodes[nid].segment[0]
            removals.append(tree.remove(nid))
            model.remove(fork, first)
            assert removals[-1].fork == fork
        elif removals:
            removal = removals.pop()
            node = tree.restore(removal)
            model.restore()
            assert tree.path(node)[: len(removal.path)] == removal.path
        check(tree, model, rng)
        again = Tree.from_dict(json.loads(json.dumps(tree.to_dict())))
        assert again.leaves() == tree.leaves()
        for nid, _ in tree.walk():
            other = again.nodes[again.locate(tree.path(nid))]
            assert other.probs == tree.nodes[nid].probs and other.stamps == tree.nodes[nid].stamps


def test_a_leaf_grows_in_place_and_a_fork_splits_the_node():
    tree = Tree()
    a = tree.add([1, 2, 3])
    assert tree.add([1, 2, 3, 4, 5]) == a  # appending to a leaf: the same node
    assert tree.nodes[a].segment == [1, 2, 3, 4, 5]
    b = tree.add([1, 2, 9])
    assert tree.path(b) == (1, 2, 9)
    assert tree.path(a) == (1, 2)  # the split keeps the id on the first part
    tail = tree.locate([1, 2, 3, 4, 5])
    assert tree.children(a) == [tail, b]
    assert tree.last_child(a) == b
    tree.visit([1, 2, 3])
    assert tree.last_child(a) == tail


def test_logprob_is_the_sum_of_known_logs_and_none_when_any_is_missing():
    tree = Tree()
    root_run = tree.add([5, 6, 7])
    assert tree.logprob(root_run) is None
    tree.set_probs([5, 6, 7], [None, 0.5, 0.25])  # position 0 has no prefix: never needed
    assert tree.logprob(root_run) == pytest.approx(math.log(0.5) + math.log(0.25))
    child = tree.add([5, 6, 7, 8, 9])
    assert child == root_run and tree.logprob(child) is None  # the leaf grew in place: 8, 9 not computed
    tree.set_probs([5, 6, 7, 8, 9], [None, None, None, 0.5, 0.5])
    assert tree.logprob(child) == pytest.approx(3 * math.log(0.5) + math.log(0.25))
    fork = tree.add([5, 6, 7, 1])
    assert tree.logprob(fork) is None
    tree.set_probs([5, 6, 7, 1], [None, None, None, 0.1])
    assert tree.logprob(fork) == pytest.approx(math.log(0.1))
    assert tree.logprob(tree.locate([5])) == pytest.approx(math.log(0.5) + math.log(0.25))  # 5 6 7 after the split


def test_the_root_cannot_be_removed_and_an_empty_path_is_refused():
    tree = Tree()
    with pytest.raises(ValueError):
        tree.remove(Tree.ROOT)
    with pytest.raises(ValueError):
        tree.add([])


@pytest.mark.parametrize("bad, where", [
    ({"nodes": [{"parent": 1, "tokens": [1], "probs": [None], "visited": [0]}]}, "tree.nodes[0].parent"),
    ({"nodes": [{"parent": 0, "tokens": [], "probs": [], "visited": []}]}, "tree.nodes[0].tokens"),
    ({"nodes": [{"parent": 0, "tokens": [1], "probs": [2.0], "visited": [0]}]}, "tree.nodes[0].probs"),
    ({"nodes": [{"parent": 0, "tokens": [1], "probs": [None], "visited": [5]}]}, "tree.nodes[0].visited"),
    ({"nodes": [{"parent": 0, "tokens": [1], "probs": [None], "visited": [0]},
                {"parent": 0, "tokens": [1, 2], "probs": [None, None], "visited": [0, 0]}]}, "tree.nodes[1].tokens"),
    ({"nodes": "x"}, "tree:"),
])
def test_a_bad_tree_is_refused_with_what_is_wrong(bad, where):
    with pytest.raises(ValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
        Tree.from_dict(bad)


def test_moves_to_parent_child_and_siblings():
    tree = Tree()
    tree.add([1, 2, 3, 4])
    tree.add([1, 2, 7, 8])
    tree.add([1, 2, 9])
    assert tree.to_parent([1, 2, 7, 8]) == (1, 2)
    assert tree.to_parent([1, 2, 7]) == (1, 2)  # inside a node: its fork
    assert tree.to_parent([1, 2]) is None  # top level
    assert tree.to_child([1, 2]) == (1, 2, 9)  # visited last
    tree.visit([1, 2, 3])
    assert tree.to_child([1, 2]) == (1, 2, 3, 4)
    assert tree.to_child([1]) == (1, 2)  # inside a node: its end
    assert tree.to_child([1, 2, 9]) is None
    assert tree.to_sibling([1, 2, 3, 4], 1) == (1, 2, 7, 8)
    assert tree.to_sibling([1, 2, 3], -1) == (1, 2, 9)  # wraps around
    assert tree.to_sibling([1, 2], 1) is None
    assert tree.to_parent([5]) is None and tree.to_child([5]) is None and tree.to_sibling([5], 1) is None
