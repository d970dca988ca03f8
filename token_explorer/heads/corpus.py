"""The corpus: text files read in bounded blocks and cut into token sequences of a fixed length.

Each sequence starts with the tokenizer's BOS token when it has one (so position 0 is the same
token everywhere), holds ``seq_len`` tokens and never crosses a file; a file's last, shorter piece
is kept when it has at least ``MIN_TOKENS`` tokens. Sequence ids count from 0 in corpus order, so a
second read of the same files gives the same ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import UserError

DEFAULT = Path(__file__).parent / "data" / "corpus.txt"
SUFFIXES = (".txt", ".md")
BLOCK = 1 << 16  # characters read and tokenized at a time
MIN_TOKENS = 8


def corpus_files(path: Path | None) -> list[Path]:
    """The text files of ``--corpus``: the file itself, or a folder's .txt/.md files (recursively,
    sorted); the shipped text when None. UserError naming the path when there is nothing to read."""
    if path is None:
        return [DEFAULT]
    if path.is_file():
        return [path]
    if not path.exists():
        raise UserError(f"--corpus: no such file or folder {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise UserError(f"--corpus: folder {path} holds no {' or '.join(SUFFIXES)} files")
    return files


def _blocks(path: Path) -> Iterator[str]:
    """The file's text in pieces of about BLOCK characters, each cut before a newline or space so a
    word is never split between two pieces."""
    rest = ""
    try:
        with path.open(encoding="utf-8") as f:
            while chunk := f.read(BLOCK):
                text = rest + chunk
                cut = max(text.rfind("\n"), text.rfind(" "))
                if cut <= 0:
                    cut = len(text)
                piece, rest = text[:cut], text[cut:]
                if piece:
                    yield piece
    except UnicodeDecodeError as exc:
        raise UserError(f"--corpus: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"--corpus: cannot read {path}: {exc.strerror or exc}") from None
    if rest:
        yield rest


def sequences(files: Sequence[Path], tokenizer, seq_len: int, max_sequences: int | None
              ) -> Iterator[tuple[int, list[int]]]:
    """(sequence id, token ids) of at most ``max_sequences`` sequences of ``files``."""
    bos = tokenizer.bos_token_id
    prefix = [bos] if bos is not None else []
    body = seq_len - len(prefix)
    seq_id = 0
    for path in files:
        pending: list[int] = []
        for piece in _blocks(path):
            pending += tokenizer(piece, add_special_tokens=False)["input_ids"]
            while len(pending) >= body:
                if max_sequences is not None and seq_id >= max_sequences:
                    return
                yield seq_id, prefix + pending[:body]
                pending = pending[body:]
                seq_id += 1
        if len(prefix) + len(pending) >= MIN_TOKENS:
            if max_sequences is not None and seq_id >= max_sequences:
                return
            yield seq_id, prefix + pending
            seq_id += 1
