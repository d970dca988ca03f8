"""Hooks that keep the last position's vector at named points of chosen layers, forward after forward.

Points (the residual-stream basis, each a (d,) vector of the position that predicts the next token):
  resid_pre   the residual stream entering block l
  resid_post  the residual stream leaving block l
  attn_out    block l's attention update as added to the residual stream (its o_proj output, or the
              family's post-attention norm where it has one)
  mlp_out     block l's MLP update as added to the residual stream
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from ..model.family import Family, blocks, get_path

POINTS = ("resid_pre", "resid_post", "attn_out", "mlp_out")


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def last_position(model: torch.nn.Module, family: Family,
                  wanted: Mapping[str, set[int]]) -> Iterator[dict[str, dict[int, torch.Tensor]]]:
    """While open, every forward fills ``seen[point][layer]`` with that point's (d,) vector at the
    forward's last position (a copy, so later in-place work cannot change it)."""
    layers = blocks(model, family)
    seen: dict[str, dict[int, torch.Tensor]] = {point: {} for point in wanted}
    handles = []

    def keep(point: str, layer: int, value: torch.Tensor) -> None:
        seen[point][layer] = value[0, -1].detach().clone()

    for point, indices in wanted.items():
        assert point in POINTS, f"unknown point {point}; known: {POINTS}"
        for i in sorted(indices):
            block = layers[i]
            if point == "resid_pre":
                handles.append(block.register_forward_pre_hook(
                    lambda _m, args, kwargs, i=i: keep("resid_pre", i, args[0] if args else kwargs["hidden_states"]),
                    with_kwargs=True))
            elif point == "resid_post":
                handles.append(block.register_forward_hook(lambda _m, _a, out, i=i: keep("resid_post", i, _first(out))))
            else:
                module = get_path(block, family.attn_out if point == "attn_out" else family.mlp_out)
                handles.append(module.register_forward_hook(
                    lambda _m, _a, out, i=i, point=point: keep(point, i, _first(out))))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()
