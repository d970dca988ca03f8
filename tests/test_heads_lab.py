"""The head lab end to end on tiny models: captured patterns against eager attention, the corpus
metrics against a recompute from eager attention, the written tree against the JSON schemas of the
contract, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from test_heads_metrics import direct_metrics
from tiny import CORPUS, FAMILIES, MORE_FAMILIES, make_model, make_tokenizer
from token_explorer.cli import main
from token_explorer.heads import schema
from token_explorer.heads.attention import layer_pattern, record_sequence
from token_explorer.heads.lab import run_lab
from token_explorer.heads.metrics import PATTERN_METRICS
from token_explorer.heads.scan import HeadScan, ScanConfig
from token_explorer.model.capture import install_query_capture
from token_explorer.model.family import family_of

TEXT = "Once upon a time, there was a small town by the sea. The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def eager_attention(family: str, tokenizer, ids: list[int]) -> list[np.ndarray]:
    """Per layer (H, T, T) weights from an eager copy of the same tiny model with output_attentions."""
    eager = make_model(family, tokenizer)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        return [a[0].double().numpy() for a in eager(torch.tensor([ids]), output_attentions=True).attentions]


@pytest.mark.parametrize("family", FAMILIES + MORE_FAMILIES)
def test_captured_patterns_equal_eager_attention(family, tokenizer):
    model = make_model(family, tokenizer)
    assert install_query_capture(model)
    assert "eager" not in model.config._attn_implementation or family == "gemma2"  # gemma2 defaults to eager
    ids = tokenizer(TEXT)["input_ids"]  # longer than gemma2's sliding window of 8
    rec = record_sequence(model, family_of(model), ids)
    want = eager_attention(family, tokenizer, ids)
    for layer, att in enumerate(want):
        p = layer_pattern(rec, layer, [3, 0, 1])  # any order of heads; grouped-query heads map to kv heads
        np.testing.assert_allclose(p.weights.numpy(), att[[3, 0, 1]], atol=2e-6)
        np.testing.assert_allclose(p.scores.softmax(-1).numpy(), p.weights.numpy(), atol=1e-7)
        np.testing.assert_allclose(torch.bmm(p.weights, p.values).numpy(), p.outputs.numpy(), atol=1e-6)
        if family == "gemma2":  # soft-capped scores stay inside the cap
            assert float(p.scores[torch.isfinite(p.scores)].abs().max()) < 50.0


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_corpus_metrics_equal_a_recompute_from_eager_attention(family, tokenizer):
    model = make_model(family, tokenizer)
    install_query_capture(model)
    sequences = [tokenizer(t)["input_ids"][:20] for t in (TEXT, "def main():\n    return [1, 2, 3] + [1, 2, 3]\n")]
    scan = HeadScan(model, family_of(model), {0: (0, 1, 2, 3), 2: (1, 3)}, len(tokenizer), ScanConfig(seq_len=20))
    for i, ids in enumerate(sequences):
        scan.add(i, ids)
    got = scan.sums.means()
    eager = [eager_attention(family, tokenizer, ids) for ids in sequences]
    for index, (layer, head) in enumerate(scan.studied):
        weights = [e[layer][head] for e in eager]
        scores = [np.where(np.tril(np.ones_like(w)) > 0, np.log(np.maximum(w, 1e-300)), -np.inf) for w in weights]
        want = direct_metrics(weights, scores, sequences)
        for name in PATTERN_METRICS[:6]:  # the weight metrics; the score metrics are checked on hand-made scores
            assert got[name][index] == pytest.approx(want[name], rel=1e-4, abs=1e-5), (layer, head, name)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tree(tmp_path_factory, tiny_dirs) -> Path:
    out = tmp_path_factory.mktemp("heads") / "data"
    assert main(["heads", "--model", str(tiny_dirs["llama"]), "--seq-len", "24", "--max-sequences", "14",
                 "--layers", "0,2", "--out", str(out), "--quiet"]) == 0
    return out


def load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_tree_validates_against_the_contract_schemas(tree):
    config = load(tree / "config.json")
    jsonschema.validate(config, schema.CONFIG)
    jsonschema.validate(load(tree / "scatter_data.json"), schema.SCATTER)
    jsonschema.validate(load(tree / "umap" / "sequences.json"), schema.SEQUENCES)
    for empty in ("server_config.json", "attributions/manifest.json"):
        jsonschema.validate(load(tree / empty), schema.EMPTY)
    for folder in ("attributions/qk", "attributions/ov", "custom_sequences"):
        assert (tree / folder).is_dir()
    assert config["heads"] == [[layer, head] for layer in (0, 2) for head in range(4)]
    assert (config["n_layers"], config["n_heads"], config["n_intervals"]) == (3, 4, 10)
    for layer, head in config["heads"]:
        jsonschema.validate(load(tree / "heads" / f"L{layer}H{head}.json"), schema.HEAD)
    assert config["has_umap"] and config["umap_heads"] == config["heads"]
    for layer, head in config["umap_heads"]:
        jsonschema.validate(load(tree / "umap" / f"L{layer}H{head}.json"), schema.UMAP)
    with pytest.raises(jsonschema.ValidationError):  # the schema is not vacuous
        jsonschema.validate({**config, "heads": [[0]]}, schema.CONFIG)


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


def test_floats_are_rounded_to_4_decimals(tree):
    for path in tree.rglob("*.json"):
        for x in _floats(load(path)):
            assert abs(x - round(x, 4)) < 1e-12, (path, x)


def test_decile_sequences_hold_the_heads_real_attention(tree, tiny_dirs, tokenizer):
    config = load(tree / "config.json")
    head_file = load(tree / "heads" / "L2H1.json")
    sequences = head_file["sequences"]
    assert {s["interval"] for s in sequences} <= set(range(1, 11)) and len(sequences) == 14  # 14 sequences, 3 per interval: all
    assert max(s["interval"] for s in sequences) == config["n_intervals"]
    top = max(sequences, key=lambda s: s["interval"])
    assert top["max_activation"] == max(s["max_activation"] for s in sequences)
    from token_explorer.model.loading import load_model
    loaded = load_model(str(tiny_dirs["llama"]), device="cpu")
    text = (Path(__file__).parent.parent / "token_explorer" / "heads" / "data" / "corpus.txt").read_text()
    ids_all = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    for s in sequences[:3]:
        t = s["seq_len"]
        assert len(s["tokens"]) == t
        ids = [loaded.tokenizer.bos_token_id] + ids_all[s["sequence_id"] * (t - 1) : (s["sequence_id"] + 1) * (t - 1)]
        att = eager_attention("llama", make_tokenizer(), ids)[2][1]  # (T, T) the same weights as the tiny folder
        q, k = np.divmod(np.array(s["attention_indices"]), t)
        np.testing.assert_allclose(s["attention_values"], att[q, k], atol=1e-4)
        assert np.all(k <= q)
        masked = att.copy()
        masked[0, :], masked[:, 0] = 0, 0
        np.fill_diagonal(masked, 0)
        assert s["max_activation"] == pytest.approx(masked.max(), abs=1e-4)  # row 0, column 0, diagonal left out
    hist = head_file["qk_distance_histogram"]
    assert len(hist["bin_values"]) == len(hist["bin_edges"]) - 1 and sum(hist["bin_values"]) == pytest.approx(1, abs=1e-3)


def test_scatter_rows_and_heads_csv_agree(tree):
    scatter = load(tree / "scatter_data.json")
    with (tree / "heads.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["layer"], r["head"]) for r in scatter] == [(int(r["layer"]), int(r["head"])) for r in rows]
    for s, r in zip(scatter, rows):
        for metric in load(tree / "config.json")["metrics"]:
            assert s[metric] == pytest.approx(float(r[metric]), abs=1e-9)
        assert 0 <= float(r["repeated_random_induction_score"]) <= 1


def test_clouds_refer_to_known_sequences(tree):
    texts = load(tree / "umap" / "sequences.json")
    cloud = load(tree / "umap" / "L0H2.json")
    n = len(cloud["seq_idx"])
    assert n > 0 and all(len(cloud["pca"][s][f"d{i}"]) == n for s in "QKOV" for i in range(3))
    for seq, q, k in zip(cloud["seq_idx"], cloud["top_q"], cloud["top_k"]):
        assert 1 <= k < q < len(texts[str(seq)])  # high-attention pairs: never row 0, column 0 or the diagonal
    assert "views" not in cloud


def test_a_second_run_replaces_the_tree(tree, capsys, tiny_dirs, tmp_path):
    out = tmp_path / "again"
    args = ["heads", "--model", str(tiny_dirs["gpt2"]), "--seq-len", "16", "--max-sequences", "3", "--out", str(out)]
    assert run(capsys, *args, "--layers", "1", "--heads", "0,2")[0] == 0
    assert load(out / "config.json")["heads"] == [[1, 0], [1, 2]]
    code, _, err = run(capsys, *args, "--layers", "0", "--heads", "3")
    assert code == 0 and "tokens" in err  # the progress line
    assert load(out / "config.json")["heads"] == [[0, 3]]
    assert sorted(p.name for p in (out / "heads").iterdir()) == ["L0H3.json"]
    assert not list(tmp_path.glob(".again*"))  # no temporary folder left behind


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("token-explorer: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("extra,needle", [
    (["--corpus", "/no/such/corpus.txt"], "/no/such/corpus.txt"),
    (["--layers", "7"], "--layers: 7 is outside 0..2"),
    (["--layers", "1,x"], "--layers"),
    (["--heads", "4"], "--heads: 4 is outside 0..3"),
    (["--seq-len", "2"], "--seq-len"),
    (["--seq-len", "9999"], "context of 256"),
    (["--max-sequences", "0"], "--max-sequences"),
])
def test_bad_input_is_one_line(capsys, tiny_dirs, tmp_path, extra, needle):
    code, _, err = run(capsys, "heads", "--model", str(tiny_dirs["llama"]), "--out", str(tmp_path / "o"), *extra)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_bad_corpus_and_out_folders_are_one_line(capsys, tiny_dirs, tmp_path):
    model = ["--model", str(tiny_dirs["llama"])]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "image.png").write_bytes(b"\x89PNG")
    assert_one_line_error(*run(capsys, "heads", *model, "--corpus", str(empty), "--out", str(tmp_path / "o"))[::2],
                          "holds no")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    assert_one_line_error(*run(capsys, "heads", *model, "--corpus", str(latin), "--out", str(tmp_path / "o"))[::2],
                          "not UTF-8")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert_one_line_error(*run(capsys, "heads", *model, "--out", str(busy))[::2], "other files")
    assert (busy / "notes.txt").read_text() == "mine"
    short = tmp_path / "short.txt"
    short.write_text("hi")
    assert_one_line_error(*run(capsys, "heads", *model, "--corpus", str(short), "--out", str(tmp_path / "o"))[::2],
                          "no sequence")


def test_a_small_corpus_keeps_its_sparse_attention_instead_of_reading_it_again(tokenizer):
    model = make_model("qwen2", tokenizer)
    install_query_capture(model)
    sequences = [tokenizer(t)["input_ids"][:18] for t in (TEXT, TEXT[20:], TEXT[40:])]
    scans = []
    for keep in (True, False):
        scan = HeadScan(model, family_of(model), {1: (0, 3)}, len(tokenizer), ScanConfig(seq_len=18), keep_sparse=keep)
        for i, ids in enumerate(sequences):
            scan.add(i, ids)
        picks = scan.picks()
        assert sorted(p.seq_id for p in picks[0]) == [0, 1, 2]  # 3 sequences: every one is picked
        scans.append([scan.samples(sequences[p.seq_id], [(0, p)])[0][1] for p in picks[0]])
    for kept, read in zip(*scans):
        assert (kept.seq_id, kept.interval) == (read.seq_id, read.interval)
        np.testing.assert_array_equal(kept.indices, read.indices)
        np.testing.assert_allclose(kept.values, read.values, atol=1e-6)


def plant_induction_head(model, beta=10.0, gamma=3.0, seed=0):
    """Hand-set weights of a tiny GPT-2 (every other weight zero, so its other heads attend
    uniformly): layer 0 head 0 attends to the previous token through sinusoidal position embeddings
    and copies that token's embedding into dims 48..63; layer 1 head 1 matches the current token
    against that copy, so it attends to the token after an earlier copy of the current one."""
    g = torch.Generator().manual_seed(seed)
    t = model.transformer
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for block in t.h:
            block.ln_1.weight.fill_(1.0); block.ln_2.weight.fill_(1.0)
        t.ln_f.weight.fill_(1.0)
        e = torch.randn(t.wte.weight.shape[0], 16, generator=g)
        e -= e.mean(1, keepdim=True)
        t.wte.weight[:, :16] = 4 * e / e.norm(dim=1, keepdim=True)  # zero-mean token vectors, |E| = 4
        omega = torch.linspace(0.6, 3.0, 8)
        n = torch.arange(t.wpe.weight.shape[0], dtype=torch.float32)[:, None]
        cos, sin = torch.cos(n * omega), torch.sin(n * omega)  # (N, 8)
        t.wpe.weight[:, 16:48] = torch.stack([cos, sin, -cos, -sin], -1).flatten(1)  # zero mean
        pair = lambda j: (16 + 4 * j, 17 + 4 * j)  # the (cos, sin) dims of frequency j
        a0, a1 = t.h[0].attn.c_attn.weight, t.h[1].attn.c_attn.weight  # (64, 192): x @ W = [q | k | v]
        for j in range(8):
            c, s = pair(j)
            w = float(omega[j])
            # q = R(-w) p[n] = p[n-1] on the (cos, sin) pair; k = p[m]
            a0[c, 2 * j], a0[s, 2 * j] = beta * math.cos(w), beta * math.sin(w)
            a0[c, 2 * j + 1], a0[s, 2 * j + 1] = -beta * math.sin(w), beta * math.cos(w)
            a0[c, 64 + 2 * j], a0[s, 64 + 2 * j + 1] = 1.0, 1.0
        a0[torch.arange(16), 128 + torch.arange(16)] = 1.0  # head 0's value: the token vector
        t.h[0].attn.c_proj.weight[torch.arange(16), 48 + torch.arange(16)] = 1.0  # written to dims 48..63
        a1[torch.arange(16), 16 + torch.arange(16)] = gamma  # head 1 query: the current token
        a1[48 + torch.arange(16), 64 + 16 + torch.arange(16)] = 1.0  # head 1 key: the previous token's copy
    return model.eval()


def test_a_planted_induction_head_is_ranked_first(tokenizer, tmp_path):
    model = plant_induction_head(make_model("gpt2", tokenizer))
    assert install_query_capture(model)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS))  # each sentence four times: repeats to induct on
    heads = {layer: (0, 1, 2, 3) for layer in range(3)}
    lab = run_lab(model, family_of(model), tokenizer, "planted", [corpus], heads, 3, 4,
                  ScanConfig(seq_len=64, random_length=40), None)
    studied = lab.scan.studied
    first = lambda values: studied[int(np.nanargmax(values))]  # noqa: E731
    assert first(lab.random_induction) == (1, 1)
    assert lab.random_induction[studied.index((1, 1))] > 0.9
    assert sorted(lab.random_induction)[-2] < 0.2  # the rest attend evenly
    assert first(lab.metrics["induction_score"]) == (1, 1)
    assert first(lab.metrics["previous_token_score"]) == (0, 0)
    assert lab.metrics["previous_token_score"][studied.index((0, 0))] > 0.9
