"""The real app on the real engine over a tiny random model: append, pop, branch, switch, save."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
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


async def test_head_picker_colours_the_prompt_by_one_head(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["qwen2"]), device="cpu", top_k=30)
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine,
                   initial_text="Once upon a time", start_view="attention")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.params["attention"] == {"aggregate": "mean", "layer": "all", "head": "all"}
        assert "mean over all" in screen_text(app) and "-1 ×" not in screen_text(app)  # "all" is a value, never -1
        runs = engine.results.stats.misses
        await pilot.press("greater_than_sign", "greater_than_sign", "full_stop", "full_stop")
        await settle(pilot)
        assert app.params["attention"] == {"aggregate": "mean", "layer": 1, "head": 1}
        assert engine.results.stats.misses == runs  # stepping a layer or head only selects
        tokens, cursor = app.branch.tokens, app.branch.cursor
        result = engine.analyze("attention", tokens, cursor, {})
        shown = [float(v) for v in app._rendering_memo[1].values]
        np.testing.assert_allclose(shown, result.weights[1, 1], atol=1e-6)
        assert "layer 1 × head 1" in screen_text(app)
        await pilot.press(*["less_than_sign"] * 5)  # bounded below by "all" heads
        await settle(pilot)
        assert app.params["attention"]["head"] == "all"
        await pilot.press("e")  # similarity has no head to pick
        await settle(pilot)
        await pilot.press("greater_than_sign")
        assert any("no head or feature" in n.message for n in app._notifications)


async def test_sae_view_p_cycles_dictionaries_and_rank_picks_features(tmp_path, tiny_dirs):
    from test_sae import random_weights, write

    saes = (dict(layer=1, hook="resid_post", name="first", path=write(tmp_path / "a.safetensors", random_weights(0))),
            dict(layer=2, hook="resid_pre", name="second", path=write(tmp_path / "b.safetensors", random_weights(1))))
    settings = dataclasses.replace(make_settings(tmp_path / "prompts"), sae=saes)
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30, settings=settings)
    app = make_app(settings, lambda progress: engine, initial_text="Once upon a time", start_view="sae")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.params["sae"] == {"entry": 0, "rank": 1}
        assert "of first" in screen_text(app)
        await pilot.press("p")
        await settle(pilot)
        assert app.params["sae"]["entry"] == 1 and "of second" in screen_text(app)
        await pilot.press("p")  # wraps around to the first dictionary
        await settle(pilot)
        assert app.params["sae"]["entry"] == 0
        await pilot.press("greater_than_sign")
        await settle(pilot)
        assert app.params["sae"]["rank"] == 2 and "number 2 at the cursor" in screen_text(app)


async def test_lens_view_after_steps_shows_the_table_first_then_fills_the_records(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    settings = make_settings(tmp_path / "prompts")
    app = make_app(settings, lambda progress: engine, initial_text="Once upon a time", start_view="lens")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert all(p.lens is not None for p in engine.snapshot().positions)  # the prefill's, filled once
        for _ in range(3):
            await pilot.press("l")
            await settle(pilot)
        snap = engine.snapshot()
        assert snap.tokens == app.branch.tokens
        assert all(p.lens is not None for p in snap.positions)  # the stepped positions too
        fresh = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
        fresh.set_tokens(list(snap.tokens))
        whole = fresh.fill_lens()  # one fill of the whole prompt, for comparison
        for a, b in zip(snap.positions, whole.positions):
            np.testing.assert_allclose(a.lens.entropy_bits, b.lens.entropy_bits, atol=1e-4)
            if a.index:
                np.testing.assert_allclose(a.lens.token_prob, b.lens.token_prob, atol=1e-5)
        result = app._view_cache.get(app._view_key())
        assert result is not None and not hasattr(result, "error")
        np.testing.assert_allclose(result.prob[:, -1], snap.positions[-1].lens.token_prob, atol=1e-5)


async def test_lens_view_on_a_long_prefill_draws_first_then_fills_the_records(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    settings = make_settings(tmp_path / "prompts")
    text = " ".join(["the sea and the sky"] * 12)  # far more tokens than are filled before the view
    app = make_app(settings, lambda progress: engine, initial_text=text, start_view="lens")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app._view_cache.get(app._view_key()) is not None
        assert all(p.lens is not None for p in engine.snapshot().positions)  # filled after the view
        await pilot.press("l")
        await settle(pilot)
        assert all(p.lens is not None for p in engine.snapshot().positions)
        result = app._view_cache.get(app._view_key())
        np.testing.assert_allclose(result.prob[:, -1], engine.snapshot().positions[-1].lens.token_prob, atol=1e-5)
