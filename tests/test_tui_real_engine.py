"""The real app on the real engine over a tiny random model: append, pop, branch, switch, save."""

from __future__ import annotations

import json

import pytest
import torch

from fake_engine import make_settings, screen_text, settle
from token_explorer.engine import open_engine
from token_explorer.tui import make_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def argmax_next(engine, tokens) -> int:
    """The most likely next token, from a plain forward of the model (no cache, no records)."""
    with torch.no_grad():
        return int(engine.loaded.model(torch.tensor([list(tokens)])).logits[0, -1].argmax())


async def test_step_branch_switch_save_on_a_tiny_llama(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    settings = make_settings(tmp_path / "prompts")
    app = make_app(settings, lambda progress: engine, initial_text="Once upon a time")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        start = app.branch.tokens
        assert start == tuple(engine.tokenize("Once upon a time"))
        assert "Once upon a time" in screen_text(app)

        await pilot.press("l")  # append the top candidate
        await settle(pilot)
        assert app.branch.tokens == (*start, argmax_next(engine, start))
        assert engine.snapshot().tokens == app.branch.tokens

        await pilot.press("h")  # pop
        await settle(pilot)
        assert app.branch.tokens == start

        await pilot.press("d")  # copy into a new branch, then step it differently
        await settle(pilot)
        await pilot.press("j", "l")
        await settle(pilot)
        second = app.branch.tokens
        assert len(second) == len(start) + 1 and "branch 2/2" in screen_text(app)

        await pilot.press("s")  # back to the first branch: the engine follows
        await settle(pilot)
        assert app.branch.tokens == start
        assert engine.snapshot().tokens == start

        await pilot.press("w", "x")  # to the second branch, save it
        await settle(pilot)
        saved = list((tmp_path / "prompts").glob("*.json"))
        assert len(saved) == 1
        doc = json.loads(saved[0].read_text())
        assert tuple(doc["token_ids"]) == second
        assert doc["model_fingerprint"] == engine.info.fingerprint
        assert doc["text"] == engine.decode(second)
