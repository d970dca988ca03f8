"""The prefix store: its radix tree against a plain dict of paths, its budget, and the stepping
session with it against full recomputes from scratch of every token path it visits."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig, OlmoConfig

from tiny import FAMILIES, MORE_FAMILIES, make_model, make_tokenizer
from token_explorer.config import Settings, StoreSettings
from token_explorer.engine import open_engine
from token_explorer.model.kv_cache import GrowingLayer
from token_explorer.model.prefix_store import PrefixStore
from token_explorer.model.session import Session

ROW_BYTES = 10  # bytes of one position of a fake segment


class Fake:
    """A fake segment: each position's value is its whole path up to and including it."""

    def __init__(self, values: list[tuple[int, ...]]) -> None:
        self.values = values
        self.nbytes = ROW_BYTES * len(values)

    def __len__(self) -> int:
        return len(self.values)

    def part(self, lo: int, hi: int) -> Fake:
        return Fake(self.values[lo:hi])

    view = part


def fake_take(path: list[int], taken: list[tuple[int, ...]]):
    def take(lo: int, hi: int) -> Fake:
        values = [tuple(path[: j + 1]) for j in range(lo, hi)]
        taken.extend(values)
        return Fake(values)
    return take


def random_path(rng: random.Random) -> list[int]:
    """Short paths over three tokens, so that many share prefixes."""
    return [rng.randrange(3) for _ in range(rng.randint(1, 10))]


def held_run(held: set[tuple[int, ...]], path: list[int], start: int) -> int:
    """How many positions from ``start`` on ``held`` has, one after another (the plain model)."""
    k = 0
    while start + k < len(path) and tuple(path[: start + k + 1]) in held:
        k += 1
    return k


@pytest.mark.parametrize("seed", range(6))
def test_store_structure_equals_a_dict_of_paths(seed):
    rng = random.Random(seed)
    store, held = PrefixStore(budget=1 << 30), set()
    for _ in range(300):
        path = random_path(rng)
        start = rng.randrange(len(path))
        if rng.random() < 0.6:
            taken: list[tuple[int, ...]] = []
            store.insert(path, start, fake_take(path, taken))
            new = {tuple(path[: j + 1]) for j in range(start, len(path))}
            assert set(taken) == new - held, "take is asked for exactly the positions not held"
            assert len(taken) == len(set(taken))
            held |= new
        else:
            found = [v for segment in store.lookup(path, start) for v in segment.values]
            k = held_run(held, path, start)
            assert found == [tuple(path[: j + 1]) for j in range(start, start + k)]
        assert set(store.paths()) == held
        assert store.positions == len(held) and store.nbytes == ROW_BYTES * len(held)


@pytest.mark.parametrize("seed", range(6))
def test_eviction_keeps_the_budget_and_drops_least_recently_used_leaves(seed):
    rng = random.Random(100 + seed)
    cap = 7  # positions the budget holds
    store, everything = PrefixStore(budget=cap * ROW_BYTES), set()
    for _ in range(300):
        path = random_path(rng)
        start = rng.randrange(len(path))
        if rng.random() < 0.6:
            before = set(store.paths())
            on_path_before = sum(tuple(path[: j + 1]) in before for j in range(start))
            store.insert(path, start, fake_take(path, []))
            everything |= {tuple(path[: j + 1]) for j in range(start, len(path))}
            # every other branch goes before any position of the path just stored; its tail goes first
            k = held_run(set(store.paths()), path, start)
            assert k == max(0, min(len(path) - start, cap - on_path_before))
        else:
            found = [v for segment in store.lookup(path, start) for v in segment.values]
            assert found == [tuple(path[: j + 1]) for j in range(start, start + len(found))]
            assert len(found) == held_run(set(store.paths()), path, start)
        held = set(store.paths())
        assert store.nbytes <= store.budget and store.nbytes == ROW_BYTES * len(held)
        assert held <= everything


def test_a_zero_budget_keeps_nothing():
    store = PrefixStore(budget=0)
    store.insert([1, 2, 3], 1, fake_take([1, 2, 3], []))
    assert store.positions == 0 and store.lookup([1, 2, 3], 1) == []


# -- the stepping session over the store --------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def reference(model, tokenizer, ids: list[int]) -> Session:
    """A session without a store that computed ``ids`` from scratch, lens filled."""
    fresh = Session(model, tokenizer, top_k=20, temperature=0.7, store_mib=0)
    fresh.set_tokens(ids)
    fresh.fill_lens()
    return fresh


