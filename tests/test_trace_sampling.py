"""The sampler's filters and the adaptive probe, each against an independent plain-Python version."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from token_explorer.sampling import SamplingParams, banned_ngram_tokens, choose, process
from token_explorer.trace.distribution import probe

V = 40
EOS = {1}
WHITESPACE = {5, 6}


def reference(logits: list[float], context: list[int], step: int, p: SamplingParams) -> list[float]:
    """The filters written out one token at a time, in transformers' order."""
    x = list(logits)
    for t in set(context):  # repetition penalty: positive divided, negative multiplied
        x[t] = x[t] / p.repetition_penalty if x[t] > 0 else x[t] * p.repetition_penalty
    n = p.no_repeat_ngram_size
    banned = set()
    if n and len(context) >= n:
        tail = context[len(context) - (n - 1):] if n > 1 else []
        for i in range(len(context) - n + 1):
            if context[i : i + n - 1] == tail:
                banned.add(context[i + n - 1])
    if step < max(p.min_new_tokens, p.block_eos_steps):
        banned |= EOS
    if step < p.block_whitespace_steps:
        banned |= WHITESPACE
    x = [-math.inf if t in banned else v for t, v in enumerate(x)]
    t = 1.0 if p.temperature == 0 else p.temperature
    x = [v / t for v in x]
    if p.top_k:
        kth = sorted(x, reverse=True)[p.top_k - 1]
        x = [v if v >= kth else -math.inf for v in x]
    if p.top_p < 1:
        m = max(x)
        w = [math.exp(v - m) for v in x]
        total = sum(w)
        order = sorted(range(len(x)), key=lambda i: -x[i])
        mass = 0.0
        for i in order:
            if mass >= p.top_p:
                x[i] = -math.inf
            mass += w[i] / total
    return x


CASES = [
    SamplingParams(repetition_penalty=1.3),
    SamplingParams(repetition_penalty=0.7, temperature=0.5),
    SamplingParams(no_repeat_ngram_size=2),
    SamplingParams(no_repeat_ngram_size=3, temperature=1.7),
    SamplingParams(no_repeat_ngram_size=1),
    SamplingParams(top_k=5),
    SamplingParams(top_p=0.6, temperature=0.8),
    SamplingParams(top_p=0.05),
    SamplingParams(min_new_tokens=4),
    SamplingParams(block_eos_steps=4, block_whitespace_steps=4),
    SamplingParams(temperature=0, top_k=7, top_p=0.9, repetition_penalty=1.2, no_repeat_ngram_size=2),
    SamplingParams(temperature=0.9, top_k=12, top_p=0.8, repetition_penalty=1.5, no_repeat_ngram_size=2,
                   block_eos_steps=3, block_whitespace_steps=2),
]


