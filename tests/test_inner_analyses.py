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


def last_block_output(engine: Engine, ids) -> torch.Tensor:
    """(n, d) the raw output of the last block (before the final norm), by a forward hook."""
    model = engine.loaded.model
    blocks = model.transformer.h if engine.info.family == "gpt2" else model.model.layers
    kept = {}
    handle = blocks[-1].register_forward_hook(lambda _m, _a, out: kept.setdefault("h", out[0] if isinstance(out, tuple) else out))
    try:
        forward(engine, ids)
    finally:
        handle.remove()
    return kept["h"][0]


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
    params = {"layer": middle, "quantity": "prob"}
    result = engine.analyze("lens", ids, 5, params)
    np.testing.assert_allclose(result.prob, expected, atol=2e-5)
    np.testing.assert_allclose(result.colour(params), expected[middle], atol=2e-5)
    # the last row is the model's real distribution
    real = [p.token_prob for p in engine.snapshot().positions[1:]]
    np.testing.assert_allclose(result.prob[-1, 1:], real, atol=1e-5)
    other = branch(ids)
    np.testing.assert_allclose(engine.analyze("lens", other, 5, {}).prob, lens_by_hand(engine, other), atol=2e-5)


def test_lens_rank_is_log10_of_the_rank(engine):
    ids = prompt(engine)
    engine.set_tokens(ids)
    ranks = engine.analyze("lens", ids, 3, {}).grid({"quantity": "rank"})  # (L+1, n)
    logits = forward(engine, ids).logits[0]
    for i in range(1, len(ids)):
        rank = int((logits[i - 1] > logits[i - 1, ids[i]]).sum()) + 1
        assert ranks[-1, i] == pytest.approx(np.log10(rank))


def test_lens_table_is_the_cursor_distribution(engine):
    ids = prompt(engine)
    engine.set_tokens(ids)
    result = engine.analyze("lens", ids, 6, {})
    assert result.top_ids.shape[:2] == (engine.info.n_layers + 1, len(ids))
    logp = torch.log_softmax(forward(engine, ids).logits[0].double(), -1)  # (n, V)
    top = logp.exp().topk(5)
    np.testing.assert_array_equal(result.top_ids[-1], top.indices.numpy())  # the last row: the model's own
    np.testing.assert_allclose(result.top_probs[-1], top.values.numpy(), atol=1e-5)
    entropy = -(logp.exp() * logp).sum(-1) / np.log(2)
    np.testing.assert_allclose(result.entropy_bits[-1], entropy.numpy(), atol=1e-4)
    np.testing.assert_allclose(result.kl_bits[-1], 0, atol=1e-5)
    texts = dict(zip(result.text_ids.tolist(), result.texts))
    assert texts[int(top.indices[6, 0])] == engine.token_texts([int(top.indices[6, 0])])[0]


