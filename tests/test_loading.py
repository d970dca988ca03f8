"""Model loading: device/dtype choice and the conversion's temporary folders."""

from __future__ import annotations

import os

import pytest
import torch

from token_explorer.errors import UserError
from token_explorer.model.loading import _remove_abandoned, load_model, pick_device, pick_dtype


def test_abandoned_conversion_folders_are_removed(tmp_path):
    target = tmp_path / "Model-abc"
    dead = tmp_path / ".Model-abc.tmp-999999999"
    alive = tmp_path / f".Model-abc.tmp-{os.getpid()}"
    other = tmp_path / ".Other.tmp-999999999"
    for folder in (dead, alive, other):
        folder.mkdir()
    _remove_abandoned(target, locked=False)  # no lock: only dead pids' folders are surely abandoned
    assert not dead.exists() and alive.exists() and other.exists()
    _remove_abandoned(target, locked=True)  # holding the lock: no conversion is running
    assert not alive.exists() and other.exists()


def test_device_and_dtype_choices():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    assert pick_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(UserError, match="float8"):
        pick_dtype("float8")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda:0")


def test_local_folder_loads_with_its_fingerprint(tiny_dirs):
    loaded = load_model(str(tiny_dirs["qwen2"]), device="cpu", dtype="bfloat16")
    assert loaded.model.dtype is torch.bfloat16 and not loaded.model.training
    assert loaded.fingerprint.startswith("folder:") and loaded.fingerprint.endswith(":bfloat16")
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_folder_without_config_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path), device="cpu")
