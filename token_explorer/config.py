"""Settings from ``config.toml``: one frozen dataclass per section, unknown keys rejected.

Every problem is a :class:`~token_explorer.errors.UserError` whose one-line message names the file
(or ``command line``) and the key, e.g. ``config.toml: [display] tokens_to_show must be an integer,
got "thirty"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import platformdirs

from token_explorer.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

Check = Callable[[Any], str | None]  # returns what is wrong with a value, or None


def _setting(default: Any, check: Check | None = None) -> Any:
    """A dataclass field with an optional value check."""
    return field(default=default, metadata={"check": check} if check else {})


def _between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}, got {_show(v)}"


def _device(v: str) -> str | None:
    if _DEVICE.fullmatch(v):
        return None
    return f"must be auto, cpu, cuda, cuda:N or mps, got {_show(v)}"


def _dtype(v: str) -> str | None:
    return None if v in DTYPES else f"must be one of {', '.join(DTYPES)}, got {_show(v)}"


def _non_empty(v: str | None) -> str | None:
    return None if v is None or v.strip() else "must not be empty"


@dataclass(frozen=True)
class ModelSettings:
    """``[model]``: which model to load and how."""

    name: str = _setting("bundled", _non_empty)  # "bundled" (SmolLM2-135M-Instruct), folder or hub id
    device: str = _setting("auto", _device)
    dtype: str = _setting("float32", _dtype)
    trust_remote_code: bool = False
    revision: str | None = _setting(None, _non_empty)  # hub branch, tag or commit


@dataclass(frozen=True)
class PromptSettings:
    """``[prompt]``: the starting prompt, branches and saved prompts."""

    example_prompt: str = "Once upon a time, there was a"
    max_prompts: int = _setting(9, _between(1, 1000))  # most branches open at once
    directory: str = _setting("prompts", _non_empty)  # relative paths resolve against the cwd

    @property
    def path(self) -> Path:
        """The folder saved prompts go to (relative to the current working directory)."""
        return Path(self.directory).expanduser()


@dataclass(frozen=True)
class DisplaySettings:
    """``[display]``: what the screen shows."""

    tokens_to_show: int = _setting(30, _between(1, 1000))
    cache_size: int = _setting(100, _between(1, 1_000_000))  # most results kept in the memory LRU
    show_cursor: bool = True


@dataclass(frozen=True)
class EngineSettings:
    """``[engine]``: what is computed at each step."""

    top_k: int = _setting(50, _between(1, 1000))  # candidates kept per position, >= tokens_to_show
    temperature: float = _setting(1.0, _between(0.001, 1000))  # T of the energy -T logsumexp(logits / T)
    lens: bool = True  # per-layer logit lens at every step
    ig_steps: int = _setting(32, _between(1, 4096))  # integrated-gradients steps
    heads_folder: str | None = _setting(None, _non_empty)  # a token-explorer heads --out folder: its corpus
    # metrics shown beside the heads view's


@dataclass(frozen=True)
class SamplingSettings:
    """``[sampling]``: how the explorer's sample key (g) draws tokens (the order transformers uses)."""

    tokens: int = _setting(20, _between(1, 10_000))  # tokens drawn per press
    temperature: float = _setting(0.0, _between(0, 1000))  # 0 = greedy
    top_k: int = _setting(0, _between(0, 1_000_000))  # 0 = off
    top_p: float = _setting(1.0, _between(1e-9, 1))  # 1 = off
    repetition_penalty: float = _setting(1.0, _between(1e-6, 1000))  # 1 = off
    no_repeat_ngram_size: int = _setting(0, _between(0, 1000))  # 0 = off
    min_new_tokens: int = _setting(0, _between(0, 10_000))  # no EOS (or stop) before this many
    stop: str = ""  # stop once the drawn text contains this ("" = no stop string)


