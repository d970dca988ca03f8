"""Per-head metrics of attention patterns (the headvis scatter axes), summed sequence by sequence.

Each metric is a mean over the query rows where it is defined, pooled over the corpus: a running
sum and a running count per head, so memory does not grow with the corpus. Row 0 counts like any
other row (its diagonal is 1 and its entropy 0, the same for every head); the rules that leave out
row 0, column 0 and the diagonal belong to the high-attention statistics (``triples``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

LN2 = math.log(2.0)

# the scatter metrics that come from the patterns alone, in the order they are written
PATTERN_METRICS = ("self_attention_score", "previous_token_score", "pattern_entropy", "qk_distance",
                   "qk_distance_variance", "induction_score", "logit_std", "top_logit_margin", "logit_z_score")
TOKEN_METRICS = ("query_token_entropy", "key_token_entropy")  # from ``tally``
METRICS = PATTERN_METRICS + TOKEN_METRICS

DESCRIPTIONS = {
    "self_attention_score": "mean attention of a token to itself (the diagonal)",
    "previous_token_score": "mean attention of a token to the token just before it",
    "pattern_entropy": "mean Shannon entropy of a query's attention row, in bits",
    "qk_distance": "mean |query position - key position|, weighted by attention",
    "qk_distance_variance": "variance of |query position - key position| over all rows, weighted by attention",
    "induction_score": "mean over positions of the attention paid to the tokens that followed earlier "
                       "copies of the current token",
    "logit_std": "mean over rows of the standard deviation of the pre-softmax scores a query can see",
    "top_logit_margin": "mean over rows of the top pre-softmax score minus the second",
    "logit_z_score": "mean over rows of (max - mean) / std of the pre-softmax scores",
    "query_token_entropy": "entropy (bits) of the query tokens of each row's strongest key (not itself, "
                           "not position 0), weighted by that attention",
    "key_token_entropy": "entropy (bits) of the tokens at each row's strongest key (not itself, not "
                         "position 0), weighted by that attention",
}

# running sums: name -> what it adds per sequence (the counts say over what)
_SUMS = ("diagonal", "previous", "entropy", "distance", "distance_sq", "induction",
         "logit_std", "logit_margin", "logit_z")


def induction_targets(tokens: torch.Tensor) -> torch.Tensor:
    """(T, T) bool: key k is the token after an earlier copy of query q's token (k >= 1,
    tokens[k-1] == tokens[q], k - 1 < q). ``tokens``: (T,) ids."""
    t = tokens.shape[0]
    earlier = torch.zeros(t, t, dtype=torch.bool, device=tokens.device)
    earlier[:, 1:] = tokens[:, None] == tokens[None, :-1]  # [q, k]: tokens[q] == tokens[k-1]
    q = torch.arange(t, device=tokens.device)[:, None]
    k = torch.arange(t, device=tokens.device)[None, :]
    return earlier & (k - 1 < q)


def row_entropy_bits(weights: torch.Tensor) -> torch.Tensor:
    """(..., T) rows -> (...,) Shannon entropy in bits (0 log 0 = 0), in the rows' dtype."""
    return torch.special.entr(weights).sum(-1) / LN2


