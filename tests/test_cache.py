"""cache.py: pickle-free records, the memory LRU, the disk cache, corruption and sharing."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass

import diskcache
import numpy as np
import pytest

from token_explorer import cache as cache_mod
from token_explorer.cache import CorruptEntry, ResultCache, decode, encode, make_key, register_type
from token_explorer.results import LensStats, Position, Snapshot

for _cls in (LensStats, Position, Snapshot):
    register_type(_cls)


@register_type
@dataclass(frozen=True)
class Pair:
    name: str
    values: np.ndarray


@dataclass(frozen=True)
class Unregistered:
    x: int


def same(a, b) -> bool:
    """Deep equality that also checks types, dtypes and shapes of arrays."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if hasattr(a, "__dataclass_fields__"):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


def position(index: int, lens: bool = True) -> Position:
    k, layers = 5, 4
    rng = np.random.default_rng(index)
    return Position(
        index=index,
        token_id=100 + index,
        text="[b]<0xE2> ",
        token_prob=None if index == 0 else 0.25,
        token_rank=None if index == 0 else 3,
        token_logit=None if index == 0 else 1.5,
        token_z=None if index == 0 else -0.75,
        top_ids=rng.integers(0, 50000, k, dtype=np.int64),
        top_probs=rng.random(k, dtype=np.float32),
        top_logits=rng.standard_normal(k).astype(np.float32),
        entropy_bits=3.2,
        energy=-12.5,
        temperature=1.0,
        logit_mean=0.1,
        logit_std=2.0,
        lens=LensStats(
            top_ids=rng.integers(0, 50000, (layers + 1, k), dtype=np.int64),
            top_probs=rng.random((layers + 1, k), dtype=np.float32),
            entropy_bits=rng.random(layers + 1, dtype=np.float32),
            kl_to_final_bits=rng.random(layers + 1, dtype=np.float32),
        )
        if lens
        else None,
    )


