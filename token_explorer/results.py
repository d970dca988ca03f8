"""Plain-data results the engine hands out: NumPy arrays, floats and token ids, no torch.

Position ``i`` of a prompt holds token ``i``. Its record carries two kinds of numbers:

* about token ``i`` given tokens ``0..i-1`` (``token_*``; ``None`` at position 0, which has no prefix),
* about the distribution of the *next* token after position ``i`` (``top_*``, entropy, energy).

Every record is computed once, when its position is added, and never changes afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cache import register_type


@register_type
@dataclass(frozen=True)
class LensStats:
    """Logit lens at one position, one row per residual-stream layer.

    Row ``l`` reads the residual stream entering block ``l`` (row 0 is the embeddings) and the last
    row reads the output of the last block, each through the model's own final norm, unembedding
    and logit soft-capping; the last row is therefore the model's real distribution.
    """

    top_ids: np.ndarray  # (L+1, k) int64: lens top-k token ids per layer
    top_probs: np.ndarray  # (L+1, k) float32: their probabilities
    entropy_bits: np.ndarray  # (L+1,) float32: entropy of each layer's lens distribution, bits
    kl_to_final_bits: np.ndarray  # (L+1,) float32: KL(final || layer), bits
    token_prob: np.ndarray | None = None  # (L+1,) float32: P_layer(token i) at position i-1
    token_rank: np.ndarray | None = None  # (L+1,) int64: 1-based rank of token i there

    @property
    def n_layers(self) -> int:
        """Number of lens rows (blocks + 1)."""
        return int(self.entropy_bits.shape[0])


@register_type
@dataclass(frozen=True)
class Position:
    """Everything kept about one prompt position; small, no full-vocabulary arrays."""

    index: int
    token_id: int
    text: str  # display text of the token (partial UTF-8 bytes as <0xNN>)
    # token i given its prefix (None at position 0)
    token_prob: float | None
    token_rank: int | None  # 1-based
    token_logit: float | None
    token_z: float | None  # (logit - mean) / std over the vocabulary at position i-1
    # the next-token distribution after position i
    top_ids: np.ndarray  # (k,) int64
    top_probs: np.ndarray  # (k,) float32, raw softmax of the logits (no sampling filter)
    top_logits: np.ndarray  # (k,) float32
    entropy_bits: float
    energy: float  # -T * logsumexp(logits / T), nats
    temperature: float  # the T used for the energy
    logit_mean: float
    logit_std: float
    lens: LensStats | None = None

    def top_z(self) -> np.ndarray:
        """(k,) z-scores of the top-k logits against this distribution's logit mean and std."""
        return (self.top_logits - self.logit_mean) / self.logit_std


@register_type
@dataclass(frozen=True)
class Snapshot:
    """The prompt at one moment: its token ids and one record per position."""

    tokens: tuple[int, ...]
    positions: tuple[Position, ...]

    def __post_init__(self) -> None:
        assert len(self.tokens) == len(self.positions), "one record per token"

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def next(self) -> Position:
        """The last position, whose distribution is the next-token table."""
        return self.positions[-1]


@register_type
@dataclass(frozen=True)
class ModelInfo:
    """What the screen says about the loaded model."""

    name: str
    family: str  # model_type, e.g. "llama"
    device: str
    dtype: str
    n_layers: int
    n_heads: int
    vocab_size: int
    max_positions: int | None
    fingerprint: str  # identifies weights + dtype for cache keys
    supported: bool = True  # family table known (views needing it available)
    notes: tuple[str, ...] = field(default_factory=tuple)
    dictionaries: tuple[str, ...] = ()  # configured SAE / transcoder entries, in config order

    @property
    def last_block(self) -> int:
        """Index of the last transformer block."""
        return max(0, self.n_layers - 1)

    @property
    def last_head(self) -> int:
        """Index of the last attention head of a block."""
        return max(0, self.n_heads - 1)

    @property
    def last_dictionary(self) -> int:
        """Index of the last configured dictionary (0 when there is none)."""
        return max(0, len(self.dictionaries) - 1)


@register_type
@dataclass(frozen=True)
class Table:
    """A small detail table shown beside a view (e.g. lens top-k per layer at the cursor)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@register_type
@dataclass(frozen=True)
class Completeness:
    """How well attributions add up: Σ attributions against f(input) − f(baseline), nats."""

    f_input: float  # f(E), nats
    f_baseline: float  # f(B), nats
    total: float  # sum of the attributions, nats
    steps: int  # integration steps used

    @property
    def gap(self) -> float:
        """Σ attributions − (f(input) − f(baseline)), nats."""
        return self.total - (self.f_input - self.f_baseline)


@register_type
@dataclass(frozen=True)
class TokenScores:
    """What a heavy view shows: one number per prompt token plus details at the cursor.

    ``values[i]`` colours token ``i``; NaN means "not defined here" (e.g. tokens after the cursor
    for attribution) and is drawn as unavailable. ``lo``/``hi`` fix the colour scale, in ``unit``.
    ``caption`` says exactly what the number is and how it was aggregated.
    """

    view: str
    values: np.ndarray  # (n,) float32, NaN where undefined
    lo: float
    hi: float
    unit: str
    caption: str
    tables: tuple[Table, ...] = ()
    grid: np.ndarray | None = None  # optional (rows, n) heatmap, e.g. layer x position
    grid_label: str = ""
    completeness: Completeness | None = None  # integrated gradients only
