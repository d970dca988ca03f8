"""The explorer on the branch tree, with the deterministic fake engine: moves to parent, child and
siblings, the tree screen (open, remove, undo), and what a move does to queued steps."""

import math

import numpy as np
import pytest
from textual import events

from fake_engine import FakeEngine, make_settings, screen_text, settle
from token_explorer.tokens import visible
from token_explorer.tui import make_app
from token_explorer.tui.screens.tree import TreeScreen, tree_rows
from token_explorer.tui.widgets.candidates import Candidates

pytestmark = pytest.mark.anyio

SIZE = (100, 30)
TEXT = "Once upon a time"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def app_with(tmp_path, engine=None):
    engine = engine or FakeEngine()
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine, initial_text=TEXT)
    return app, engine


def notices(app):
    return [n.message for n in app._notifications]


def prob(engine, prefix, token):
    """p(token | prefix) straight from the fake model's logits."""
    logits = engine.logits(prefix)
    e = np.exp(logits - logits.max())
    return float(e[token] / e.sum())


def expected_top(engine, prefix):
    return int(np.argmax(engine.logits(prefix)))


async def keys(pilot, *names):
    for name in names:
        await pilot.press(name)
        await settle(pilot)


async def make_fork(pilot):
    """Append three tokens, pop two, append the second candidate: a node with two children."""
    app = pilot.app
    start = app.branch.tokens
    await keys(pilot, "l", "l", "l", "h", "h")
    first = app.branches[0].tokens
    await keys(pilot, "j", "l")
    return start, first


