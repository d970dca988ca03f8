"""Dictionary weights: finding the file, telling its layout by key names, loading, fingerprints.

Accepted safetensors layouts (``F`` features, ``d`` the model's hidden size; every tensor is read
as float32):

* ``saelens`` (SAELens ``sae_weights.safetensors``): ``W_enc`` (d, F), ``b_enc`` (F),
  ``W_dec`` (F, d), ``b_dec`` (d); optional ``threshold`` (F) or ``log_threshold`` (F, exp taken)
  for JumpReLU; optional ``W_skip`` (d, d) for skip transcoders.
* ``circuit-tracer`` (circuit-tracer per-layer transcoders, e.g. the seed's
  ``mntss/skip-transcoder-Llama-3.2-1B-131k-nobos``): the same names with ``W_enc`` stored (F, d);
  optional ``W_skip`` (d, d), optional ``activation_function.threshold`` (F).
* ``linear`` (PyTorch ``nn.Linear`` modules): ``encoder.weight`` (F, d), ``encoder.bias`` (F),
  ``decoder.weight`` (d, F) or (F, d), ``decoder.bias`` (d); optional ``skip_connection.weight``
  (d, d), optional ``threshold`` (F).

With ``layout = "auto"`` a file with ``encoder.weight`` is ``linear``; one with ``W_enc`` is
``saelens`` when ``W_enc`` is (d, F) and ``circuit-tracer`` when it is (F, d); when F == d the
names decide (``W_skip`` or ``activation_function.threshold`` mean circuit-tracer), else set
``layout``. Skip connections add ``x @ W_skip.T``. Wrong shapes against the model's hidden size, a
missing key or an unreadable file are one-line UserErrors naming the entry and the file.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..errors import UserError
from .archs import Dictionary
from .entries import SaeEntry

# canonical part -> key name, per layout
_NAMES: dict[str, dict[str, str]] = {
    "saelens": {"W_enc": "W_enc", "b_enc": "b_enc", "W_dec": "W_dec", "b_dec": "b_dec",
                "W_skip": "W_skip", "threshold": "threshold"},
    "circuit-tracer": {"W_enc": "W_enc", "b_enc": "b_enc", "W_dec": "W_dec", "b_dec": "b_dec",
                       "W_skip": "W_skip", "threshold": "activation_function.threshold"},
    "linear": {"W_enc": "encoder.weight", "b_enc": "encoder.bias", "W_dec": "decoder.weight",
               "b_dec": "decoder.bias", "W_skip": "skip_connection.weight", "threshold": "threshold"},
}
_REQUIRED = ("W_enc", "b_enc", "W_dec", "b_dec")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LOCK = threading.Lock()
_HASHES: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> sha256 of the file
_LOADED: OrderedDict[tuple[str, str, bool], Dictionary] = OrderedDict()
DATA = Path(__file__).parent / "data"  # shipped dictionaries: path = "bundled:<file name>"
MAX_LOADED = 2  # dictionaries kept in memory (a 131k-feature one is over 2 GB)


def weights_file(entry: SaeEntry) -> Path:
    """The local weights file of ``entry``, downloaded from the hub if needed (and allowed)."""
    if entry.path is not None:
        shipped = entry.path.removeprefix("bundled:")
        path = DATA / shipped if shipped != entry.path else Path(entry.path).expanduser()
        if not path.is_file():
            raise UserError(f"{entry.where}: no such weights file {path}")
        return path
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    what = f"{entry.repo_id}/{entry.filename}" + (f"@{entry.revision}" if entry.revision else "")
    try:
        return Path(hf_hub_download(entry.repo_id, entry.filename, revision=entry.revision,
                                    local_files_only=offline))
    except LocalEntryNotFoundError:
        raise UserError(f"{entry.where}: {what} is not in the local hub cache and the hub cannot be "
                        "reached (offline); download it once online or set path") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{entry.where}: cannot fetch {what}: {first}") from None


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime); a hub blob's name is its sha256."""
    real = path.resolve()
    if real.parent.name == "blobs" and _SHA256.fullmatch(real.name):
        return real.name
    st = real.stat()
    memo = (str(real), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if memo in _HASHES:
            return _HASHES[memo]
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    with _LOCK:
        _HASHES[memo] = digest.hexdigest()
    return _HASHES[memo]


def fingerprint(entry: SaeEntry) -> str:
    """What the dictionary's results depend on: its weights file, labels file and config fields."""
    parts = {"weights": file_hash(weights_file(entry)), "entry": entry.identity(),
             "labels": file_hash(_labels_path(entry)) if entry.labels else None}
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _labels_path(entry: SaeEntry) -> Path:
    path = Path(entry.labels).expanduser()
    if not path.is_file():
        raise UserError(f"{entry.where}: no such labels file {path}")
    return path


def detect_layout(keys: set[str], shapes: dict[str, tuple[int, ...]], d_model: int) -> str | None:
    """The layout of a file from its key names (and W_enc's shape); None if it cannot be told."""
    if "encoder.weight" in keys:
        return "linear"
    if "W_enc" not in keys:
        return None
    rows, cols = (shapes["W_enc"] + (0, 0))[:2]
    if rows == cols:
        return "circuit-tracer" if {"W_skip", "activation_function.threshold"} & keys else "saelens"
    if rows == d_model:
        return "saelens"
    if cols == d_model:
        return "circuit-tracer"
    return "saelens"  # the shape check reports the mismatch


def load_dictionary(entry: SaeEntry, d_model: int, *, decoder: bool = False,
                    device: torch.device | str = "cpu") -> Dictionary:
    """The dictionary of ``entry`` for a model of hidden size ``d_model`` (kept in a small LRU).

    ``decoder=False`` loads only what encoding needs.
    """
    path = weights_file(entry)
    memo = (fingerprint(entry), str(device), decoder)
    with _LOCK:
        if memo in _LOADED:
            _LOADED.move_to_end(memo)
            return _LOADED[memo]
    loaded = read_dictionary(entry, path, d_model, decoder=decoder, device=device)
    with _LOCK:
        _LOADED[memo] = loaded
        while len(_LOADED) > MAX_LOADED:
            _LOADED.popitem(last=False)
    return loaded


def read_dictionary(entry: SaeEntry, path: Path, d_model: int, *, decoder: bool = True,
                    device: torch.device | str = "cpu") -> Dictionary:
    """Read and check ``path`` as the dictionary ``entry`` describes (no memo)."""
    where = f"{entry.where}: {path.name}"
    try:
        f = safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise UserError(f"{where}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    with f:
        keys = set(f.keys())
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
        layout = entry.layout if entry.layout != "auto" else detect_layout(keys, shapes, d_model)
        if layout is None:
            raise UserError(f"{where}: unknown layout: no W_enc or encoder.weight among its keys "
                            f"({', '.join(sorted(keys)[:8])})")
        names = _NAMES[layout]
        for part in _REQUIRED:
            if names[part] not in keys:
                raise UserError(f"{where}: missing key {names[part]} ({layout} layout)")
        if "log_threshold" in keys and layout == "saelens" and "threshold" not in keys:
            names = dict(names, threshold="log_threshold")
        has_threshold = names["threshold"] in keys
        has_skip = names["W_skip"] in keys

        arch = entry.architecture or ("jumprelu" if has_threshold else "relu")
        if arch == "jumprelu" and not has_threshold:
            raise UserError(f"{where}: architecture jumprelu needs a threshold, missing key {names['threshold']}")
        if entry.skip and not has_skip:
            raise UserError(f"{where}: skip = true but missing key {names['W_skip']}")
        if has_skip and not entry.is_transcoder:
            raise UserError(f"{where}: has a skip connection ({names['W_skip']}): a transcoder, set output_hook")
        use_skip = has_skip and entry.skip is not False
        apply_b_dec = entry.apply_b_dec_to_input
        if apply_b_dec is None:
            apply_b_dec = layout == "saelens" and not entry.is_transcoder

        n_features = shapes[names["b_enc"]][0] if len(shapes[names["b_enc"]]) == 1 else -1
        enc_t = layout != "saelens"  # stored (F, d)
        want = {
            "W_enc": (n_features, d_model) if enc_t else (d_model, n_features),
            "b_enc": (n_features,),
            "b_dec": (d_model,),
            "W_skip": (d_model, d_model),
            "threshold": (n_features,),
        }
        dec_shape = shapes[names["W_dec"]]
        dec_t = layout == "linear" and dec_shape == (d_model, n_features) and n_features != d_model
        want["W_dec"] = (d_model, n_features) if dec_t else (n_features, d_model)
        for part, shape in want.items():
            key = names[part]
            if key in keys and shapes[key] != shape:
                raise UserError(f"{where}: {key} has shape {_dims(shapes[key])}, expected {_dims(shape)} "
                                f"(d_model {d_model}, {n_features} features, {layout} layout)")

        def get(part: str, transpose: bool = False) -> torch.Tensor:
            t = f.get_tensor(names[part]).float()
            t = t.T.contiguous() if transpose else t
            return t.to(device)

        threshold = get("threshold") if arch == "jumprelu" else None
        if threshold is not None and names["threshold"] == "log_threshold":
            threshold = threshold.exp()
        return Dictionary(
            architecture=arch,
            W_enc=get("W_enc", transpose=enc_t),
            b_enc=get("b_enc"),
            b_dec=get("b_dec") if decoder or apply_b_dec else None,
            W_dec=get("W_dec", transpose=dec_t) if decoder else None,
            W_skip=get("W_skip") if decoder and use_skip else None,
            threshold=threshold,
            k=entry.k,
            apply_b_dec_to_input=apply_b_dec,
        )


def load_labels(entry: SaeEntry) -> dict[int, str]:
    """Feature id -> label from ``entry.labels``: a JSON object {"id": label}, a JSON list (index =
    id), or TSV lines ``id<TAB>label``; empty if no labels are configured."""
    if entry.labels is None:
        return {}
    path = _labels_path(entry)
    return _read_labels(entry.where, path, file_hash(path))


@functools.lru_cache(maxsize=4)
def _read_labels(where: str, path: Path, digest: str) -> dict[int, str]:
    """The labels of one file version (``digest`` keys the memo)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: cannot read labels file {path}: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            data: Any = json.loads(text)
            if isinstance(data, list):
                return {i: str(label) for i, label in enumerate(data) if label is not None}
            if isinstance(data, dict):
                return {int(k): str(v) for k, v in data.items()}
            raise ValueError("expected an object or a list")
        rows = csv.reader(text.splitlines(), delimiter="\t")
        return {int(row[0]): row[1] for row in rows if len(row) >= 2 and row[0].strip().isdigit()}
    except ValueError as e:
        raise UserError(f"{where}: bad labels file {path}: {e}") from None


def _dims(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"
