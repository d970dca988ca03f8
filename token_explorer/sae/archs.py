"""Sparse dictionaries (SAEs and transcoders) behind one small protocol, activations by name.

A dictionary reads activations ``x`` (T, d_in) at its input hook point and has ``F`` features::

    pre = (x - b_dec) @ W_enc + b_enc      # (T, F); "- b_dec" only when apply_b_dec_to_input
    f   = ACTIVATIONS[architecture](pre)   # (T, F) feature activations, >= 0
    x̂   = f @ W_dec + b_dec (+ x @ W_skip.T for skip transcoders)   # (T, d_out)

Activations (SAELens names): ``relu`` relu(pre); ``jumprelu`` pre * (pre > threshold);
``topk`` relu(pre) with all but the ``k`` largest of each row set to 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

Activation = Callable[[torch.Tensor, "Dictionary"], torch.Tensor]  # (pre (T, F), dictionary) -> (T, F)
ACTIVATIONS: dict[str, Activation] = {}


def activation(name: str) -> Callable[[Activation], Activation]:
    """Register an activation function under ``name`` (the config's ``architecture``)."""
    def wrap(fn: Activation) -> Activation:
        assert name not in ACTIVATIONS, f"activation {name!r} registered twice"
        ACTIVATIONS[name] = fn
        return fn
    return wrap


@activation("relu")
def _relu(pre: torch.Tensor, d: Dictionary) -> torch.Tensor:
    return torch.relu(pre)


@activation("jumprelu")
def _jumprelu(pre: torch.Tensor, d: Dictionary) -> torch.Tensor:
    assert d.threshold is not None, "jumprelu needs a threshold"
    return pre * (pre > d.threshold)


@activation("topk")
def _topk(pre: torch.Tensor, d: Dictionary) -> torch.Tensor:
    assert d.k is not None and d.k >= 1, "topk needs k >= 1"
    acts = torch.relu(pre)
    top = acts.topk(min(d.k, acts.shape[-1]), dim=-1)
    return torch.zeros_like(acts).scatter_(-1, top.indices, top.values)


class SparseCoder(Protocol):
    """What the view and the trainer need from a dictionary."""

    architecture: str
    n_features: int

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(T, d_in) activations at the input hook -> (T, F) feature activations."""
        ...

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """(T, F) features (and the input, for skip transcoders) -> (T, d_out) reconstruction."""
        ...


@dataclass
class Dictionary:
    """One loaded dictionary, float32 tensors in the SAELens orientation.

    ``W_dec``/``b_dec``/``W_skip`` may be None when only the encoder was loaded (the view never
    decodes); ``b_dec`` is still loaded when the input subtracts it.
    """

    architecture: str
    W_enc: torch.Tensor  # (d_in, F)
    b_enc: torch.Tensor  # (F,)
    b_dec: torch.Tensor | None = None  # (d_out,)
    W_dec: torch.Tensor | None = None  # (F, d_out)
    W_skip: torch.Tensor | None = None  # (d_out, d_in): skip = x @ W_skip.T
    threshold: torch.Tensor | None = None  # (F,) jumprelu
    k: int | None = None  # topk
    apply_b_dec_to_input: bool = True

    def __post_init__(self) -> None:
        assert self.architecture in ACTIVATIONS, f"unknown architecture {self.architecture!r}"

    @property
    def n_features(self) -> int:
        return int(self.W_enc.shape[1])

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """(T, d_in) -> (T, F) pre-activations."""
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            assert self.b_dec is not None, "apply_b_dec_to_input needs b_dec"
            x = x - self.b_dec  # (T, d_in)
        return x @ self.W_enc + self.b_enc  # (T, F)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(T, d_in) -> (T, F) feature activations."""
        return ACTIVATIONS[self.architecture](self.pre_acts(x), self)

    def feature_acts(self, x: torch.Tensor, feature: int) -> torch.Tensor:
        """(T, d_in) -> (T,) activation of one feature, without the full (T, F) product where the
        activation is elementwise (relu, jumprelu); topk needs every feature and encodes fully."""
        if self.architecture == "topk":
            return self.encode(x)[:, feature]
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = x @ self.W_enc[:, feature] + self.b_enc[feature]  # (T,)
        if self.architecture == "relu":
            return torch.relu(pre)
        return pre * (pre > self.threshold[feature])

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """(T, F) features (and the (T, d_in) input when there is a skip) -> (T, d_out)."""
        assert self.W_dec is not None and self.b_dec is not None, "decoder not loaded"
        out = f @ self.W_dec + self.b_dec  # (T, d_out)
        if self.W_skip is not None:
            assert x is not None, "a skip transcoder needs its input to decode"
            out = out + x.to(self.W_skip.dtype) @ self.W_skip.T
        return out
