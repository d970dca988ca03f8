"""SAE / transcoder features: entries, layouts, encoders, hook points, the view, caching, training."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from token_explorer.config import CacheSettings, Settings
from token_explorer.engine import open_engine
from token_explorer.errors import UserError
from token_explorer.model.hooks import run_with_hooks
from token_explorer.results import Features
from token_explorer.sae.archs import Dictionary
from token_explorer.sae.entries import parse_entries, parse_entry
from token_explorer.sae.weights import detect_layout, read_dictionary

D, F = 64, 32  # tiny models' hidden size; dictionary size
TEXT = "Once upon a time, there was a small town by the sea."


def random_weights(seed: int = 0, d: int = D, f: int = F, skip: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"W_enc": torch.randn(d, f, generator=g) * 0.3, "b_enc": torch.randn(f, generator=g) * 0.1,
           "W_dec": torch.randn(f, d, generator=g), "b_dec": torch.randn(d, generator=g) * 0.1}
    if skip:
        out["W_skip"] = torch.randn(d, d, generator=g) * 0.1
    return out


def write(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


def entry(**raw):
    return parse_entry(raw, 0, "test.toml")


# --- entries ------------------------------------------------------------------------------------


def test_entries_typed_and_errors_name_source_entry_and_key():
    e = entry(layer=1, hook="mlp_in", output_hook="mlp_out", skip=True, repo_id="a/b", filename="layer_1.safetensors",
              revision="new-training", architecture="relu")
    assert (e.layer, e.hook, e.is_transcoder, e.skip, e.revision) == (1, "mlp_in", True, True, "new-training")
    bad = [
        (dict(hook="resid_post", path="x"), "layer is required"),
        (dict(layer=1, path="x"), "hook is required"),
        (dict(layer=1, hook="resid_middle", path="x"), "hook must be one of"),
        (dict(layer="1", hook="resid_post", path="x"), "layer must be an integer"),
        (dict(layer=1, hook="resid_post", path="x", architecture="gelu"), "architecture must be one of"),
        (dict(layer=1, hook="resid_post", path="x", architecture="topk"), "k is required"),
        (dict(layer=1, hook="resid_post"), "weights are missing"),
        (dict(layer=1, hook="resid_post", path="x", colour="red"), "unknown key colour"),
        (dict(layer=1, hook="resid_post", path="x", skip=True), "skip is only for transcoders"),
    ]
    for raw, message in bad:
        with pytest.raises(UserError, match=message) as info:
            parse_entry(raw, 2, "my.toml")
        assert str(info.value).startswith("my.toml: [[sae]] #3") and "\n" not in str(info.value)
    assert [e.index for e in parse_entries([dict(layer=0, hook="resid_pre", path="a")] * 2)] == [0, 1]


# --- encoders -----------------------------------------------------------------------------------


def test_encode_relu_jumprelu_topk_by_hand():
    w = random_weights()
    x = torch.randn(5, D)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    relu = Dictionary("relu", w["W_enc"], w["b_enc"], w["b_dec"], w["W_dec"])
    torch.testing.assert_close(relu.encode(x), torch.clamp(pre, min=0))
    no_bdec = Dictionary("relu", w["W_enc"], w["b_enc"], w["b_dec"], w["W_dec"], apply_b_dec_to_input=False)
    torch.testing.assert_close(no_bdec.encode(x), torch.clamp(x @ w["W_enc"] + w["b_enc"], min=0))

    threshold = torch.full((F,), 0.2)
    jump = Dictionary("jumprelu", w["W_enc"], w["b_enc"], w["b_dec"], w["W_dec"], threshold=threshold)
    expected = torch.where(pre > 0.2, pre, torch.zeros_like(pre))
    torch.testing.assert_close(jump.encode(x), expected)

    topk = Dictionary("topk", w["W_enc"], w["b_enc"], w["b_dec"], w["W_dec"], k=3)
    got = topk.encode(x)
    for row, p in zip(got, pre):
        keep = sorted(range(F), key=lambda j: -float(p[j]))[:3]
        want = torch.zeros(F)
        want[keep] = torch.clamp(p[keep], min=0)
        torch.testing.assert_close(row, want)
    for d in (relu, jump, topk):  # one feature at a time agrees with the full encode
        torch.testing.assert_close(d.feature_acts(x, 7), d.encode(x)[:, 7])


def test_decode_with_and_without_skip():
    w = random_weights(skip=True)
    x = torch.randn(4, D)
    tc = Dictionary("relu", w["W_enc"], w["b_enc"], w["b_dec"], w["W_dec"], W_skip=w["W_skip"],
                    apply_b_dec_to_input=False)
    f = tc.encode(x)
    torch.testing.assert_close(tc.decode(f, x), f @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T)
    plain = dataclasses.replace(tc, W_skip=None)
    torch.testing.assert_close(plain.decode(f), f @ w["W_dec"] + w["b_dec"])


# --- layouts ------------------------------------------------------------------------------------


def test_layouts_detected_and_read_the_same(tmp_path):
    w = random_weights(skip=True)
    x = torch.randn(3, D)
    saelens = write(tmp_path / "saelens.safetensors", {k: v for k, v in w.items() if k != "W_skip"})
    tracer = write(tmp_path / "tracer.safetensors", {**w, "W_enc": w["W_enc"].T})
    linear = write(tmp_path / "linear.safetensors", {
        "encoder.weight": w["W_enc"].T, "encoder.bias": w["b_enc"], "decoder.weight": w["W_dec"].T,
        "decoder.bias": w["b_dec"], "skip_connection.weight": w["W_skip"]})
    assert detect_layout({"W_enc"}, {"W_enc": (D, F)}, D) == "saelens"
    assert detect_layout({"W_enc"}, {"W_enc": (F, D)}, D) == "circuit-tracer"
    assert detect_layout({"encoder.weight"}, {"encoder.weight": (F, D)}, D) == "linear"

    sae = read_dictionary(entry(layer=0, hook="resid_post", path=saelens), Path(saelens), D)
    assert sae.apply_b_dec_to_input and sae.W_skip is None and sae.architecture == "relu"
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    torch.testing.assert_close(sae.encode(x), pre.clamp(min=0))

    expected = (x @ w["W_enc"] + w["b_enc"]).clamp(min=0)  # transcoders do not subtract b_dec
    for path in (tracer, linear):
        tc = read_dictionary(entry(layer=0, hook="mlp_in", output_hook="mlp_out", path=path), Path(path), D)
        assert not tc.apply_b_dec_to_input
        torch.testing.assert_close(tc.encode(x), expected)
        torch.testing.assert_close(tc.decode(expected, x), expected @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T)
        no_skip = read_dictionary(entry(layer=0, hook="mlp_in", output_hook="mlp_out", skip=False, path=path),
                                  Path(path), D)
        assert no_skip.W_skip is None


def test_layout_errors_are_one_line_naming_entry_and_file(tmp_path):
    w = random_weights()
    cases = {
        "missing.safetensors": ({k: v for k, v in w.items() if k != "b_enc"}, "missing key b_enc"),
        "shape.safetensors": (random_weights(d=D + 1), "W_enc has shape (65, 32), expected (64, 32)"),
        "unknown.safetensors": ({"weights": w["W_enc"]}, "unknown layout"),
        "skip.safetensors": (random_weights(skip=True), "has a skip connection"),
    }
    for name, (tensors, message) in cases.items():
        path = write(tmp_path / name, tensors)
        with pytest.raises(UserError, match=re.escape(message)) as info:
            read_dictionary(entry(layer=0, hook="resid_post", path=path), Path(path), D)
        assert "test.toml: [[sae]] #1" in str(info.value) and name in str(info.value)
        assert "\n" not in str(info.value)
    path = write(tmp_path / "ok.safetensors", w)
    with pytest.raises(UserError, match="needs a threshold"):
        read_dictionary(entry(layer=0, hook="resid_post", path=path, architecture="jumprelu"), Path(path), D)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        read_dictionary(entry(layer=0, hook="resid_post", path=str(garbage)), garbage, D)


def test_jumprelu_threshold_keys(tmp_path):
    w = random_weights()
    x = torch.randn(3, D)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    path = write(tmp_path / "log.safetensors", {**w, "log_threshold": torch.full((F,), math.log(0.1))})
    d = read_dictionary(entry(layer=0, hook="resid_post", path=path), Path(path), D)
    assert d.architecture == "jumprelu"
    torch.testing.assert_close(d.encode(x), torch.where(pre > 0.1, pre, torch.zeros_like(pre)))


# --- the view -----------------------------------------------------------------------------------


def sae_engine(folder: Path, tmp_path: Path, saes: list[dict], disk_mb: int = 16):
    settings = dataclasses.replace(Settings(), sae=tuple(saes),
                                   cache=CacheSettings(directory=str(tmp_path / "results"), disk_limit_mb=disk_mb))
    return open_engine(str(folder), device="cpu", settings=settings)


@pytest.fixture
def llama(tiny_dirs, tmp_path):
    w = random_weights()
    saes = [dict(layer=1, hook="resid_post", path=write(tmp_path / "sae.safetensors", w)),
            dict(layer=2, hook="mlp_in", output_hook="mlp_out", architecture="topk", k=4, name="tc",
                 path=write(tmp_path / "tc.safetensors", {**w, "W_enc": w["W_enc"].T}))]
    engine = sae_engine(tiny_dirs["llama"], tmp_path, saes)
    engine.set_tokens(engine.tokenize(TEXT))
    return engine, w


def test_unavailable_without_entries_or_family(tiny_dirs):
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu")
    assert engine.analyses()["sae"] == "no [[sae]] entries in config"
    with pytest.raises(UserError, match="sae is unavailable"):
        engine.analyze("sae", [1, 2], 1, {})


def test_hook_point_read_as_trained(llama):
    """The transcoder reads the MLP's normed input, the SAE the residual stream after its block."""
    from token_explorer.sae.weights import load_dictionary

    engine, _ = llama
    ids = list(engine.session.tokens[:6])
    model, family = engine.session.model, engine.session.family
    ref = run_with_hooks(model, family, ids, ["mlp_in", "resid_mid", "resid_post"])
    entries = parse_entries(engine.settings.sae)
    for index, point, wrong in ((1, ref["mlp_in"][2], ref["resid_mid"][2]), (0, ref["resid_post"][1], None)):
        result = engine.analyze("sae", ids, 5, {"entry": index})
        dictionary = load_dictionary(entries[index], D, device="cpu")
        feature = int(result.ids[0])
        expected = dictionary.feature_acts(point.float(), feature).numpy()
        np.testing.assert_allclose(result.acts[0], expected, atol=1e-4)
        if wrong is not None:
            assert not np.allclose(result.acts[0], dictionary.feature_acts(wrong.float(), feature).numpy(), atol=1e-3)
    other = [3, 4, 5]  # not the session's prefix: its own forward
    result = engine.analyze("sae", other, 2, {"entry": 0})
    x = run_with_hooks(model, family, other, ["resid_post"])["resid_post"][1]
    dictionary = load_dictionary(entries[0], D, device="cpu")
    np.testing.assert_allclose(result.acts[0], dictionary.feature_acts(x, int(result.ids[0])).numpy(), atol=1e-4)