VALUES = [
    None,
    True,
    -(2**70),
    float("nan"),
    float("-inf"),
    "héllo [x] \x00",
    [1, (2, 3), {"a": [None]}],
    {(1, "k"): 1, 2: "two", "s": ()},
    np.arange(12, dtype=np.float16).reshape(3, 4) / 7,
    np.arange(-5, 5, dtype=np.int64),
    np.array([1.5, np.nan, np.inf], dtype=np.float64),
    np.array([[True, False]]),
    np.array([1 + 2j], dtype=np.complex64),
    np.array([1.0, 2.0], dtype=">f4"),  # big-endian stays big-endian
    np.arange(24, dtype=np.int32).reshape(2, 3, 4).transpose(2, 0, 1)[:, ::2],  # not contiguous
    np.zeros((0, 3), dtype=np.uint8),
    np.array(3.5, dtype=np.float32),  # 0-d
    np.float32(2.5),
    np.int64(-7),
    Pair("p", np.arange(3, dtype=np.uint16)),
    {"list": [Pair("a", np.ones(2)), Pair("b", np.zeros(1, dtype=np.int8))]},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_encode_round_trip(value):
    assert same(decode(encode(value)), value)


def test_results_round_trip():
    snap = Snapshot(tokens=(100, 101, 102), positions=(position(0), position(1, lens=False), position(2)))
    back = decode(encode(snap))
    assert isinstance(back, Snapshot) and isinstance(back.positions[0].lens, LensStats)
    assert same(back, snap)
    assert back.positions[2].top_ids.dtype == np.int64
    assert np.array_equal(back.next.top_z(), snap.next.top_z())


def test_decoded_arrays_are_independent_and_writable():
    a = np.arange(4, dtype=np.int64)
    back = decode(encode(a))
    back[0] = 99
    assert a[0] == 0 and back[0] == 99


@pytest.mark.parametrize("value", [{1, 2}, b"raw", object(), Unregistered(1), np.array(["s"]), np.array([{}])])
def test_unsupported_values_are_refused(value):
    with pytest.raises(TypeError):
        encode(value)


def corruptions() -> list[bytes]:
    good = encode({"a": np.arange(10, dtype=np.float32), "p": Pair("x", np.ones(2))})
    header_start = len(cache_mod.MAGIC) + 4
    return [
        b"",
        b"garbage",
        good[:-1],  # truncated array bytes
        good[: header_start + 5],  # truncated header
        good + b"\0",  # trailing bytes
        b"XXXXXXXX" + good[8:],  # bad magic
        good.replace(b'"<f4"', b'"|O8"'),  # object dtype
        good.replace(b"test_cache.Pair", b"test_cache.Gone"),  # unknown type
        good.replace(b'"name"', b'"nome"'),  # dataclass fields changed
        good.replace(b"[10]", b"[11]"),  # shape does not match the bytes
    ]


@pytest.mark.parametrize("record", corruptions(), ids=range(len(corruptions())))
def test_corrupt_records_raise_corrupt_entry(record):
    with pytest.raises(CorruptEntry):
        decode(record)


def test_make_key_is_stable_and_complete():
    base = dict(model="fp1", tokens=[1, 2, 3], analysis="lens/1", params={"k": 5, "t": 1.0})
    key = make_key(**base)
    assert len(key) == 64 and int(key, 16) >= 0
    assert make_key(**base) == key
    assert make_key(**{**base, "tokens": np.array([1, 2, 3]), "params": {"t": 1.0, "k": 5}}) == key
    assert make_key(**{**base, "tokens": (1, 2, 3)}) == key
    changed = [
        {**base, "model": "fp2"},
        {**base, "tokens": [1, 2]},
        {**base, "tokens": [1, 2, 4]},
        {**base, "analysis": "lens/2"},
        {**base, "params": {"k": 6, "t": 1.0}},
        {**base, "params": {"k": 5, "t": 1.0, "layer": None}},
        {**base, "params": {"k": True, "t": 1.0}},
    ]
    assert len({make_key(**c) for c in changed} | {key}) == len(changed) + 1
    with pytest.raises(TypeError):
        make_key(**{**base, "params": {"x": object()}})
    with pytest.raises(TypeError):
        make_key(**{**base, "tokens": [1.0]})


def test_memory_lru_order_and_stats():
    c = ResultCache(None, memory_items=2, disk_limit_mb=512)
    assert not c.on_disk
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)  # evicts b
    assert c.get("b") is None
    assert (c.get("a"), c.get("c")) == (1, 3)
    c.put("d", 4)  # evicts a (c was used after a)
    assert c.get("a") is None and c.get("c") == 3
    assert c.stats == cache_mod.CacheStats(hits_memory=4, hits_disk=0, misses=2, evictions=2, corrupt=0)
    with pytest.raises(ValueError):
        c.put("n", None)


def test_disk_hit_promotes_and_survives_restart(tmp_path):
    arr = np.arange(100_000, dtype=np.float16)  # large enough to be stored as a file by diskcache
    with ResultCache(tmp_path, memory_items=1, disk_limit_mb=10) as c:
        c.put("big", {"arr": arr})
        c.put("small", Pair("s", np.arange(3)))  # evicts "big" from memory
        assert same(c.get("big"), {"arr": arr})  # from disk, promoted
        assert c.get("big") is c.get("big")  # now from memory
        assert c.stats.hits_disk == 1 and c.stats.hits_memory == 2
    again = ResultCache(tmp_path, memory_items=10, disk_limit_mb=10)
    assert same(again.get("small"), Pair("s", np.arange(3)))
    assert same(again.get("big"), {"arr": arr})
    assert again.stats.hits_disk == 2 and again.stats.misses == 0


