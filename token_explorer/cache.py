"""Result cache: a memory LRU in front of a size-bounded diskcache, with no pickle anywhere.

Values are plain data: ``None``, bools, ints, floats, strings, lists, tuples, dicts, NumPy arrays
and scalars (numeric dtypes), and frozen dataclasses registered with :func:`register_type`, nested
freely. On disk a value is one bytes record::

    MAGIC (8 bytes) | header length (uint32, little-endian) | JSON header | array bytes

The header describes the value's structure; each array is ``{"A": [dtype, shape, offset, nbytes]}``
into the array bytes. Anything that does not decode cleanly (truncated, bad header, unregistered
type, changed dataclass fields) is dropped and counted as a miss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import operator
import os
import sqlite3
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import diskcache
import numpy as np

KEY_VERSION = "token_explorer.cache/1"  # part of every key: change it to orphan all old entries
MAGIC = b"TXCACHE1"
_LEN = struct.Struct("<I")
_ARRAY_KINDS = "biufc"  # bool, signed, unsigned, float, complex
_DISK_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)

T = TypeVar("T")
_TYPES: dict[str, type] = {}


class CorruptEntry(ValueError):
    """A stored record that cannot be turned back into a value."""


def register_type(cls: type[T] | None = None, *, name: str | None = None) -> Any:
    """Allow a dataclass to be stored and rebuilt; use as ``@register_type`` or ``register_type(C)``.

    ``name`` (default ``module.QualName``) is what the record stores; only registered names are
    rebuilt.
    """

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        type_name = name or f"{cls.__module__}.{cls.__qualname__}"
        if _TYPES.setdefault(type_name, cls) is not cls:
            raise ValueError(f"cache type name {type_name!r} is already registered to {_TYPES[type_name]!r}")
        cls.__cache_type_name__ = type_name  # type: ignore[attr-defined]
        return cls

    return register if cls is None else register(cls)


def make_key(*, model: str, tokens: Sequence[int], analysis: str, params: Mapping[str, Any]) -> str:
    """A sha256 hex key over everything a value depends on.

    ``model`` is the model fingerprint (weights, revision, dtype), ``analysis`` its name and version
    (e.g. ``"lens/2"``), ``params`` JSON-like parameters (key order does not matter).
    """
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "tokens": [operator.index(t) for t in tokens],
        "analysis": analysis,
        "params": _canonical(params),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Any) -> Any:
    """``obj`` as JSON-ready data with a stable form; TypeError for anything without one."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("cache key parameters need string keys")
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    raise TypeError(f"cannot put {type(obj).__name__} in a cache key")


