"""Turning token bytes into honest display text.

Byte-level tokenizers split multi-byte UTF-8 characters across tokens. Decoding each token on its
own would show U+FFFD; here a character is given to the token that completes it only when all of its
bytes lie in that token, and bytes of a character split across tokens are shown as ``<0xNN>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .printable import printable

_VISIBLE = {" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"}


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts, 0 for a byte that cannot lead."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _hex(data: bytes) -> str:
    return "".join(f"<0x{b:02X}>" for b in data)


def piece_text(data: bytes) -> str:
    """Display text of one token's bytes: complete characters decoded, stray bytes as ``<0xNN>``."""
    out: list[str] = []
    i = 0
    while i < len(data):
        n = _utf8_length(data[i])
        chunk = data[i : i + n] if n else b""
        try:
            if not n or len(chunk) < n:
                raise UnicodeDecodeError("utf-8", data, i, i + 1, "incomplete")
            out.append(chunk.decode("utf-8"))
            i += n
        except UnicodeDecodeError:
            out.append(_hex(data[i : i + 1]))
            i += 1
    return "".join(out)


def pieces_text(pieces: Sequence[bytes]) -> list[str]:
    """Display text of each token in a sequence, one string per token."""
    return [piece_text(p) for p in pieces]


def visible(text: str) -> str:
    """Token text for display: spaces, newlines, tabs and carriage returns drawn as visible marks,
    other control characters made inert by :func:`~token_explorer.printable.printable`."""
    return printable("".join(_VISIBLE.get(ch, ch) for ch in text))