def score_rows(scores: torch.Tensor, seen: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-row statistics of pre-softmax ``scores`` (h, T, T) over the keys each row sees (``seen``
    (T, T)): name -> ((h,) float64 sum over the rows where defined, (h,) number of those rows).

    std is the population standard deviation; std and margin need two visible keys, z a non-zero std.
    """
    n = seen.sum(-1).to(scores.dtype)  # (T,) keys each row sees
    enough = n >= 2  # (T,)
    zero = scores.new_zeros(())
    finite = torch.where(seen, scores, zero)  # (h, T, T)
    mean = finite.sum(-1) / n  # (h, T)
    var = torch.where(seen, scores - mean[..., None], zero).square().sum(-1) / n  # (h, T)
    std = var.sqrt()
    top = scores.topk(min(2, scores.shape[-1]), dim=-1).values  # (h, T, 2); -inf beyond what a row sees
    margin = torch.where(enough, top[..., 0] - top[..., -1], zero)
    has_z = enough & (std > 0)
    z = torch.where(has_z, (top[..., 0] - mean) / torch.where(has_z, std, torch.ones_like(std)), zero)
    rows = enough.double().sum().expand(scores.shape[0])
    return {"logit_std": (torch.where(enough, std, zero).double().sum(-1), rows),
            "logit_margin": (margin.double().sum(-1), rows),
            "logit_z": (z.double().sum(-1), has_z.double().sum(-1))}


def sequence_sums(weights: torch.Tensor, scores: torch.Tensor, seen: torch.Tensor, tokens: torch.Tensor,
                  targets: torch.Tensor | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every running sum of one sequence: name -> ((h,) float64 sum, (h,) float64 count).

    ``weights``, ``scores``: (h, T, T); ``seen``: (T, T) bool; ``tokens``: (T,) ids; ``targets``:
    ``induction_targets(tokens)`` when the caller has it already. Distance sums are taken in float64,
    the others in the patterns' dtype, and all are added up in float64.
    """
    w = weights
    h, t = w.shape[0], w.shape[-1]
    rows = torch.full((h,), float(t), dtype=torch.float64, device=w.device)
    pos = torch.arange(t, device=w.device, dtype=torch.float64)
    dist = (pos[:, None] - pos[None, :]).abs()  # (T, T)
    targets = induction_targets(tokens) if targets is None else targets
    per_pair = torch.stack([dist, dist.square(), targets.double()])  # (3, T, T)
    paired = torch.einsum("hqk,cqk->ch", w.double(), per_pair)  # (3, h) float64: distances² reach T², summed over T² pairs
    out = {
        "diagonal": (w.diagonal(dim1=-2, dim2=-1).sum(-1).double(), rows),
        "previous": (w.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1).double(), rows - 1),
        "entropy": (row_entropy_bits(w).sum(-1).double(), rows),
        "distance": (paired[0], rows),
        "distance_sq": (paired[1], rows),
        "induction": (paired[2], rows),
    }
    out.update(score_rows(scores, seen))
    return out


class MetricSums:
    """Running sums and counts of the pattern metrics for n heads."""

    def __init__(self, n_heads: int) -> None:
        self.sums = {name: torch.zeros(n_heads, dtype=torch.float64) for name in _SUMS}
        self.counts = {name: torch.zeros(n_heads, dtype=torch.float64) for name in _SUMS}

    def add(self, rows: slice, sums: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Add one sequence's ``sequence_sums`` for the heads at ``rows``."""
        for name, (total, count) in sums.items():
            self.sums[name][rows] += total.cpu()
            self.counts[name][rows] += count.cpu()

    def means(self) -> dict[str, np.ndarray]:
        """PATTERN_METRICS -> (n,) float64; NaN where a head had no row to average."""
        return pattern_means({name: (self.sums[name], self.counts[name]) for name in _SUMS})


def pattern_means(sums: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, np.ndarray]:
    """PATTERN_METRICS -> (n,) float64 from running sums and counts (``sequence_sums`` added up);
    NaN where a head had no row to average."""
    m = {name: (total.double() / count.double()).cpu().numpy() for name, (total, count) in sums.items()}  # 0/0 -> nan
    distance = m["distance"]
    return {
        "self_attention_score": m["diagonal"],
        "previous_token_score": m["previous"],
        "pattern_entropy": m["entropy"],
        "qk_distance": distance,
        "qk_distance_variance": np.maximum(m["distance_sq"] - distance**2, 0.0),
        "induction_score": m["induction"],
        "logit_std": m["logit_std"],
        "top_logit_margin": m["logit_margin"],
        "logit_z_score": m["logit_z"],
    }
