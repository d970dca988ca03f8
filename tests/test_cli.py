"""The command line: peek output, flags, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json

import pytest

from token_explorer.cli import build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("token-explorer: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_peek_json_schema(capsys, tiny_dirs):
    code, out, _ = run(capsys, "peek", "--prompt", "Once upon a time", "--model", str(tiny_dirs["gpt2"]),
                       "--top-k", "4", "--lens", "--json", "--device", "cpu")
    assert code == 0
    doc = json.loads(out)
    assert doc["schema"] == "token_explorer.peek/1"
    assert doc["model"] == "gpt2"
    assert [t["id"] for t in doc["tokens"]] == [p["id"] for p in doc["positions"]]
    first, second = doc["positions"][0], doc["positions"][1]
    assert first["prob"] is None and first["rank"] is None
    assert 0 < second["prob"] <= 1 and second["rank"] >= 1
    assert len(second["top_k"]) == 4
    assert [c["prob"] for c in second["top_k"]] == sorted((c["prob"] for c in second["top_k"]), reverse=True)
    lens = second["lens"]
    assert [entry["layer"] for entry in lens] == list(range(4))  # 3 blocks + embeddings
    assert lens[-1]["prob"] == pytest.approx(second["prob"], abs=1e-5)
    assert lens[-1]["top_k"][0]["id"] == second["top_k"][0]["id"]


def test_peek_table(capsys, tiny_dirs):
    code, out, _ = run(capsys, "peek", "-p", "Once upon", "--model", str(tiny_dirs["llama"]), "--lens")
    assert code == 0
    assert "p(tok|prefix)" in out and "lens p(tok) by layer" in out


def test_missing_model_is_one_line(capsys):
    code, _, err = run(capsys, "peek", "-p", "hi", "--model", "./no/such/model")
    assert_one_line_error(code, err, "./no/such/model")


def test_unreachable_hub_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, "peek", "-p", "hi", "--model", "nobody/nothing-here")
    assert_one_line_error(code, err, "nobody/nothing-here", "--model /path/to/folder")


def test_unreadable_config_is_one_line(capsys, tmp_path, tiny_dirs):
    bad = tmp_path / "bad.toml"
    bad.write_text("[display]\ntokens_to_show = 'thirty'\n")
    code, _, err = run(capsys, "peek", "-p", "hi", "--config", str(bad), "--model", str(tiny_dirs["llama"]))
    assert_one_line_error(code, err, "bad.toml", "tokens_to_show")
    code, _, err = run(capsys, "peek", "-p", "hi", "--config", str(tmp_path / "missing.toml"))
    assert_one_line_error(code, err, "missing.toml")


def test_empty_prompt_is_one_line(capsys, tiny_dirs, tmp_path):
    code, _, err = run(capsys, "peek", "-p", "", "--model", str(tiny_dirs["llama"]))
    assert_one_line_error(code, err, "empty")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run(capsys, "peek", "-i", str(empty), "--model", str(tiny_dirs["llama"]))
    assert_one_line_error(code, err, "empty.txt")


def test_too_long_prompt_is_one_line(capsys, tiny_dirs):
    code, _, err = run(capsys, "peek", "-p", "word " * 400, "--model", str(tiny_dirs["llama"]))
    assert_one_line_error(code, err, "context of 256")


def test_explore_flags_exist():
    args = build_parser("explore").parse_args(
        ["--input", "f.txt", "--bf16", "--layer_prob", "--config", "c.toml", "--model", "m"])
    assert (args.input, args.bf16, args.layer_prob, args.config, args.model) == (
        "f.txt", True, True, "c.toml", "m")
    assert build_parser("explore").parse_args(["-i", "x"]).input == "x"
    args = build_parser("explore").parse_args(["--seed", "3", "--session", "s.json"])  # the sample key's seed
    assert (args.seed, args.session) == (3, "s.json")
    with pytest.raises(SystemExit):
        build_parser("explore").parse_args(["--seed", "x"])


def _option_strings(parser) -> set[str]:
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action.choices, dict):  # subcommands
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def test_every_flag_in_the_readme_exists():
    """A documented flag that does not exist is a bug (the earlier tools had several)."""
    import re
    from pathlib import Path

    from token_explorer.heads.cli import build_parser as heads_parser
    from token_explorer.sae.cli import build_parser as sae_parser
    from token_explorer.trace.cli import build_diff_parser, build_parser as trace_parser

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    known = _option_strings(build_parser("explore")) | _option_strings(build_parser("peek"))
    known |= _option_strings(sae_parser())
    known |= _option_strings(trace_parser()) | _option_strings(build_diff_parser())
    known |= _option_strings(heads_parser())
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", readme)) - {"--no-deps"}  # pip's
    assert flags, "the README documents flags"
    assert sorted(flags - known) == []
