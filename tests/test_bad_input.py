"""Bad input and faults, row by row (issue 10): one clear line naming the file, key or value, a
non-zero exit, a notice in the explorer, nothing lost or left behind on disk, and no control
character from outside reaching the terminal live."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_engine import FakeEngine, make_settings, screen_text, settle
from token_explorer.cache import ResultCache
from token_explorer.cli import main
from token_explorer.errors import UserError
from token_explorer.model import loading
from token_explorer.printable import printable
from token_explorer.prompts import list_prompts, save_prompt

ROOT = Path(__file__).parent.parent
CONTROLS = {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)} | {"\u202e"}
HOSTILE = "a\x1b[2Jb\x1b]0;pwned\x07c\x08d\x9b31m\u202ee"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> str:
    """The single error line of a failed command, checked: exit 2, no traceback, names ``needles``."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("token-explorer: error")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def cli(*argv: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The real command in a fresh process."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "token_explorer", *argv], env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, **kwargs)


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def no_live_controls(text: str) -> bool:
    return not (set(text) - {"\n"}) & CONTROLS


# ---------------------------------------------------------------- the one gate to the terminal


def test_printable_makes_every_control_visible_and_keeps_text():
    shown = printable(HOSTILE)
    assert no_live_controls(shown)
    assert shown == "a<0x1B>[2Jb<0x1B>]0;pwned<0x07>c<0x08>d<0x9B>31m<U+202E>e"
    assert printable("naïve — 日本語 ✓ [bold]") == "naïve — 日本語 ✓ [bold]"
    assert printable("a\tb\r\nc") == "a⇥b␍↵c" and printable("a\nb", multiline=True) == "a\nb"


def test_peek_table_shows_control_characters_inert(capsys, tiny_dirs):
    code, out, err = run(capsys, "peek", "-p", HOSTILE, "--model", str(tiny_dirs["llama"]), "--device", "cpu")
    assert code == 0, err
    assert no_live_controls(out) and no_live_controls(err)
    assert "<0x1B>" in out  # the ESC byte is there, as a mark


def test_peek_json_is_exact_and_strict(capsys, tiny_dirs):
    ascii_hostile = "a\x1b[2Jb\x1b]0;pwned\x07c\x08d\x7fe"  # one token per character's bytes
    code, out, _ = run(capsys, "peek", "-p", ascii_hostile, "--model", str(tiny_dirs["gpt2"]), "--json",
                       "--device", "cpu")
    assert code == 0
    assert no_live_controls(out)  # escaped inside strings
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert "".join(t["text"] for t in doc["tokens"]) == ascii_hostile  # exact text, not the marks


def test_peek_json_writes_null_for_a_number_that_is_not_finite():
    from token_explorer.peek import dumps

    text = dumps({"energy": float("-inf"), "z": [1.0, float("nan")], "name": "x\x85y"})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"energy": None, "z": [1.0, None],
                                                                          "name": "x\x85y"}
    assert "\x85" not in text


@pytest.mark.anyio
async def test_prompt_browser_shows_hostile_file_text_model_and_name_inert(tmp_path):
    prompts = tmp_path / "prompts"
    save_prompt(prompts, HOSTILE, [104, 105], "model\x1b]0;title\x07", "fake-v1", name="evil")
    (prompts / "evil.json").rename(prompts / "evil\x1b[2J.json")
    engine = FakeEngine()
    app = _app(tmp_path, engine)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        shown = screen_text(app)
        assert "pwned" in shown and "<0x1B>" in shown and no_live_controls(shown)
        await pilot.press("enter")
        await settle(pilot)
        assert len(app.branches) == 2 and no_live_controls(screen_text(app))
        assert any("evil<0x1B>[2J.json" in n for n in notices(app)) and no_live_controls("".join(notices(app)))


@pytest.mark.anyio
async def test_model_name_and_load_error_shown_inert(tmp_path):
    engine = FakeEngine(name="fake\x1b[2Jmodel\x07")
    app = _app(tmp_path, engine)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert "fake<0x1B>[2Jmodel<0x07>" in shown and no_live_controls(shown)

    def fail(_progress):
        raise UserError("cannot load model 'x\x1b]0;t\x07'")

    app = _app(tmp_path, fail)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot)
        assert "cannot load model" in screen_text(app) and no_live_controls(screen_text(app))


