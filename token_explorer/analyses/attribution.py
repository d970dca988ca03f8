"""Gradient attributions of one token's log-probability to the input embeddings of its prefix.

The attributed quantity is f(E) = log p(token at the cursor | tokens before it), a function of the
embeddings E (m, d) of the m tokens before the cursor. Each method turns E and gradients of f into
one score per prefix token.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

METHODS = ("saliency", "input_x_gradient", "integrated_gradients")


def saliency(grad: torch.Tensor) -> np.ndarray:
    """(m, d) gradient of f -> (m,) float32: its L2 norm per token."""
    return grad.double().norm(dim=-1).float().cpu().numpy()


def input_x_gradient(embeds: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
    """(m, d) embeddings and gradient -> (m,) float32: sum over d of E * df/dE per token."""
    return (embeds.double() * grad.double()).sum(-1).float().cpu().numpy()


@dataclass(frozen=True)
class IntegratedGradients:
    """Integrated gradients from a baseline B, midpoint rule."""

    scores: np.ndarray  # (m,) float32: sum over d of (E - B) * mean over alphas of df/dE(B + alpha (E - B))
    f_input: float  # f(E), nats
    f_baseline: float  # f(B), nats
    steps: int

    @property
    def total(self) -> float:
        """Sum of the attributions; completeness says it approaches f_input - f_baseline."""
        return float(np.sum(self.scores, dtype=np.float64))

    @property
    def gap(self) -> float:
        """Completeness gap: sum of attributions - (f(E) - f(B))."""
        return self.total - (self.f_input - self.f_baseline)


def midpoint_alphas(steps: int) -> torch.Tensor:
    """(steps,) float64 alphas (k + 1/2) / steps of the midpoint Riemann sum over [0, 1]."""
    assert steps >= 1, "integrated gradients needs at least one step"
    return (torch.arange(steps, dtype=torch.float64) + 0.5) / steps


def integrated_gradients(delta: torch.Tensor, mean_grad: torch.Tensor, f_input: float,
                         f_baseline: float, steps: int) -> IntegratedGradients:
    """Scores from E - B (m, d) and the gradient averaged over the path points B + alpha (E - B)."""
    return IntegratedGradients(input_x_gradient(delta, mean_grad), float(f_input), float(f_baseline), steps)
