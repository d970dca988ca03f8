"""The one gate between outside text and the terminal.

Text from a model (token text, model names), a file (prompt text, file names) or a config reaches
a widget, a notice or ``peek``'s table only through :func:`printable`, which makes every character
that could drive the terminal visible and inert: C0 controls (ESC, BEL, backspace...), DEL, C1
controls (a lone U+009B is a CSI to some terminals) and the bidirectional overrides that reorder
what is shown. An escape sequence such as ``ESC [2J`` or an OSC title then shows as its characters
and does nothing.
"""

from __future__ import annotations

_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
_MARKS = {"\t": "⇥", "\r": "␍", "\n": "↵"}


def _needs_mark(code: int) -> bool:
    return code < 0x20 or 0x7F <= code < 0xA0 or code in _BIDI


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` safe to show: tab as ``⇥``, CR as ``␍``, newline as ``↵`` (kept when ``multiline``),
    other control bytes as ``<0xNN>`` and bidirectional overrides as ``<U+NNNN>``."""
    text = str(text)
    if not any(_needs_mark(ord(ch)) for ch in text):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if not _needs_mark(code) or (multiline and ch == "\n"):
            out.append(ch)
        elif ch in _MARKS:
            out.append(_MARKS[ch])
        elif code in _BIDI:
            out.append(f"<U+{code:04X}>")
        else:
            out.append(f"<0x{code:02X}>")
    return "".join(out)


def json_safe(document: str) -> str:
    """JSON text with DEL and C1 controls escaped as ``\\u00NN`` (``json.dumps`` with
    ``ensure_ascii=False`` leaves them raw); the same document to any JSON parser."""
    if not any(0x7F <= ord(ch) < 0xA0 or ord(ch) in _BIDI for ch in document):
        return document
    return "".join(f"\\u{ord(ch):04x}" if 0x7F <= ord(ch) < 0xA0 or ord(ch) in _BIDI else ch for ch in document)
