"""Saved sessions: the whole branch tree, the open branches and their cursors, in one JSON file.

A session file holds::

    {"format": "token_explorer.session/1", "model": str, "model_fingerprint": str,
     "saved_at": ISO 8601 time,
     "tree": {"clock": int, "nodes": [{"parent": int, "tokens": [int], "probs": [float|null],
                                       "visited": [int]}]},      # see tree.Tree.to_dict
     "leaves": [str],                  # the text of every leaf path, in the tree's order
     "branches": [{"tokens": [int], "cursor": int, "text": str}],
     "current": int}                   # index of the branch shown

The token ids are exact for the model with that fingerprint; with another model the texts are
re-tokenised instead. A session is written to a temporary file and renamed over the old one, so
the file is always either the old session or the new one, complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from token_explorer.errors import UserError
from token_explorer.printable import json_safe
from token_explorer.tree import Tree

FORMAT = "token_explorer.session/1"


@dataclass(frozen=True)
class OpenBranch:
    """One open branch: its exact token ids, its cursor and its text."""

    tokens: tuple[int, ...]
    cursor: int
    text: str


@dataclass
class Session:
    """Everything a session file keeps."""

    model: str
    model_fingerprint: str
    tree: Tree
    leaves: list[str]  # text of each leaf path, in ``tree.walk`` order (as read; rebuilt on saving)
    branches: list[OpenBranch]
    current: int


def save_session(path: Path, session: Session) -> None:
    """Write ``session`` to ``path`` (its folder created if needed), atomically replacing it."""
    data = {
        "format": FORMAT,
        "model": session.model,
        "model_fingerprint": session.model_fingerprint,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tree": session.tree.to_dict(),
        "leaves": list(session.leaves),
        "branches": [{"tokens": list(b.tokens), "cursor": b.cursor, "text": b.text} for b in session.branches],
        "current": session.current,
    }
    body = json_safe(json.dumps(data, ensure_ascii=False, allow_nan=False)).encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".saving-{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain new file would be (mkstemp makes it private)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_session(path: Path) -> Session:
    """Read a session file; UserError naming the file and the key that is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the session ({e.strerror or e})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a session file (not UTF-8 JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path}: not a session file (format is not {FORMAT!r})")

    def field(key: str, kind: type, what: str) -> Any:
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{path}: {key}: expected {what}")
        return value

    model = field("model", str, "a model name")
    fingerprint = field("model_fingerprint", str, "a fingerprint string")
    try:
        tree = Tree.from_dict(data.get("tree"))  # type: ignore[arg-type]
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    leaves = field("leaves", list, "a list of texts")
    if len(leaves) != len(tree.leaves()) or not all(isinstance(t, str) for t in leaves):
        raise UserError(f"{path}: leaves: expected one text per leaf of the tree ({len(tree.leaves())})")
    rows = field("branches", list, "a list of branches")
    if not rows:
        raise UserError(f"{path}: branches: expected at least one branch")
    branches = []
    for i, row in enumerate(rows):
        where = f"branches[{i}]"
        if not isinstance(row, dict):
            raise UserError(f"{path}: {where}: expected an object")
        tokens, cursor, text = row.get("tokens"), row.get("cursor"), row.get("text")
        if (not isinstance(tokens, list) or not tokens
                or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens)):
            raise UserError(f"{path}: {where}.tokens: expected a non-empty list of token ids")
        if not isinstance(cursor, int) or isinstance(cursor, bool) or not 0 <= cursor < len(tokens):
            raise UserError(f"{path}: {where}.cursor: expected a position of its tokens (0..{len(tokens) - 1})")
        if not isinstance(text, str):
            raise UserError(f"{path}: {where}.text: expected a string")
        if tree.locate(tokens) is None:
            raise UserError(f"{path}: {where}.tokens: not a path of the tree")
        branches.append(OpenBranch(tuple(tokens), cursor, text))
    current = field("current", int, "an integer")
    if not 0 <= current < len(branches):
        raise UserError(f"{path}: current: expected the index of a branch (0..{len(branches) - 1})")
    return Session(model, fingerprint, tree, list(leaves), branches, current)


def for_model(session: Session, fingerprint: str, vocab_size: int,
              tokenize: Callable[[str], Sequence[int]]) -> tuple[Session, bool]:
    """The session ready for the model with ``fingerprint``: as saved when it is the same model
    (UserError if a token id is outside ``vocab_size``), else rebuilt from its texts re-tokenised
    (probabilities and visit order are not carried over). The flag says it was re-tokenised."""
    if session.model_fingerprint == fingerprint:
        for nid, _ in session.tree.walk():
            bad = [t for t in session.tree.nodes[nid].segment if t >= vocab_size]
            if bad:
                raise UserError(f"token id {bad[0]} is outside the model's vocabulary of {vocab_size}")
        return session, False
    tree = Tree()
    for text in session.leaves:
        ids = list(tokenize(text))
        if ids:
            tree.add(ids)
    branches = []
    for b in session.branches:
        ids = tuple(int(t) for t in tokenize(b.text))
        if ids:
            tree.add(ids)
            branches.append(OpenBranch(ids, len(ids) - 1, b.text))
    if not branches:
        raise UserError("no branch of the session has any text")
    tree.visit(branches[min(session.current, len(branches) - 1)].tokens)
    current = min(session.current, len(branches) - 1)
    # leaf texts are written when the session is saved again, decoded from the new tree
    return Session(session.model, fingerprint, tree, [], branches, current), True
