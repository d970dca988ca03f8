"""``token-explorer sae train`` and the trainer on a tiny model (seconds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors import safe_open

from token_explorer.cli import main
from token_explorer.config import Settings
from token_explorer.engine import open_engine
from token_explorer.model.family import family_of
from token_explorer.model.loading import load_model
from token_explorer.sae.train import TrainConfig, default_texts, train

TEXT = ("Once upon a time, there was a small town by the sea. The quick brown fox jumps over the lazy dog. "
        "Natalia sold clips to 48 of her friends in April. def main():\n    return [1, 2, 3]\n") * 6


def test_shipped_text_is_there():
    files = default_texts()
    assert files and sum(len(p.read_text(encoding="utf-8")) for p in files) > 20_000
    assert (files[0].parent / "README").is_file()


def test_training_improves_fve(tiny_dirs, tmp_path):
    lm = load_model(str(tiny_dirs["llama"]), device="cpu")
    cfg = TrainConfig(layer=1, hook="resid_post", features=64, steps=60, l1=0.5, lr=3e-3, batch=64,
                      context=32, log_every=20)
    lines = []
    result = train(lm.model, family_of(lm.model), lm.tokenizer, [TEXT], cfg, tmp_path, log=lines.append)
    assert result.final.fve > result.initial.fve + 0.1
    assert 0 < result.final.l0 < 64 and 0 <= result.final.dead <= 64
    assert any(line.startswith("step 20/60") for line in lines)
    assert result.path.name == "sae-L1-resid_post.safetensors"


def test_cli_writes_a_loadable_dictionary(tiny_dirs, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["sae", "train", "--model", str(tiny_dirs["llama"]), "--layer", "2", "--hook", "mlp_in",
               "--text", str(text), "--features", "32", "--steps", "30", "--log-every", "10",
               "--context", "32", "--batch", "64", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    path = out / "sae-L2-mlp_in.safetensors"
    assert path.is_file() and (out / "sae-L2-mlp_in.toml").is_file()
    assert "step 10/30" in captured.err and "FVE" in captured.err and "dead" in captured.err
    assert captured.out.startswith("[[sae]]") and 'hook = "mlp_in"' in captured.out
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == {"W_enc", "b_enc", "W_dec", "b_dec"}
        assert f.get_slice("W_enc").get_shape() == [64, 32] and f.metadata()["hook"] == "mlp_in"

    import tomllib
    raw = tomllib.loads(captured.out)["sae"]
    settings = dataclasses.replace(Settings(), sae=tuple(raw))
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", settings=settings)
    ids = engine.tokenize("Once upon a time")
    result = engine.analyze("sae", ids, len(ids) - 1, {"entry": 0})
    assert result.acts.shape[1] == len(ids) and torch.isfinite(torch.tensor(result.acts)).all()  # cursor at the end


@pytest.mark.parametrize("args, message", [
    (["--layer", "9"], "--layer must be 0..2"),
    (["--layer", "0", "--features", "0"], "--features must be at least 1"),
    (["--layer", "0", "--text", "/nonexistent.txt"], "no such file"),
])
def test_cli_errors(tiny_dirs, capsys, args, message):
    assert main(["sae", "train", "--model", str(tiny_dirs["llama"]), *args]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("token-explorer: error: ") and message in last
