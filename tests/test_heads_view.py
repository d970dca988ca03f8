"""The heads view: the prompt's per-head metrics from the engine's captures against the head lab's
own forward and eager attention; the explorer offers it, and stepping it only selects."""

from __future__ import annotations

import numpy as np
import pytest

from fake_engine import make_settings, settle
from test_heads_lab import eager_attention, plant_induction_head
from tiny import make_model, make_tokenizer
from token_explorer.engine import open_engine
from token_explorer.heads.metrics import PATTERN_METRICS
from token_explorer.heads.scan import HeadScan, ScanConfig
from token_explorer.model.capture import install_query_capture
from token_explorer.model.family import family_of
from token_explorer.tui import make_app

TEXT = "Once upon a time, there was a small town by the sea. Once upon a time"


def test_prompt_metrics_equal_the_head_lab_and_rows_equal_eager(tiny_dir):
    engine = open_engine(str(tiny_dir), device="cpu")
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    cursor = len(ids) - 3
    result = engine.analyze("heads", ids, cursor, {})
    n_layers, n_heads = engine.info.n_layers, engine.info.n_heads
    assert result.values.shape == (len(PATTERN_METRICS), n_layers, n_heads)
    model = engine.loaded.model  # the head lab's path: its own forward, no cache, no session
    scan = HeadScan(model, family_of(model), {l: tuple(range(n_heads)) for l in range(n_layers)}, 400,
                    ScanConfig(seq_len=len(ids)))
    scan.add(0, ids)
    want = scan.sums.means()
    for i, name in enumerate(PATTERN_METRICS):
        np.testing.assert_allclose(result.values[i].ravel(), want[name], rtol=1e-4, atol=1e-5, err_msg=name)
    eager = eager_attention(tiny_dir.name, make_tokenizer(), ids)  # the tiny folders are make_model(family)
    for layer in range(n_layers):
        np.testing.assert_allclose(result.rows[layer], eager[layer][:, cursor, : cursor + 1], atol=2e-6)
    np.testing.assert_allclose(result.colour({"layer": 1, "head": 2, "metric": "induction_score"}),
                               eager[1][2, cursor, : cursor + 1], atol=2e-6)


def test_a_planted_induction_head_is_marked_and_ranked_first(tmp_path):
    tokenizer = make_tokenizer()
    model = plant_induction_head(make_model("gpt2", tokenizer))
    folder = tmp_path / "planted"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    engine = open_engine(str(folder), device="cpu")
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    result = engine.analyze("heads", ids, len(ids) - 1, {})
    assert result.ranked("induction_score")[0] == (1, 1)
    assert result.ranked("previous_token_score")[0] == (0, 0)
    assert result.induction[1, 1] and result.previous[0, 0]
    assert result.induction.sum() == 1 and result.previous.sum() == 1


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_the_explorer_offers_the_heads_view_and_steps_it_without_recompute(tmp_path, tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu")
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine,
                   initial_text="Once upon a time, once upon a", start_view=None)
    async with app.run_test(size=(110, 34)) as pilot:
        await settle(pilot)
        assert "heads" in [v.id for v in app.views]
        app._show_view("heads")
        await settle(pilot)
        assert app.params["heads"] == {"metric": "induction_score", "layer": 0, "head": 0}
        misses = engine.results.stats.misses
        for key in ("full_stop", "greater_than_sign", "m"):
            await pilot.press(key)
            await settle(pilot)
        assert app.params["heads"] == {"metric": PATTERN_METRICS[PATTERN_METRICS.index("induction_score") + 1],
                                       "layer": 1, "head": 1}
        assert engine.results.stats.misses == misses  # metric, layer and head only select
