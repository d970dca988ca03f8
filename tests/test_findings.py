"""Results as drawn: selection without computation, robust colour scales, captions from numbers."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from token_explorer.analyses.declare import ALL, Param, Spec
from token_explorer.results import Attention, Attribution, Completeness, LayerGrid, ModelInfo
from token_explorer.tui.colors import fit_scale
from token_explorer.tui.findings import render_result

INFO = ModelInfo(name="m", family="llama", device="cpu", dtype="float32", n_layers=3, n_heads=2, vocab_size=256,
                 max_positions=None, fingerprint="x")
GRID_SPEC = Spec("norms", "update norm", 1, params=(Param("layer", "layer", computes=False, hi="last_block"),),
                 scale="fitted", unit="L2 norm")


def text_of(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def draw(spec, result, params, **kw):
    return render_result(spec, result, params, info=INFO, texts=["a", " [b]c", "d", "e"], cursor=2,
                         skip_first=kw.get("skip_first", False))


def test_a_layer_grid_renders_generically_from_its_declaration():
    grid = LayerGrid(np.arange(12, dtype=np.float32).reshape(3, 4))
    shown = draw(GRID_SPEC, grid, {"layer": 1})
    np.testing.assert_array_equal(shown.values, [4, 5, 6, 7])
    assert "update norm" in shown.caption and "layer 1" in shown.caption
    assert shown.scale.unit == "L2 norm"
    out = text_of(shown.panel(2, 60))
    assert "update norm, layer × token" in out and "\n" in out
    assert "0" in out.splitlines()[1]  # the column ticks name token positions


def test_selection_only_selects():
    rows = np.random.default_rng(0).random((3, 2, 4)).astype(np.float32)
    result = Attention(weights=rows, entropy_bits=np.zeros((3, 2), np.float32))
    np.testing.assert_allclose(result.colour({"layer": ALL, "head": ALL, "aggregate": "mean"}), rows.mean((0, 1)))
    np.testing.assert_allclose(result.colour({"layer": 1, "head": ALL, "aggregate": "max"}), rows[1].max(0))
    np.testing.assert_allclose(result.colour({"layer": 2, "head": 1, "aggregate": "mean"}), rows[2, 1])


def test_robust_scale_is_not_flattened_by_one_extreme_value():
    values = np.concatenate([[4830.0], np.linspace(10, 50, 99)])
    fitted = fit_scale("fitted", values, "L2 norm")
    assert fitted.scale.hi < 60 and "above (max 4.83e+03)" in fitted.note  # the extreme stays readable
    skipped = fit_scale("fitted", values, "L2 norm", skip_first=True)
    assert skipped.scale.hi < 60 and "#0 left out" in skipped.note and "4.83e+03" not in skipped.note


def test_signed_scales_are_symmetric_and_absolute_scales_fixed():
    fitted = fit_scale("signed", np.array([-0.5, 0.1, 2.0, np.nan]), "nats")
    assert fitted.scale.lo == pytest.approx(-fitted.scale.hi) and fitted.scale.hi > 0
    assert (fit_scale("probability", np.array([0.2, 0.3]), "").scale.lo, fit_scale("probability", [0.3], "").scale.hi) == (0, 1)
    assert fit_scale("bits", [1.0], "bits", top=8.0).scale.hi == 8.0


def test_integrated_gradients_says_plainly_when_it_did_not_converge():
    spec = Spec("attribution", "attribution", 1, params=(Param("method", "mode", computes=True,
                choices=("saliency", "input_x_gradient", "integrated_gradients")),), reads="prefix", scale="signed",
                unit="nats")
    scores = np.array([0.5, 0.2, np.nan], np.float32)
    good = Attribution(scores, "integrated_gradients", -1.0, Completeness(-1.0, -1.7, 0.7, 33, 0.05))
    bad = Attribution(scores, "integrated_gradients", -1.0, Completeness(-1.0, -3.0, 0.7, 512, 0.05))
    assert good.completeness.converged and not bad.completeness.converged
    assert "within 5%" in text_of(draw(spec, good, {"method": "integrated_gradients"}).panel(2, 70), 200)
    out = text_of(draw(spec, bad, {"method": "integrated_gradients"}).panel(2, 70), 200)
    assert "NOT CONVERGED" in out and "512 path points" in out
    assert "·[b]c" in out  # the token column shows whitespace and keeps markup literal


def test_declared_parameters_step_and_validate():
    layer = Param("layer", "layer", computes=False, hi="last_block", default=ALL, allow_all=True)
    assert layer.initial(INFO) == ALL
    assert layer.step(ALL, 1, INFO) == 0 and layer.step(0, -1, INFO) == ALL and layer.step(2, 5, INFO) == 2
    mode = Param("q", "mode", computes=False, choices=("a", "b"))
    assert mode.step("b", 1, INFO) == "a"
    spec = Spec("s", "s", 1, params=(layer, mode))
    assert spec.resolve({}, INFO) == {"layer": ALL, "q": "a"}
    assert spec.computing({"layer": 1, "q": "b"}) == {}
    from token_explorer.errors import UserError

    with pytest.raises(UserError, match="layer must be all or 0..2"):
        spec.resolve({"layer": -1}, INFO)
    with pytest.raises(UserError, match="no parameter"):
        spec.resolve({"head": 1}, INFO)
