"""``token-explorer trace diff``: schema-valid output equal to an independent recomputation, and
refusals of mismatched traces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from token_explorer.cli import main
from token_explorer.trace.sidecars import read_activations

SCHEMA = json.loads((Path(__file__).parent / "data" / "token_heatmap" / "activation-diff.schema.json").read_text())
PROMPT = "Once upon a time"


def trace(tmp: Path, model: Path, name: str, *extra: str) -> Path:
    out = tmp / name
    code = main(["trace", "-p", PROMPT, "-m", str(model), "--out", str(out), "--quiet", "--no-plots",
                 "--max-new-tokens", "4", "--capture-full-activations", "--activation-layers", "0,2", *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def traces(tiny_dirs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    return {
        "greedy": trace(tmp, tiny_dirs["llama"], "greedy", "--temperature", "0"),
        "penalized": trace(tmp, tiny_dirs["llama"], "penalized", "--temperature", "0", "--repetition-penalty", "3"),
        "other_model": trace(tmp, tiny_dirs["qwen2"], "qwen", "--temperature", "0"),
        "other_prompt": trace(tmp, tiny_dirs["llama"], "prompt", "--temperature", "0", "-p", "The quick brown fox"),
        "tmp": tmp,
    }


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("token-explorer: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_diff_of_two_traces(capsys, traces, tmp_path, metric):
    out = tmp_path / "d"
    assert main(["trace", "diff", str(traces["greedy"]), str(traces["penalized"] / "trace.json"),
                 "--metric", metric, "--out", str(out)]) == 0
    doc = json.loads((out / "activation_diff.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    png = (out / "activation_delta.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    a = json.loads((traces["greedy"] / "trace.json").read_text())
    b = json.loads((traces["penalized"] / "trace.json").read_text())
    assert doc["alignment"]["mode"] == "token_id"
    aligned = [i for i in range(4) if a["steps"][i]["token_id"] == b["steps"][i]["token_id"]]
    assert [s["token_id_a"] for s in doc["steps"]] == [a["steps"][i]["token_id"] for i in aligned]
    assert len(doc["alignment"]["mismatches"]) == 4 - len(aligned)
    for out_step, i in zip(doc["steps"], aligned):
        va = read_activations(traces["greedy"] / a["steps"][i]["activation_sidecar_ref"])
        vb = read_activations(traces["penalized"] / b["steps"][i]["activation_sidecar_ref"])
        for d in out_step["delta"]:
            row = [0, 2].index(d["layer"])
            x = np.array(va["layers"][row]["submodule_tensors"][d["submodule"]])
            y = np.array(vb["layers"][row]["submodule_tensors"][d["submodule"]])
            assert d["l2"] == pytest.approx(float(np.sqrt(((x - y) ** 2).sum())), rel=1e-6, abs=1e-9)
            cos = float(x @ y / np.sqrt((x @ x) * (y @ y)))
            assert d["cosine"] == pytest.approx(cos, abs=1e-6)
            biggest = max(range(len(x)), key=lambda n: abs(x[n] - y[n]))
            assert d["top_changed_neurons"][0]["index"] == biggest


def test_diff_of_a_trace_with_itself_is_zero(capsys, traces, tmp_path):
    assert main(["trace", "diff", str(traces["greedy"]), str(traces["greedy"]), "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "activation_diff.json").read_text())
    assert len(doc["steps"]) == 4 and doc["alignment"]["mismatches"] == []
    assert all(d["l2"] == 0 and d["cosine"] == pytest.approx(1.0) for s in doc["steps"] for d in s["delta"])


def test_diff_refuses_different_prompts(capsys, traces, tmp_path):
    code = main(["trace", "diff", str(traces["greedy"]), str(traces["other_prompt"]), "--out", str(tmp_path / "x")])
    assert code == 2 and "different prompts" in error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_diff_refuses_traces_with_no_aligned_steps(capsys, traces, tmp_path):
    # another model and tokenizer fingerprint: aligned by text offset; rewrite B's offsets so none match
    b = traces["tmp"] / "shifted"
    shutil.copytree(traces["other_model"], b)
    doc = json.loads((b / "trace.json").read_text())
    for s in doc["steps"]:
        s["decoded_text_offset"] += 1000
    (b / "trace.json").write_text(json.dumps(doc))
    code = main(["trace", "diff", str(traces["greedy"]), str(b), "--out", str(tmp_path / "x")])
    assert code == 2 and "no aligned steps" in error_line(capsys)


def test_diff_needs_activation_sidecars(capsys, traces, tiny_dirs, tmp_path):
    plain = tmp_path / "plain"
    assert main(["trace", "-p", PROMPT, "-m", str(tiny_dirs["llama"]), "--out", str(plain), "--quiet",
                 "--no-plots", "--max-new-tokens", "2"]) == 0
    code = main(["trace", "diff", str(plain), str(traces["greedy"]), "--out", str(tmp_path / "x")])
    assert code == 2 and "--capture-full-activations" in error_line(capsys)
    code = main(["trace", "diff", str(tmp_path / "nowhere"), str(traces["greedy"]), "--out", str(tmp_path / "x")])
    assert code == 2 and "no trace.json" in error_line(capsys)
