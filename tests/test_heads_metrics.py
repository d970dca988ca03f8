"""The head lab's statistics against direct formulas (plain loops) on hand-made attention matrices,
including the contract's rules for position 0 and the diagonal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from token_explorer.heads.deciles import SequenceReservoir, pick_by_interval, sparse_attention
from token_explorer.heads.histograms import DistanceHistogram, distance_edges
from token_explorer.heads.induction import induction_scores, repeated_random_tokens
from token_explorer.heads.metrics import MetricSums, sequence_sums
from token_explorer.heads.pca import TripleReservoir, pca3
from token_explorer.heads.tally import SparseCounts, TokenTally
from token_explorer.heads.triples import max_activation, row_peaks


def causal_pattern(h: int, t: int, seed: int, window: int | None = None):
    """Random pre-softmax scores (h, T, T) masked causally (and to a window), their weights and mask."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(h, t, t, generator=g) * 3
    q, k = np.indices((t, t))
    seen = torch.tensor((k <= q) & ((k > q - window) if window else True))
    scores = scores.masked_fill(~seen, float("-inf"))
    return scores, scores.softmax(-1), seen


def direct_metrics(weights: np.ndarray, scores: np.ndarray, tokens: list[int]) -> dict[str, float]:
    """One head's metrics over one or more sequences, written out as the contract states them.

    ``weights``/``scores``: lists of (T, T) per sequence."""
    diag, prev, ent, d1, d2, ind, rows, prev_rows = [], [], [], 0.0, 0.0, [], 0, 0
    std, margin, z = [], [], []
    for w, s, tok in zip(weights, scores, tokens):
        t = len(tok)
        for q in range(t):
            rows += 1
            diag.append(w[q, q])
            if q >= 1:
                prev.append(w[q, q - 1])
                prev_rows += 1
            ent.append(-sum(p * math.log2(p) for p in w[q, : q + 1] if p > 0))
            for k in range(q + 1):
                d1 += w[q, k] * abs(q - k)
                d2 += w[q, k] * abs(q - k) ** 2
            ind.append(sum(w[q, j + 1] for j in range(q) if tok[j] == tok[q]))
            vis = np.array([s[q, k] for k in range(t) if np.isfinite(s[q, k])])
            if len(vis) >= 2:
                top = np.sort(vis)[::-1]
                std.append(vis.std())
                margin.append(top[0] - top[1])
                if vis.std() > 0:
                    z.append((top[0] - vis.mean()) / vis.std())
    mean_d = d1 / rows
    return {"self_attention_score": np.mean(diag), "previous_token_score": np.mean(prev),
            "pattern_entropy": np.mean(ent), "qk_distance": mean_d, "qk_distance_variance": d2 / rows - mean_d**2,
            "induction_score": np.mean(ind), "logit_std": np.mean(std), "top_logit_margin": np.mean(margin),
            "logit_z_score": np.mean(z)}


@pytest.mark.parametrize("window", [None, 3])
def test_metrics_equal_the_direct_formulas_over_two_sequences(window):
    seqs = [[0, 5, 6, 7, 5, 6, 7, 9, 5], [0, 2, 2, 2, 3, 2, 3]]  # repeats: induction targets exist
    sums = MetricSums(2)
    ws, ss = [], []
    for i, tok in enumerate(seqs):
        s, w, seen = causal_pattern(2, len(tok), seed=i, window=window)
        sums.add(slice(0, 2), sequence_sums(w, s, seen, torch.tensor(tok)))
        ws.append(w.numpy().astype(np.float64))
        ss.append(s.numpy().astype(np.float64))
    got = sums.means()
    for head in range(2):
        want = direct_metrics([w[head] for w in ws], [s[head] for s in ss], seqs)
        for name, value in want.items():
            assert got[name][head] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_a_previous_token_pattern_scores_as_one():
    t = 6
    w = torch.zeros(1, t, t)
    w[0, 0, 0] = 1.0
    for q in range(1, t):
        w[0, q, q - 1] = 1.0
    s = torch.where(w > 0, torch.tensor(5.0), torch.tensor(0.0)).masked_fill(~torch.ones(t, t).tril().bool(), float("-inf"))
    sums = MetricSums(1)
    sums.add(slice(0, 1), sequence_sums(w, s, torch.ones(t, t).tril().bool(), torch.arange(t)))
    m = sums.means()
    assert m["previous_token_score"][0] == pytest.approx(1.0)
    assert m["self_attention_score"][0] == pytest.approx(1 / t)  # only row 0's forced diagonal
    assert m["pattern_entropy"][0] == pytest.approx(0.0)
    assert m["qk_distance"][0] == pytest.approx((t - 1) / t)