def test_view_values_and_top_features(llama):
    engine, w = llama
    tokens = list(engine.session.tokens)
    cursor = 5
    result = engine.analyze("sae", tokens, cursor, {"entry": 0})
    assert isinstance(result, Features) and result.acts.shape == (len(result.ids), cursor + 1)
    values = result.colour({"rank": 1})
    assert values.dtype == np.float32 and np.isfinite(values).all()
    x = run_with_hooks(engine.session.model, engine.session.family, tokens[: cursor + 1], ["resid_post"])["resid_post"][1]
    feats = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])  # (T, F) by hand
    order = feats[-1].argsort(descending=True)
    top = int(order[0])
    assert int(result.ids[0]) == top and result.n_active == int((feats[-1] > 0).sum())
    np.testing.assert_allclose(values, feats[:, top].numpy(), atol=1e-4)
    assert (np.diff(result.at_cursor) <= 0).all() and len(result.ids) <= 10 and (result.at_cursor > 0).all()
    np.testing.assert_allclose(result.colour({"rank": 2}), feats[:, int(order[1])].numpy(), atol=1e-4)
    assert result.hook == "resid_post" and result.layer == 1 and result.output_hook is None
    tc = engine.analyze("sae", tokens, cursor, {"entry": 1})
    assert (tc.hook, tc.output_hook) == ("mlp_in", "mlp_out") and np.isfinite(tc.acts).all()
    with pytest.raises(UserError, match="entry must be 0..1"):
        engine.analyze("sae", tokens, cursor, {"entry": 2})


