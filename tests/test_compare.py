"""compare.py against a direct recompute from the fake model's logits, and the compare screen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fake_engine import BOS, FakeEngine, make_settings, screen_text, settle
from token_explorer.compare import compare
from token_explorer.prefix import common_prefix
from token_explorer.tui import make_app
from token_explorer.tui.screens.compare import CompareScreen

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def direct(engine, path, i):
    """(p, 1-based rank) of path[i] given path[:i], from a softmax of the fake model's logits."""
    logits = engine.logits(path[:i])
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return float(probs[path[i]]), int(1 + np.sum(probs > probs[path[i]]))


@pytest.mark.parametrize("a_tail, b_tail", [(b" cat sat", b" dog ran far"), (b"", b" more"), (b" x", b" x")])
def test_comparison_equals_a_direct_recompute(a_tail, b_tail):
    engine = FakeEngine()
    base = [BOS, *b"Once upon a time"]
    a, b = base + list(a_tail), base + list(b_tail)
    result = compare(FakeEngine().set_tokens(a), FakeEngine().set_tokens(b))
    common = common_prefix(tuple(a), tuple(b))
    assert result.common == common
    for path, side in ((a, result.a), (b, result.b)):
        assert side.ids == tuple(path[common:])
        expected = [direct(engine, path, i) for i in range(common, len(path))]
        assert side.probs == pytest.approx([p for p, _ in expected], rel=1e-5)
        assert list(side.ranks) == [r for _, r in expected]
        assert side.logprob == pytest.approx(sum(math.log(p) for p, _ in expected), rel=1e-5, abs=1e-9)
    for path, fork in ((a, result.fork_a), (b, result.fork_b)):
        if len(path) == common:
            assert fork is None
        else:
            p, r = direct(engine, path, common)
            assert fork[0] == r and fork[1] == pytest.approx(p, rel=1e-5)


def test_a_path_from_the_first_token_has_no_log_probability():
    result = compare(FakeEngine().set_tokens([BOS, 65]), FakeEngine().set_tokens([66, 65]))
    assert result.common == 0 and result.a.logprob is None and result.fork_a is None


async def test_the_compare_key_shows_the_fork_and_the_other_path(tmp_path):
    engine = FakeEngine()
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine, initial_text="Once upon a time")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert any("nothing to compare" in n.message for n in app._notifications)
        await pilot.press("l", "l", "l", "left_square_bracket", "left_square_bracket")
        await settle(pilot)
        old = app.branch.tokens
        await pilot.press("j", "enter", "l")
        await settle(pilot)
        ours = app.branch.tokens
        await pilot.press("v")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        result = app.screen.result
        assert result.common == common_prefix(ours, old) and result.b.ids == old[result.common:]
        text = screen_text(app)
        assert f"at the fork (#{result.common})" in text and f"rank {result.fork_a[0]}" in text
        assert engine.snapshot().tokens == ours
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, CompareScreen)
