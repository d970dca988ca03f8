"""prompts.py: saved prompt files round-trip, never overwrite, and fail with one line naming the file."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from token_explorer import prompts
from token_explorer.errors import UserError
from token_explorer.prompts import FORMAT, list_prompts, load_prompt, read_text_prompt, save_prompt


def save(directory: Path, text: str = "Once upon a time, there was a", **kw) -> Path:
    return save_prompt(directory, text, kw.pop("token_ids", [1, 2, 3]), "smol", "fp-123", **kw)


def test_round_trip(tmp_path):
    folder = tmp_path / "new" / "prompts"  # created on save
    path = save(folder, "Héllo [bold] wörld\n", token_ids=np.array([7, 0, 49151]))
    assert path.parent == folder and path.suffix == ".json"
    assert path.name.startswith("héllo-bold-wörld-")
    loaded = load_prompt(path)
    assert loaded.text == "Héllo [bold] wörld\n"
    assert loaded.token_ids == (7, 0, 49151)
    assert (loaded.model, loaded.model_fingerprint, loaded.path) == ("smol", "fp-123", path)
    assert abs(loaded.saved_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == FORMAT
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp file left behind


def test_never_overwrites(tmp_path):
    first = save(tmp_path, "one", name="story")
    second = save(tmp_path, "two", name="story")
    third = save(tmp_path, "three", name="story.json")
    assert [first.name, second.name, third.name] == ["story.json", "story-2.json", "story-3.json"]
    assert [load_prompt(p).text for p in (first, second, third)] == ["one", "two", "three"]


def test_unsafe_names_stay_in_the_folder(tmp_path):
    path = save(tmp_path, name="../../etc/passwd")
    assert path.parent == tmp_path and path.name == "etc-passwd.json"
    assert save(tmp_path, name="!!!").name == "prompt.json"
    assert save(tmp_path, "???").name.startswith("prompt-")


def test_failed_write_leaves_nothing_and_keeps_others(tmp_path, monkeypatch):
    keep = save(tmp_path, "keep me", name="story")
    before = keep.read_bytes()

    def crash(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prompts.os, "fsync", crash)
    with pytest.raises(UserError, match=rf"^{tmp_path}: cannot save prompt: No space left on device$"):
        save(tmp_path, "new", name="story")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story.json"]
    assert keep.read_bytes() == before


def test_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(prompts.os, "link", no_link)
    first = save(tmp_path, "one", name="story")
    second = save(tmp_path, "two", name="story")
    assert (first.name, second.name) == ("story.json", "story-2.json")
    assert load_prompt(first).text == "one" and load_prompt(second).text == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story-2.json", "story.json"]


def test_bad_token_ids_are_refused_on_save(tmp_path):
    for ids in ([], [1, -1], [1.5], [True]):
        with pytest.raises(ValueError):
            save(tmp_path, token_ids=ids)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def good_record(**changes) -> dict:
    record = {
        "format": FORMAT,
        "text": "hi",
        "token_ids": [1, 2],
        "model": "smol",
        "model_fingerprint": "fp",
        "saved_at": "2024-05-01T12:00:00+00:00",
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "not JSON (Expecting property name enclosed in double quotes at line 1)"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[1, 2]", "not a saved prompt (format None, expected 'token_explorer.prompt/1')"),
        (json.dumps(good_record(format="other/1")).encode(), "not a saved prompt (format 'other/1', expected"),
        (json.dumps(good_record(token_ids=[1, -2])).encode(), "token_ids must be a non-empty list"),
        (json.dumps(good_record(token_ids=[1, 2.0])).encode(), "token_ids must be a non-empty list"),
        (json.dumps(good_record(token_ids=[True])).encode(), "token_ids must be a non-empty list"),
        (json.dumps(good_record(token_ids=[])).encode(), "token_ids must be a non-empty list"),
        (json.dumps(good_record(token_ids="1 2")).encode(), "token_ids must be a non-empty list"),
        (json.dumps(good_record(text=None)).encode(), "text must be a string, got null"),
        (json.dumps(good_record(model=3)).encode(), "model must be a string, got 3"),
        (json.dumps(good_record(saved_at="yesterday")).encode(), 'saved_at is not an ISO 8601 time: "yesterday"'),
    ],
)
def test_load_errors_name_the_file(tmp_path, content, expected):
    path = tmp_path / "p.json"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_prompt(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}")


def test_load_missing_and_unreadable(tmp_path):
    with pytest.raises(UserError, match=r"gone\.json: no such prompt file$"):
        load_prompt(tmp_path / "gone.json")
    with pytest.raises(UserError, match=r": cannot read: "):
        load_prompt(tmp_path)


def test_list_newest_first_and_reports_broken(tmp_path):
    assert list_prompts(tmp_path / "missing") == ([], [])
    for name, when in [("old", "2023-01-01T00:00:00+00:00"), ("new", "2025-01-01T00:00:00+00:00"),
                       ("mid", "2024-01-01T09:00:00+09:00")]:
        (tmp_path / f"{name}.json").write_text(json.dumps(good_record(text=name, saved_at=when)))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / ".saving-x.tmp").write_text("{")
    (tmp_path / "notes.txt").write_text("ignored")
    found, problems = list_prompts(tmp_path)
    assert [p.text for p in found] == ["new", "mid", "old"]
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'broken.json'}: not JSON")


def test_saved_prompts_list(tmp_path):
    a = save(tmp_path, "alpha")
    found, problems = list_prompts(tmp_path)
    assert problems == [] and [p.path for p in found] == [a]


def test_read_text_prompt(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("\ufeffThe café [x]\nsecond line\n".encode("utf-8"))
    assert read_text_prompt(path) == "The café [x]\nsecond line"
    path.write_bytes(b"ends with two\n\n")
    assert read_text_prompt(path) == "ends with two\n"
    path.write_bytes(b"windows\r\n")
    assert read_text_prompt(path) == "windows"
    path.write_bytes(b"no newline")
    assert read_text_prompt(path) == "no newline"


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "input file is empty"), (b" \n\t\n", "input file is empty"),
     (b"caf\xe9", "not UTF-8 text (bad byte at offset 3)")],
)
def test_read_text_prompt_errors(tmp_path, content, expected):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    with pytest.raises(UserError) as info:
        read_text_prompt(path)
    assert str(info.value) == f"{path}: {expected}"


def test_read_text_prompt_missing(tmp_path):
    with pytest.raises(UserError, match=r"nothere\.txt: no such input file$"):
        read_text_prompt(tmp_path / "nothere.txt")
    with pytest.raises(UserError, match=r": cannot read: "):
        read_text_prompt(tmp_path)
