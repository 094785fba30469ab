"""Answers from an index, with numbered citations that resolve to file + page / box / timestamp.

Retrieval first; the model then sees only the numbered sources and is told to cite them as [1]. When no
retrieved chunk is close enough to the question (cosine to the query below `min_similarity`), the answer
says the index holds nothing relevant, and no model is asked: a small model handed unrelated text
invents an answer from it, which is exactly what citations are meant to prevent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .chunking import snippet
from .store import Hit

if TYPE_CHECKING:
    from ..response import Response
    from .index import Index

__all__ = ["Answer", "MIN_SIMILARITY", "answer", "sources_prompt"]

MIN_SIMILARITY = 0.3  # MiniLM cosine: related passages score ~0.4-0.7, unrelated ones under ~0.2
SYSTEM = ("Answer the question using only the numbered sources. After each fact, cite its source like [1]. "
          "If the sources do not contain the answer, say that they do not.")
_CITE = re.compile(r"\[(\d{1,2})\]")


@dataclass
class Answer:
    """The retrieved sources (numbered from 1) and the model's streamed answer; `response` is None when
    nothing relevant was found."""

    question: str
    index: str
    sources: list[Hit] = field(default_factory=list)
    response: "Response | None" = None

    @property
    def found(self) -> bool:
        return self.response is not None

    def text(self) -> str:
        if self.response is None:
            return f"The index {self.index!r} holds nothing relevant to this question."
        return self.response.text()

    def cited(self) -> list[int]:
        """Source numbers the answer cites that exist (a model may cite [7] of five sources)."""
        if self.response is None:
            return []
        seen = {int(n) for n in _CITE.findall(self.text())}
        return sorted(n for n in seen if 1 <= n <= len(self.sources))

    def sources_text(self) -> str:
        return "\n".join(f"[{n}] {hit.chunk.citation()}: {snippet(hit.chunk.text)}"
                         for n, hit in enumerate(self.sources, start=1))

    def payload(self) -> dict[str, Any]:
        return {"question": self.question, "index": self.index, "answer": self.text(), "found": self.found,
                "cited": self.cited(), "log_id": getattr(self.response, "log_id", None),
                "sources": [{"n": n, "citation": h.chunk.citation(), "source": h.chunk.source, "kind": h.chunk.kind,
                             "page": h.chunk.page, "box": h.chunk.box, "start": h.chunk.start, "end": h.chunk.end,
                             "scene": h.chunk.scene, "text": h.chunk.text, "similarity": h.similarity}
                            for n, h in enumerate(self.sources, start=1)]}


def sources_prompt(question: str, hits: list[Hit]) -> str:
    """Sources first, the question last, then the instruction again: small local models follow what they
    read last, and answer the question they were asked instead of continuing the sources."""
    blocks = [f"[{n}] ({hit.chunk.citation()})\n{hit.chunk.text.strip()}" for n, hit in enumerate(hits, start=1)]
    return ("Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}\n\n"
            "Answer in one or two sentences, using only the sources above, and cite them like [1].")


def answer(index: "Index", question: str, model: str | None = None, *, k: int = 5,
           min_similarity: float = MIN_SIMILARITY, **ask_kwargs: Any) -> Answer:
    """Retrieve from `index`, then ask `model` (any engine or policy) to answer citing the sources."""
    from ..tasks import ask

    # Fused order, but only chunks close to the question or found by its words next to a close one.
    sources = [h for h in index.search(question, k) if h.similarity is None or h.similarity >= min_similarity]
    result = Answer(question, index.name)
    if not any(h.similarity is not None for h in sources):  # no chunk is close: nothing relevant
        return result
    result.sources = sources
    options = dict(ask_kwargs.pop("options", None) or {})
    result.response = ask(sources_prompt(question, result.sources), model, system=SYSTEM, options=options,
                          client=index.client, **ask_kwargs)
    return result
