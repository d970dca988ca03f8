"""How the next token is chosen, as plain data (no torch), so the explorer can hold and edit it.

The sampler that applies these lives in ``sampling.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen; the defaults change nothing but the temperature."""

    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    no_repeat_ngram_size: int = 0  # 0 = off
    min_new_tokens: int = 0  # EOS banned before this many new tokens
    block_eos_steps: int = 0  # EOS banned in the first this-many steps
    block_whitespace_steps: int = 0  # whitespace-only tokens banned in the first this-many steps

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def check(self) -> None:
        """Raise ValueError naming the first parameter out of range."""
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition-penalty must be > 0, got {self.repetition_penalty}")
        for name in ("no_repeat_ngram_size", "min_new_tokens", "block_eos_steps", "block_whitespace_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