def assert_same(session: Session, fresh: Session) -> None:
    """Records, captures and KV cache of ``session`` equal those of the from-scratch ``fresh``."""
    assert session.tokens == fresh.tokens
    for a, b in zip(session.positions, fresh.positions, strict=True):
        assert a.index == b.index and a.token_id == b.token_id
        for name in ("token_prob", "token_logit", "token_z"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None) and (x is None or abs(x - y) <= 1e-4), name
        assert a.token_rank == b.token_rank
        np.testing.assert_allclose(a.top_logits, b.top_logits, atol=1e-4)
        np.testing.assert_allclose(a.top_probs, b.top_probs, atol=1e-5)
        assert a.entropy_bits == pytest.approx(b.entropy_bits, abs=1e-4)
        assert a.energy == pytest.approx(b.energy, abs=1e-4)
        if b.lens is not None:
            assert a.lens is not None
            np.testing.assert_allclose(a.lens.top_probs, b.lens.top_probs, atol=1e-5)
            np.testing.assert_allclose(a.lens.kl_to_final_bits, b.lens.kl_to_final_bits, atol=1e-4)
            if b.lens.token_prob is not None:
                np.testing.assert_allclose(a.lens.token_prob, b.lens.token_prob, atol=1e-5)
    n = len(fresh.tokens)
    if fresh.resid.length:
        torch.testing.assert_close(session.resid.view(), fresh.resid.view(), atol=1e-4, rtol=0)
    if fresh.queries_on:
        torch.testing.assert_close(session.queries.view(), fresh.queries.view(), atol=1e-4, rtol=0)
    for mine, theirs in zip(session.cache.layers, fresh.cache.layers, strict=True):
        assert mine.keys.shape[-2] == theirs.keys.shape[-2] <= n
        torch.testing.assert_close(mine.keys, theirs.keys, atol=1e-4, rtol=0)
        torch.testing.assert_close(mine.values, theirs.values, atol=1e-4, rtol=0)
    torch.testing.assert_close(session.last_logits(), fresh.last_logits(), atol=1e-4, rtol=0)


def random_walk(session: Session, rng: random.Random, steps: int, vocab: int):
    """Random appends, pops and switches between a few branches; yields after each operation."""
    branches = [[0] + [rng.randrange(2, vocab) for _ in range(6)]]
    session.set_tokens(branches[0])
    for _ in range(steps):
        roll = rng.random()
        if roll < 0.35:
            session.append(rng.choice([2, 3, 4, rng.randrange(2, vocab)]))
        elif roll < 0.55 and len(session.tokens) > 1:
            session.pop()
        elif roll < 0.75:
            session.set_tokens(rng.choice(branches))
        else:  # a fork: a prefix of some branch, then new tokens
            base = rng.choice(branches + [list(session.tokens)])
            cut = rng.randint(1, len(base))
            fork = base[:cut] + [rng.randrange(2, vocab) for _ in range(rng.randint(1, 5))]
            branches.append(fork)
            session.set_tokens(fork)
        if len(session.tokens) > 40:
            session.set_tokens(session.tokens[:20])
        if rng.random() < 0.5:
            session.fill_lens()
        yield


def count_restores(session: Session) -> list[int]:
    """A list that gets how many positions each of ``session``'s restores copied back."""
    restored: list[int] = []
    original = session._restore

    def counting(ids):
        before = len(session.tokens)
        original(ids)
        restored.append(len(session.tokens) - before)

    session._restore = counting
    return restored


@pytest.mark.parametrize("family", FAMILIES + ("mistral",))
@pytest.mark.parametrize("budget", [None, 40_000], ids=["roomy", "tight"])
def test_random_steps_equal_full_recomputes(tokenizer, family, budget):
    model = make_model(family, tokenizer)
    session = Session(model, tokenizer, top_k=20, temperature=0.7, store_mib=Settings().store.budget_mib)
    assert session.store is not None, "every layer is a plain full-attention one"
    if budget is not None:
        session.store.budget = budget  # about ten positions: eviction all the time
    restored = count_restores(session)
    rng = random.Random(f"{family}-{budget}")
    for _ in random_walk(session, rng, 40, len(tokenizer)):
        session.fill_lens()
        assert_same(session, reference(model, tokenizer, list(session.tokens)))
        assert session.store.nbytes <= session.store.budget
    assert sum(restored) > (10 if budget is None else 0), "the walk came back to stored positions"
    assert (session.store.evicted > 20) == (budget is not None)


