"""Streamed reply text cut into pieces a voice can say: the first audio need not wait for the whole reply.

A piece ends at a sentence end (. ! ? followed by a space, not after a common abbreviation or inside a
number); the reply's first piece may also end at a comma or colon once it holds `first_clause_words`
words, so the first sentence of a long answer starts playing sooner. Markdown that would be read aloud
as symbols (`**`, `#`, backticks, list bullets) is taken out.
"""

from __future__ import annotations

import re

__all__ = ["SentenceSplitter", "speakable"]

_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "approx", "no", "fig", "jr", "sr"}
_END = re.compile(r"[.!?…]+[\"')\]]*\s")
_CLAUSE = re.compile(r"[,;:]\s")


def speakable(text: str) -> str:
    """Text without the markdown a TTS voice would read as symbols."""
    text = re.sub(r"`{1,3}|\*{1,3}|_{2,}|^#+\s*|^\s*[-*+]\s+", "", text, flags=re.MULTILINE)
    return re.sub(r"\s+", " ", text).strip()


class SentenceSplitter:
    """push(delta) -> finished pieces; flush() -> the rest."""

    def __init__(self, first_clause_words: int = 8) -> None:
        self.buffer = ""
        self.first_clause_words = first_clause_words
        self.pieces = 0

    def push(self, delta: str) -> list[str]:
        self.buffer += delta
        out: list[str] = []
        while True:
            cut = self._cut()
            if cut is None:
                return out
            piece, self.buffer = speakable(self.buffer[:cut]), self.buffer[cut:]
            if piece:
                out.append(piece)
                self.pieces += 1

    def flush(self) -> list[str]:
        piece, self.buffer = speakable(self.buffer), ""
        if piece:
            self.pieces += 1
            return [piece]
        return []

    def _cut(self) -> int | None:
        """Where the next piece ends: the earlier of the first sentence end and (first piece only) the first
        clause end after enough words, so the pieces do not depend on how the text was cut into deltas."""
        cut: int | None = None
        for match in _END.finditer(self.buffer):
            before = self.buffer[:match.start()]
            word = re.findall(r"[A-Za-z.]+$", before)
            if word and word[0].lower().rstrip(".") in _ABBREVIATIONS:
                continue
            if len(re.findall(r"\w+", before)) < 2 and match.group().strip() == ".":
                continue  # "1. " of a list, or a lone initial
            cut = match.end()
            break
        if self.pieces == 0 and len(self.buffer.split()) > self.first_clause_words:
            for match in _CLAUSE.finditer(self.buffer, 0, cut if cut is not None else len(self.buffer)):
                if len(self.buffer[:match.start()].split()) >= self.first_clause_words:
                    return match.end()
        return cut
