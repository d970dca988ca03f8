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


def test_the_panel_lists_heads_by_the_chosen_metric_with_their_marks():
    from rich.console import Console

    from token_explorer.analyses.heads import SPEC
    from token_explorer.results import HeadMetrics, ModelInfo
    from token_explorer.tui.findings import render_result

    values = np.zeros((len(PATTERN_METRICS), 2, 3), dtype=np.float32)
    values[PATTERN_METRICS.index("induction_score")] = [[0.1, 0.7, 0.2], [0.9, 0.0, np.nan]]
    marked = np.zeros((2, 3), dtype=bool)
    marked[1, 0] = True
    rows = np.full((2, 3, 4), 0.25, dtype=np.float32)
    result = HeadMetrics(PATTERN_METRICS, values, rows, induction=marked, previous=np.zeros((2, 3), dtype=bool))
    assert result.ranked("induction_score") == [(1, 0), (0, 1), (0, 2), (0, 0), (1, 1), (1, 2)]
    info = ModelInfo("m", "llama", "cpu", "float32", 2, 3, 10, None, "f", queries=True)
    drawn = render_result(SPEC, result, {"metric": "induction_score", "layer": 0, "head": 1}, info=info,
                          texts=["a", "b", "c", "d"], cursor=3, skip_first=False)
    np.testing.assert_allclose(drawn.values, rows[0, 1])
    console = Console(width=100, record=True)
    console.print(drawn.panel(3, 100))
    lines = [line.split() for line in console.export_text().splitlines()]
    table = [cells for cells in lines if len(cells) >= 3 and cells[1].isdigit()]
    assert [(c[0], c[1]) for c in table[:3]] == [("1", "0"), ("▸0", "1"), ("0", "2")]  # ▸ the picked head
    assert table[0][2] == "ind" and table[1][2] != "ind" and table[-1][2] == "n/a"


def test_a_configured_heads_folder_puts_its_corpus_metrics_beside(tmp_path, tiny_dirs, capsys):
    import dataclasses
    import json

    from token_explorer.cli import main
    from token_explorer.config import Settings
    from token_explorer.errors import UserError

    out = tmp_path / "heads"
    assert main(["heads", "--model", str(tiny_dirs["llama"]), "--seq-len", "16", "--max-sequences", "3",
                 "--layers", "1", "--out", str(out), "--quiet"]) == 0
    settings = Settings()
    settings = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, heads_folder=str(out)))
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", settings=settings)
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    result = engine.analyze("heads", ids, 5, {})
    scatter = json.loads((out / "scatter_data.json").read_text())
    for row in scatter:
        for i, name in enumerate(PATTERN_METRICS):
            assert result.corpus[i, row["layer"], row["head"]] == pytest.approx(row[name], abs=1e-6)
    assert np.isnan(result.corpus[:, 0]).all() and np.isnan(result.corpus[:, 2]).all()  # layer 1 only
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "model_name": "another"}))
    with pytest.raises(UserError, match="written for model 'another'"):
        engine.analyze("heads", ids, 5, {})  # the same request: the changed tree is read again (a new cache key)