def test_high_attention_pairs_skip_row_0_column_0_and_the_diagonal():
    t = 5
    w = torch.zeros(1, t, t)
    w[0, :, 0] = 0.9  # the sink column
    w[0, torch.arange(t), torch.arange(t)] = 0.95  # the diagonal (row 0 is 1)
    w[0, 3, 1], w[0, 4, 2], w[0, 2, 1] = 0.04, 0.03, 0.02
    seen = torch.ones(t, t).tril().bool()
    assert max_activation(w, seen)[0] == pytest.approx(0.04)
    q, k, wk = row_peaks(w, seen)
    assert q.tolist() == [2, 3, 4] and k[0].tolist() == [1, 1, 2]
    np.testing.assert_allclose(wk[0].numpy(), [0.02, 0.04, 0.03])
    assert max_activation(w[:, :2, :2], seen[:2, :2])[0] == 0.0  # too short to have any


def test_token_tally_weights_and_entropy():
    tally = TokenTally(1, 10)
    tokens = torch.tensor([0, 7, 8, 7, 9])
    q, k, w = torch.tensor([2, 3, 4]), torch.tensor([[1, 2, 1]]), torch.tensor([[0.5, 0.25, 0.25]])
    tally.add(slice(0, 1), tokens, q, k, w)
    assert tally.key.top(0, 5) == [(7, pytest.approx(0.75)), (8, pytest.approx(0.25))]
    query_p = np.array([0.5, 0.25, 0.25])  # tokens 8, 7, 9
    assert tally.query.entropy_bits()[0] == pytest.approx(-(query_p * np.log2(query_p)).sum())
    assert math.isnan(TokenTally(1, 3).query.entropy_bits()[0])


def test_sparse_counts_sum_repeated_pairs_across_coalescing():
    counts = SparseCounts(3, 5)
    g = torch.Generator().manual_seed(0)
    heads, ids, w = torch.randint(0, 3, (400,), generator=g), torch.randint(0, 5, (400,), generator=g), torch.rand(400, generator=g)
    dense = np.zeros((3, 5))
    for i in range(0, 400, 50):  # several adds, coalesced in between and at the end
        counts.add(heads[i : i + 50], ids[i : i + 50], w[i : i + 50])
        np.add.at(dense, (heads[i : i + 50].numpy(), ids[i : i + 50].numpy()), w[i : i + 50].numpy())
        counts._coalesce()
    for h in range(3):
        got_ids, got_w = counts.head(h)
        np.testing.assert_allclose(got_w.numpy(), dense[h][got_ids.numpy()], rtol=1e-12)
        assert set(got_ids.tolist()) == set(np.flatnonzero(dense[h]).tolist())
        p = dense[h] / dense[h].sum()
        assert counts.entropy_bits()[h] == pytest.approx(-(p[p > 0] * np.log2(p[p > 0])).sum())


def test_distance_histogram_puts_each_weight_in_its_log_bin():
    edges = distance_edges(16)
    assert edges[0] == 0 and edges[1] == 1 and edges[-1] == 16 and np.all(np.diff(edges) > 0)
    _, w, _ = causal_pattern(1, 16, seed=3)
    hist = DistanceHistogram(1, edges)
    hist.add(slice(0, 1), w)
    want = np.zeros(len(edges) - 1)
    for q in range(16):
        for k in range(q + 1):
            want[np.searchsorted(edges, q - k, side="right") - 1] += float(w[0, q, k])
    np.testing.assert_allclose(hist.fractions(0), want / want.sum(), rtol=1e-6)


