"""The one slower test: the bundled SmolLM2-135M-Instruct, converted once into the user cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from token_explorer.engine import open_engine
from token_explorer.model.loading import convert_gguf, bundled_gguf

pytestmark = pytest.mark.slow


def test_bundled_model_steps_like_a_full_recompute():
    folder = convert_gguf(bundled_gguf())
    assert (folder / "model.safetensors").is_file() and not list(folder.parent.glob(".*.tmp-*"))
    engine = open_engine("bundled", device="cpu", top_k=10)
    assert engine.info.family == "llama" and engine.info.n_layers == 30
    ids = engine.tokenize("Once upon a time, there was a")
    engine.set_tokens(ids[:4])
    for token in ids[4:]:
        engine.append(token)
    snap = engine.fill_lens()
    with torch.no_grad():
        logits = engine.loaded.model(torch.tensor([ids])).logits[0].double()
    for i, pos in enumerate(snap.positions):
        np.testing.assert_allclose(pos.top_logits, logits[i].topk(10).values.numpy(), atol=1e-3)
        np.testing.assert_array_equal(pos.lens.top_ids[-1], pos.top_ids)
    # a real model is confident about the comma after "Once upon a time"
    assert engine.token_texts([int(snap.positions[3].top_ids[0])]) == [","]


def test_integrated_gradients_converge_on_the_bundled_model():
    """The case that did not converge with the straight path from the mean embedding (a 50% gap
    after 512 points): the first token's hidden state switches sharply along that path."""
    engine = open_engine("bundled", device="cpu")
    ids = engine.tokenize("Once upon a time, there was a")
    for cursor in (3, len(ids) - 1):
        done = engine.analyze("attribution", ids, cursor, {"method": "integrated_gradients"}).completeness
        assert done.converged, done
        assert abs(done.gap) <= 0.05 * abs(done.f_input - done.f_baseline)
