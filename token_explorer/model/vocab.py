"""The bytes each token stands for, read from the tokenizer's vocabulary."""

from __future__ import annotations

import re
from functools import lru_cache

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-to-unicode table used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class Vocab:
    """Maps token ids to the exact bytes they add to the text."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.byte_level = self._is_byte_level(tokenizer)
        self._cache: dict[int, bytes] = {}

    @staticmethod
    def _is_byte_level(tokenizer) -> bool:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        return decoder is not None and "ByteLevel" in repr(decoder)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (special tokens as their own text)."""
        cached = self._cache.get(token_id)
        if cached is not None:
            return cached
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        if piece is None:
            data = b""
        elif token_id in self.special:
            data = piece.encode("utf-8")
        elif self.byte_level:
            table = _byte_decoder()
            data = bytes(table[ch] for ch in piece) if all(ch in table for ch in piece) else piece.encode()
        else:
            match = _BYTE_FALLBACK.match(piece)
            data = bytes([int(match.group(1), 16)]) if match else piece.replace("▁", " ").encode("utf-8")
        self._cache[token_id] = data
        return data
