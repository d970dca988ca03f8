"""One head-lab run over a loaded model: the streaming pass, the induction diagnostic, the decile
picks and the second read that fetches only the picked sequences. Returns plain data for ``tree``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..model.family import Family
from ..model.vocab import Vocab
from ..tokens import piece_text
from .corpus import sequences
from .scan import HeadScan, ScanConfig, SequenceSample


@dataclass(frozen=True)
class LabResult:
    """Everything the tree is written from (n studied heads)."""

    scan: HeadScan
    metrics: dict[str, np.ndarray]  # METRICS -> (n,) float64
    random_induction: np.ndarray  # (n,) float64
    samples: list[list[SequenceSample]]  # per studied head, its decile sequences (highest first)
    texts: dict[int, list[str]]  # sequence id -> display text of each token
    model_name: str
    n_layers: int
    n_heads: int
    token_text: Callable[[int], str]  # display text of one token id


def point_sequences(scan: HeadScan) -> set[int]:
    """The ids of the sequences the projection clouds refer to."""
    found: set[int] = set()
    for layer, heads in scan.heads.items():
        for i in range(len(heads)):
            found.update(int(s) for s in scan.points[layer].head(i)[0])
    return found


def run_lab(model: torch.nn.Module, family: Family, tokenizer, model_name: str, files: Sequence[Path],
            heads: dict[int, tuple[int, ...]], n_layers: int, n_heads: int, config: ScanConfig,
            max_sequences: int | None, progress: Callable[[int, int], None] = lambda done, total: None) -> LabResult:
    """Scan ``files`` with the studied ``heads`` (layer -> heads); ``progress(tokens done, total)``.

    The model must have the capture installed (``install_query_capture``).
    """
    count = total = 0
    for _, ids in sequences(files, tokenizer, config.seq_len, max_sequences):
        count, total = count + 1, total + len(ids)
    if total == 0:
        raise UserError(f"--corpus: {files[0] if len(files) == 1 else 'the folder'} has no sequence of at least 8 tokens")
    vocab_size = model.get_input_embeddings().num_embeddings
    every_one_picked = count <= config.n_intervals * config.per_interval
    scan = HeadScan(model, family, heads, vocab_size, config, keep_sparse=every_one_picked)
    progress(0, total)
    for seq_id, ids in sequences(files, tokenizer, config.seq_len, max_sequences):
        scan.add(seq_id, ids)
        progress(scan.n_tokens, total)
    metrics = scan.sums.means()
    metrics["query_token_entropy"] = scan.tally.query.entropy_bits()
    metrics["key_token_entropy"] = scan.tally.key.entropy_bits()
    avoid = set(getattr(tokenizer, "all_special_ids", []) or []) | set(range(len(tokenizer), vocab_size))
    random_induction = scan.random_induction(tokenizer.bos_token_id, avoid)
    picks = scan.picks()
    by_sequence: dict[int, list] = {}
    for index, head_picks in enumerate(picks):
        for pick in head_picks:
            by_sequence.setdefault(pick.seq_id, []).append((index, pick))
    referred = point_sequences(scan)
    vocab = Vocab(tokenizer)
    text = lambda i: piece_text(vocab.token_bytes(int(i)))  # noqa: E731
    texts: dict[int, list[str]] = {}
    found: dict[tuple[int, int], SequenceSample] = {}
    for seq_id, ids in sequences(files, tokenizer, config.seq_len, max_sequences):
        if seq_id in by_sequence or seq_id in referred:
            texts[seq_id] = [text(i) for i in ids]
        if seq_id in by_sequence:
            for index, sample in scan.samples(ids, by_sequence[seq_id]):
                found[(index, seq_id)] = sample
    samples = [[found[(index, p.seq_id)] for p in head_picks] for index, head_picks in enumerate(picks)]
    return LabResult(scan, metrics, np.asarray(random_induction), samples, texts, model_name, n_layers, n_heads, text)