def test_labels_in_table(tiny_dirs, tmp_path):
    w = random_weights()
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(i): f"feature-{i}" for i in range(F)}))
    engine = sae_engine(tiny_dirs["llama"], tmp_path, [dict(
        layer=0, hook="resid_pre", path=write(tmp_path / "s.safetensors", w), labels=str(labels))])
    ids = engine.tokenize(TEXT)
    result = engine.analyze("sae", ids, 4, {"entry": 0})
    assert result.labels == tuple(f"feature-{int(f)}" for f in result.ids)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("\n".join(f"{i}\tt{i}" for i in range(F)))
    from token_explorer.sae.weights import load_labels
    assert load_labels(entry(layer=0, hook="resid_pre", path="x", labels=str(tsv)))[5] == "t5"


def test_cache_memory_disk_eviction_and_corrupt(tiny_dirs, tmp_path):
    w = random_weights()
    path = write(tmp_path / "s.safetensors", w)
    saes = [dict(layer=1, hook="resid_post", path=path)]
    engine = sae_engine(tiny_dirs["llama"], tmp_path, saes)
    ids = engine.tokenize(TEXT)
    first = engine.analyze("sae", ids, 4, {"entry": 0})
    assert engine.results.stats.misses == 1
    second = engine.analyze("sae", ids, 4, {"entry": 0})  # memory hit
    assert engine.results.stats.hits_memory == 1 and engine.results.stats.misses == 1
    np.testing.assert_array_equal(second.acts, first.acts)
    engine.results.close()

    again = sae_engine(tiny_dirs["llama"], tmp_path, saes)  # a new engine on the same cache folder
    from_disk = again.analyze("sae", ids, 4, {"entry": 0})
    assert again.results.stats.hits_disk == 1 and again.results.stats.misses == 0
    np.testing.assert_array_equal(from_disk.acts, first.acts)
    np.testing.assert_array_equal(from_disk.ids, first.ids)
    assert from_disk.labels == first.labels

    # a different dictionary file (same config) is a different key
    write(tmp_path / "s.safetensors", random_weights(seed=1))
    other = again.analyze("sae", ids, 4, {"entry": 0})
    assert again.results.stats.misses == 1
    assert not np.array_equal(other.ids, first.ids) or not np.allclose(other.acts, first.acts)
    write(tmp_path / "s.safetensors", w)
    again.results.close()

    # corrupt every disk record: dropped and recomputed
    import diskcache
    with diskcache.Cache(str(tmp_path / "results")) as raw:
        for key in list(raw.iterkeys()):
            raw.set(key, b"TXCACHE1garbage")
    third = sae_engine(tiny_dirs["llama"], tmp_path, saes)
    recomputed = third.analyze("sae", ids, 4, {"entry": 0})
    assert third.results.stats.corrupt == 1 and third.results.stats.misses == 1
    np.testing.assert_allclose(recomputed.acts, first.acts)

    # the memory LRU is bounded by [display] cache_size
    small = dataclasses.replace(third.settings, display=dataclasses.replace(third.settings.display, cache_size=2))
    lru = open_engine(str(tiny_dirs["llama"]), device="cpu", settings=dataclasses.replace(
        small, cache=CacheSettings(disk_limit_mb=0)))
    for cursor in range(1, 5):
        lru.analyze("sae", ids, cursor, {"entry": 0})
    assert lru.results.stats.evictions == 2


