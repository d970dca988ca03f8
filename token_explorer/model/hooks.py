"""Named activations of one forward pass over a token sequence, read with hooks.

Canonical names (TransformerLens style), each a tensor of shape (L, T, d) for L blocks:
  resid_pre   residual stream entering the block
  attn_out    the attention update added to the residual stream
  resid_mid   resid_pre + attn_out: the residual stream entering the MLP part
  mlp_in      the MLP's input as the MLP sees it (after the block's pre-MLP norm)
  mlp_out     the MLP update added to the residual stream
  resid_post  residual stream leaving the block (resid_pre of the next block)
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

from .family import Family, blocks, get_path

POINTS = ("resid_pre", "attn_out", "resid_mid", "mlp_in", "mlp_out", "resid_post")


def last_logits_only(model: torch.nn.Module) -> dict[str, int]:
    """Forward kwargs that skip the full-vocabulary logits of all but the last position, if supported."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def run_with_hooks(model: torch.nn.Module, family: Family, ids: Sequence[int],
                   points: Iterable[str] = POINTS, *, grad: bool = False, past=None) -> dict[str, torch.Tensor]:
    """Forward ``ids`` and return the requested activations of those positions, each (L, T, d).

    ``past``: a KV cache holding the tokens before ``ids`` (it is extended by the forward); without
    one the forward runs from scratch, with no cache.
    """
    wanted = set(points)
    unknown = wanted - set(POINTS)
    assert not unknown, f"unknown hook points {sorted(unknown)}; known: {POINTS}"
    layers = blocks(model, family)
    seen: dict[str, list[torch.Tensor | None]] = {name: [None] * len(layers) for name in POINTS}
    handles = []

    owner = threading.get_ident()  # forwards on other threads are not ours

    def keep(name: str, i: int, value: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            seen[name][i] = value[0] if grad else value[0].detach()

    for i, block in enumerate(layers):
        handles.append(block.register_forward_pre_hook(
            lambda _m, args, kwargs, i=i: keep("resid_pre", i, args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True))
        handles.append(block.register_forward_hook(lambda _m, _a, out, i=i: keep("resid_post", i, _first(out))))
        handles.append(get_path(block, family.attn_out).register_forward_hook(
            lambda _m, _a, out, i=i: keep("attn_out", i, _first(out))))
        handles.append(get_path(block, family.mlp_in_norm).register_forward_hook(
            lambda _m, _a, out, i=i: keep("mlp_in", i, _first(out))))
        handles.append(get_path(block, family.mlp_out).register_forward_hook(
            lambda _m, _a, out, i=i: keep("mlp_out", i, _first(out))))
    try:
        with torch.set_grad_enabled(grad):
            model(input_ids=torch.tensor([list(ids)], device=next(model.parameters()).device),
                  past_key_values=past, use_cache=past is not None, **last_logits_only(model))
    finally:
        for handle in handles:
            handle.remove()
    out = {name: torch.stack(seen[name]) for name in POINTS if name != "resid_mid"}  # type: ignore[arg-type]
    if "resid_mid" in wanted:
        out["resid_mid"] = out["resid_pre"] + out["attn_out"]
    return {name: out[name] for name in wanted}


@contextmanager
def checking(model: torch.nn.Module, family: Family, check: Callable[[], None]) -> Iterator[None]:
    """Call ``check`` before every block of the forwards (and backwards) this thread runs inside.

    ``check`` raises to stop, so a long forward or backward ends within one block of being
    cancelled. Forwards on other threads (a step beside an analysis) are left alone.
    """
    owner = threading.get_ident()

    def gate(grad: torch.Tensor) -> torch.Tensor:
        check()
        return grad

    def pre(_module, _args) -> None:
        if threading.get_ident() == owner:
            check()

    def post(_module, _args, output) -> None:
        out = _first(output)
        if threading.get_ident() == owner and out.requires_grad:
            out.register_hook(gate)  # the backward passes here once per block too

    handles = []
    for block in blocks(model, family):
        handles.append(block.register_forward_pre_hook(pre))
        handles.append(block.register_forward_hook(post))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
