"""The stepping engine against independent full recomputes on tiny random models."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from token_explorer.engine import Engine, open_engine
from token_explorer.errors import UserError
from token_explorer.model.session import FILL_BATCH
from token_explorer.sampling import SamplingParams, process

TEXT = "Once upon a time, there was a café ✓"


@pytest.fixture
def engine(tiny_dir) -> Engine:
    return open_engine(str(tiny_dir), device="cpu", top_k=20, temperature=0.7)


def full_logits(engine: Engine, ids) -> torch.Tensor:
    """(T, V) float64 logits of one plain forward over the whole sequence, no cache."""
    with torch.no_grad():
        return engine.loaded.model(torch.tensor([list(ids)])).logits[0].double()


def check_against_full(engine: Engine, snap) -> None:
    logits = full_logits(engine, snap.tokens)
    logp = torch.log_softmax(logits, -1)
    for i, pos in enumerate(snap.positions):
        top = logits[i].topk(len(pos.top_ids))
        np.testing.assert_allclose(pos.top_logits, top.values.numpy(), atol=1e-4)
        np.testing.assert_allclose(pos.top_probs, logp[i].exp()[pos.top_ids].numpy(), atol=1e-5)
        ent = -(logp[i].exp() * logp[i]).sum().item() / math.log(2)
        assert pos.entropy_bits == pytest.approx(ent, abs=1e-4)
        t = pos.temperature
        assert pos.energy == pytest.approx(-t * torch.logsumexp(logits[i] / t, -1).item(), abs=1e-4)
        if i == 0:
            assert pos.token_prob is None and pos.token_rank is None
            continue
        prev = logits[i - 1]
        assert pos.token_prob == pytest.approx(logp[i - 1, snap.tokens[i]].exp().item(), abs=1e-5)
        assert pos.token_rank == int((prev > prev[snap.tokens[i]]).sum()) + 1
        z = (prev[snap.tokens[i]] - prev.mean()) / prev.std(correction=0)
        assert pos.token_z == pytest.approx(z.item(), abs=1e-3)


def test_prefill_matches_full_recompute(engine):
    snap = engine.set_tokens(engine.tokenize(TEXT))
    assert len(snap) > 10
    check_against_full(engine, snap)


def test_incremental_steps_match_full_recompute(engine):
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids[:3])
    for token in ids[3:]:
        snap = engine.append(token)
    assert snap.tokens == tuple(ids)
    check_against_full(engine, snap)


def test_pop_then_append_is_identical(engine):
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    before = engine.fill_lens()
    engine.pop()
    engine.pop()
    engine.append(ids[-2])
    engine.append(ids[-1])
    after = engine.fill_lens()  # the lens of the popped-back positions, recomputed from the captures
    for a, b in zip(before.positions, after.positions):
        np.testing.assert_allclose(a.top_logits, b.top_logits, atol=1e-5)
        assert a.token_prob == pytest.approx(b.token_prob, abs=1e-6) if a.token_prob else b.token_prob is None
        np.testing.assert_allclose(a.lens.kl_to_final_bits, b.lens.kl_to_final_bits, atol=1e-4)
        if a.lens.token_prob is not None:
            np.testing.assert_allclose(a.lens.token_prob, b.lens.token_prob, atol=1e-6)


def test_prefix_reuse_matches_a_fresh_engine(engine, tiny_dir):
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    branch = ids[:-4] + engine.tokenize(" sea dog")
    engine.set_tokens(branch)
    reused = engine.fill_lens()
    fresh = open_engine(str(tiny_dir), device="cpu", top_k=20, temperature=0.7)
    fresh.set_tokens(branch)
    fresh = fresh.fill_lens()
    for a, b in zip(reused.positions, fresh.positions):
        np.testing.assert_allclose(a.top_logits, b.top_logits, atol=1e-4)
        np.testing.assert_allclose(a.lens.entropy_bits, b.lens.entropy_bits, atol=1e-4)
    check_against_full(engine, reused)


def test_prefix_reuse_runs_only_the_rest(engine, monkeypatch):
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    seen: list[int] = []
    original = engine.session._forward
    monkeypatch.setattr(engine.session, "_forward", lambda chunk: (seen.append(len(chunk)), original(chunk))[1])
    engine.set_tokens(ids[:-3] + ids[-2:])
    assert seen == [2]
    engine.pop()
    assert seen == [2], "pop runs no forward"


def test_lens_last_layer_is_the_real_distribution(engine):
    engine.set_tokens(engine.tokenize(TEXT))
    snap = engine.fill_lens()
    for pos in snap.positions:
        np.testing.assert_array_equal(pos.lens.top_ids[-1][:5], pos.top_ids[:5])
        np.testing.assert_allclose(pos.lens.top_probs[-1], pos.top_probs, atol=1e-5)
        assert pos.lens.kl_to_final_bits[-1] == pytest.approx(0.0, abs=1e-5)
        if pos.token_prob is not None:
            assert pos.lens.token_prob[-1] == pytest.approx(pos.token_prob, abs=1e-5)
            assert pos.lens.token_rank[-1] == pos.token_rank


def test_lens_middle_layer_equals_norm_and_unembedding_by_hand(engine):
    ids = engine.tokenize(TEXT)
    engine.set_tokens(ids)
    snap = engine.fill_lens()
    model = engine.loaded.model
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        norm = model.transformer.ln_f if hasattr(model, "transformer") else model.model.norm
        for layer in (1, len(hidden) - 2):
            logp = torch.log_softmax(model.lm_head(norm(hidden[layer][0])).double(), -1)  # (T, V)
            for i, pos in enumerate(snap.positions):
                np.testing.assert_allclose(pos.lens.top_probs[layer], logp[i].exp()[pos.lens.top_ids[layer]], atol=1e-5)
                if i:
                    assert pos.lens.token_prob[layer] == pytest.approx(logp[i - 1, ids[i]].exp().item(), abs=1e-5)


def test_probabilities_sum_to_one_when_all_are_kept(tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=10_000)
    engine.set_tokens(engine.tokenize(TEXT))
    snap = engine.fill_lens()
    for pos in snap.positions:
        assert len(pos.top_ids) == engine.info.vocab_size
        assert float(pos.top_probs.sum()) == pytest.approx(1.0, abs=1e-4)
        assert float(pos.lens.top_probs.sum(-1).min()) == pytest.approx(1.0, abs=1e-4)


def test_split_characters_are_shown_as_bytes(engine):
    texts = engine.token_texts(engine.tokenize("✓"))
    assert "".join(texts).count("<0x") >= 1 or texts == ["✓"]
    assert "\ufffd" not in "".join(engine.token_texts(engine.tokenize(TEXT)))


def test_sampling_is_seeded_and_uses_the_shared_sampler(engine):
    engine.set_tokens(engine.tokenize(TEXT))
    snap = engine.snapshot()
    top = snap.next.top_ids
    warm = SamplingParams(temperature=1.0)
    assert engine.sample(warm, seed=3) == engine.sample(warm, seed=3)
    assert engine.sample(SamplingParams(temperature=0.0)) == top[0]
    assert all(engine.sample(SamplingParams(top_k=2), seed=s) in top[:2] for s in range(10))
    assert all(engine.sample(SamplingParams(top_p=1e-6), seed=s) == top[0] for s in range(5))
    # the processed probabilities are those of sampling.process over the same logits and context
    params = SamplingParams(temperature=0.7, top_k=5, repetition_penalty=1.3)
    logits = engine.session.last_logits().clone()
    expected = process(logits, list(snap.tokens), 0, params).softmax(-1).double().numpy()
    ids = [int(i) for i in top[:8]]
    np.testing.assert_allclose(engine.processed_probs(params, ids), expected[ids], atol=1e-6)
    with pytest.raises(UserError, match="top-p"):
        engine.sample(SamplingParams(top_p=0.0))


def test_bad_prompts_are_user_errors(engine):
    with pytest.raises(UserError, match="empty"):
        engine.set_tokens([])
    limit = engine.info.max_positions
    with pytest.raises(UserError, match="context"):
        engine.set_tokens([5] * (limit + 1))
    engine.set_tokens([5])
    with pytest.raises(UserError, match="only token"):
        engine.pop()
    with pytest.raises(UserError, match="vocabulary"):
        engine.append(10**6)
    assert engine.snapshot().tokens == (5,), "a failed step leaves the prompt as it was"


def test_a_fill_takes_the_lock_one_batch_at_a_time(engine, tiny_dir):
    """A step or an analysis waits for one batch of the lens fill, never for the whole fill: between
    batches another thread can take the engine's lock; the records equal those of a fresh fill."""
    ids = engine.tokenize(TEXT * 3)
    engine.set_tokens(ids)
    free: list[bool] = []

    def other_thread_takes_the_lock() -> bool:
        def attempt() -> None:
            got = engine._lock.acquire(blocking=False)
            if got:
                engine._lock.release()
            free.append(got)

        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join()
        return False  # not cancelled

    chunked = engine.fill_lens(other_thread_takes_the_lock)
    batches = -(-len(ids) // FILL_BATCH)
    assert sum(free) >= batches, (sum(free), batches)
    fresh = open_engine(str(tiny_dir), device="cpu", top_k=20, temperature=0.7)
    fresh.set_tokens(ids)
    whole = fresh.fill_lens()
    for a, b in zip(chunked.positions, whole.positions):
        np.testing.assert_array_equal(a.lens.top_ids, b.lens.top_ids)
        np.testing.assert_allclose(a.lens.entropy_bits, b.lens.entropy_bits, atol=1e-5)
        if a.index:
            np.testing.assert_allclose(a.lens.token_prob, b.lens.token_prob, atol=1e-6)


def test_steps_defer_the_lens_and_filling_after_each_step_equals_one_fill(engine):
    ids = engine.tokenize(TEXT)
    prefilled = engine.set_tokens(ids)
    assert all(pos.lens is None for pos in prefilled.positions), "a prefill leaves the lens for later"
    stepped = engine.append(ids[3])
    assert stepped.positions[-1].lens is None, "a step returns its table first, without the lens"
    filled = engine.fill_lens()  # then the lens of every position, the new one scored by the one before
    assert filled.positions[-1].lens is not None and filled.positions[-1].lens.token_prob is not None
    engine.pop()
    engine.set_tokens(ids[:2])
    engine.fill_lens()
    for token in ids[2:]:
        engine.append(token)
        by_steps = engine.fill_lens()  # one position each time, scored with the kept lens before it
    engine.set_tokens(ids[:1])
    engine.set_tokens(ids)
    filled = engine.fill_lens()
    for a, b in zip(by_steps.positions, filled.positions):
        np.testing.assert_array_equal(a.lens.top_ids[:, :3], b.lens.top_ids[:, :3])
        np.testing.assert_allclose(a.lens.entropy_bits, b.lens.entropy_bits, atol=1e-4)
        if a.index:
            np.testing.assert_allclose(a.lens.token_prob, b.lens.token_prob, atol=1e-6)
            np.testing.assert_array_equal(a.lens.token_rank, b.lens.token_rank)
    engine.append(ids[5])
    after = engine.fill_lens()  # the lens kept by the last fill scores the next token
    assert after.positions[-1].lens.token_prob[-1] == pytest.approx(after.positions[-1].token_prob, abs=1e-5)
