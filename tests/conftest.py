"""Shared fixtures: tiny model folders built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny import FAMILIES, save_tiny

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny model folder per family."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: save_tiny(root / family, family) for family in FAMILIES}


@pytest.fixture(params=FAMILIES)
def tiny_dir(request, tiny_dirs) -> Path:
    """A tiny model folder, once for each family."""
    return tiny_dirs[request.param]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep every test's user cache (converted models aside) in its own folder."""
    monkeypatch.setenv("TOKEN_EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