# --- encoding -------------------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """One value as a self-describing bytes record (see the module docstring)."""
    chunks: list[bytes] = []
    size = 0

    def array(a: np.ndarray) -> list[Any]:
        nonlocal size
        if a.dtype.kind not in _ARRAY_KINDS or a.dtype.fields is not None:
            raise TypeError(f"cannot cache arrays of dtype {a.dtype}")
        data = np.ascontiguousarray(a).tobytes()
        entry = [a.dtype.str, list(a.shape), size, len(data)]
        chunks.append(data)
        size += len(data)
        return entry

    def tree(v: Any) -> Any:
        if v is None or type(v) in (bool, int, float, str):
            return v
        if isinstance(v, np.ndarray):
            return {"A": array(v)}
        if isinstance(v, np.generic):
            return {"S": array(np.asarray(v))}
        if type(v) is list:
            return {"L": [tree(x) for x in v]}
        if type(v) is tuple:
            return {"T": [tree(x) for x in v]}
        if type(v) is dict:
            return {"D": [[tree(k), tree(x)] for k, x in v.items()]}
        type_name = getattr(type(v), "__cache_type_name__", None)
        if type_name is not None and _TYPES.get(type_name) is type(v):
            fields = {f.name: tree(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
            return {"C": type_name, "F": fields}
        raise TypeError(f"cannot cache a {type(v).__qualname__} (register dataclasses with register_type)")

    header = json.dumps({"value": tree(value), "size": size}, separators=(",", ":")).encode("utf-8")
    return b"".join([MAGIC, _LEN.pack(len(header)), header, *chunks])


def decode(record: bytes) -> Any:
    """The value of a record made by :func:`encode`; CorruptEntry if it is not one."""
    try:
        return _decode(record)
    except CorruptEntry:
        raise
    except Exception as e:  # any failure to parse untrusted bytes means a corrupt record
        raise CorruptEntry(f"{type(e).__name__}: {e}") from e


def _decode(record: bytes) -> Any:
    if not isinstance(record, bytes) or record[: len(MAGIC)] != MAGIC:
        raise CorruptEntry("not a cache record")
    start = len(MAGIC) + _LEN.size
    (header_len,) = _LEN.unpack_from(record, len(MAGIC))
    header = json.loads(record[start : start + header_len].decode("utf-8"))
    blob = memoryview(record)[start + header_len :]
    if len(blob) != header["size"]:
        raise CorruptEntry(f"array bytes are {len(blob)} long, header says {header['size']}")

    def array(entry: list[Any]) -> np.ndarray:
        dtype_str, shape, offset, nbytes = entry
        dtype = np.dtype(dtype_str)
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise CorruptEntry(f"unexpected dtype {dtype_str!r}")
        if not all(type(n) is int and n >= 0 for n in shape):
            raise CorruptEntry(f"bad shape {shape!r}")
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != nbytes or not 0 <= offset <= offset + nbytes <= len(blob):
            raise CorruptEntry("array bytes out of range")
        return np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape).copy()

    def tree(v: Any) -> Any:
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is not dict or len(v) not in (1, 2):
            raise CorruptEntry("bad structure")
        if "A" in v:
            return array(v["A"])
        if "S" in v:
            return array(v["S"])[()]
        if "L" in v:
            return [tree(x) for x in v["L"]]
        if "T" in v:
            return tuple(tree(x) for x in v["T"])
        if "D" in v:
            return {tree(k): tree(x) for k, x in v["D"]}
        if "C" in v:
            cls = _TYPES.get(v["C"])
            if cls is None:
                raise CorruptEntry(f"unregistered type {v['C']!r}")
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            if set(v["F"]) != names:
                raise CorruptEntry(f"fields of {v['C']} changed")
            return cls(**{k: tree(x) for k, x in v["F"].items()})
        raise CorruptEntry("bad structure")

    return tree(header["value"])


# --- the cache ------------------------------------------------------------------------------------


class _BytesDisk(diskcache.Disk):
    """diskcache storage that holds only str keys and bytes values and refuses to unpickle."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError("cache keys are str")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise CorruptEntry("pickled key")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not bytes:
            raise TypeError("cache values are bytes")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            raise CorruptEntry(f"stored with mode {mode}, not bytes")
        return super().fetch(mode, filename, value, read)


@dataclass(frozen=True)
class CacheStats:
    """Counts since the cache was opened."""

    hits_memory: int = 0
    hits_disk: int = 0
    misses: int = 0
    evictions: int = 0  # dropped from the memory LRU
    corrupt: int = 0  # disk records dropped because they did not decode


class ResultCache:
    """A bounded memory LRU in front of an optional, size-bounded disk cache shared by processes.

    Thread-safe. Values returned are the stored objects themselves: do not mutate them. ``None``
    cannot be stored (``get`` returns it for a miss). Disk failures switch the cache to memory only
    (``disk_error`` says why); they never raise.
    """

    def __init__(self, directory: Path | None, memory_items: int, disk_limit_mb: int,
                 report: Callable[[str], None] = lambda _line: None) -> None:
        """``directory`` None or ``disk_limit_mb`` 0: memory only. ``memory_items`` >= 0. ``report``
        gets one line, once, when the disk cache is unusable (the cache then runs in memory only) or
        was corrupt (moved aside and started anew)."""
        if memory_items < 0:
            raise ValueError("memory_items must be >= 0")
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._memory_items = memory_items
        self._counts = dict.fromkeys(("hits_memory", "hits_disk", "misses", "evictions", "corrupt"), 0)
        self._disk: diskcache.Cache | None = None
        self._directory = directory
        self._report = report
        self.disk_error: str | None = None  # why the disk cache was switched off, if it was
        if directory is not None and disk_limit_mb > 0:
            self._open(directory, disk_limit_mb)

    def _open(self, directory: Path, disk_limit_mb: int) -> None:
        """Open the disk cache; a corrupt one is moved aside and started anew."""

        def open_disk() -> diskcache.Cache:
            return diskcache.Cache(str(directory), size_limit=disk_limit_mb * 2**20,
                                   eviction_policy="least-recently-used", disk=_BytesDisk)

        try:
            self._disk = open_disk()
            return
        except sqlite3.OperationalError as e:  # read-only, no such folder, locked...
            self._disk_failed(e)
            return
        except sqlite3.DatabaseError as e:  # not a database, malformed: corrupt or truncated
            corrupt = e
        except _DISK_ERRORS as e:
            self._disk_failed(e)
            return
        aside = directory.with_name(f"{directory.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            directory.rename(aside)
            self._disk = open_disk()
        except _DISK_ERRORS as e:
            self._disk_failed(e)
            return
        self._report(f"result cache {directory} was corrupt ({corrupt}): moved aside to {aside.name} and started anew")

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return CacheStats(**self._counts)

    @property
    def on_disk(self) -> bool:
        """Whether values also go to disk."""
        return self._disk is not None

    def get(self, key: str) -> Any | None:
        """The value stored under ``key`` (memory first, then disk), or None."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self._counts["hits_memory"] += 1
                return self._memory[key]
        value = self._disk_get(key)
        with self._lock:
            if value is None:
                self._counts["misses"] += 1
            else:
                self._counts["hits_disk"] += 1
                self._remember(key, value)
        return value

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` in memory and on disk; TypeError if it cannot be encoded."""
        if value is None:
            raise ValueError("None cannot be cached")
        record = encode(value) if self._disk is not None else None
        with self._lock:
            self._remember(key, value)
        if record is not None:
            self._disk_call(lambda disk: disk.set(key, record))

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> T:
        """The cached value, or ``compute()`` stored and returned (two threads may both compute)."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def close(self) -> None:
        """Close the disk cache; the memory LRU stays usable."""
        disk, self._disk = self._disk, None
        if disk is not None:
            disk.close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remember(self, key: str, value: Any) -> None:
        """Put in the memory LRU, dropping the least recently used beyond the limit (lock held)."""
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
            self._counts["evictions"] += 1

    def _disk_get(self, key: str) -> Any | None:
        """The decoded disk value, or None; corrupt records are deleted."""
        try:
            record = self._disk_call(lambda disk: disk.get(key))
            return None if record is None else decode(record)
        except CorruptEntry:
            with self._lock:
                self._counts["corrupt"] += 1
            self._disk_call(lambda disk: disk.delete(key))
            return None

    def _disk_call(self, op: Callable[[diskcache.Cache], Any]) -> Any:
        """``op(disk)``, or None with the disk switched off if it fails."""
        disk = self._disk
        if disk is None:
            return None
        try:
            return op(disk)
        except _DISK_ERRORS as e:
            self._disk_failed(e)
            return None

    def _disk_failed(self, error: BaseException) -> None:
        """Go on in memory only, and say so once."""
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        if self.disk_error is None:
            self._report(f"result cache {self._directory} unusable ({reason}): results are kept in memory only")
        self.disk_error = f"{type(error).__name__}: {error}"
        disk, self._disk = self._disk, None
        if disk is not None:
            with contextlib.suppress(*_DISK_ERRORS):
                disk.close()