def _app(tmp_path, engine, **settings):
    from token_explorer.tui import make_app

    factory = engine if callable(engine) and not isinstance(engine, FakeEngine) else (lambda _progress: engine)
    return make_app(make_settings(tmp_path / "prompts", **settings), factory)


# ---------------------------------------------------------------- models


def test_hub_ids_with_a_dot_are_hub_ids_and_paths_are_paths(capsys, tmp_path):
    for spec in ("Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.1-8B"):
        assert not loading._looks_like_path(spec)
    for spec in ("./here", "../up", "/abs/x", "~/models/x", "a/b/c", "x..y"):
        assert loading._looks_like_path(spec)
    code, _, err = run(capsys, "peek", "-p", "hi", "--model", "Qwen/Qwen2.5-0.5B", "--device", "cpu")
    one_line_error(code, err, "Qwen/Qwen2.5-0.5B", "Hugging Face", "--model /path/to/folder")
    assert "no such folder" not in err
    code, _, err = run(capsys, "peek", "-p", "hi", "--model", str(tmp_path / "nothing.here"))
    one_line_error(code, err, "no such folder")


def _hub_cache(root: Path, repo: str, commit: str, source: Path) -> None:
    """A Hugging Face cache entry for ``repo`` at ``commit`` holding the files of ``source``."""
    base = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, base / "snapshots" / commit, dirs_exist_ok=True)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)


def test_hub_model_from_the_cache_is_fingerprinted_by_its_commit(tmp_path, tiny_dirs):
    hub = tmp_path / "hub"
    repo = "tiny-org/Tiny2.5-0.5B"
    env = {"HF_HUB_CACHE": str(hub), "TOKEN_EXPLORER_CACHE_DIR": str(tmp_path / "cache")}
    fingerprints = []
    for commit, family in (("a" * 40, "llama"), ("b" * 40, "qwen2")):  # a newer copy under the same id
        _hub_cache(hub, repo, commit, tiny_dirs[family])
        done = cli("peek", "-p", "hi", "--model", repo, "--json", "--device", "cpu", env=env)
        assert done.returncode == 0, done.stderr
        fingerprints.append(json.loads(done.stdout)["model_fingerprint"])
    assert fingerprints == [f"hub:{repo}@{'a' * 40}:float32", f"hub:{repo}@{'b' * 40}:float32"]


def test_weights_digest_tells_two_models_apart(tiny_dirs):
    a = loading.load_model(str(tiny_dirs["llama"]), device="cpu").model
    b = loading.load_model(str(tiny_dirs["qwen2"]), device="cpu").model
    assert loading.weights_digest(a) == loading.weights_digest(a) != loading.weights_digest(b)


