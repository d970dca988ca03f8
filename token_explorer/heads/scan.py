"""The streaming pass of the head lab: every studied head's running statistics, updated one
sequence at a time; then the decile picks and their sparse attention from a second read of only
the picked sequences. Memory is bounded by the number of heads, never by the corpus."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.family import Family
from .attention import layer_pattern, record_sequence
from .deciles import Pick, SequenceReservoir, pick_by_interval, sparse_attention
from .histograms import DistanceHistogram, distance_edges
from .induction import induction_scores, repeated_random_tokens
from .metrics import MetricSums, induction_targets, sequence_sums
from .pca import TripleReservoir
from .tally import TokenTally
from .triples import max_activation, row_peaks


@dataclass(frozen=True)
class ScanConfig:
    """What the pass keeps."""

    seq_len: int = 128
    n_intervals: int = 10
    per_interval: int = 3  # sequences drawn per interval
    top_k: int = 8  # sparse attention: at most this many weights per row,
    threshold: float = 0.005  # each above this
    points: int = 128  # projection-cloud points per head
    reservoir: int = 1000  # sequences the deciles are cut from (a uniform sample beyond that)
    random_length: int = 50  # random tokens repeated twice for the induction diagnostic,
    random_repeats: int = 4  # in this many sequences
    seed: int = 0


@dataclass(frozen=True)
class SequenceSample:
    """One picked sequence of one head, with that head's sparse attention."""

    seq_id: int
    interval: int
    max_activation: float
    seq_len: int
    indices: np.ndarray  # (E,) int64 flat q * seq_len + k
    values: np.ndarray  # (E,) float32


@dataclass
class HeadScan:
    """Running statistics of the studied heads; ``heads`` maps each studied layer to its heads."""

    model: torch.nn.Module
    family: Family
    heads: dict[int, tuple[int, ...]]
    vocab_size: int
    config: ScanConfig = field(default_factory=ScanConfig)
    keep_sparse: bool = False  # keep every sequence's sparse attention during the pass (a corpus so
    # small that every sequence will be picked: no second read needed)

    def __post_init__(self) -> None:
        self.rows: dict[int, slice] = {}
        start = 0
        for layer, heads in self.heads.items():
            self.rows[layer] = slice(start, start + len(heads))
            start += len(heads)
        self.studied = [(layer, h) for layer, heads in self.heads.items() for h in heads]
        n, c = len(self.studied), self.config
        self.sums = MetricSums(n)
        self.edges = distance_edges(c.seq_len)
        self.histogram = DistanceHistogram(n, self.edges)
        self.tally = TokenTally(n, self.vocab_size)
        self.points = {layer: TripleReservoir(c.points, seed=c.seed + layer) for layer in self.heads}
        self.reservoir = SequenceReservoir(c.reservoir, n, seed=c.seed)
        self.n_sequences = self.n_tokens = 0
        self.sparse: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (head index, seq id) -> COO

    def add(self, seq_id: int, ids: Sequence[int]) -> None:
        """One sequence of the corpus."""
        rec = record_sequence(self.model, self.family, ids)
        c = self.config
        tokens = torch.tensor(list(ids))  # (T,)
        targets = None
        maxima = torch.zeros(len(self.studied))
        for layer, heads in self.heads.items():
            p = layer_pattern(rec, layer, heads)
            rows = self.rows[layer]
            if targets is None:
                targets = induction_targets(tokens.to(p.weights.device))  # (T, T), the same in every layer
            self.sums.add(rows, sequence_sums(p.weights, p.scores, p.seen, tokens, targets))
            self.histogram.add(rows, p.weights)
            q, k, w = row_peaks(p.weights, p.seen)
            self.tally.add(rows, tokens, q, k, w)
            self.points[layer].offer(seq_id, q, k, w, {"Q": p.queries, "K": p.keys, "O": p.outputs, "V": p.values})
            maxima[rows] = max_activation(p.weights, p.seen).cpu()
            if self.keep_sparse:
                weights = p.weights.cpu()
                for i in range(len(heads)):
                    self.sparse[(rows.start + i, seq_id)] = sparse_attention(weights[i], c.top_k, c.threshold)
        self.reservoir.offer(seq_id, maxima)
        self.n_sequences += 1
        self.n_tokens += len(ids)

    def random_induction(self, bos: int | None, avoid: Collection[int]) -> np.ndarray:
        """(n,) the induction score of each studied head on random tokens repeated twice, averaged
        over ``random_repeats`` sequences."""
        c = self.config
        total = torch.zeros(len(self.studied), dtype=torch.float64)
        for i in range(c.random_repeats):
            ids, offset = repeated_random_tokens(self.vocab_size, c.random_length, c.seed + i, bos, avoid)
            rec = record_sequence(self.model, self.family, ids)
            for layer, heads in self.heads.items():
                weights = layer_pattern(rec, layer, heads).weights
                total[self.rows[layer]] += induction_scores(weights, offset, c.random_length).cpu()
        return (total / c.random_repeats).numpy()

    def picks(self) -> list[list[Pick]]:
        """Per studied head, the sequences drawn from each interval of its maxima."""
        c = self.config
        return [pick_by_interval(*self.reservoir.column(i), c.n_intervals, c.per_interval)
                for i in range(len(self.studied))]

    def samples(self, ids: Sequence[int], wanted: Sequence[tuple[int, Pick]]) -> list[tuple[int, SequenceSample]]:
        """The sparse attention of one sequence for each (head index, pick) that drew it: kept from
        the pass, or from a forward of the sequence."""
        t, c, out = len(ids), self.config, []
        rec = None if self.keep_sparse else record_sequence(self.model, self.family, ids)
        patterns = {}
        for index, pick in wanted:
            layer, head = self.studied[index]
            if rec is None:
                indices, values = self.sparse[(index, pick.seq_id)]
            else:
                if layer not in patterns:
                    patterns[layer] = layer_pattern(rec, layer, self.heads[layer]).weights.cpu()  # (h, T, T)
                weights = patterns[layer][self.heads[layer].index(head)]
                indices, values = sparse_attention(weights, c.top_k, c.threshold)
            out.append((index, SequenceSample(pick.seq_id, pick.interval, pick.max_activation, t, indices, values)))
        return out