@dataclass(frozen=True)
class CacheSettings:
    """``[cache]``: the on-disk result cache."""

    directory: str | None = _setting(None, _non_empty)  # None: <user cache dir>/results
    disk_limit_mb: int = _setting(512, _between(0, 10_000_000))  # 0 turns the disk cache off

    @property
    def path(self) -> Path:
        """The folder of the disk result cache."""
        if self.directory is None:
            return user_cache_dir() / "results"
        return Path(self.directory).expanduser()


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: the prefix store of computed positions (switching branches without recomputing)."""

    budget_mib: int = _setting(512, _between(0, 1_000_000))  # memory it may hold, MiB; 0 turns it off


_SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "prompt": PromptSettings,
    "display": DisplaySettings,
    "engine": EngineSettings,
    "cache": CacheSettings,
    "sampling": SamplingSettings,
    "store": StoreSettings,
}


@dataclass(frozen=True)
class Settings:
    """All settings; ``Settings()`` is the defaults."""

    model: ModelSettings = field(default_factory=ModelSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    keymap: tuple[tuple[str, str], ...] = ()  # (binding id, keys) in file order, e.g. ("append", "right,l")
    sae: tuple[dict[str, Any], ...] = ()  # raw [[sae]] tables

    @property
    def keys(self) -> dict[str, str]:
        """The ``[keymap]`` as a dict: binding id -> comma-separated keys."""
        return dict(self.keymap)

    def with_overrides(self, section: str, source: str = "command line", **values: Any) -> Settings:
        """A copy with ``values`` set in ``section``; ``None`` values are skipped.

        ``settings.with_overrides("model", name=args.model, device=args.device)``. Values are checked
        as if read from a file called ``source``.
        """
        if section not in _SECTIONS:
            raise ValueError(f"unknown section {section!r}")
        current = dataclasses.asdict(getattr(self, section))
        current.update({k: v for k, v in values.items() if v is not None})
        settings = dataclasses.replace(self, **{section: _section(source, section, current)})
        _check_across(settings, source)
        return settings


def user_cache_dir() -> Path:
    """The per-user cache folder: ``$TOKEN_EXPLORER_CACHE_DIR``, else ``$XDG_CACHE_HOME/token_explorer``,
    else the platform's user cache folder."""
    if own := os.environ.get("TOKEN_EXPLORER_CACHE_DIR"):
        return Path(own).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "token_explorer"
    return Path(platformdirs.user_cache_dir("token_explorer"))


def load_settings(path: str | Path | None) -> Settings:
    """Settings from a TOML file; ``None`` means no file (defaults).

    Missing sections and keys keep their defaults; anything unknown or ill-typed is a UserError.
    """
    if path is None:
        return Settings()
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"{source}: no such config file") from None
    except OSError as e:
        raise UserError(f"{source}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{source}: invalid TOML: {e}") from None
    return _settings_from(data, source)


def _settings_from(data: dict[str, Any], source: str) -> Settings:
    """Settings from parsed TOML, checked."""
    sections: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS or name == "keymap":
            if not isinstance(value, dict):
                raise UserError(f"{source}: [{name}] must be a table, got {_show(value)}")
        if name in _SECTIONS:
            sections[name] = _section(source, name, value)
        elif name == "keymap":
            sections[name] = _keymap(source, value)
        elif name == "sae":
            sections[name] = _sae(source, value)
        elif isinstance(value, dict):
            raise UserError(f"{source}: unknown section [{name}]")
        else:
            raise UserError(f"{source}: unknown top-level key {name}")
    settings = Settings(**sections)
    _check_across(settings, source)
    return settings


def _section(source: str, name: str, table: Mapping[str, Any]) -> Any:
    """One section's dataclass from its table: unknown keys rejected, types and values checked."""
    cls = _SECTIONS[name]
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise UserError(f"{source}: unknown key [{name}] {key}")
        problem, value = _typed(value, hints[key])
        check = fields[key].metadata.get("check")
        if problem is None and check is not None and value is not None:
            problem = check(value)
        if problem is not None:
            raise UserError(f"{source}: [{name}] {key} {problem}")
        values[key] = value
    return cls(**values)


def _typed(value: Any, hint: Any) -> tuple[str | None, Any]:
    """(problem, value converted to ``hint``); ints are accepted for floats, bools never for numbers."""
    if hint == (str | None):
        hint = str
        if value is None:
            return None, None
    if hint is bool:
        ok, kind = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a finite number"
        value = float(value) if ok else value
        ok = ok and math.isfinite(value)
    elif hint is str:
        ok, kind = isinstance(value, str), "a string"
    else:  # pragma: no cover - a field type this loader does not know
        raise TypeError(f"unsupported setting type {hint!r}")
    return (None, value) if ok else (f"must be {kind}, got {_show(value)}", value)


def _keymap(source: str, table: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """``[keymap]`` as (binding id, keys) pairs; which ids exist is the TUI's to check."""
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{source}: [keymap] {key} must be a non-empty string of keys, got {_show(value)}")
    return tuple(table.items())


def _sae(source: str, value: Any) -> tuple[dict[str, Any], ...]:
    """``[[sae]]`` entries, kept raw."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UserError(f"{source}: sae must be an array of tables ([[sae]]), got {_show(value)}")
    return tuple(dict(v) for v in value)


def _check_across(settings: Settings, source: str) -> None:
    """Checks that involve more than one key."""
    if settings.engine.top_k < settings.display.tokens_to_show:
        raise UserError(
            f"{source}: [engine] top_k ({settings.engine.top_k}) must be >= "
            f"[display] tokens_to_show ({settings.display.tokens_to_show})"
        )


def _show(value: Any) -> str:
    """A value as it would be written in TOML-ish form, on one short line."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf, nan, as TOML writes them
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
