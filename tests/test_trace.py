"""``token-explorer trace`` on tiny models: the files validate against the shipped Token-Heatmap
schemas, and each capture agrees with an independent computation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from token_explorer.cli import main
from token_explorer.model.family import family_of
from token_explorer.model.hooks import run_with_hooks
from token_explorer.model.unembed import Unembed
from token_explorer.sampling import SamplingParams
from token_explorer.trace import sidecars
from token_explorer.printable import printable
from token_explorer.trace.run import CaptureConfig, Tracer

SCHEMAS = Path(__file__).parent / "data" / "token_heatmap"
PROMPT = "Once upon a time, there was"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def run_cli(capsys, *argv):
    code = main(["trace", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("token-explorer: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0]


def check_folder(out: Path) -> dict:
    """Validate every file of a trace folder; return trace.json."""
    doc = json.loads((out / "trace.json").read_text())
    validator("trace.schema.json").validate(doc)
    assert [s["step"] for s in doc["steps"]] == list(range(len(doc["steps"])))
    for step in doc["steps"]:
        for source in ("raw", "processed"):
            dist = step[source]
            assert len(dist["candidates"]) == dist["k_used"]
            probs = [c["prob"] for c in dist["candidates"]]
            assert probs == sorted(probs, reverse=True)
            assert dist["top_mass_used"] == pytest.approx(sum(probs), abs=1e-5)
    for ref in (s.get("attention_sidecar_ref") for s in doc["steps"]):
        if ref:
            side = sidecars.read_attention(out / ref)
            validator("attention-sidecar.schema.json").validate(side)
            for layer in side["layers"]:
                assert np.allclose(np.sum(layer["attention_weights"], axis=-1), 1.0, atol=1e-5)
    for ref in (s.get("activation_sidecar_ref") for s in doc["steps"]):
        if ref:
            validator("activation-sidecar.schema.json").validate(sidecars.read_activations(out / ref))
    if "activation_metadata" in doc:  # the projected activation subset passes the activation schema too
        subset = {"schema_version": "1.0.0", "activation_metadata": doc["activation_metadata"],
                  "steps": [{k: s[k] for k in ("step", "token_id", "decoded_text_offset", "activations")}
                            for s in doc["steps"]]}
        validator("activation.schema.json").validate(subset)
    rows = list(csv.DictReader((out / "trace.csv").open(encoding="utf-8")))
    assert [int(r["step"]) for r in rows] == [s["step"] for s in doc["steps"]]
    assert [float(r["raw_entropy"]) for r in rows] == pytest.approx([s["raw"]["entropy"] for s in doc["steps"]])
    return doc


def test_trace_every_capture_and_plot(capsys, tiny_dirs, tmp_path):
    out = tmp_path / "t"
    code, stdout, err = run_cli(
        capsys, "--prompt", PROMPT, "--model", str(tiny_dirs["llama"]), "--device", "cpu", "--out", str(out),
        "--max-new-tokens", "6", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "20", "--seed", "3",
        "--repetition-penalty", "1.2", "--no-repeat-ngram-size", "2", "--block-eos-steps", "2",
        "--block-whitespace-steps", "2", "--min-k", "2", "--max-k", "16",
        "--capture-logit-lens", "--lens-top-k", "3", "--capture-full-attention", "--attention-heads", "0,3",
        "--capture-full-activations", "--activation-submodules", "resid_pre,resid_post,mlp_out,o_proj", "--dla")
    assert code == 0, err
    doc = check_folder(out)
    steps = doc["steps"]
    assert 1 <= len(steps) <= 6
    assert all(len(s["logit_lens"]) == 3 and len(s["attention"]) == 3 for s in steps)
    assert len(steps[0]["activations"]) == 3 * 4
    assert len(doc["direct_logit_attribution"]["steps"]) == len(steps)
    assert doc["metadata"]["generation_params"]["sample_top_k"] == 20
    for s in steps:  # top-k 20 then top-p: the processed distribution keeps at most 20 tokens
        assert s["processed"]["k_used"] <= 16 and s["processed"]["selected_prob"] > 0
        assert s["processed"]["selected_rank"] <= 20
    pngs = ["adaptive_heatmap", "entropy", "selected_probability", "raw_vs_processed", "final_step_token_probs",
            "selected_rank_heatmap", "attention_layer_head_grid", "prompt_attention_heatmap",
            "prompt_attention_head0", "prompt_attention_head3"]
    for name in pngs:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000, name
    stats = np.load(out / "attention_stats.npz", allow_pickle=False)
    assert stats["effective_span"].shape == (len(steps), 3, 4)
    np.testing.assert_allclose(stats["effective_span"], np.exp(stats["entropy"]), rtol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["llama"])
    ids = [s["selected"]["token_id"] for s in steps]
    assert (out / "generated.txt").read_text() == tokenizer.decode(ids, skip_special_tokens=True)
    assert "trace" in err and "steps" in err  # the summary line; the progress lines went to stderr too
    params = json.loads((out / "trace_params.json").read_text())
    assert params["sampling"]["repetition_penalty"] == 1.2 and params["sampling"]["seed"] == 3


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_trace_validates_for_each_family(capsys, tiny_dirs, tmp_path, family):
    out = tmp_path / family
    code, _, err = run_cli(capsys, "-p", PROMPT, "-m", str(tiny_dirs[family]), "--out", str(out), "--quiet",
                           "--max-new-tokens", "4", "--temperature", "0", "--capture-logit-lens",
                           "--capture-attention", "--attention-layers", "0,2", "--capture-activations", "--dla",
                           "--no-plots")
    assert code == 0, err
    assert err == ""  # --quiet
    doc = check_folder(out)
    assert doc["attention_metadata"]["captured_layers"] == [0, 2]
    assert not list(out.glob("*.png"))


def test_plain_trace_has_no_capture_blocks(capsys, tiny_dirs, tmp_path):
    out = tmp_path / "plain"
    code, stdout, err = run_cli(capsys, "-p", PROMPT, "-m", str(tiny_dirs["llama"]), "--out", str(out),
                                "--max-new-tokens", "3", "--temperature", "0", "--no-plots")
    assert code == 0, err
    doc = check_folder(out)
    assert not {"attention_metadata", "activation_metadata", "direct_logit_attribution"} & set(doc)
    assert all("logit_lens" not in s and "attention" not in s for s in doc["steps"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["llama"])
    generated = tokenizer.decode([s["token_id"] for s in doc["steps"]], skip_special_tokens=True)
    assert stdout.strip("\n") == printable(generated, multiline=True).strip("\n")


# -- captures against independent computations ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models(tiny_dirs):
    loaded = {}
    for family, folder in tiny_dirs.items():
        loaded[family] = (AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder))
    return loaded


def trace_of(model, tokenizer, config: CaptureConfig, n: int = 5, params: SamplingParams | None = None, **kw):
    ids = tokenizer(PROMPT)["input_ids"]
    result = Tracer(model, tokenizer, config).run(ids, params or SamplingParams(temperature=0), n, **kw)
    return ids, result


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_greedy_trace_equals_generate(tiny_models, family):
    model, tokenizer = tiny_models[family]
    params = SamplingParams(temperature=0, min_new_tokens=10)
    ids, result = trace_of(model, tokenizer, CaptureConfig(), n=10, params=params)
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=10, min_new_tokens=10,
                             pad_token_id=0)[0, len(ids):].tolist()
    assert result.generated_ids == ref
    assert all(s.raw.selected_rank == 1 for s in result.steps)


def full_forward(model, ids: list[int], **kw):
    with torch.no_grad():
        return model(torch.tensor([ids]), **kw)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_dla_parts_plus_error_equal_the_logit(tiny_models, family):
    model, tokenizer = tiny_models[family]
    ids, result = trace_of(model, tokenizer, CaptureConfig(dla=True))
    context = list(ids)
    for step in result.steps:
        logit = float(full_forward(model, context).logits[0, -1, step.token_id])  # no cache: independent
        d = step.dla
        parts = d.embed + d.attn.sum() + d.mlp.sum() + d.bias
        assert d.total_logit == pytest.approx(logit, abs=1e-4)
        assert parts == pytest.approx(logit, abs=1e-4)  # the fixed-scale split is exact for these norms
        assert parts + d.error == pytest.approx(d.total_logit, abs=1e-9)
        context.append(step.token_id)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lens_last_layer_is_the_model_and_ranks_are_right(tiny_models, family):
    model, tokenizer = tiny_models[family]
    ids, result = trace_of(model, tokenizer, CaptureConfig(lens_layers=(0, 2), lens_top_k=4),
                           params=SamplingParams(temperature=1.0), seed=0)
    context = list(ids)
    for step in result.steps:
        resid = run_with_hooks(model, family_of(model), context, ["resid_post"])["resid_post"][:, -1]  # (L, d)
        for j, layer in enumerate((0, 2)):
            logits = Unembed(model, family_of(model))(resid[layer])
            probs = torch.softmax(logits.double(), -1)
            assert step.lens.selected_prob[j] == pytest.approx(float(probs[step.token_id]), abs=1e-5)
            assert step.lens.selected_rank[j] == 1 + int((logits > logits[step.token_id]).sum())
            assert step.lens.top_ids[j][0] == int(probs.argmax())
        # the last block's lens is the model's own distribution
        assert step.lens.selected_prob[1] == pytest.approx(step.raw.selected_prob, abs=1e-5)
        context.append(step.token_id)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_attention_rows_equal_eager_attention(tiny_models, tiny_dirs, family):
    model, tokenizer = tiny_models[family]
    ids, result = trace_of(model, tokenizer, CaptureConfig(attention_layers=(0, 1, 2), full_attention=True,
                                                           attention_top_k=3))
    eager = AutoModelForCausalLM.from_pretrained(tiny_dirs[family], attn_implementation="eager").eval()
    context = list(ids)
    for step in result.steps:
        want = torch.stack([a[0, :, -1] for a in full_forward(eager, context, output_attentions=True).attentions])
        np.testing.assert_allclose(step.attention.weights, want.numpy(), atol=2e-5)
        p = want.double().clamp_min(1e-300)
        np.testing.assert_allclose(step.attention.entropy, -(want.double() * p.log()).sum(-1).numpy(), atol=1e-4)
        np.testing.assert_allclose(step.attention.bos_weight, want[..., 0].numpy(), atol=2e-5)
        np.testing.assert_allclose(step.attention.self_weight, want[..., -1].numpy(), atol=2e-5)
        assert (step.attention.top_positions[..., 0] == want.argmax(-1).numpy()).all()
        context.append(step.token_id)
    att = full_forward(eager, ids, output_attentions=True).attentions[-1][0]  # (H, T, T)
    np.testing.assert_allclose(result.prompt_attention, att.numpy(), atol=2e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_activations_equal_hooked_forward(tiny_models, family):
    model, tokenizer = tiny_models[family]
    subs = ("resid_pre", "resid_post", "mlp_out", "o_proj")
    ids, result = trace_of(model, tokenizer, CaptureConfig(activation_layers=(0, 2), activation_submodules=subs,
                                                           activation_top_k=5, full_activations=True))
    context = list(ids)
    for step in result.steps:
        hooked = run_with_hooks(model, family_of(model), context, ["resid_pre", "resid_post", "mlp_out", "attn_out"])
        names = {"resid_pre": "resid_pre", "resid_post": "resid_post", "mlp_out": "mlp_out", "o_proj": "attn_out"}
        for j, layer in enumerate((0, 2)):
            for s, sub in enumerate(subs):
                want = hooked[names[sub]][layer, -1].numpy()
                np.testing.assert_allclose(step.activations.vectors[j, s], want, atol=1e-5)
                order = np.argsort(-np.abs(want), kind="stable")[:5]
                np.testing.assert_allclose(np.abs(step.activations.top_value[j, s]), np.abs(want[order]), atol=1e-5)
                assert step.activations.l2_norm[j, s] == pytest.approx(float(np.linalg.norm(want)), rel=1e-5)
        context.append(step.token_id)


def test_seeded_sampling_is_reproducible_and_stops(tiny_models):
    model, tokenizer = tiny_models["llama"]
    params = SamplingParams(temperature=1.5, top_k=30)
    runs = [trace_of(model, tokenizer, CaptureConfig(), n=8, params=params, seed=11)[1] for _ in range(2)]
    assert runs[0].generated_ids == runs[1].generated_ids
    assert all(s.processed.selected_prob > 0 for s in runs[0].steps)
    text = tokenizer.decode(runs[0].generated_ids[:3])
    stopped = trace_of(model, tokenizer, CaptureConfig(), n=8, params=params, seed=11, stop=[text[-2:]])[1]
    assert stopped.stop_reason == "stop_string" and len(stopped.steps) <= 3


def test_eos_stops_unless_banned(tiny_models):
    model, tokenizer = tiny_models["llama"]
    eos = tokenizer.eos_token_id
    model.generation_config.eos_token_id = eos
    with torch.no_grad():  # make EOS the model's favourite everywhere
        model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.lm_head.out_features))
        model.lm_head.bias[eos] = 1e4
    try:
        _, free = trace_of(model, tokenizer, CaptureConfig(), n=5)
        params = SamplingParams(temperature=0, block_eos_steps=3)
        _, banned = trace_of(model, tokenizer, CaptureConfig(), n=5, params=params)
    finally:
        model.lm_head.bias = None
    assert free.stop_reason == "eos" and free.generated_ids == [eos]
    assert banned.generated_ids[:3] != [eos] * 3 and eos not in banned.generated_ids[:3]
    assert banned.generated_ids[3] == eos and banned.stop_reason == "eos"
    assert banned.steps[0].raw.selected_rank > 1  # the raw distribution still favours EOS


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, needle", [
    (["--min-k", "9", "--max-k", "4"], "--min-k"),
    (["--capture-logit-lens", "--lens-layers", "0,7"], "--lens-layers"),
    (["--chat"], "chat template"),
    (["--system", "hi"], "--system"),
    (["--mass-threshold", "0"], "--mass-threshold"),
    (["--top-p", "1.5"], "top-p"),
    (["--activation-submodules", "resid_mid", "--capture-activations"], "resid_mid"),
    (["--capture-attention", "--attention-heads", "9"], "--attention-heads"),
])
def test_bad_input_is_one_line(capsys, tiny_dirs, tmp_path, flags, needle):
    code, _, err = run_cli(capsys, "-p", PROMPT, "-m", str(tiny_dirs["llama"]), "--out", str(tmp_path / "x"),
                           "--quiet", *flags)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x" / "trace.json").exists()


def test_trace_never_imports_textual():
    import subprocess
    import sys

    code = "import sys, token_explorer.trace.cli, token_explorer.trace.output; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m == "textual" or m.startswith("textual.")]


def test_prompt_from_a_file(capsys, tiny_dirs, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT, encoding="utf-8")
    out = tmp_path / "f"
    code, _, err = run_cli(capsys, "-i", str(prompt), "-m", str(tiny_dirs["gpt2"]), "--out", str(out), "--quiet",
                           "--no-plots", "--max-new-tokens", "2")
    assert code == 0, err
    doc = check_folder(out)
    assert doc["metadata"]["prompt"] == PROMPT
    assert doc["tokens"]["prompt_token_ids"] == AutoTokenizer.from_pretrained(tiny_dirs["gpt2"])(PROMPT)["input_ids"]
    code, _, err = run_cli(capsys, "-i", str(tmp_path / "missing.txt"), "-m", str(tiny_dirs["gpt2"]),
                           "--out", str(out / "x"), "--quiet")
    assert_one_line_error(code, err, "missing.txt")
