"""Saved prompts: JSON files that keep the exact token ids a prompt was stepped through.

A saved prompt file holds::

    {"format": "token_explorer.prompt/1", "text": str, "token_ids": [int, ...],
     "model": str, "model_fingerprint": str, "saved_at": ISO 8601 time}

Files are written atomically and never overwrite one another.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from token_explorer.errors import UserError

FORMAT = "token_explorer.prompt/1"
_SLUG_WORDS = 5
_SLUG_CHARS = 40
_TMP_SUFFIX = ".tmp"
_LEFTOVER_AGE = 3600.0  # seconds after which a save's temporary file is surely abandoned


@dataclass(frozen=True)
class SavedPrompt:
    """A prompt as read from its file."""

    path: Path
    text: str
    token_ids: tuple[int, ...]
    model: str  # the model's name when saved
    model_fingerprint: str  # identifies the weights the token ids belong to
    saved_at: datetime  # timezone-aware


def save_prompt(
    directory: Path,
    text: str,
    token_ids: Sequence[int],
    model: str,
    fingerprint: str,
    name: str | None = None,
) -> Path:
    """Write a new prompt file in ``directory`` (created if needed) and return its path.

    The file is named from ``name``, or from the text's first words plus a timestamp; an existing
    name gets a ``-2``, ``-3``... suffix. The file appears complete or not at all.
    """
    ids = [_token_id(t) for t in token_ids]
    if not ids:
        raise ValueError("a saved prompt needs at least one token id")
    now = datetime.now(timezone.utc).astimezone()
    stem = _safe_name(name) if name else f"{_slug(text) or 'prompt'}-{now:%Y%m%d-%H%M%S}"
    record = {
        "format": FORMAT,
        "text": text,
        "token_ids": ids,
        "model": model,
        "model_fingerprint": fingerprint,
        "saved_at": now.isoformat(timespec="seconds"),
    }
    data = (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_leftovers(directory)
        return _write_new(directory, stem, data)
    except OSError as e:
        raise UserError(f"{directory}: cannot save prompt: {e.strerror or e}") from None


def load_prompt(path: str | Path) -> SavedPrompt:
    """Read and check a saved prompt file."""
    path = Path(path)
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such prompt file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise UserError(f"{path}: not a saved prompt (format {found!r}, expected {FORMAT!r})")
    for key in ("text", "model", "model_fingerprint", "saved_at"):
        if not isinstance(record.get(key), str):
            raise UserError(f"{path}: {key} must be a string, got {_show(record.get(key))}")
    ids = record.get("token_ids")
    if not isinstance(ids, list) or not ids or not all(_is_token_id(t) for t in ids):
        raise UserError(f"{path}: token_ids must be a non-empty list of non-negative integers")
    try:
        saved_at = datetime.fromisoformat(record["saved_at"])
    except ValueError:
        raise UserError(f"{path}: saved_at is not an ISO 8601 time: {_show(record['saved_at'])}") from None
    if saved_at.tzinfo is None:
        saved_at = saved_at.astimezone()  # a naive time is taken as local
    return SavedPrompt(
        path=path,
        text=record["text"],
        token_ids=tuple(ids),
        model=record["model"],
        model_fingerprint=record["model_fingerprint"],
        saved_at=saved_at,
    )


def list_prompts(directory: str | Path) -> tuple[list[SavedPrompt], list[str]]:
    """(saved prompts newest first, one-line problems for files that could not be read).

    A missing folder holds no prompts.
    """
    directory = Path(directory)
    remove_leftovers(directory)
    try:
        paths = sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))
    except OSError as e:
        return [], [f"{directory}: cannot list: {e.strerror or e}"]
    prompts, problems = [], []
    for path in paths:
        try:
            prompts.append(load_prompt(path))
        except UserError as e:
            problems.append(str(e))
    prompts.sort(key=lambda p: (p.saved_at, p.path.name), reverse=True)
    return prompts, problems


def read_text_prompt(path: str | Path) -> str:
    """The text of a plain UTF-8 prompt file (``--input``), without one trailing line break."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such input file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    if not text.strip():
        raise UserError(f"{path}: input file is empty")
    return text.removesuffix("\n").removesuffix("\r")


def _write_new(directory: Path, stem: str, data: bytes) -> Path:
    """Write ``data`` to ``<stem>[-N].json`` in ``directory``, never replacing an existing file."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".saving-{os.getpid()}-", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        n = 1
        while True:
            target = directory / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
            try:
                _link_new(tmp, target)
                break
            except FileExistsError:
                n += 1
        _fsync_dir(directory)
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_leftovers(directory: Path) -> None:
    """Delete temporary files of saves that were killed mid-way: those of processes that are gone,
    and any older than an hour (a save takes milliseconds)."""
    try:
        leftovers = list(directory.glob(f".saving-*{_TMP_SUFFIX}"))
    except OSError:
        return
    for path in leftovers:
        pid = path.name.removeprefix(".saving-").split("-", 1)[0]
        with contextlib.suppress(OSError):
            if not _alive(pid) or time.time() - path.stat().st_mtime > _LEFTOVER_AGE:
                path.unlink()


def _alive(pid: str) -> bool:
    """Whether process ``pid`` (a decimal string) exists; False for anything else."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's
        return True
    return True


def _link_new(tmp: str, target: Path) -> None:
    """Make ``target`` the complete file ``tmp``; FileExistsError if ``target`` exists."""
    try:
        os.link(tmp, target)  # atomic, and fails if target exists
    except FileExistsError:
        raise
    except OSError:
        # no hard links on this file system: reserve the name, then move the full file onto it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(tmp, target)


def _fsync_dir(directory: Path) -> None:
    """Flush a folder's entries to disk where the platform allows it (not on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _safe_name(name: str) -> str:
    """A file-name-safe stem from a name the user chose."""
    stem = re.sub(r"[^\w.-]+", "-", name.removesuffix(".json")).strip("-.")
    return stem[:80] or "prompt"


def _slug(text: str) -> str:
    """A short file-name-safe stem from the first words of ``text``."""
    words = re.findall(r"\w+", text.lower())[:_SLUG_WORDS]
    return "-".join(words)[:_SLUG_CHARS].strip("-")


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _token_id(value: Any) -> int:
    """``value`` as a token id (numpy integers accepted); ValueError otherwise."""
    try:
        token = int(value.__index__())
    except (AttributeError, TypeError):
        raise ValueError(f"token id must be an integer, got {value!r}") from None
    if token < 0 or isinstance(value, bool):
        raise ValueError(f"token id must be a non-negative integer, got {value!r}")
    return token


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
