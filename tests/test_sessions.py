"""Sessions: the branch tree, open branches and cursors round-trip through a JSON file written
atomically; another model's session opens as re-tokenised text with a notice; a bad file gives one
line naming the file and key."""

from __future__ import annotations

import json
import os

import pytest

from fake_engine import FakeEngine, make_settings, settle
from token_explorer.cli import main
from token_explorer.errors import UserError
from token_explorer.sessions import OpenBranch, Session, for_model, load_session, save_session
from token_explorer.tree import Tree
from token_explorer.tui import make_app

pytestmark = pytest.mark.anyio

SIZE = (100, 30)


@pytest.fixture
def anyio_backend():
    return "asyncio"


def small_session() -> Session:
    tree = Tree()
    tree.add([1, 2, 3, 4])
    tree.add([1, 2, 5])
    tree.set_probs([1, 2, 5], [None, 0.5, 0.25])
    tree.visit([1, 2, 3])
    return Session("m", "fp", tree, ["abcd", "abe"], [OpenBranch((1, 2, 5), 1, "abe"), OpenBranch((1, 2, 3), 2, "abc")], 1)


def test_a_session_round_trips(tmp_path):
    session = small_session()
    path = tmp_path / "deep" / "s.json"
    save_session(path, session)
    again = load_session(path)
    assert again.tree.to_dict() == session.tree.to_dict()
    assert again.branches == session.branches and again.current == 1
    assert (again.model, again.model_fingerprint, again.leaves) == ("m", "fp", ["abcd", "abe"])
    assert again.tree.last_child(again.tree.locate([1, 2])) == again.tree.locate([1, 2, 3])


def test_saving_replaces_the_file_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    save_session(path, small_session())
    before = path.read_bytes()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        save_session(path, small_session())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary file left


@pytest.mark.parametrize("edit, needle", [
    (lambda d: "not json", "not a session file"),
    (lambda d: {**d, "format": "token_explorer.prompt/1"}, "not a session file"),
    (lambda d: {**d, "model": 3}, "model:"),
    (lambda d: {**d, "tree": {"nodes": [{"parent": 0, "tokens": [], "probs": [], "visited": []}]}}, "tree.nodes[0].tokens"),
    (lambda d: {**d, "leaves": ["x"]}, "leaves:"),
    (lambda d: {**d, "branches": []}, "branches:"),
    (lambda d: {**d, "branches": [{"tokens": [1, 2, 5], "cursor": 3, "text": ""}]}, "branches[0].cursor"),
    (lambda d: {**d, "branches": [{"tokens": [9], "cursor": 0, "text": ""}]}, "not a path of the tree"),
    (lambda d: {**d, "current": 5}, "current:"),
])
def test_a_bad_session_file_is_one_line_naming_the_key(tmp_path, edit, needle):
    path = tmp_path / "s.json"
    save_session(path, small_session())
    data = edit(json.loads(path.read_text()))
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(UserError) as e:
        load_session(path)
    message = str(e.value)
    assert str(path) in message and needle in message and "\n" not in message


def test_another_models_session_is_rebuilt_from_its_texts():
    session = small_session()
    same, retok = for_model(session, "fp", 10, lambda text: [])
    assert same is session and not retok
    with pytest.raises(UserError, match="outside the model's vocabulary"):
        for_model(session, "fp", 4, lambda text: [])
    other, retok = for_model(session, "other", 1000, lambda text: [ord(c) for c in text])
    assert retok
    assert sorted(other.tree.leaves()) == sorted([tuple(map(ord, "abcd")), tuple(map(ord, "abe"))])
    assert [b.tokens for b in other.branches] == [tuple(map(ord, "abe")), tuple(map(ord, "abc"))]
    assert other.current == 1 and all(b.cursor == len(b.tokens) - 1 for b in other.branches)


def test_bad_session_flag_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code = main(["--session", str(bad)])
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("token-explorer: error")]
    assert code == 2 and len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in err


async def test_the_explorer_saves_a_session_and_opens_it_again(tmp_path):
    engine = FakeEngine()
    path = tmp_path / "my-session.json"
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine, initial_text="Once upon a time",
                   session_path=path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("l", "l", "h", "j", "l")  # a fork
        await settle(pilot)
        await pilot.press("d", "l", "left_square_bracket")  # a second branch, its cursor moved
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)
        tree = app.branch_tree.to_dict()
        branches = [(b.tokens, b.cursor) for b in app.branches]
        current = app.current
    assert path.exists()

    engine2 = FakeEngine()
    app2 = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine2, initial_text="unused",
                    session_path=path, initial_session=load_session(path))
    async with app2.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app2.branch_tree.to_dict() == tree
        assert [(b.tokens, b.cursor) for b in app2.branches] == branches and app2.current == current
        assert engine2.snapshot().tokens == app2.branch.tokens
        assert any("opened my-session.json" in n.message for n in app2._notifications)
        await pilot.press("w")
        await settle(pilot)
        assert engine2.snapshot().tokens == branches[(current + 1) % 2][0]

    other = FakeEngine(fingerprint="fake-v2")
    app3 = make_app(make_settings(tmp_path / "prompts"), lambda progress: other, initial_text="unused",
                    session_path=path, initial_session=load_session(path))
    async with app3.run_test(size=SIZE) as pilot:
        await settle(pilot)
        texts = [b.text for b in load_session(path).branches]
        assert [b.tokens for b in app3.branches] == [tuple(other.tokenize(t)) for t in texts]
        assert any("another model" in n.message for n in app3._notifications)


async def test_the_session_key_opens_a_saved_session_from_the_folder(tmp_path):
    engine = FakeEngine()
    settings = make_settings(tmp_path / "prompts")
    app = make_app(settings, lambda progress: engine, initial_text="Once upon a time")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("l", "l", "S")
        await settle(pilot)
        saved = app.branch.tokens
        files = list((tmp_path / "prompts" / "sessions").glob("*.json"))
        assert len(files) == 1 and app.session_path == files[0]
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert app.branch.tokens != saved
        await pilot.press("O")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert app.branch.tokens == saved and engine.snapshot().tokens == saved


async def test_opening_a_bad_session_file_is_a_notice_and_changes_nothing(tmp_path):
    engine = FakeEngine()
    folder = tmp_path / "prompts" / "sessions"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text('{"format": "token_explorer.session/1", "model": "m"}')
    app = make_app(make_settings(tmp_path / "prompts"), lambda progress: engine, initial_text="Once upon a time")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = (app.branch.tokens, app.branch_tree.to_dict())
        await pilot.press("O")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        errors = [n.message for n in app._notifications if n.severity == "error"]
        assert len(errors) == 1 and "broken.json" in errors[0] and "model_fingerprint" in errors[0]
        assert (app.branch.tokens, app.branch_tree.to_dict()) == before


def test_a_saved_session_file_gets_the_usual_permissions(tmp_path):
    path = tmp_path / "s.json"
    save_session(path, small_session())
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
