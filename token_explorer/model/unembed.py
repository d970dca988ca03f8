"""The lens's "unembed": the model's own final norm, unembedding and logit soft-cap, frozen."""

from __future__ import annotations

import torch

from .family import Family, get_path, softcap


class Unembed:
    """Maps residual-stream vectors to logits exactly as the model's head does.

    ``unembed(resid)`` for resid of shape (..., d) returns float32 logits of shape (..., V).
    Applied to the output of the last block it reproduces the model's real logits.
    """

    def __init__(self, model: torch.nn.Module, family: Family) -> None:
        self.norm = get_path(model, family.final_norm)
        self.head = get_path(model, family.unembed)
        self.cap = softcap(model, family)

    @torch.no_grad()
    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.norm(resid)).float()  # (..., V)
        if self.cap is not None:
            logits = torch.tanh(logits / self.cap) * self.cap
        return logits

    def logits_grad(self, resid: torch.Tensor) -> torch.Tensor:
        """Like calling it, but keeps the autograd graph (for attribution)."""
        logits = self.head(self.norm(resid)).float()
        if self.cap is not None:
            logits = torch.tanh(logits / self.cap) * self.cap
        return logits
