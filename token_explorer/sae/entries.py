"""``[[sae]]`` config tables as typed, frozen entries.

Keys of one ``[[sae]]`` table:

  layer        int, required: the block the dictionary reads (0-based)
  hook         required: the hook point it was trained on, one of resid_pre, resid_mid,
               resid_post, mlp_in (the MLP's normed input), mlp_out, attn_out
  architecture relu | jumprelu | topk (default: jumprelu if the file has a threshold, else relu)
  k            int, required for topk: features kept per position
  output_hook  transcoders: the hook point it reconstructs (e.g. mlp_out); none for an SAE
  skip         transcoders: use the file's skip connection (default: if the file has one)
  path         a local .safetensors file ("bundled:<name>": one shipped in token_explorer/sae/data), or
  repo_id, filename, revision   a file on the Hugging Face hub (revision optional)
  layout       auto (default) | saelens | circuit-tracer | linear: how the file's tensors are named
  apply_b_dec_to_input  subtract b_dec from the input before encoding (default: true for an
               SAELens-layout SAE, false for transcoders and other layouts)
  labels       a JSON or TSV file of feature id -> label
  name         shown in the view (default "L<layer> <hook>")
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..model.hooks import POINTS
from .archs import ACTIVATIONS

LAYOUTS = ("auto", "saelens", "circuit-tracer", "linear")


@dataclass(frozen=True)
class SaeEntry:
    """One configured dictionary."""

    index: int  # position among the [[sae]] tables, 0-based
    layer: int
    hook: str
    architecture: str | None = None  # None: from the file
    k: int | None = None
    output_hook: str | None = None
    skip: bool | None = None  # None: from the file
    path: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    layout: str = "auto"
    apply_b_dec_to_input: bool | None = None  # None: by layout
    labels: str | None = None
    name: str | None = None
    source: str = "config"

    @property
    def title(self) -> str:
        return self.name or f"L{self.layer} {self.hook}"

    @property
    def where(self) -> str:
        """How error messages name this entry, e.g. ``config.toml: [[sae]] #2 (L8 mlp_in)``."""
        return f"{self.source}: [[sae]] #{self.index + 1} ({self.title})"

    @property
    def is_transcoder(self) -> bool:
        return self.output_hook is not None

    def identity(self) -> dict[str, Any]:
        """The config fields the dictionary's meaning depends on (for its fingerprint)."""
        return {k: getattr(self, k) for k in (
            "layer", "hook", "architecture", "k", "output_hook", "skip", "layout", "apply_b_dec_to_input")}


_TYPES: dict[str, tuple[type, ...]] = {
    "layer": (int,), "hook": (str,), "architecture": (str,), "k": (int,), "output_hook": (str,),
    "skip": (bool,), "path": (str,), "repo_id": (str,), "filename": (str,), "revision": (str,),
    "layout": (str,), "apply_b_dec_to_input": (bool,), "labels": (str,), "name": (str,),
}


def parse_entry(raw: Mapping[str, Any], index: int, source: str = "config") -> SaeEntry:
    """One ``[[sae]]`` table as an entry; UserError naming the source, entry and key."""
    where = f"{source}: [[sae]] #{index + 1}"

    def bad(key: str, problem: str) -> UserError:
        return UserError(f"{where} {key} {problem}")

    for key, value in raw.items():
        if key not in _TYPES:
            raise UserError(f"{where}: unknown key {key} (known: {', '.join(_TYPES)})")
        want = _TYPES[key]
        if not isinstance(value, want) or (want == (int,) and isinstance(value, bool)):
            kind = {int: "an integer", str: "a string", bool: "true or false"}[want[0]]
            raise bad(key, f"must be {kind}, got {_show(value)}")
    if "layer" not in raw:
        raise UserError(f"{where}: layer is required")
    if "hook" not in raw:
        raise UserError(f"{where}: hook is required (the hook point it was trained on: {', '.join(POINTS)})")
    if raw["layer"] < 0:
        raise bad("layer", f"must be >= 0, got {raw['layer']}")
    for key in ("hook", "output_hook"):
        if key in raw and raw[key] not in POINTS:
            raise bad(key, f"must be one of {', '.join(POINTS)}, got {_show(raw[key])}")
    arch = raw.get("architecture")
    if arch is not None and arch not in ACTIVATIONS:
        raise bad("architecture", f"must be one of {', '.join(ACTIVATIONS)}, got {_show(arch)}")
    if arch == "topk" and "k" not in raw:
        raise UserError(f"{where}: k is required for architecture topk")
    if "k" in raw and arch != "topk":
        raise bad("k", "is only for architecture topk")
    if "k" in raw and raw["k"] < 1:
        raise bad("k", f"must be >= 1, got {raw['k']}")
    if raw.get("layout", "auto") not in LAYOUTS:
        raise bad("layout", f"must be one of {', '.join(LAYOUTS)}, got {_show(raw['layout'])}")
    if "skip" in raw and "output_hook" not in raw:
        raise bad("skip", "is only for transcoders (set output_hook)")
    hub = [key for key in ("repo_id", "filename", "revision") if key in raw]
    if "path" in raw and hub:
        raise UserError(f"{where}: give either path or repo_id/filename, not both")
    if "path" not in raw and not {"repo_id", "filename"} <= set(raw):
        raise UserError(f"{where}: weights are missing: set path, or repo_id and filename")
    for key in ("path", "repo_id", "filename", "labels", "name"):
        if key in raw and not raw[key].strip():
            raise bad(key, "must not be empty")
    return SaeEntry(index=index, source=source, **dict(raw))


def parse_entries(raws: Sequence[Mapping[str, Any]], source: str = "config") -> tuple[SaeEntry, ...]:
    """All ``[[sae]]`` tables of a config (``Settings.sae``) as entries."""
    return tuple(parse_entry(raw, i, source) for i, raw in enumerate(raws))


def toml_snippet(fields: Mapping[str, Any]) -> str:
    """One ``[[sae]]`` table as TOML text (strings, ints, bools)."""
    lines = ["[[sae]]"]
    for key, value in fields.items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else (
            str(value) if isinstance(value, int) else json.dumps(str(value), ensure_ascii=False))
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
