"""The block-update view, added as one analysis module: numbers against hooks, drawn without TUI changes."""

from __future__ import annotations

import numpy as np
import pytest

from fake_engine import make_settings, settle
from token_explorer.engine import open_engine
from token_explorer.model.hooks import run_with_hooks
from token_explorer.tui import make_app


def test_update_is_the_norm_of_attention_plus_mlp(tiny_dir):
    engine = open_engine(str(tiny_dir), device="cpu")
    ids = engine.tokenize("Once upon a time, there was a small town")
    engine.set_tokens(ids)
    acts = run_with_hooks(engine.loaded.model, engine.session.family, ids)  # independent: module hooks
    expected = (acts["attn_out"] + acts["mlp_out"]).norm(dim=-1).numpy()  # (L, n)
    result = engine.analyze("update", ids, 3, {})
    np.testing.assert_allclose(result.values, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.colour({"layer": 1}), expected[1], rtol=1e-4, atol=1e-5)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_explorer_offers_and_steps_it(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu")
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine,
                   initial_text="Once upon a time", start_view=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "update" in [v.id for v in app.views]
        app._show_view("update")
        await settle(pilot)
        assert app.params["update"] == {"layer": engine.info.n_layers - 1}
        misses = engine.results.stats.misses
        await pilot.press("comma")
        await settle(pilot)
        assert app.params["update"]["layer"] == engine.info.n_layers - 2
        assert engine.results.stats.misses == misses  # a layer step only selects
