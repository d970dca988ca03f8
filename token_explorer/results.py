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
    queries: bool = False  # attention queries are captured (the attention view can run)

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


# ------------------------------------------------------------------ analysis results
# Plain data: arrays and numbers with shapes and units, no prose. ``colour(params)`` selects the
# (n,) values that colour the prompt from the full result, with the parameters that only select;
# it never computes anything new. Arrays shorter than the prompt (prefix analyses) mean "not
# defined" past their end, like NaN.


def _layer_row(grid: np.ndarray, layer: int, first: int = 0) -> np.ndarray:
    return grid[int(layer) - first]


@register_type
@dataclass(frozen=True)
class LayerGrid:
    """One number per layer and position (e.g. a residual-stream row 0..L, or a block 0..L-1)."""

    values: np.ndarray  # (R, n) float32; NaN = undefined there, or not computed yet in a partial result
    first: int = 0  # the layer number of row 0

    def colour(self, params) -> np.ndarray:
        """(n,) the row of the ``layer`` parameter."""
        return _layer_row(self.values, params["layer"], self.first)


@register_type
@dataclass(frozen=True)
class Lens:
    """Logit lens of every position at every residual-stream row 0..L (0 = embeddings, L = the model's output).

    Column i of ``prob``/``rank`` is token i read at position i-1 (column 0 NaN); column i of the
    other fields is the lens distribution of the next token after position i. NaN (and id -1)
    where not computed yet (a partial result).
    """

    prob: np.ndarray  # (L+1, n) float32: P_layer(token i | tokens < i)
    rank: np.ndarray  # (L+1, n) float32: its 1-based rank in that distribution
    entropy_bits: np.ndarray  # (L+1, n) float32
    kl_bits: np.ndarray  # (L+1, n) float32: KL(final || layer), bits
    top_ids: np.ndarray  # (L+1, n, k) int64
    top_probs: np.ndarray  # (L+1, n, k) float32
    text_ids: np.ndarray  # (u,) int64: every id in top_ids ...
    texts: tuple[str, ...]  # ... and its display text

    def colour(self, params) -> np.ndarray:
        grid = self.prob if params["quantity"] == "prob" else np.log10(self.rank)
        return _layer_row(grid, params["layer"])

    def grid(self, params) -> np.ndarray:
        """(L+1, n) the chosen quantity at every layer."""
        return self.prob if params["quantity"] == "prob" else np.log10(self.rank)


@register_type
@dataclass(frozen=True)
class Attention:
    """The cursor's attention row in every layer and head, recomputed from its query and the keys."""

    weights: np.ndarray  # (L, H, cursor+1) float32: softmax weights over positions 0..cursor
    entropy_bits: np.ndarray  # (L, H) float32: entropy of each row

    def picked(self, layer, head) -> np.ndarray:
        """(L', H', cursor+1) the rows of one layer or all (``"all"``), one head or all."""
        rows = self.weights if layer == "all" else self.weights[int(layer) : int(layer) + 1]
        return rows if head == "all" else rows[:, int(head) : int(head) + 1]

    def colour(self, params) -> np.ndarray:
        rows = self.picked(params["layer"], params["head"]).reshape(-1, self.weights.shape[-1])
        return rows.mean(0) if params["aggregate"] == "mean" else rows.max(0)