@pytest.fixture
def fake_bundled(monkeypatch, tmp_path, tiny_dirs):
    """``bundled`` as a small GGUF stand-in whose conversion copies the tiny Llama; the models folder
    in ``tmp_path/models``. Returns the folder the conversion makes and the list of conversions run."""
    gguf = tmp_path / "pkg" / "Fake.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    calls = []

    def write(_gguf, folder, progress):
        calls.append(folder)
        progress("converting…", 0.5)
        shutil.copytree(tiny_dirs["llama"], folder, dirs_exist_ok=True)

    monkeypatch.setattr(loading, "bundled_gguf", lambda: gguf)
    monkeypatch.setattr(loading, "_write_converted", write)
    monkeypatch.setenv("TOKEN_EXPLORER_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models" / f"{gguf.stem}-{loading._file_tag(gguf)}", calls


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_half_there_converted_folder_is_rebuilt(fake_bundled):
    fake_bundled, calls = fake_bundled
    fake_bundled.mkdir(parents=True)
    (fake_bundled / "config.json").write_text("{}")  # only config.json: a conversion that never finished
    loaded = loading.load_model("bundled", device="cpu")
    assert loaded.model.config.model_type == "llama"
    assert (fake_bundled / "token_explorer.json").is_file() and leftovers(fake_bundled.parent) == []
    loading.load_model("bundled", device="cpu")  # the second start converts nothing
    assert len(calls) == 1


def test_temp_folder_of_a_live_pid_is_removed_by_the_lock_holder(fake_bundled):
    fake_bundled, _ = fake_bundled
    fake_bundled.parent.mkdir(parents=True)
    stale = fake_bundled.parent / f".{fake_bundled.name}.tmp-1"  # pid 1 is alive, but converts nothing
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    loading.load_model("bundled", device="cpu")
    assert leftovers(fake_bundled.parent) == []


def test_models_folder_that_cannot_be_written_is_one_line(capsys, fake_bundled, monkeypatch, tmp_path):
    _, calls = fake_bundled
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TOKEN_EXPLORER_MODELS_DIR", str(blocker / "models"))
    code, _, err = run(capsys, "peek", "-p", "hi", "--device", "cpu")
    one_line_error(code, err, str(blocker / "models"), "TOKEN_EXPLORER_MODELS_DIR")
    assert calls == []  # refused before any conversion work

    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setenv("TOKEN_EXPLORER_MODELS_DIR", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run(capsys, "peek", "-p", "hi", "--device", "cpu")
    one_line_error(code, err, str(tmp_path / "models"), "Read-only file system", "writable")
    assert calls == []


def test_truncated_converted_weights_name_the_folder_and_the_fix(capsys, fake_bundled):
    fake_bundled, _ = fake_bundled
    loading.load_model("bundled", device="cpu")
    weights = fake_bundled / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as f:
        f.truncate(size // 2)
    code, _, err = run(capsys, "peek", "-p", "hi", "--device", "cpu")
    one_line_error(code, err, str(fake_bundled), "delete that folder", "rebuilt")
    marker = json.loads((fake_bundled / "token_explorer.json").read_text())
    del marker["weights"]  # a folder converted before sizes were recorded: the loader's error is caught
    (fake_bundled / "token_explorer.json").write_text(json.dumps(marker))
    code, _, err = run(capsys, "peek", "-p", "hi", "--device", "cpu")
    one_line_error(code, err, str(fake_bundled), "delete that folder")
    assert weights.stat().st_size == size // 2  # nothing deleted behind the user's back


# ---------------------------------------------------------------- config, keymap, prompts


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("keymap", "needles"), [
    ('append = "x"', ["'x'", "append", "save"]),
    ('append = "left,l"', ["'left'", "append", "pop"]),
    ('append = "notakey,,"', ["append", "'notakey'", "not a key name"]),
    ('append = "l,,"', ["append", "empty key name"]),
    ('nothing = "y"', ["unknown binding id 'nothing'"]),
])
def test_bad_keymap_stops_before_the_explorer_with_one_line(capsys, tmp_path, keymap, needles):
    config = write_config(tmp_path, f"[keymap]\n{keymap}\n")
    code, _, err = run(capsys, "--config", config, "--model", str(tmp_path / "never-loaded"))
    one_line_error(code, err, "config.toml", "[keymap]", *needles)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0.0", "1e9"])
def test_temperature_must_be_finite_and_in_range(capsys, tmp_path, tiny_dirs, value):
    config = write_config(tmp_path, f"[engine]\ntemperature = {value}\n")
    code, out, err = run(capsys, "peek", "-p", "hi", "--json", "--config", config, "--model", str(tiny_dirs["llama"]))
    one_line_error(code, err, "config.toml", "temperature")
    assert out == ""


def test_whitespace_prompt_is_refused_like_a_whitespace_file(capsys, tmp_path, tiny_dirs):
    code, _, err = run(capsys, "peek", "-p", "   \n\t", "--model", str(tiny_dirs["llama"]))
    one_line_error(code, err, "--prompt", "whitespace")
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n")
    code, _, err = run(capsys, "peek", "-i", str(blank), "--model", str(tiny_dirs["llama"]))
    one_line_error(code, err, "blank.txt", "empty")


def test_saves_killed_mid_way_leave_no_temp_file(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    script = ("import os, sys, time\n"
              "os.fsync = lambda fd: time.sleep(600)\n"  # hold the save between write and rename
              "from token_explorer.prompts import save_prompt\n"
              "save_prompt(sys.argv[1], 'text', [1, 2], 'm', 'f')\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(prompts)], cwd=ROOT)
    try:
        for _ in range(600):
            if list(prompts.glob(".saving-*")):
                break
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert list(prompts.glob(".saving-*.tmp"))  # what SIGKILL leaves
    old = prompts / ".saving-oldstyle.tmp"
    old.write_bytes(b"{}")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    mine = prompts / f".saving-{os.getpid()}-live.tmp"  # a save in progress: left alone
    mine.write_bytes(b"{")
    prompts_found, problems = list_prompts(prompts)
    assert (prompts_found, problems) == ([], [])
    assert sorted(p.name for p in prompts.iterdir()) == [mine.name]


@pytest.mark.anyio
async def test_saved_prompt_with_ids_outside_the_vocabulary_opens_no_branch(tmp_path, tiny_dirs):
    from token_explorer.engine import open_engine
    from token_explorer.tui import make_app

    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=30)
    prompts = tmp_path / "prompts"
    save_prompt(prompts, "x", [3, 999_999], engine.info.name, engine.info.fingerprint, name="bad-ids")
    app = make_app(make_settings(prompts), lambda _progress: engine, initial_text="Once upon")
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert len(app.branches) == 1
        assert any("999999 is outside the model's vocabulary" in n for n in notices(app))


# ---------------------------------------------------------------- the result cache


def test_corrupt_or_truncated_disk_cache_is_moved_aside_and_rebuilt(tmp_path):
    import numpy as np

    for damage in ("garbage", "truncated"):
        folder = tmp_path / damage / "results"
        with ResultCache(folder, 4, 8) as cache:
            for i in range(40):
                cache.put(f"k{i}", np.full(500, i, np.float32))
        db = folder / "cache.db"
        if damage == "garbage":
            db.write_bytes(b"not sqlite" * 500)
        else:
            with db.open("r+b") as f:
                f.truncate(8192)
        said: list[str] = []
        with ResultCache(folder, 4, 8, report=said.append) as cache:
            assert cache.on_disk and len(said) == 1
            assert str(folder) in said[0] and "corrupt" in said[0]
            cache.put("new", np.arange(3))
        with ResultCache(folder, 4, 8) as cache:  # the rebuilt cache works from disk
            np.testing.assert_array_equal(cache.get("new"), np.arange(3))
        aside = [p for p in folder.parent.iterdir() if p.name.startswith("results.corrupt-")]
        assert len(aside) == 1 and (aside[0] / "cache.db").is_file()  # kept, not deleted


def test_read_only_disk_cache_says_once_it_is_memory_only(tmp_path, monkeypatch):
    import diskcache

    def read_only(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(diskcache, "Cache", read_only)
    said: list[str] = []
    cache = ResultCache(tmp_path / "results", 4, 8, report=said.append)
    assert not cache.on_disk
    cache.put("k", 1)
    assert cache.get("k") == 1
    assert said == [f"result cache {tmp_path / 'results'} unusable (attempt to write a readonly database): "
                    "results are kept in memory only"]


def test_cache_notice_reaches_peek_stderr(capsys, tmp_path, tiny_dirs):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "cache.db").write_bytes(b"not sqlite" * 500)
    config = write_config(tmp_path, f'[cache]\ndirectory = "{folder}"\n')
    code, _, err = run(capsys, "peek", "-p", "hi", "--config", config, "--model", str(tiny_dirs["llama"]))
    assert code == 0
    assert [line for line in err.splitlines() if "result cache" in line and "corrupt" in line]


# ---------------------------------------------------------------- exit codes and quitting


@pytest.mark.anyio
async def test_explorer_load_failure_then_q_returns_non_zero(tmp_path):
    def fail(_progress):
        raise UserError("cannot load model 'nope'")

    app = _app(tmp_path, fail)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("q")
    assert app.return_code == 1


def test_explorer_cli_exit_code_and_line_after_a_load_failure(capsys, monkeypatch, tmp_path):
    from token_explorer.tui.app import TokenExplorerApp

    original = TokenExplorerApp.run

    def headless(self, **kwargs):
        async def press_q(pilot):
            await settle(pilot)
            await pilot.press("q")

        return original(self, headless=True, auto_pilot=press_q, **kwargs)

    monkeypatch.setattr(TokenExplorerApp, "run", headless)
    code, _, err = run(capsys, "--model", str(tmp_path / "no-such-model"))
    one_line_error(code, err, "no-such-model", "no such folder")


def test_peek_into_a_closed_pipe_exits_quietly(tiny_dirs):
    child = subprocess.Popen([sys.executable, "-m", "token_explorer", "peek", "-p", "Once upon a time " * 12,
                              "--model", str(tiny_dirs["gpt2"]), "--json", "--lens", "--top-k", "30",
                              "--device", "cpu"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    head = child.stdout.read(200)  # like `| head -c 200`
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=300) == 141  # 128 + SIGPIPE, as a shell reports a program killed by it
    assert head.startswith(b"{") and err == ""


def test_quit_while_the_model_loads_returns_at_once(tmp_path):
    """ctrl+q while the factory is still running: the process ends without waiting for it, with a
    clear line and a non-zero code, and nothing printed raw after the screen closed."""
    marker = tmp_path / "factory-finished"
    script = f"""
import sys, time
from pathlib import Path
from fake_engine import settle
from token_explorer import cli
from token_explorer.tui.app import TokenExplorerApp

def slow(settings, progress=None, **kwargs):
    progress("converting…", 0.3)
    time.sleep(30)
    print("RAW PROGRESS BAR", file=sys.stderr)
    Path({str(marker)!r}).write_text("done")

cli._engine = slow
original = TokenExplorerApp.run

def headless(self, **kwargs):
    async def quit_soon(pilot):
        await pilot.pause(0.5)
        await pilot.press("ctrl+q")
    return original(self, headless=True, auto_pilot=quit_soon, **kwargs)

TokenExplorerApp.run = headless
sys.exit(cli.main(["--model", "anything"]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    assert not marker.exists()  # it did not wait for the loader
    assert done.returncode == 130, done.stderr
    assert "RAW PROGRESS BAR" not in done.stderr and "Traceback" not in done.stderr
    assert "quit before the model finished loading" in done.stderr


# ---------------------------------------------------------------- long prompts


def test_long_prefill_reports_progress_and_holds_its_captures_once(monkeypatch, tiny_dirs):
    """A prefill longer than a chunk runs chunk by chunk with progress, sizes the captures and the
    KV cache once for the whole prompt (no doubling slack), and still matches a full recompute."""
    import torch

    from test_engine import check_against_full
    from token_explorer.engine import open_engine
    from token_explorer.model import session

    monkeypatch.setattr(session, "PREFILL_CHUNK", 8)
    engine = open_engine(str(tiny_dirs["llama"]), device="cpu", top_k=20)
    ids = (engine.tokenize("Once upon a time, there was a small town by the sea. ") * 3)[:45]
    calls = []
    snap = engine.set_tokens(ids, lambda done, total: calls.append((done, total)))
    assert calls == [(8, 45), (16, 45), (24, 45), (32, 45), (40, 45), (45, 45)]
    s = engine.session
    assert s.resid.data.shape[1] == 45 and s.queries.data.shape[2] == 45
    assert {layer._keys.data.shape[2] for layer in s.cache.layers} == {45}
    check_against_full(engine, snap)
    with torch.no_grad():
        hidden = engine.loaded.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    for layer in range(len(hidden) - 1):  # the residual entering each block
        torch.testing.assert_close(s.resid.view()[layer], hidden[layer][0], atol=1e-4, rtol=1e-4)
    check_against_full(engine, engine.append(int(snap.next.top_ids[0])))  # grows again after the prefill
