"""Each analysis through ``engine.analyze``: full results, cheap selection, keys, cancellation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from token_explorer.analyses.declare import ALL
from token_explorer.engine import open_engine
from token_explorer.errors import Cancelled, UserError
from token_explorer.results import Attention, Attribution, LayerGrid, Lens, Residual

VIEWS = {"lens": Lens, "attention": Attention, "similarity": LayerGrid, "hidden_similarity": LayerGrid,
         "residual": Residual, "attribution": Attribution}
PREFIX_ONLY = {"attention", "attribution"}  # results cover tokens 0..cursor only


@pytest.fixture
def engine(tiny_dir):
    return open_engine(str(tiny_dir), device="cpu")


def test_all_inner_views_are_offered_and_declared(engine):
    offered, specs = engine.analyses(), engine.specs()
    for name in VIEWS:
        assert offered[name] is None, name
        assert specs[name].name == name and specs[name].title


@pytest.mark.parametrize("name", VIEWS)
def test_view_through_the_engine(engine, name):
    ids = engine.tokenize("Once upon a time, there was a")
    engine.set_tokens(ids)
    n, cursor = len(ids), 5
    spec = engine.specs()[name]
    params = spec.defaults(engine.info)
    result = engine.analyze(name, ids, cursor, params)
    assert isinstance(result, VIEWS[name])
    values = result.colour(params)
    assert values.dtype == np.float32
    assert values.shape == ((cursor + 1,) if name in PREFIX_ONLY else (n,))
    if name == "lens":
        assert np.isnan(values[0]) and np.isfinite(values[1:]).all()
    elif name == "attribution":
        assert np.isfinite(values[:cursor]).all() and np.isnan(values[cursor])
    else:
        assert np.isfinite(values).all()
    again = engine.analyze(name, ids, cursor, params)  # from the result cache
    assert again is result


@pytest.mark.parametrize("name,params", [
    ("lens", {"quantity": "entropy"}), ("lens", {"layer": 99}), ("attention", {"head": 4}),
    ("attention", {"layer": -1}), ("attention", {"aggregate": "median"}), ("attribution", {"method": "shap"}),
    ("similarity", {"steps": 3}),
])
def test_bad_parameters_are_user_errors(engine, name, params):
    ids = engine.tokenize("Once upon a time")
    engine.set_tokens(ids)
    with pytest.raises(UserError):
        engine.analyze(name, ids, 2, params)


def test_selecting_parameters_reuse_one_result(engine, monkeypatch):
    """Every layer, head and aggregate of the attention view, and every layer of the lens, from one run each."""
    from token_explorer import analyses

    ids = engine.tokenize("Once upon a time, there was a")
    engine.set_tokens(ids)
    runs = []
    for name in ("attention", "lens", "residual"):
        entry = analyses.REGISTRY[name]
        monkeypatch.setitem(analyses.REGISTRY, name, type(entry)(entry.spec, lambda ctx, f=entry.run: runs.append(1) or f(ctx),
                                                                   entry.available, entry.key_extra))
    layers = [ALL, *range(engine.info.n_layers)]
    for layer in layers:
        for head in (ALL, 0, 1):
            engine.analyze("attention", ids, 4, {"layer": layer, "head": head, "aggregate": "max"})
    for layer in range(engine.info.n_layers + 1):
        engine.analyze("lens", ids, 4, {"layer": layer, "quantity": "rank"})
        engine.analyze("lens", ids, 6, {"layer": layer})  # the lens does not depend on the cursor
        engine.analyze("residual", ids, 4, {"layer": layer})
    assert len(runs) == 3
    key = engine.analysis_key("attention", ids, 4, {"layer": 1})
    assert key == engine.analysis_key("attention", ids, 4, {"layer": ALL, "head": 0})
    assert key != engine.analysis_key("attention", ids, 5, {})
    assert engine.analysis_key("attention", ids, 4, {}) == engine.analysis_key("attention", ids[:5] + [1, 2], 4, {})


def test_cancelled_by_the_caller_and_by_cancel_analyses(engine):
    ids = engine.tokenize("Once upon a time")
    engine.set_tokens(ids)
    with pytest.raises(Cancelled):
        engine.analyze("attention", ids, 3, {}, cancelled=lambda: True)
    with pytest.raises(Cancelled):
        engine.analyze("attribution", ids, 3, {"method": "integrated_gradients"}, cancelled=lambda: True)

    def cancel_at_once(done, total):
        engine.cancel_analyses()

    with pytest.raises(Cancelled):
        engine.analyze("attribution", ids, 3, {"method": "integrated_gradients"}, progress=cancel_at_once)
    assert engine.analyze("attention", ids, 3, {}) is not None  # later runs are not affected


def test_a_step_cancels_a_running_analysis_and_never_waits_on_it(engine):
    """An append from another thread, while integrated gradients runs, returns and stops the analysis."""
    ids = engine.tokenize("Once upon a time, there was a small town")
    engine.set_tokens(ids)
    started, stepped, outcome = threading.Event(), threading.Event(), {}

    def progress(done, total):
        started.set()
        stepped.wait(30)  # the analysis holds no lock here: the step must get through

    def run():
        try:
            engine.analyze("attribution", ids, 8, {"method": "integrated_gradients"}, progress=progress)
            outcome["result"] = "finished"
        except Cancelled:
            outcome["result"] = "cancelled"

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(60)
    snap = engine.append(3)  # would deadlock if the analysis held the engine lock
    stepped.set()
    worker.join(60)
    assert len(snap) == len(ids) + 1
    assert outcome["result"] == "cancelled"


def test_lens_fills_the_screen_first(tiny_dirs, monkeypatch):
    """With a window, the chosen layer of the positions on screen arrives first, as a partial result."""
    from token_explorer.analyses import lens

    monkeypatch.setattr(lens, "LENS_BUDGET", 4 * 4 * 330)  # a few positions per batch, as on a long prompt
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", lens=False)
    ids = engine.tokenize("Once upon a time, there was a small town by the sea.")
    engine.set_tokens(ids)
    parts = []
    full = engine.analyze("lens", ids, 5, {"layer": 2}, window=(3, 8), partial=parts.append)
    first = parts[0]
    assert np.isfinite(first.prob[2, 4:9]).all()  # token i is read at position i-1
    assert np.isnan(first.prob[0]).all() and np.isnan(first.prob[2, 12:]).all()
    np.testing.assert_allclose(first.prob[2, 4:9], full.prob[2, 4:9], atol=1e-6)
    assert np.isfinite(full.prob[:, 1:]).all()


def test_integrated_gradients_converges_at_the_defaults(engine):
    ids = engine.tokenize("Once upon a time, there was a small town")
    engine.set_tokens(ids)
    for cursor in (3, 7, len(ids) - 1):
        result = engine.analyze("attribution", ids, cursor, {"method": "integrated_gradients"})
        done = result.completeness
        assert done.converged, done
        assert abs(done.gap) <= 0.05 * max(abs(done.f_input - done.f_baseline), 0.05)
        assert done.total == pytest.approx(float(np.nansum(result.scores, dtype=np.float64)), abs=1e-4)
