"""The standard induction diagnostic: attention on a sequence of random tokens repeated twice.

In the second copy, an induction head at the copy of token i attends to the position after token
i's first occurrence (position i + 1 of the first copy): the score is the mean of that weight.
"""

from __future__ import annotations

import random
from collections.abc import Collection

import torch


def repeated_random_tokens(vocab_size: int, length: int, seed: int, bos: int | None,
                           avoid: Collection[int] = ()) -> tuple[list[int], int]:
    """``[bos] + r + r`` for ``length`` distinct random ids r (special ids avoided); and the offset of
    the first copy (1 with a bos, else 0)."""
    rng = random.Random(seed)
    pool = [i for i in range(vocab_size) if i not in set(avoid)]
    assert len(pool) >= length, f"a vocabulary of {len(pool)} ids cannot give {length} distinct tokens"
    r = rng.sample(pool, length)
    prefix = [bos] if bos is not None else []
    return prefix + r + r, len(prefix)


def induction_scores(weights: torch.Tensor, offset: int, length: int) -> torch.Tensor:
    """(h,) mean over i in 0..length-1 of weights[offset + length + i, offset + i + 1] (h, T, T)."""
    i = torch.arange(length, device=weights.device)
    return weights[:, offset + length + i, offset + i + 1].double().mean(-1)
