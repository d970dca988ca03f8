"""Each inner view through ``engine.analyze``: shapes, undefined values, captions, registry."""

from __future__ import annotations

import numpy as np
import pytest

from token_explorer.engine import open_engine
from token_explorer.errors import UserError
from token_explorer.results import TokenScores

VIEWS = ("lens", "attention", "similarity", "hidden_similarity", "residual", "attribution")
PREFIX_ONLY = {"attention", "attribution"}  # results cover tokens 0..cursor only


@pytest.fixture
def engine(tiny_dir):
    return open_engine(str(tiny_dir), device="cpu")


def test_all_inner_views_are_offered(engine):
    offered = engine.analyses()
    for name in VIEWS:
        assert offered[name] is None, name


@pytest.mark.parametrize("name", VIEWS)
def test_view_through_the_engine(engine, name):
    ids = engine.tokenize("Once upon a time, there was a")
    engine.set_tokens(ids)
    n, cursor = len(ids), 5
    result = engine.analyze(name, ids, cursor, {})
    assert isinstance(result, TokenScores) and result.view == name
    assert result.caption
    assert result.lo < result.hi
    width = n  # prefix-only views are padded with NaN (undefined) past the cursor
    assert result.values.shape == (width,)
    if name in PREFIX_ONLY:
        assert np.isnan(result.values[cursor + 1 :]).all()
    assert result.values.dtype == np.float32
    if name == "lens":
        assert np.isnan(result.values[0]) and np.isfinite(result.values[1:]).all()
    elif name == "attribution":
        assert np.isfinite(result.values[:cursor]).all() and np.isnan(result.values[cursor])
    else:
        assert np.isfinite(result.values[: cursor + 1 if name in PREFIX_ONLY else n]).all()
    if result.grid is not None:
        assert result.grid.shape[1] == width and result.grid_label
    for table in result.tables:
        assert all(len(row) == len(table.columns) for row in table.rows)
    again = engine.analyze(name, ids, cursor, {})  # from the result cache
    np.testing.assert_array_equal(again.values, result.values)


@pytest.mark.parametrize("name,params", [
    ("lens", {"quantity": "entropy"}), ("lens", {"layer": 99}), ("attention", {"head": 4}),
    ("attention", {"aggregate": "median"}), ("attribution", {"method": "shap"}),
    ("attribution", {"method": "integrated_gradients", "steps": 0}),
])
def test_bad_parameters_are_user_errors(engine, name, params):
    ids = engine.tokenize("Once upon a time")
    engine.set_tokens(ids)
    with pytest.raises(UserError):
        engine.analyze(name, ids, 2, params)


def test_layer_default_and_minus_one_mean_the_last(engine):
    ids = engine.tokenize("Once upon a time")
    engine.set_tokens(ids)
    last = engine.info.n_layers
    for name in ("lens", "residual", "similarity"):
        a = engine.analyze(name, ids, 2, {})
        b = engine.analyze(name, ids, 2, {"layer": -1})
        c = engine.analyze(name, ids, 2, {"layer": last})
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.values, c.values)


def test_integrated_gradient_steps_default_from_settings(tiny_dirs):
    from token_explorer.config import EngineSettings, Settings

    settings = Settings(engine=EngineSettings(ig_steps=3))
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", settings=settings)
    ids = engine.tokenize("Once upon a time")
    engine.set_tokens(ids)
    result = engine.analyze("attribution", ids, 3, {"method": "integrated_gradients"})
    assert "3 midpoint steps" in result.caption


def test_cancelled_between_layers(engine):
    from token_explorer.engine import Cancelled

    ids = engine.tokenize("Once upon a time")
    engine.set_tokens(ids)
    with pytest.raises(Cancelled):
        engine.analyze("attention", ids, 3, {}, cancelled=lambda: True)
    with pytest.raises(Cancelled):
        engine.analyze("attribution", ids, 3, {"method": "integrated_gradients"}, cancelled=lambda: True)