def test_get_or_compute(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.ones(3)

    c = ResultCache(tmp_path, memory_items=4, disk_limit_mb=10)
    assert same(c.get_or_compute("k", compute), np.ones(3))
    assert same(c.get_or_compute("k", compute), np.ones(3))
    assert len(calls) == 1
    assert c.stats.misses == 1 and c.stats.hits_memory == 1


@pytest.mark.parametrize("record", [b"junk", encode(Pair("x", np.ones(2)))[:-3], None])
def test_corrupt_disk_entry_is_dropped_and_recomputed(tmp_path, record):
    if record is None:  # an entry whose type is no longer registered
        record = encode(Pair("x", np.ones(2))).replace(b"test_cache.Pair", b"test_cache.Gone")
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("k", record)
    c = ResultCache(tmp_path, memory_items=4, disk_limit_mb=10)
    assert c.get("k") is None
    assert c.stats.corrupt == 1 and c.stats.misses == 1
    with diskcache.Cache(str(tmp_path)) as raw:
        assert "k" not in raw  # deleted
    assert c.get_or_compute("k", lambda: 42) == 42
    assert ResultCache(tmp_path, memory_items=4, disk_limit_mb=10).get("k") == 42


UNPICKLED: list[str] = []


def _mark() -> str:
    UNPICKLED.append("ran")
    return "pickled"


class Trap:
    def __reduce__(self):
        return (_mark, ())


def test_pickled_disk_entries_are_never_unpickled(tmp_path):
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set("k", Trap())  # stored pickled by plain diskcache
        raw.set(("tuple", "key"), b"x")  # a pickled key
    c = ResultCache(tmp_path, memory_items=4, disk_limit_mb=10)
    assert c.get("k") is None
    assert UNPICKLED == []
    assert c.stats.corrupt == 1 and c.on_disk
    with pytest.raises(TypeError):
        c._disk.set(("a",), b"x")  # the disk refuses non-str keys


def test_unusable_directory_is_memory_only(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    c = ResultCache(blocker / "cache", memory_items=4, disk_limit_mb=10)
    assert not c.on_disk and c.disk_error
    c.put("k", np.ones(2))
    assert same(c.get("k"), np.ones(2))


def test_disk_failure_degrades_to_memory(tmp_path, monkeypatch):
    c = ResultCache(tmp_path, memory_items=4, disk_limit_mb=10)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(c._disk, "set", full)
    c.put("k", 1)  # no exception
    assert not c.on_disk and "disk is full" in c.disk_error
    assert c.get("k") == 1
    c.put("j", 2)
    assert c.get("j") == 2


def test_disk_limit_zero_is_memory_only(tmp_path):
    c = ResultCache(tmp_path / "c", memory_items=4, disk_limit_mb=0)
    assert not c.on_disk and c.disk_error is None
    assert not (tmp_path / "c").exists()


def expected_value(i: int):
    return {"i": i, "arr": np.arange(i * 1000, dtype=np.int64), "pair": Pair(str(i), np.full(i, i, np.float16))}


def share_worker(directory: str, worker: int) -> None:
    """Write and read the same keys as the other worker; any wrong value fails the process."""
    c = ResultCache(directory, memory_items=2, disk_limit_mb=64)
    order = range(40) if worker == 0 else reversed(range(40))
    for i in order:
        got = c.get(f"key{i}")
        assert got is None or same(got, expected_value(i)), f"wrong value for key{i}"
        c.put(f"key{i}", expected_value(i))
        j = (i * 7) % 40
        got = c.get(f"key{j}")
        assert got is None or same(got, expected_value(j)), f"wrong value for key{j}"
    assert c.on_disk, c.disk_error
    assert c.stats.corrupt == 0


def test_two_processes_share_a_directory(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=share_worker, args=(str(tmp_path), w)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    c = ResultCache(tmp_path, memory_items=100, disk_limit_mb=64)
    for i in range(40):
        assert same(c.get(f"key{i}"), expected_value(i))
    assert c.stats.hits_disk == 40 and c.stats.corrupt == 0


def test_threads_share_one_cache(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    c = ResultCache(tmp_path, memory_items=8, disk_limit_mb=64)

    def work(i: int) -> bool:
        key = f"t{i % 20}"
        return same(c.get_or_compute(key, lambda: expected_value(i % 20)), expected_value(i % 20))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(400)))
    s = c.stats
    assert s.hits_memory + s.hits_disk + s.misses == 400 and s.corrupt == 0


def test_plain_modules_import_neither_torch_nor_textual():
    code = (
        "import sys, token_explorer.cache, token_explorer.config, token_explorer.prompts; "
        "print(sorted(m for m in ('torch', 'textual', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
