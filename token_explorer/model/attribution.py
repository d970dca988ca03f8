"""Gradients of one token's log-probability with respect to the input embeddings of its prefix.

f(E) = log_softmax(model(inputs_embeds=E).logits[-1])[target], where E (m, d) is what the model's
input-embedding module returns for the prefix ids (any family-specific scaling of embeddings happens
later, inside the forward, exactly as for ``input_ids``). The model's own parameters need no
gradients; only E does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .hooks import last_logits_only


def embed(model: torch.nn.Module, ids: Sequence[int]) -> torch.Tensor:
    """(m, d) input embeddings of ``ids``, detached."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return model.get_input_embeddings()(torch.tensor([list(ids)], device=device))[0].detach()


def _log_prob(model: torch.nn.Module, embeds: torch.Tensor, target: int) -> torch.Tensor:
    """(B, m, d) embeddings -> (B,) float32 log p(target) after the last position."""
    logits = model(inputs_embeds=embeds, use_cache=False, **last_logits_only(model)).logits[:, -1].float()  # (B, V)
    return torch.log_softmax(logits, dim=-1)[:, target]


def log_prob(model: torch.nn.Module, embeds: torch.Tensor, target: int) -> torch.Tensor:
    """(B, m, d) embeddings -> (B,) float32 log p(target | prefix), no gradient."""
    with torch.no_grad():
        return _log_prob(model, embeds, target)


def gradient(model: torch.nn.Module, embeds: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """f and df/dE for a batch of embeddings (B, m, d): returns (B,) and (B, m, d) float32.

    Batch rows are independent sequences, so the gradient of the sum is each row's own gradient.
    """
    with torch.enable_grad():
        x = embeds.detach().clone().requires_grad_(True)  # (B, m, d)
        f = _log_prob(model, x, target)  # (B,)
        (grad,) = torch.autograd.grad(f.sum(), x)
    return f.detach(), grad.float()


def baseline_token(model: torch.nn.Module) -> int:
    """The token whose embedding is the integrated-gradients baseline: pad, else eos, else bos, else 0."""
    config = model.config
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(config, name, None)
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int) and 0 <= value < model.get_input_embeddings().weight.shape[0]:
            return value
    return 0