def test_cancelled_between_steps(llama):
    from token_explorer.engine import Cancelled

    engine, _ = llama
    with pytest.raises(Cancelled):
        engine.analyze("sae", list(engine.session.tokens), 3, {"entry": 0}, cancelled=lambda: True)
    assert engine.results.stats.misses == 1  # nothing cached
    engine.analyze("sae", list(engine.session.tokens), 3, {"entry": 0})


def test_missing_and_bundled_paths():
    from token_explorer.sae.weights import DATA, weights_file

    with pytest.raises(UserError, match="no such weights file"):
        weights_file(entry(layer=0, hook="resid_post", path="/nonexistent.safetensors"))
    with pytest.raises(UserError, match=re.escape(str(DATA / "nope.safetensors"))):
        weights_file(entry(layer=0, hook="resid_post", path="bundled:nope.safetensors"))


def test_offline_hub_entry_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from token_explorer.sae.weights import weights_file

    e = entry(layer=8, hook="mlp_in", output_hook="mlp_out", repo_id="mntss/skip-transcoder-Llama-3.2-1B-131k-nobos",
              filename="layer_8.safetensors", revision="new-training")
    with pytest.raises(UserError) as info:
        weights_file(e)
    message = str(info.value)
    assert "test.toml: [[sae]] #1" in message and "layer_8.safetensors" in message and "\n" not in message
