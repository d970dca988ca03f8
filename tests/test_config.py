"""config.py: defaults, the documented config.toml, and one-line errors naming file and key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from token_explorer.config import (
    CacheSettings,
    Settings,
    load_settings,
    user_cache_dir,
)
from token_explorer.errors import UserError

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'config.toml'}: ")
    return message.split(": ", 1)[1]


def test_no_file_is_defaults():
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.model.name == "bundled"
    assert settings.engine.top_k >= settings.display.tokens_to_show


def test_repo_config_is_the_defaults_and_documents_every_key():
    assert load_settings(REPO_CONFIG) == Settings()
    data = tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8"))
    text = REPO_CONFIG.read_text(encoding="utf-8")
    for section in ("model", "prompt", "display", "engine", "cache"):
        for f in dataclasses.fields(type(getattr(Settings(), section))):
            if f.default is None:  # TOML has no null: these are shown commented out
                assert f"# {f.name} = " in text, f"[{section}] {f.name} not documented"
            else:
                assert f.name in data[section], f"[{section}] {f.name} missing from config.toml"
    assert "[keymap]" in text and "# [[sae]]" in text


def test_values_are_read_and_typed(tmp_path):
    settings = load_settings(
        write(
            tmp_path,
            """
[model]
name = "some/model"
device = "cuda:1"
dtype = "bfloat16"
revision = "abc123"
[engine]
temperature = 2          # an int is fine for a float
top_k = 40
[display]
tokens_to_show = 40
show_cursor = false
[cache]
directory = "~/tecache"
disk_limit_mb = 0
[keymap]
append = "right,l"
quit = "q"
[[sae]]
name = "a"
layer = 3
[[sae]]
name = "b"
""",
        )
    )
    assert settings.model == dataclasses.replace(
        Settings().model, name="some/model", device="cuda:1", dtype="bfloat16", revision="abc123"
    )
    assert settings.engine.temperature == 2.0 and isinstance(settings.engine.temperature, float)
    assert settings.display.show_cursor is False
    assert settings.keymap == (("append", "right,l"), ("quit", "q"))
    assert settings.keys["append"] == "right,l"
    assert settings.sae == ({"name": "a", "layer": 3}, {"name": "b"})
    assert settings.cache.path == Path("~/tecache").expanduser()
    assert settings.prompt == Settings().prompt  # untouched sections keep defaults


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[display]\ntokens_to_show = "thirty"', '[display] tokens_to_show must be an integer, got "thirty"'),
        ("[display]\ntokens_to_show = true", "[display] tokens_to_show must be an integer, got true"),
        ("[display]\ntokens_to_show = 3.5", "[display] tokens_to_show must be an integer, got 3.5"),
        ("[display]\ncolour = 1", "unknown key [display] colour"),
        ("[foo]\nx = 1", "unknown section [foo]"),
        ("foo = 1", "unknown top-level key foo"),
        ('model = "x"', '[model] must be a table, got "x"'),
        ("[engine]\ntemperature = 0", "[engine] temperature must be between 0.001 and 1000, got 0.0"),
        ("[engine]\ntemperature = inf", "[engine] temperature must be a finite number, got inf"),
        ("[engine]\ntemperature = -inf", "[engine] temperature must be a finite number, got -inf"),
        ("[engine]\ntemperature = nan", "[engine] temperature must be a finite number, got nan"),
        ("[engine]\ntemperature = 1e9", "[engine] temperature must be between 0.001 and 1000, got 1000000000.0"),
        ("[engine]\ntop_k = 100000", "[engine] top_k must be between 1 and 1000, got 100000"),
        ("[engine]\ntemperature = false", "[engine] temperature must be a finite number, got false"),
        ("[engine]\nlens = 1", "[engine] lens must be true or false, got 1"),
        ("[engine]\nig_steps = 0", "[engine] ig_steps must be between 1 and 4096, got 0"),
        ('[model]\ndevice = "gpu"', '[model] device must be auto, cpu, cuda, cuda:N or mps, got "gpu"'),
        ('[model]\ndtype = "fp8"', '[model] dtype must be one of float32, bfloat16, float16, got "fp8"'),
        ("[model]\nname = 5", "[model] name must be a string, got 5"),
        ('[model]\nname = "  "', "[model] name must not be empty"),
        ("[prompt]\nmax_prompts = 0", "[prompt] max_prompts must be between 1 and 1000, got 0"),
        ("[cache]\ndisk_limit_mb = -1", "[cache] disk_limit_mb must be between 0 and 10000000, got -1"),
        ("[cache]\ndirectory = 3", "[cache] directory must be a string, got 3"),
        ("[store]\nbudget_mib = -1", "[store] budget_mib must be between 0 and 1000000, got -1"),
        ('[store]\nbudget_mib = "1G"', '[store] budget_mib must be an integer, got "1G"'),
        ("[store]\nbudget = 5", "unknown key [store] budget"),
        ("[engine]\ntop_k = 10", "[engine] top_k (10) must be >= [display] tokens_to_show (30)"),
        ('[keymap]\nappend = ""', '[keymap] append must be a non-empty string of keys, got ""'),
        ("[keymap]\nappend = 1", "[keymap] append must be a non-empty string of keys, got 1"),
        ("[sae]\nname = 'a'", 'sae must be an array of tables ([[sae]]), got {"name": "a"}'),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, expected):
    assert error_for(tmp_path, text) == expected


def test_toml_syntax_error_has_line(tmp_path):
    message = error_for(tmp_path, "[model]\nname = \n")
    assert message.startswith("invalid TOML:") and "line 2" in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(UserError, match=r"nope\.toml: no such config file$"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(UserError, match=r": cannot read: "):
        load_settings(tmp_path)  # a folder
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[model]\nname = "caf\xe9"\n')
    with pytest.raises(UserError, match=r"latin1\.toml: not UTF-8 text$"):
        load_settings(bad)


def test_overrides_are_checked():
    settings = Settings().with_overrides("model", name="other", device=None, dtype="bfloat16")
    assert settings.model.name == "other"
    assert settings.model.device == "auto"  # None skipped
    assert settings.model.dtype == "bfloat16"
    assert settings.display == Settings().display
    with pytest.raises(UserError, match=r'^command line: \[model\] dtype must be one of .*got "half"$'):
        Settings().with_overrides("model", dtype="half")
    with pytest.raises(UserError, match=r"top_k \(5\) must be >= \[display\] tokens_to_show"):
        Settings().with_overrides("engine", top_k=5)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().model.name = "x"  # type: ignore[misc]


def test_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKEN_EXPLORER_CACHE_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "own"
    assert CacheSettings().path == tmp_path / "own" / "results"
    monkeypatch.delenv("TOKEN_EXPLORER_CACHE_DIR")
    assert user_cache_dir() == tmp_path / "xdg" / "token_explorer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_dir().name == "token_explorer"


def test_prompt_directory_is_relative_to_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert Settings().prompt.path.resolve() == tmp_path / "prompts"


def test_config_toml_lists_exactly_the_binding_ids():
    import re
    from pathlib import Path

    from token_explorer.tui.bindings import BINDING_IDS

    text = (Path(__file__).parent.parent / "config.toml").read_text()
    listed = re.search(r"# Binding ids: (.*?)\.\n", text, re.S).group(1)
    ids = {word.strip(" #\n") for word in listed.replace("\n#", " ").split(",")}
    assert ids == set(BINDING_IDS)
