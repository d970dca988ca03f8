"""The inner views against independent computations on tiny random Llama, Qwen2 and GPT-2 models.

Independent here means: plain transformers forwards (``output_hidden_states``, an eager copy of
the model with ``output_attentions``, autograd through ``input_ids``), not the engine's captures.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from token_explorer.engine import Engine, open_engine

TEXT = "Once upon a time, there was a café ✓ in the town"


@pytest.fixture
def engine(tiny_dir) -> Engine:
    return open_engine(str(tiny_dir), device="cpu")


def prompt(engine: Engine) -> list[int]:
    ids = engine.tokenize(TEXT)
    assert len(ids) > 12
    return ids


def branch(ids: list[int]) -> list[int]:
    """A prompt sharing only a short prefix with ``ids`` (the session does not hold it)."""
    return ids[:4] + [t for t in reversed(ids[4:])]


def forward(engine: Engine, ids, **kwargs):
    with torch.no_grad():
        return engine.loaded.model(torch.tensor([list(ids)]), **kwargs)


def final_norm_and_head(engine: Engine):
    model = engine.loaded.model
    if engine.info.family == "gpt2":
        return model.transformer.ln_f, model.lm_head
    return model.model.norm, model.lm_head


# -- lens ------------------------------------------------------------------------------------------
def lens_by_hand(engine: Engine, ids) -> np.ndarray:
    """(L+1, n) P_layer(token i) at position i-1: final norm + lm_head applied to hidden states by hand."""
    hs = forward(engine, ids, output_hidden_states=True).hidden_states  # L+1 of (1, n, d)
    norm, head = final_norm_and_head(engine)
    rows = []
    with torch.no_grad():
        for l, h in enumerate(hs):
            h = h[0] if l == len(hs) - 1 else norm(h[0])  # the last one is already final-normed
            logp = torch.log_softmax(head(h).double(), -1)  # (n, V)
            rows.append([np.nan] + [logp[i - 1, ids[i]].exp().item() for i in range(1, len(ids))])
    return np.array(rows)


@pytest.mark.parametrize("lens_on", [True, False])
def test_lens_matches_norm_and_unembedding_by_hand(tiny_dir, lens_on):
    engine = open_engine(str(tiny_dir), device="cpu", lens=lens_on)  # records, or computed from resid
    ids = prompt(engine)
    engine.set_tokens(ids)
    expected = lens_by_hand(engine, ids)
    n_layers = engine.info.n_layers
    middle = n_layers // 2
    result = engine.analyze("lens", ids, 5, {"layer": middle})
    np.testing.assert_allclose(result.grid, expected, atol=2e-5)
    np.testing.assert_allclose(result.values, expected[middle], atol=2e-5)
    # the last row is the model's real distribution
    real = [p.token_prob for p in engine.snapshot().positions[1:]]
    np.testing.assert_allclose(result.grid[-1, 1:], real, atol=1e-5)
    other = branch(ids)
    np.testing.assert_allclose(engine.analyze("lens", other, 5, {}).grid, lens_by_hand(engine, other), atol=2e-5)


def test_lens_rank_is_log10_of_the_rank(engine):
    ids = prompt(engine)
    engine.set_tokens(ids)
    ranks = engine.analyze("lens", ids, 3, {"quantity": "rank"}).grid  # (L+1, n)
    logits = forward(engine, ids).logits[0]
    for i in range(1, len(ids)):
        rank = int((logits[i - 1] > logits[i - 1, ids[i]]).sum()) + 1
        assert ranks[-1, i] == pytest.approx(np.log10(rank))


def test_lens_table_is_the_cursor_distribution(engine):
    ids = prompt(engine)
    engine.set_tokens(ids)
    cursor = 6
    table = engine.analyze("lens", ids, cursor, {}).tables[0]
    assert len(table.rows) == engine.info.n_layers + 1
    top = forward(engine, ids).logits[0, cursor].softmax(-1).topk(5)
    text = engine.token_texts([int(top.indices[0])])[0]
    shown_text, shown_prob = table.rows[-1][3].split("  ")[0].rsplit(" ", 1)
    assert shown_text == text and float(shown_prob) == pytest.approx(top.values[0].item(), abs=1e-3)


# -- attention -------------------------------------------------------------------------------------
def eager_rows(tiny_dir, ids, cursor) -> np.ndarray:
    """(L, H, cursor+1) attention rows of the cursor from an eager copy with output_attentions."""
    eager = AutoModelForCausalLM.from_pretrained(str(tiny_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        att = eager(torch.tensor([list(ids)]), output_attentions=True).attentions  # L of (1, H, T, T)
    return np.stack([a[0, :, cursor, : cursor + 1].numpy() for a in att])


def test_attention_rows_match_eager_output_attentions(engine, tiny_dir):
    from token_explorer.heavy.attention import cursor_rows

    ids = prompt(engine)
    engine.set_tokens(ids)
    for cursor in (0, 5, len(ids) - 1):
        rows = cursor_rows(engine, ids, cursor).numpy()
        np.testing.assert_allclose(rows, eager_rows(tiny_dir, ids, cursor), atol=1e-5)
    other = branch(ids)  # not in the session: our own forward
    rows = cursor_rows(engine, other, 9).numpy()
    np.testing.assert_allclose(rows, eager_rows(tiny_dir, other, 9), atol=1e-5)
    assert engine.session.tokens == ids, "the session is never touched"


def test_attention_aggregates_over_what_it_says(engine, tiny_dir):
    ids = prompt(engine)
    engine.set_tokens(ids)
    cursor = 8
    rows = eager_rows(tiny_dir, ids, cursor)  # (L, H, cursor+1)
    mean = engine.analyze("attention", ids, cursor, {})
    np.testing.assert_allclose(mean.values[: cursor + 1], rows.mean((0, 1)), atol=1e-5)
    assert np.isnan(mean.values[cursor + 1 :]).all(), "only tokens up to the cursor are attended"
    assert "mean over all" in mean.caption
    top = engine.analyze("attention", ids, cursor, {"aggregate": "max", "layer": 2})
    np.testing.assert_allclose(top.values[: cursor + 1], rows[2].max(0), atol=1e-5)
    one = engine.analyze("attention", ids, cursor, {"layer": 1, "head": 3})
    np.testing.assert_allclose(one.values[: cursor + 1], rows[1, 3], atol=1e-5)
    entropy = mean.tables[1]
    p = rows[2, 1]
    expected = -(p[p > 0] * np.log2(p[p > 0])).sum()
    assert float(entropy.rows[2][1 + 1]) == pytest.approx(expected, abs=0.01)


def test_attention_keeps_the_fused_kernel(engine):
    engine.set_tokens(prompt(engine))
    engine.analyze("attention", engine.session.tokens, 4, {})
    assert "eager" not in engine.loaded.model.config._attn_implementation


# -- similarity ------------------------------------------------------------------------------------
def cos(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).numpy()


def test_similarity_to_the_cursor_matches_hidden_states(engine):
    ids = prompt(engine)
    engine.set_tokens(ids)
    hs = forward(engine, ids, output_hidden_states=True).hidden_states
    cursor = 7
    result = engine.analyze("similarity", ids, cursor, {})
    for l, h in enumerate(hs):
        np.testing.assert_allclose(result.grid[l], cos(h[0], h[0, cursor][None]), atol=1e-5)
    np.testing.assert_allclose(result.values, result.grid[-1])
    assert result.values[cursor] == pytest.approx(1.0, abs=1e-6)
    assert "final norm" in result.caption


def test_hidden_similarity_to_the_final_state(engine):
    ids = prompt(engine)
    other = branch(ids)
    engine.set_tokens(ids)
    hs = forward(engine, other, output_hidden_states=True).hidden_states
    result = engine.analyze("hidden_similarity", other, 3, {})
    for l, h in enumerate(hs):
        np.testing.assert_allclose(result.grid[l], cos(h[0], hs[-1][0]), atol=1e-5)
    middle = engine.info.n_layers // 2
    np.testing.assert_allclose(result.values, result.grid[middle])


# -- residual --------------------------------------------------------------------------------------
def test_residual_parts_add_up_and_norms_match(engine):
    from token_explorer.model.hooks import run_with_hooks

    ids = prompt(engine)
    engine.set_tokens(ids)
    acts = run_with_hooks(engine.loaded.model, engine.session.family, ids)
    delta = acts["resid_post"] - acts["resid_pre"]
    torch.testing.assert_close(acts["attn_out"] + acts["mlp_out"], delta, atol=1e-4, rtol=0)
    cursor = 9
    result = engine.analyze("residual", ids, cursor, {"layer": 1})
    table = result.tables[0]
    assert len(table.rows) == engine.info.n_layers
    for l, row in enumerate(table.rows):
        assert float(row[1]) == pytest.approx(acts["attn_out"][l, cursor].norm().item(), rel=1e-3)
        assert float(row[3]) == pytest.approx(delta[l, cursor].norm().item(), rel=1e-3)
        assert float(row[4]) < 1e-4
    np.testing.assert_allclose(result.values, acts["resid_pre"][1].norm(dim=-1).numpy(), rtol=1e-5)
    last = engine.analyze("residual", ids, cursor, {})
    np.testing.assert_allclose(last.values, acts["resid_post"][-1].norm(dim=-1).numpy(), rtol=1e-5)
    assert engine.session.cache.get_seq_length() == len(ids), "the session's cache is untouched"
    other = ids[:cursor] + [ids[cursor] ^ 1]  # another branch: computed from scratch
    mine = run_with_hooks(engine.loaded.model, engine.session.family, other)
    row = engine.analyze("residual", other, cursor, {}).tables[0].rows[1]
    assert float(row[2]) == pytest.approx(mine["mlp_out"][1, cursor].norm().item(), rel=1e-3)


# -- attribution -----------------------------------------------------------------------------------
def brute_force_saliency(engine: Engine, ids, cursor) -> np.ndarray:
    """|d log p(ids[cursor] | ids[:cursor]) / d e_i| with autograd through an input_ids forward."""
    model = engine.loaded.model
    kept = {}

    def hook(_module, _args, out):
        out.retain_grad()
        kept["e"] = out
        return out

    emb = model.get_input_embeddings()
    weight = emb.weight.requires_grad
    emb.weight.requires_grad_(True)  # so the embedding output is part of the graph
    handle = emb.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(torch.tensor([list(ids[:cursor])])).logits[0, -1]
            torch.log_softmax(logits, -1)[ids[cursor]].backward()
    finally:
        handle.remove()
        emb.weight.requires_grad_(weight)
        emb.weight.grad = None
    return kept["e"].grad[0].norm(dim=-1).numpy()


def test_saliency_equals_brute_force_autograd(engine):
    ids = prompt(engine)
    engine.set_tokens(ids)
    cursor = 10
    result = engine.analyze("attribution", ids, cursor, {"method": "saliency"})
    np.testing.assert_allclose(result.values[:cursor], brute_force_saliency(engine, ids, cursor), rtol=1e-4)
    assert np.isnan(result.values[cursor:]).all()


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_integrated_gradients_completeness_gap_shrinks(tiny_dirs, family):
    """From the default baseline (a token's embedding) the midpoint sum converges to f(E) - f(B)."""
    from token_explorer.analyses.attribution import integrated_gradients
    from token_explorer.model.attribution import baseline_token, embed, log_prob, path_mean_gradient

    engine = open_engine(str(tiny_dirs[family]), device="cpu")
    ids = prompt(engine)
    model, cursor = engine.loaded.model, 9
    embeds = embed(model, ids[:cursor])
    base = embed(model, [baseline_token(model)] * cursor)
    f_input = float(log_prob(model, embeds[None], ids[cursor])[0])
    f_base = float(log_prob(model, base[None], ids[cursor])[0])
    gaps = []
    for steps in (4, 64):
        mean_grad = path_mean_gradient(model, embeds, ids[cursor], steps, tokens_per_batch=3 * cursor, baseline=base)
        gaps.append(abs(integrated_gradients(embeds - base, mean_grad, f_input, f_base, steps).gap))
    assert gaps[1] < gaps[0] / 10
    assert gaps[1] < 1e-3
    through_view = engine.analyze("attribution", ids, cursor, {"method": "integrated_gradients", "steps": 64})
    assert "baseline: the embedding of token" in through_view.caption
    np.testing.assert_allclose(np.nansum(through_view.values), f_input - f_base, atol=1e-3)


def test_integrated_gradients_reports_the_true_gap(engine):
    from token_explorer.model.attribution import embed, log_prob

    ids = prompt(engine)
    cursor = 9
    embeds = embed(engine.loaded.model, ids[:cursor])
    f_input = float(log_prob(engine.loaded.model, embeds[None], ids[cursor])[0])
    f_base = float(log_prob(engine.loaded.model, torch.zeros_like(embeds)[None], ids[cursor])[0])
    result = engine.analyze("attribution", ids, cursor,
                            {"method": "integrated_gradients", "steps": 16, "baseline": "zero"})
    total = float(np.sum(result.values[:cursor], dtype=np.float64))
    done = result.completeness
    assert done is not None and done.steps == 16
    assert done.f_input == pytest.approx(f_input, abs=1e-5)
    assert done.f_baseline == pytest.approx(f_base, abs=1e-5)
    assert done.total == pytest.approx(total, abs=1e-5)
    assert done.gap == pytest.approx(total - (f_input - f_base), abs=1e-5)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_attribution_only_before_the_cursor(engine, method):
    ids = prompt(engine)
    cursor = 8
    params = {"method": method, "steps": 8}
    base = engine.analyze("attribution", ids, cursor, params)
    assert base.values.shape == (len(ids),)
    assert np.isfinite(base.values[:cursor]).all() and np.isnan(base.values[cursor:]).all()
    first = engine.analyze("attribution", ids, 0, params)
    assert np.isnan(first.values).all() and "no prefix" in first.caption


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_attribution_ignores_tokens_after_the_cursor(engine, method):
    """Computed from scratch each time (not through the result cache): a changed suffix changes nothing."""
    from token_explorer.heavy.attribution import attribution

    ids = prompt(engine)
    cursor, params = 7, {"method": method, "steps": 8}
    a = attribution(engine, ids, cursor, params)
    b = attribution(engine, ids[: cursor + 1] + [9, 9, 9, 9], cursor, params)
    np.testing.assert_array_equal(a.values, b.values)
    c = attribution(engine, ids[:cursor] + [ids[cursor] ^ 1], cursor, params)
    assert not np.allclose(a.values[:cursor], c.values[:cursor]), "the target token matters"