async def test_moves_to_parent_child_and_siblings_follow_the_tree(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start, fork = await make_fork(pilot)
        second = app.branch.tokens
        assert second[:-1] == fork and len(second) == len(start) + 2
        longest = max(app.branch_tree.leaves(), key=len)
        assert len(longest) == len(start) + 3  # the popped tokens stay in the tree
        await keys(pilot, "b")
        assert app.branch.tokens == fork and engine.snapshot().tokens == fork
        await keys(pilot, "n")
        assert app.branch.tokens == second  # the child visited last
        await keys(pilot, "left_parenthesis")
        assert app.branch.tokens == longest and engine.snapshot().tokens == longest
        await keys(pilot, "right_parenthesis")
        assert app.branch.tokens == second
        await keys(pilot, "b", "n")
        assert app.branch.tokens == second
        await keys(pilot, "left_parenthesis", "b", "n")
        assert app.branch.tokens == longest  # now visited last
        await keys(pilot, "b", "b")
        assert any("top of the tree" in n for n in notices(app))
        assert engine.main_thread_calls() == []


async def test_a_move_shows_a_node_seen_before_at_once_and_drops_the_queued_steps(tmp_path):
    engine = FakeEngine(delay=0.1)
    app, _ = app_with(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start, fork = await make_fork(pilot)
        await keys(pilot, "b")
        assert app.branch.current is not None and app.branch.current.tokens == fork
        second = app.branch_tree.to_child(fork)
        appends = engine.count("append")
        for key in ["l"] * 6 + ["n"]:  # arrive together, while the engine is slow
            app.post_message(events.Key(key, key))
        await settle(pilot)
        assert any("queued steps dropped" in n for n in notices(app))
        assert app.branch.tokens == second and engine.snapshot().tokens == second
        ran = engine.count("append") - appends
        assert 1 <= ran <= 2  # the running one (and at most one started before the move) ...
        assert app.branch_tree.locate(fork + (expected_top(engine, fork),)) is not None  # ... landed in the tree


async def test_tree_screen_lists_nodes_with_probabilities_and_opens_one(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start, fork = await make_fork(pilot)
        second = app.branch.tokens
        rows = tree_rows(app.branch_tree, app.branch.tokens)
        assert [r.children for r in rows] == [2, 0, 0]
        assert [r.on_path for r in rows] == [True, False, True]
        # each node's p is the product of its tokens' probabilities given their prefix, from the fake model
        for r in rows:
            path = app.branch_tree.path(r.node)
            depth = app.branch_tree.nodes[r.node].depth
            expected = sum(math.log(prob(engine, path[:i], path[i])) for i in range(max(depth, 1), len(path)))
            assert r.logprob == pytest.approx(expected, rel=1e-5)
        await keys(pilot, "t")
        assert isinstance(app.screen, TreeScreen)
        assert "3 nodes" in screen_text(app)
        await keys(pilot, "up")  # from the current node (the last row) to the other child
        await keys(pilot, "enter")
        assert not isinstance(app.screen, TreeScreen)
        assert app.branch.tokens == max(app.branch_tree.leaves(), key=len) != second
        assert engine.snapshot().tokens == app.branch.tokens


async def test_tree_screen_removes_a_subtree_and_undoes_it(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start, fork = await make_fork(pilot)
        second = app.branch.tokens
        leaves = sorted(app.branch_tree.leaves())
        await keys(pilot, "t", "x")  # the highlighted node is the current one
        assert app.branch.tokens == fork  # the branch moved to where it forked off
        assert second not in app.branch_tree.leaves() and app.branch_tree.locate(second) is None
        assert any("removed a subtree of 1 node" in n for n in notices(app))
        await keys(pilot, "u")
        assert sorted(app.branch_tree.leaves()) == leaves
        await keys(pilot, "home", "x")  # the top node holds the branch: refused
        assert sorted(app.branch_tree.leaves()) == leaves
        assert any("top-level node" in n for n in notices(app))
        await keys(pilot, "escape")
        assert not isinstance(app.screen, TreeScreen)
        assert engine.snapshot().tokens == fork


def same_records(a, b):
    """Two snapshots hold the same tokens and (to float tolerance) the same records."""
    assert a.tokens == b.tokens
    for p, q in zip(a.positions, b.positions, strict=True):
        assert p.token_id == q.token_id
        assert (p.token_prob is None) == (q.token_prob is None)
        if p.token_prob is not None:
            assert p.token_prob == pytest.approx(q.token_prob, rel=1e-4, abs=1e-7)
            assert p.token_rank == q.token_rank
        assert list(p.top_ids[:5]) == list(q.top_ids[:5])
        np.testing.assert_allclose(p.top_probs, q.top_probs, rtol=1e-4, atol=1e-7)
        assert p.entropy_bits == pytest.approx(q.entropy_bits, rel=1e-4, abs=1e-6)


async def fork_third_alternative(pilot, back: int):
    """Cursor ``back`` tokens before the end, select the third alternative there, press enter.
    Returns (position, token chosen, the path before)."""
    app = pilot.app
    before = app.branch.tokens
    for _ in range(back):
        await pilot.press("left_square_bracket")
    await settle(pilot)
    at = app.branch.cursor
    p = app.branch.current.snapshot.positions[at - 1]
    table = app.query_one(Candidates)
    actual_row = [int(t) for t in p.top_ids].index(before[at]) if before[at] in p.top_ids[:20] else None
    assert table.selected == (actual_row if actual_row is not None else min(20, len(p.top_ids)))
    while table.selected != 2:
        await pilot.press("k" if table.selected > 2 else "j")
    third = int(p.top_ids[2])
    await keys(pilot, "enter")
    return at, third, before


async def test_fork_at_the_cursor_equals_building_the_path_by_hand(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        at, third, before = await fork_third_alternative(pilot, 5)
        if third == before[at]:
            pytest.skip("the third alternative is the token already there")
        path = before[:at] + (third,)
        assert app.branch.tokens == path and engine.snapshot().tokens == path
        assert "at #" not in screen_text(app)  # the cursor is at the end again: next-token table
        by_hand = FakeEngine().set_tokens(list(path))
        same_records(app.branch.current.snapshot, by_hand)
        assert app.branch_tree.to_sibling(path, 1) == before  # the old path is the fork's sibling
        assert any(f"forked at #{at}" in n for n in notices(app))


async def test_the_table_at_the_cursor_shows_the_alternatives_and_marks_the_token_there(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await keys(pilot, "left_square_bracket", "left_square_bracket")
        at = app.branch.cursor
        tokens = app.branch.tokens
        logits = engine.logits(tokens[:at])
        order = np.argsort(-logits, kind="stable")
        table = app.query_one(Candidates)
        first = [c.plain for c in table.get_row_at(0)]
        assert first[1] == visible(engine.token_texts([int(order[0])])[0])
        e = np.exp(logits - logits.max())
        assert float(first[2]) == pytest.approx(float(e[order[0]] / e.sum()), abs=6e-5)
        marked = [i for i in range(table.row_count) if table.get_row_at(i)[0].plain.startswith("●")]
        assert marked == [table.selected]
        assert "l / enter forks" in screen_text(app)
        await keys(pilot, "enter")  # the token already there: nothing happens
        assert app.branch.tokens == tokens
        assert any("already holds" in n for n in notices(app))


async def test_fork_and_tree_moves_on_a_tiny_llama_equal_a_fresh_run(tmp_path, tiny_dirs):
    from token_explorer.engine import open_engine

    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine, initial_text="Once upon a time there")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await keys(pilot, "l", "l")
        at, third, before = await fork_third_alternative(pilot, 3)
        path = before[:at] + (third,)
        assert app.branch.tokens == path and engine.snapshot().tokens == path
        fresh = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
        same_records(app.branch.current.snapshot, fresh.set_tokens(list(path)))
        await keys(pilot, "b")  # to where the fork hangs from: the engine follows
        assert app.branch.tokens == before[:at] and engine.snapshot().tokens == before[:at]
        await keys(pilot, "n")  # the child visited last: the fork
        assert app.branch.tokens == path
        await keys(pilot, "right_parenthesis")
        assert app.branch.tokens == before and engine.snapshot().tokens == before
        same_records(app.branch.current.snapshot, fresh.set_tokens(list(before)))


async def type_text(pilot, text):
    await pilot.press("i")
    await settle(pilot)
    for ch in text:
        await pilot.press("space" if ch == " " else ch)
    await pilot.press("enter")
    await settle(pilot)


async def test_typed_text_is_appended_or_forks_in_place_of_what_follows_the_cursor(tmp_path):
    app, engine = app_with(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await type_text(pilot, " there was")
        assert app.branch.tokens == start + tuple(b" there was")  # no second BOS
        assert engine.snapshot().tokens == app.branch.tokens
        same_records(app.branch.current.snapshot, FakeEngine().set_tokens(list(app.branch.tokens)))
        whole = app.branch.tokens
        await keys(pilot, *["left_curly_bracket"] * 2)  # cursor on " there"
        at = app.branch.cursor
        await type_text(pilot, "!")
        assert app.branch.tokens == whole[: at + 1] + (ord("!"),)
        assert app.branch_tree.to_sibling(app.branch.tokens, 1) == whole  # beside the old path
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("x", "escape")  # cancelled: nothing added
        await settle(pilot)
        assert app.branch.tokens == whole[: at + 1] + (ord("!"),)


def sampling_app(tmp_path, engine, seed=None, **sampling):
    import dataclasses

    from token_explorer.config import SamplingSettings

    settings = dataclasses.replace(make_settings(tmp_path / "prompts"), sampling=SamplingSettings(**sampling))
    return make_app(settings, lambda progress: engine, initial_text=TEXT, seed=seed)


async def test_sampling_greedy_by_default_appends_the_arg_max_each_step(tmp_path):
    engine = FakeEngine()
    app = sampling_app(tmp_path, engine, tokens=12)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await keys(pilot, "g")
        path = list(start)
        for _ in range(12):
            path.append(expected_top(engine, path))
        assert app.branch.tokens == tuple(path) and engine.snapshot().tokens == tuple(path)
        assert app.branch_tree.locate(path) is not None
        same_records(app.branch.current.snapshot, FakeEngine().set_tokens(path))
        assert any("sampled 12 tokens (done)" in n for n in notices(app))


async def test_sampling_with_a_seed_is_reproducible_and_draws_what_the_sampler_draws(tmp_path):
    from token_explorer.sampling_params import SamplingParams

    runs = []
    for _ in range(2):
        engine = FakeEngine()
        app = sampling_app(tmp_path, engine, seed=7, tokens=10, temperature=1.3, top_k=40, top_p=0.9)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            start = app.branch.tokens
            await keys(pilot, "g")
            runs.append(app.branch.tokens)
    assert runs[0] == runs[1] and len(runs[0]) == len(start) + 10
    by_hand, params = FakeEngine(), SamplingParams(temperature=1.3, top_k=40, top_p=0.9)
    by_hand.set_tokens(list(start))
    for k in range(10):
        by_hand.append(by_hand.sample(params, step=k, seed=7 + k))
    assert by_hand.snapshot().tokens == runs[0]


async def test_sampling_stops_on_the_stop_string_and_on_any_key(tmp_path):
    engine = FakeEngine()
    app = sampling_app(tmp_path, engine, tokens=200, stop=" ")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await keys(pilot, "g")
        drawn = app.branch.tokens[len(start):]
        assert drawn and drawn[-1] == ord(" ") and ord(" ") not in drawn[:-1]
        assert any("(stop string)" in n for n in notices(app))

    slow = FakeEngine(delay=0.05)
    app = sampling_app(tmp_path, slow, tokens=200)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await pilot.press("g")
        while len(app.branch.tokens) < len(start) + 2:
            await pilot.pause(0.02)
        await pilot.press("l")  # stops the sampling, appends nothing itself
        await settle(pilot)
        n = len(app.branch.tokens) - len(start)
        assert 2 <= n < 200 and slow.count("append") == n
        assert any("stopped by a key" in m for m in notices(app))


async def test_sample_and_typed_text_on_a_tiny_llama(tmp_path, tiny_dirs):
    import dataclasses

    import torch

    from token_explorer.config import SamplingSettings
    from token_explorer.engine import open_engine

    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    settings = dataclasses.replace(make_settings(tmp_path / "prompts"), sampling=SamplingSettings(tokens=5))
    app = make_app(settings, lambda progress: engine, initial_text="Once upon a time")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        await keys(pilot, "g")
        path = list(start)
        eos = engine.eos_ids()
        with torch.no_grad():
            for _ in range(5):
                path.append(int(engine.loaded.model(torch.tensor([path])).logits[0, -1].argmax()))
                if path[-1] in eos:
                    break
        assert app.branch.tokens == tuple(path)
        await type_text(pilot, " the end")
        plain = engine.tokenize(" the end")
        empty = engine.tokenize("")
        assert app.branch.tokens == tuple(path) + tuple(plain[len(empty):])
        fresh = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
        same_records(app.branch.current.snapshot, fresh.set_tokens(list(app.branch.tokens)))


async def test_the_processed_column_equals_the_sampler_recomputed_by_hand(tmp_path):
    engine = FakeEngine()
    app = sampling_app(tmp_path, engine, temperature=2.0, top_k=5)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await keys(pilot, "P")
        table = app.query_one(Candidates)
        assert list(table.columns)[:5] == ["#", "token", "prob", "proc", "logit"]
        logits = engine.logits(app.branch.tokens)
        top = np.argsort(-logits, kind="stable")[:5]
        e = np.exp((logits[top] - logits[top].max()) / 2.0)
        expected = dict(zip(top.tolist(), (e / e.sum()).tolist()))
        ids = app.branch.current.snapshot.next.top_ids
        for r in range(8):
            shown = float(table.get_row_at(r)[3].plain)
            assert shown == pytest.approx(expected.get(int(ids[r]), 0.0), abs=6e-5)
        await keys(pilot, "l")  # a step's frame carries the column too
        assert app.branch.current.processed is not None
        await keys(pilot, "P")
        assert list(table.columns)[:4] == ["#", "token", "prob", "logit"]