@pytest.mark.parametrize("family", FAMILIES)
def test_switching_between_visited_branches_runs_no_forward(tokenizer, family):
    model = make_model(family, tokenizer)
    session = Session(model, tokenizer, top_k=20, temperature=0.7, store_mib=64)
    ids = tokenizer("Once upon a time, there was a small town by the sea.")["input_ids"]
    other = ids[:-4] + tokenizer(" lazy dog")["input_ids"]
    for path in (ids, other):
        session.set_tokens(path)
        session.fill_lens()
    forwards: list[int] = []
    original = session._forward
    session._forward = lambda chunk: (forwards.append(len(chunk)), original(chunk))[1]
    for path in (ids, other, ids):
        session.set_tokens(path)
        session.fill_lens()
        assert_same(session, reference(model, tokenizer, path))
    session.pop()
    session.append(ids[-1])  # the token just removed: copied back
    assert forwards == []
    session.append(2)  # a new one runs
    assert forwards == [1]


def sliding_model(family: str, tokenizer):
    """A tiny model whose cache has sliding-window layers (gemma2 alternates them with global ones)."""
    if family == "gemma2":
        return make_model("gemma2", tokenizer)
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                           sliding_window=4, bos_token_id=0, eos_token_id=1)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("family", ["gemma2", "mistral-window"])
def test_sliding_windows_recompute_and_stay_correct(tokenizer, family):
    assert "gemma2" in MORE_FAMILIES
    model = sliding_model(family.removesuffix("-window"), tokenizer)
    session = Session(model, tokenizer, top_k=20, temperature=0.7, store_mib=64)
    assert not all(isinstance(layer, GrowingLayer) for layer in session.cache.layers)
    assert session.store is None, "rows of a sliding-window layer cannot be cut and refilled exactly"
    rng = random.Random(family)
    for _ in random_walk(session, rng, 25, len(tokenizer)):
        session.fill_lens()
        fresh = reference(model, tokenizer, list(session.tokens))
        for a, b in zip(session.positions, fresh.positions, strict=True):
            np.testing.assert_allclose(a.top_logits, b.top_logits, atol=1e-4)
            np.testing.assert_allclose(a.lens.kl_to_final_bits, b.lens.kl_to_final_bits, atol=1e-4)
        torch.testing.assert_close(session.last_logits(), fresh.last_logits(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("budget", [0, 3])
def test_the_engine_takes_the_budget_from_the_config(tiny_dirs, budget):
    settings = Settings(store=StoreSettings(budget_mib=budget))
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", settings=settings)
    store = engine.session.store
    assert (store is None) if budget == 0 else (store is not None and store.budget == budget * 2**20)


def test_a_family_outside_the_table_reuses_kv_rows_and_records(tokenizer):
    torch.manual_seed(0)
    config = OlmoConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=256, bos_token_id=0, eos_token_id=1,
                        pad_token_id=1)
    model = AutoModelForCausalLM.from_config(config).eval()
    session = Session(model, tokenizer, top_k=20, temperature=0.7, lens=False, store_mib=64)
    assert session.family is None and session.store is not None
    restored = count_restores(session)
    for _ in random_walk(session, random.Random("olmo"), 30, len(tokenizer)):
        fresh = Session(model, tokenizer, top_k=20, temperature=0.7, lens=False, store_mib=0)
        fresh.set_tokens(list(session.tokens))
        assert_same(session, fresh)
    assert sum(restored) > 5


def test_a_crop_larger_than_the_budget_keeps_its_first_positions(tokenizer):
    model = make_model("llama", tokenizer)
    session = Session(model, tokenizer, top_k=20, temperature=0.7, store_mib=64)
    ids = tokenizer("Once upon a time, there was a small town by the sea.")["input_ids"]
    session.set_tokens(ids)
    session.fill_lens()
    per = session._rows(3, 4).nbytes
    session.store.budget = 5 * per  # five positions of the fifteen a cut to three removes
    session.set_tokens(ids[:3])
    held = session.store.paths()
    assert set(held) == {tuple(ids[: j + 1]) for j in range(3, 8)}
    assert session.store.nbytes <= session.store.budget and session.store.evicted == 0
    restored = count_restores(session)
    session.set_tokens(ids)
    assert restored == [5]
    session.fill_lens()  # of the positions run again
    assert_same(session, reference(model, tokenizer, ids))