# -- attention -------------------------------------------------------------------------------------
def eager_rows(tiny_dir, ids, cursor) -> np.ndarray:
    """(L, H, cursor+1) attention rows of the cursor from an eager copy with output_attentions."""
    eager = AutoModelForCausalLM.from_pretrained(str(tiny_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        att = eager(torch.tensor([list(ids)]), output_attentions=True).attentions  # L of (1, H, T, T)
    return np.stack([a[0, :, cursor, : cursor + 1].numpy() for a in att])


def test_attention_rows_match_eager_output_attentions(engine, tiny_dir):
    ids = prompt(engine)
    engine.set_tokens(ids)
    for cursor in (0, 5, len(ids) - 1):
        rows = engine.analyze("attention", ids, cursor, {}).weights
        np.testing.assert_allclose(rows, eager_rows(tiny_dir, ids, cursor), atol=1e-5)
    other = branch(ids)  # not in the session: our own forward
    rows = engine.analyze("attention", other, 9, {}).weights
    np.testing.assert_allclose(rows, eager_rows(tiny_dir, other, 9), atol=1e-5)
    assert engine.session.tokens == ids, "the session is never touched"


def test_attention_aggregates_over_what_it_says(engine, tiny_dir):
    ids = prompt(engine)
    engine.set_tokens(ids)
    cursor = 8
    rows = eager_rows(tiny_dir, ids, cursor)  # (L, H, cursor+1)
    result = engine.analyze("attention", ids, cursor, {})
    mean = result.colour({"layer": "all", "head": "all", "aggregate": "mean"})
    np.testing.assert_allclose(mean, rows.mean((0, 1)), atol=1e-5)
    assert mean.shape == (cursor + 1,), "only tokens up to the cursor are attended"
    top = result.colour({"layer": 2, "head": "all", "aggregate": "max"})
    np.testing.assert_allclose(top, rows[2].max(0), atol=1e-5)
    one = result.colour({"layer": 1, "head": 3, "aggregate": "mean"})
    np.testing.assert_allclose(one, rows[1, 3], atol=1e-5)
    p = rows[2, 1]
    expected = -(p[p > 0] * np.log2(p[p > 0])).sum()
    assert result.entropy_bits[2, 1] == pytest.approx(expected, abs=1e-4)


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
    norm, _ = final_norm_and_head(engine)
    raw = [h[0] for h in hs[:-1]] + [last_block_output(engine, ids)]
    result = engine.analyze("similarity", ids, cursor, {})
    for l, h in enumerate(raw):  # raw residual stream at every row, the last one before the final norm
        np.testing.assert_allclose(result.values[l], cos(h, h[cursor][None]), atol=1e-5)
    assert result.colour({"layer": 2})[cursor] == pytest.approx(1.0, abs=1e-6)
    normed = engine.analyze("similarity", ids, cursor, {"space": "normed"})
    with torch.no_grad():
        for l, h in enumerate(raw):  # every row through the final norm, the last one as the model applies it
            n = norm(h)
            np.testing.assert_allclose(normed.values[l], cos(n, n[cursor][None]), atol=1e-5)


def test_hidden_similarity_to_the_final_state(engine):
    ids = prompt(engine)
    other = branch(ids)
    engine.set_tokens(ids)
    hs = forward(engine, other, output_hidden_states=True).hidden_states
    raw = [h[0] for h in hs[:-1]] + [last_block_output(engine, other)]
    result = engine.analyze("hidden_similarity", other, 3, {})
    for l, h in enumerate(raw):  # like with like: raw against the raw output of the last block
        np.testing.assert_allclose(result.values[l], cos(h, raw[-1]), atol=1e-5)
    norm, _ = final_norm_and_head(engine)
    normed = engine.analyze("hidden_similarity", other, 3, {"space": "normed"})
    with torch.no_grad():
        for l, h in enumerate(raw):
            np.testing.assert_allclose(normed.values[l], cos(norm(h), hs[-1][0]), atol=1e-5)


# -- residual --------------------------------------------------------------------------------------
def test_residual_parts_add_up_and_norms_match(engine):
    from token_explorer.model.hooks import run_with_hooks

    ids = prompt(engine)
    engine.set_tokens(ids)
    acts = run_with_hooks(engine.loaded.model, engine.session.family, ids)
    delta = acts["resid_post"] - acts["resid_pre"]
    torch.testing.assert_close(acts["attn_out"] + acts["mlp_out"], delta, atol=1e-4, rtol=0)
    cursor = 9
    result = engine.analyze("residual", ids, cursor, {})
    assert result.attn_norm.shape == (engine.info.n_layers,)
    np.testing.assert_allclose(result.attn_norm, acts["attn_out"][:, cursor].norm(dim=-1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(result.delta_norm, delta[:, cursor].norm(dim=-1).numpy(), rtol=1e-4)
    assert (result.max_error < 1e-4).all()
    np.testing.assert_allclose(result.colour({"layer": 1}), acts["resid_pre"][1].norm(dim=-1).numpy(), rtol=1e-5)
    last = result.colour({"layer": engine.info.n_layers})
    np.testing.assert_allclose(last, acts["resid_post"][-1].norm(dim=-1).numpy(), rtol=1e-5)
    assert engine.session.cache.get_seq_length() == len(ids), "the session's cache is untouched"
    other = ids[:cursor] + [ids[cursor] ^ 1]  # another branch: computed from scratch
    mine = run_with_hooks(engine.loaded.model, engine.session.family, other)
    mlp = engine.analyze("residual", other, cursor, {}).mlp_norm[1]
    assert mlp == pytest.approx(mine["mlp_out"][1, cursor].norm().item(), rel=1e-4)


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
    np.testing.assert_allclose(result.scores[:cursor], brute_force_saliency(engine, ids, cursor), rtol=1e-4)
    assert np.isnan(result.scores[cursor:]).all()


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("baseline", ["mean", "token"])
def test_integrated_gradients_adds_up_to_the_true_difference(tiny_dirs, family, baseline):
    """Completeness against f(E) and f(B) computed here by plain forwards; the gap is a number."""
    from token_explorer.model.attribution import baseline_token, embed, log_prob

    engine = open_engine(str(tiny_dirs[family]), device="cpu")
    ids = prompt(engine)
    model, cursor = engine.loaded.model, 9
    embeds = embed(model, ids[:cursor])
    base = {"mean": model.get_input_embeddings().weight.mean(0).detach().expand(cursor, -1),
            "token": embed(model, [baseline_token(model)] * cursor)}[baseline]
    f_input = float(log_prob(model, embeds[None], ids[cursor])[0])
    f_base = float(log_prob(model, base[None], ids[cursor])[0])
    first = base.clone()
    first[0] = embeds[0]  # the end of the path's first leg: only the first token moved
    f_first = float(log_prob(model, first[None], ids[cursor])[0])
    result = engine.analyze("attribution", ids, cursor, {"method": "integrated_gradients", "baseline": baseline})
    done = result.completeness
    assert result.scores[0] == pytest.approx(f_first - f_base, abs=1e-4)  # the first leg is exact
    assert done.f_input == pytest.approx(f_input, abs=1e-4)
    assert done.f_baseline == pytest.approx(f_base, abs=1e-4)
    assert done.total == pytest.approx(float(np.nansum(result.scores, dtype=np.float64)), abs=1e-4)
    assert done.gap == pytest.approx(done.total - (f_input - f_base), abs=2e-4)
    assert done.converged and abs(done.gap) <= 0.05 * max(abs(f_input - f_base), 0.05)
    assert result.f_input == pytest.approx(f_input, abs=1e-4)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_attribution_only_before_the_cursor(engine, method):
    ids = prompt(engine)
    cursor = 8
    params = {"method": method}
    base = engine.analyze("attribution", ids, cursor, params)
    assert base.scores.shape == (cursor + 1,)
    assert np.isfinite(base.scores[:cursor]).all() and np.isnan(base.scores[cursor:]).all()
    first = engine.analyze("attribution", ids, 0, params)
    assert np.isnan(first.scores).all() and np.isnan(first.f_input)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_attribution_ignores_tokens_after_the_cursor(engine, method):
    """Computed from scratch each time (not through the result cache): a changed suffix changes nothing."""
    ids = prompt(engine)
    cursor, params = 7, {"method": method}
    from token_explorer.cache import ResultCache

    engine.results = ResultCache(None, memory_items=0, disk_limit_mb=0)  # computed each time, never cached
    a = engine.analyze("attribution", ids, cursor, params)
    b = engine.analyze("attribution", ids[: cursor + 1] + [9, 9, 9, 9], cursor, params)
    np.testing.assert_array_equal(a.scores, b.scores)
    c = engine.analyze("attribution", ids[:cursor] + [ids[cursor] ^ 1], cursor, params)
    assert not np.allclose(a.scores[:cursor], c.scores[:cursor]), "the target token matters"
