"""Direct logit attribution of the chosen token: its logit split into the embedding and each
block's attention and MLP updates, through the unembedding, with the final norm as a fixed scale.

The residual stream leaving the last block is ``h = embed + sum_l (attn_l + mlp_l)``. The final
norm is ``g * C(h) / s + b`` with ``C`` the centring of a LayerNorm (identity for RMSNorm) and ``s``
its scale measured on ``h``; holding ``s`` fixed makes it linear, so part ``x`` contributes
``W_U[t] . (g * C(x)) / s``. ``bias`` is ``W_U[t] . b`` plus the unembedding's bias; ``error`` is the
model's real logit minus all of it (float rounding, and any logit soft-cap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.family import Family, get_path


@dataclass(frozen=True)
class DlaRecord:
    """One step's attribution (logit units); L = number of blocks."""

    target: int
    total_logit: float  # the model's logit for the target
    embed: float
    attn: np.ndarray  # (L,) float64
    mlp: np.ndarray  # (L,) float64
    bias: float
    error: float


class FinalNorm:
    """The final norm's affine parts, read once: gain g (d,), bias b (d,) or None, eps, centring."""

    def __init__(self, model: torch.nn.Module, family: Family) -> None:
        norm = get_path(model, family.final_norm)
        self.centred = isinstance(norm, torch.nn.LayerNorm)
        weight = norm.weight.detach().double() if getattr(norm, "weight", None) is not None else None
        if weight is None:
            weight = torch.ones(model.config.hidden_size, dtype=torch.float64, device=next(model.parameters()).device)
        elif type(norm).__name__.startswith("Gemma"):
            weight = 1.0 + weight  # Gemma's RMSNorm scales by (1 + weight)
        self.gain = weight
        bias = getattr(norm, "bias", None)
        self.bias = bias.detach().double() if bias is not None else None
        self.eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
        head = get_path(model, family.unembed)
        self.head_weight = head.weight.detach()  # (V, d)
        self.head_bias = head.bias.detach() if getattr(head, "bias", None) is not None else None

    def scale(self, h: torch.Tensor) -> torch.Tensor:
        """The norm's scale s of (d,) float64 ``h``."""
        if self.centred:
            return (h.var(correction=0) + self.eps).sqrt()
        return (h.pow(2).mean() + self.eps).sqrt()


def dla_record(norm: FinalNorm, embed: torch.Tensor, attn: torch.Tensor, mlp: torch.Tensor,
               final: torch.Tensor, target: int, logit: float) -> DlaRecord:
    """Attribution of ``target``'s ``logit`` from embed (d,), attn and mlp updates (L, d) and the
    residual stream leaving the last block ``final`` (d,)."""
    parts = torch.cat([embed[None], attn, mlp]).double()  # (2L+1, d)
    if norm.centred:
        parts = parts - parts.mean(-1, keepdim=True)
    row = norm.head_weight[target].double()  # (d,)
    contrib = (parts * norm.gain) @ row / norm.scale(final.double())  # (2L+1,)
    bias = float(norm.bias @ row) if norm.bias is not None else 0.0
    if norm.head_bias is not None:
        bias += float(norm.head_bias[target])
    n_layers = attn.shape[0]
    values = contrib.cpu().numpy()
    return DlaRecord(
        target=target,
        total_logit=float(logit),
        embed=float(values[0]),
        attn=values[1 : 1 + n_layers],
        mlp=values[1 + n_layers :],
        bias=bias,
        error=float(logit) - float(values.sum()) - bias,
    )