@pytest.mark.parametrize("params", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_processed_distribution_equals_reference(params, seed):
    rng = random.Random(seed)
    logits = [rng.gauss(0, 3) for _ in range(V)]
    logits[1] = max(logits) + 1.0  # EOS would win unless banned
    context = [rng.randrange(V) for _ in range(rng.randrange(6, 20))]
    context[-3:] = context[2:5]  # make repeated n-grams likely
    step = rng.randrange(0, 6)
    got = process(torch.tensor(logits), context, step, params, EOS, WHITESPACE)
    want = reference(logits, context, step, params)
    removed = [math.isinf(v) for v in want]
    assert torch.isinf(got).tolist() == removed
    kept = [i for i, r in enumerate(removed) if not r]
    np.testing.assert_allclose(got[kept].numpy(), np.array(want)[kept], rtol=1e-5, atol=1e-5)


def test_repetition_penalty_lowers_seen_tokens_of_either_sign():
    logits = torch.tensor([2.0, -2.0, 0.5, -0.5])
    out = process(logits, [0, 1], 0, SamplingParams(repetition_penalty=2.0))
    assert out.tolist() == pytest.approx([1.0, -4.0, 0.5, -0.5])


def test_ngram_ban_examples():
    assert banned_ngram_tokens([3, 4, 5, 3, 4], 3) == {5}
    assert banned_ngram_tokens([3, 4, 5, 3], 2) == {4}
    assert banned_ngram_tokens([3, 4], 3) == set()


def test_a_ban_that_would_remove_everything_is_skipped():
    out = process(torch.zeros(2), [0, 1], 0, SamplingParams(no_repeat_ngram_size=1))
    assert torch.isfinite(out).all()


def test_greedy_and_seeded_draws():
    logits = torch.tensor([0.0, 3.0, 1.0])
    assert choose(logits, SamplingParams(temperature=0)) == 1
    draws = []
    for _ in range(2):
        g = torch.Generator().manual_seed(7)
        draws.append([choose(logits, SamplingParams(), g) for _ in range(20)])
    assert draws[0] == draws[1]
    assert set(draws[0]) <= {0, 1, 2} and len(set(draws[0])) > 1


def brute_k(probs: np.ndarray, min_k: int, max_k: int, mass: float) -> int:
    ordered = np.sort(probs)[::-1]
    support = int((probs > 0).sum())
    for k in range(1, len(probs) + 1):
        if k >= min_k and ordered[:k].sum() >= mass:
            return min(k, max_k, support)
    return min(max_k, support)


@pytest.mark.parametrize("seed", range(12))
def test_adaptive_k_matches_its_definition(seed):
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(0, rng.uniform(0.3, 6), 300), dtype=torch.float32)
    if seed % 3 == 0:  # a filtered distribution: most tokens removed
        logits[torch.randperm(300, generator=torch.Generator().manual_seed(seed))[:290]] = -math.inf
    min_k, max_k = int(rng.integers(1, 8)), int(rng.integers(8, 60))
    mass = float(rng.uniform(0.3, 0.99))
    selected = int(torch.nonzero(torch.isfinite(logits))[int(rng.integers(0, 10))])
    got = probe(logits, selected, min_k, max_k, mass)
    probs = torch.softmax(logits.double(), -1).numpy()
    assert got.k_used == brute_k(probs, min_k, max_k, mass)
    order = np.argsort(-probs, kind="stable")
    assert got.top_mass_used == pytest.approx(probs[order[: got.k_used]].sum(), abs=1e-5)
    np.testing.assert_allclose(got.probs, probs[got.ids], atol=1e-6)
    assert list(got.probs) == sorted(got.probs, reverse=True)
    nz = probs[probs > 0]
    assert got.entropy == pytest.approx(float(-(nz * np.log(nz)).sum()), abs=1e-4)
    assert got.selected_prob == pytest.approx(probs[selected], abs=1e-6)
    assert got.selected_logprob == pytest.approx(math.log(probs[selected]), abs=1e-4)
    assert got.selected_rank == 1 + int((probs > probs[selected] * (1 + 1e-6)).sum())


def test_the_fake_engines_sampler_follows_the_same_rules():
    """The TUI tests' NumPy sampler agrees with ``sampling.process`` on the fake model's logits."""
    from tests.fake_engine import FakeEngine

    fake = FakeEngine()
    fake.set_tokens(list(b"the cat sat on the mat, the cat"))
    for params in (SamplingParams(temperature=0.8, top_k=7), SamplingParams(temperature=1.3, top_p=0.6),
                   SamplingParams(temperature=0.5, repetition_penalty=1.5, min_new_tokens=3)):
        logits = torch.tensor(fake.logits(list(fake.snapshot().tokens)), dtype=torch.float64)
        expected = process(logits, list(fake.snapshot().tokens), 0, params, eos_ids={257}).softmax(-1).numpy()
        ids = list(range(260))
        np.testing.assert_allclose(fake.processed_probs(params, ids), expected[ids], atol=1e-5)