@register_type
@dataclass(frozen=True)
class HeadMetrics:
    """Every head's attention metrics over the prompt (M metrics, L layers, H heads), and each
    head's attention row from the cursor's query."""

    names: tuple[str, ...]  # (M,) metric names, as the head lab writes them
    values: np.ndarray  # (M, L, H) float32; NaN where a metric is undefined for this prompt
    rows: np.ndarray  # (L, H, cursor+1) float32 softmax weights from the cursor over positions 0..cursor
    induction: np.ndarray  # (L, H) bool: marked an induction head (see analyses.heads)
    previous: np.ndarray  # (L, H) bool: marked a previous-token head
    corpus: np.ndarray | None = None  # (M, L, H) float32 the same metrics over a corpus (a configured
    # token-explorer heads folder); NaN for heads it did not study; None when none is configured

    def colour(self, params) -> np.ndarray:
        """(cursor+1,) the chosen head's attention from the cursor."""
        return self.rows[int(params["layer"]), int(params["head"])]

    def ranked(self, metric: str) -> list[tuple[int, int]]:
        """Every (layer, head), highest ``metric`` first (NaN last, ties by layer then head)."""
        grid = self.values[self.names.index(metric)]  # (L, H)
        flat = np.nan_to_num(grid.ravel().astype(np.float64), nan=-np.inf)
        order = np.lexsort((np.arange(flat.size), -flat))
        return [divmod(int(i), grid.shape[1]) for i in order]


@register_type
@dataclass(frozen=True)
class Residual:
    """Raw residual-stream norms everywhere, and each block's two updates at the cursor."""

    norms: np.ndarray  # (L+1, n) float32: L2 norm of the stream entering block l (row L: last block's output)
    attn_norm: np.ndarray  # (L,) float32: |attn_out| at the cursor
    mlp_norm: np.ndarray  # (L,) float32: |mlp_out| at the cursor
    delta_norm: np.ndarray  # (L,) float32: |resid_post - resid_pre| at the cursor
    max_error: np.ndarray  # (L,) float32: max_d |attn_out + mlp_out - (resid_post - resid_pre)|

    def colour(self, params) -> np.ndarray:
        return _layer_row(self.norms, params["layer"])


@register_type
@dataclass(frozen=True)
class Completeness:
    """How well integrated-gradients attributions add up, in nats."""

    f_input: float  # f(E)
    f_baseline: float  # f(B)
    total: float  # sum of the attributions
    steps: int  # path points evaluated (gradients taken)
    tolerance: float  # the gap asked for, as a fraction of |f(E) - f(B)|
    baseline_token: int | None = None  # the token whose embedding is the baseline, if it is one

    @property
    def gap(self) -> float:
        """Σ attributions − (f(input) − f(baseline))."""
        return self.total - (self.f_input - self.f_baseline)

    @property
    def converged(self) -> bool:
        return abs(self.gap) <= self.tolerance * max(abs(self.f_input - self.f_baseline), MIN_DIFFERENCE)


MIN_DIFFERENCE = 0.05  # nats: below this |f(E) - f(B)| the gap is judged against 0.05 nats


@register_type
@dataclass(frozen=True)
class Attribution:
    """Gradient attribution of f = log p(token at the cursor | tokens before it) to each earlier token."""

    scores: np.ndarray  # (cursor+1,) float32: nats (saliency: nats per unit of embedding); NaN at the cursor
    method: str
    f_input: float  # f, nats (NaN at cursor 0: no prefix)
    completeness: Completeness | None = None  # integrated gradients only

    def colour(self, params) -> np.ndarray:
        return self.scores


@register_type
@dataclass(frozen=True)
class Features:
    """A dictionary's (SAE / transcoder) most active features at the cursor, over every position up to it."""

    ids: np.ndarray  # (K,) int64: the cursor's active features, strongest first
    at_cursor: np.ndarray  # (K,) float32: their activations at the cursor
    acts: np.ndarray  # (K, cursor+1) float32: their activations at each position
    labels: tuple[str, ...]  # (K,) labels from the dictionary's label file, '' where none
    n_active: int  # features active (> 0) at the cursor
    n_features: int
    dictionary: str  # the [[sae]] entry's title
    architecture: str
    hook: str
    layer: int
    output_hook: str | None = None  # transcoders: what they reconstruct

    def colour(self, params) -> np.ndarray:
        rank = int(params["rank"])
        if rank > len(self.ids):
            return np.full(self.acts.shape[-1], np.nan, np.float32)
        return self.acts[rank - 1]