def test_deciles_rank_sequences_into_equal_intervals():
    ids = np.arange(20)
    maxima = np.linspace(0.0, 0.95, 20)[::-1].copy()  # id 0 is the highest
    picks = pick_by_interval(ids, maxima, 10, 1)
    assert [p.interval for p in picks] == list(range(1, 11))
    assert picks[-1].seq_id == 0 and picks[-1].max_activation == pytest.approx(0.95)
    assert picks[0].seq_id == 18  # the higher of the two lowest
    few = pick_by_interval(np.arange(3), np.array([0.1, 0.3, 0.2]), 10, 2)
    assert [(p.seq_id, p.interval) for p in few] == [(0, 1), (2, 4), (1, 7)]


def test_sequence_reservoir_keeps_a_bounded_uniform_sample():
    r = SequenceReservoir(capacity=5, n_heads=1, seed=1)
    for i in range(100):
        r.offer(i, torch.tensor([i / 100]))
    ids, maxima = r.column(0)
    assert len(ids) == 5 and len(set(ids.tolist())) == 5
    np.testing.assert_allclose(maxima, ids / 100, rtol=1e-6)


def test_sparse_attention_is_top_k_per_row_above_the_threshold():
    _, w, _ = causal_pattern(1, 6, seed=4)
    w = w[0]
    idx, val = sparse_attention(w, top_k=2, threshold=0.1)
    want = sorted((q * 6 + k, float(w[q, k])) for q in range(6)
                  for k in torch.topk(w[q], 2).indices.tolist() if w[q, k] > 0.1)
    assert idx.tolist() == [i for i, _ in want]
    np.testing.assert_allclose(val, [v for _, v in want], rtol=1e-6)


def test_induction_score_reads_the_token_after_the_first_copy():
    ids, offset = repeated_random_tokens(50, 6, seed=0, bos=1, avoid={1})
    assert offset == 1 and ids[1:7] == ids[7:13] and 1 not in ids[1:]
    t = len(ids)
    w = torch.zeros(2, t, t)
    w[:, torch.arange(t), torch.arange(t)] = 1.0  # head 1: self only
    w[0, 7 + torch.arange(6)] = 0.0
    w[0, 7 + torch.arange(6), 2 + torch.arange(6)] = 1.0  # head 0: the perfect induction pattern
    np.testing.assert_allclose(induction_scores(w, offset, 6).numpy(), [1.0, 0.0])


def test_triple_reservoir_keeps_the_vectors_of_the_pairs_it_keeps():
    res = TripleReservoir(capacity=4, seed=0)
    g = torch.Generator().manual_seed(0)
    for seq in range(3):
        vectors = {s: torch.randn(2, 6, 3, generator=g) + seq * 10 for s in "QKOV"}
        q = torch.tensor([2, 3, 4, 5])
        k = torch.tensor([[1, 2, 3, 4], [1, 1, 1, 1]])
        res.offer(seq, q, k, torch.full((2, 4), 0.5), vectors)
        kept = {s: vectors[s] for s in "QKOV"}
        seqs, qs, ks, vecs = res.head(1)
        for i in np.flatnonzero(seqs == seq):
            np.testing.assert_allclose(vecs["Q"][i], kept["Q"][1, qs[i]].numpy())
            np.testing.assert_allclose(vecs["V"][i], kept["V"][1, ks[i]].numpy())
    assert len(res.head(0)[0]) == 4


def test_pca3_projects_onto_the_principal_axes():
    g = np.random.default_rng(0)
    x = g.normal(size=(50, 5)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1])
    coords = pca3(x)
    assert coords.shape == (50, 3)
    var = coords.var(0)
    assert var[0] > var[1] > var[2]
    np.testing.assert_allclose(coords.sum(0), 0, atol=1e-9)
    assert np.allclose(pca3(x[:2])[:, 1:], 0)  # two points: one axis


def test_distance_variance_keeps_float64_precision_on_long_sequences():
    t = 256
    _, w, seen = causal_pattern(2, t, seed=7)
    sums = MetricSums(2)
    sums.add(slice(0, 2), sequence_sums(w, torch.log(w), seen, torch.arange(t)))
    d = np.abs(np.subtract.outer(np.arange(t), np.arange(t))).astype(np.float64)
    w64 = w.numpy().astype(np.float64)
    mean = (w64 * d).sum((1, 2)) / t
    var = (w64 * d**2).sum((1, 2)) / t - mean**2
    np.testing.assert_allclose(sums.means()["qk_distance"], mean, rtol=1e-9)
    np.testing.assert_allclose(sums.means()["qk_distance_variance"], var, rtol=1e-9)
