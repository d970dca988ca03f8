"""One short table per model family: where its blocks, final norm and unembedding live.

Paths are dotted attribute paths from the ``*ForCausalLM`` root (``layers``, ``final_norm``,
``unembed``, ``embed``) or from one block (``attn_out``, ``mlp_in_norm``, ``mlp_out``).
``attn_out`` and ``mlp_out`` name the modules whose outputs are *added to the residual stream*, so
the two updates of a block sum exactly to the change of the residual across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Family:
    """Where a family keeps the parts the analyses read."""

    name: str
    layers: str
    final_norm: str
    unembed: str
    embed: str
    attn_out: str
    mlp_in_norm: str
    mlp_out: str
    softcap_attr: str | None = None  # config attribute holding the final logit soft-cap
    n_layers_attr: str = "num_hidden_layers"  # config attributes: number of blocks,
    n_heads_attr: str = "num_attention_heads"  # attention heads per block,
    context_attr: str = "max_position_embeddings"  # and the longest context


_LLAMA_LIKE = dict(layers="model.layers", final_norm="model.norm", unembed="lm_head",
                   embed="model.embed_tokens", attn_out="self_attn",
                   mlp_in_norm="post_attention_layernorm", mlp_out="mlp")
_GEMMA2_LIKE = dict(_LLAMA_LIKE, attn_out="post_attention_layernorm",
                    mlp_in_norm="pre_feedforward_layernorm", mlp_out="post_feedforward_layernorm",
                    softcap_attr="final_logit_softcapping")

FAMILIES: dict[str, Family] = {
    "llama": Family("llama", **_LLAMA_LIKE),
    "mistral": Family("mistral", **_LLAMA_LIKE),
    "qwen2": Family("qwen2", **_LLAMA_LIKE),
    "qwen3": Family("qwen3", **_LLAMA_LIKE),
    "gemma": Family("gemma", **_LLAMA_LIKE),
    "gemma2": Family("gemma2", **_GEMMA2_LIKE),
    "gpt2": Family("gpt2", layers="transformer.h", final_norm="transformer.ln_f",
                   unembed="lm_head", embed="transformer.wte", attn_out="attn",
                   mlp_in_norm="ln_2", mlp_out="mlp", n_layers_attr="n_layer", n_heads_attr="n_head",
                   context_attr="n_positions"),
}
_ANY = (FAMILIES["llama"], FAMILIES["gpt2"])  # the attribute names tried for a model outside the table


@dataclass(frozen=True)
class Sizes:
    """The numbers of a model's config the program needs (0 / None where the config lacks them)."""

    n_layers: int
    n_heads: int
    context: int | None


def sizes(config) -> Sizes:
    """Blocks, heads and context length from ``config``, named as its family's table row names them.

    A model outside the table is read with the names of the llama row, then the gpt2 row.
    """
    row = FAMILIES.get(getattr(config, "model_type", ""))
    rows = (row,) if row is not None else _ANY

    def read(attr: str) -> int | None:
        for r in rows:
            value = getattr(config, getattr(r, attr), None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    return Sizes(read("n_layers_attr") or 0, read("n_heads_attr") or 0, read("context_attr"))


def family_of(model: torch.nn.Module) -> Family | None:
    """The table entry for ``model``'s architecture, or None for an unknown family."""
    family = FAMILIES.get(getattr(model.config, "model_type", ""))
    if family is None:
        return None
    try:
        for path in (family.layers, family.final_norm, family.unembed, family.embed):
            get_path(model, path)
    except AttributeError:
        return None
    return family


def get_path(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at a dotted path."""
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


def blocks(model: torch.nn.Module, family: Family) -> list[torch.nn.Module]:
    """The model's transformer blocks, in order."""
    return list(get_path(model, family.layers))


def softcap(model: torch.nn.Module, family: Family) -> float | None:
    """The final logit soft-cap of the model, if its family uses one and it is set."""
    if family.softcap_attr is None:
        return None
    value = getattr(model.config, family.softcap_attr, None)
    return float(value) if value else None
