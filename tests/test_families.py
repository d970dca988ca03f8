"""Gemma2 and Mistral rows of the family table on tiny random models: the parts of every block add
up, the lens's last row is the model's own distribution (soft-cap included), sizes come from the table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tiny import MORE_FAMILIES, save_tiny
from token_explorer.engine import open_engine
from token_explorer.model.family import FAMILIES, sizes
from token_explorer.model.hooks import run_with_hooks


@pytest.fixture(scope="module", params=MORE_FAMILIES)
def engine(request, tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp("more-tiny") / request.param, request.param)
    return open_engine(str(folder), device="cpu")


def test_sizes_come_from_the_family_row(engine):
    config = engine.loaded.model.config
    shape = sizes(config)
    assert (shape.n_layers, shape.n_heads, shape.context) == (3, 4, 256)
    assert (engine.info.n_layers, engine.info.n_heads, engine.info.max_positions) == (3, 4, 256)
    assert engine.session.family is FAMILIES[config.model_type]


def test_block_updates_add_up_to_the_change_of_the_residual(engine):
    ids = engine.tokenize("Once upon a time, there was a small town by the sea.")
    engine.set_tokens(ids)
    acts = run_with_hooks(engine.loaded.model, engine.session.family, ids)
    delta = acts["resid_post"] - acts["resid_pre"]  # (L, T, d)
    torch.testing.assert_close(acts["attn_out"] + acts["mlp_out"], delta, atol=1e-4, rtol=0)
    result = engine.analyze("residual", ids, 9, {})
    assert (result.max_error < 1e-4).all()
    np.testing.assert_allclose(result.attn_norm, acts["attn_out"][:, 9].norm(dim=-1).numpy(), rtol=1e-4)


def test_lens_last_row_is_the_model_distribution(engine):
    ids = engine.tokenize("Once upon a time, there was a small town")
    engine.set_tokens(ids)
    with torch.no_grad():
        logits = engine.loaded.model(torch.tensor([ids])).logits[0].double()  # soft-capped by the model
    probs = torch.softmax(logits, -1)
    expected = [probs[i - 1, ids[i]].item() for i in range(1, len(ids))]
    result = engine.analyze("lens", ids, 3, {})
    np.testing.assert_allclose(result.prob[-1, 1:], expected, atol=1e-5)


def test_attention_rows_sum_to_one_within_the_window(engine):
    ids = engine.tokenize("Once upon a time, there was a small town by the sea.")
    engine.set_tokens(ids)
    cursor = len(ids) - 1
    result = engine.analyze("attention", ids, cursor, {})
    np.testing.assert_allclose(result.weights.sum(-1), 1.0, atol=1e-5)
    window = engine.loaded.model.config.sliding_window if engine.info.family == "gemma2" else None
    if window:  # gemma2 alternates sliding and global layers: the sliding ones see only the window
        assert (result.weights[0, :, : cursor - window + 1] == 0).all()
