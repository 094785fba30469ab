"""Character- and byte-level tokenizers for the lab: tiny, exact, and saved as plain JSON.

Characters give the smallest vocabulary for one corpus (tinyshakespeare: 65); bytes (256) take any text.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CharTokenizer", "ByteTokenizer", "Tokenizer", "tokenizer_from_dict"]


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order (as nanoGPT's prepare.py)."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = "".join(sorted(set(chars)))
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self._ids.keys())
        if unknown:
            shown = "".join(unknown[:20])
            raise ValueError(f"characters not in this model's vocabulary: {shown!r}; "
                             "use only characters from its training text")
        return [self._ids[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; decoding replaces a cut multi-byte character."""

    kind = "byte"
    vocab_size = 256

    @classmethod
    def from_text(cls, text: str) -> "ByteTokenizer":
        return cls()

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


Tokenizer = CharTokenizer | ByteTokenizer


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    kind = data.get("kind")
    if kind == "char":
        return CharTokenizer(str(data["chars"]))
    if kind == "byte":
        return ByteTokenizer()
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'char' or 'byte'")
