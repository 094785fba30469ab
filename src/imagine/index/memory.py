"""Opt-in memory of past conversations: each turn summarised and indexed; relevant ones recalled later.

Memories live in their own index (`$IMAGINE_HOME/memory/`), one chunk per remembered turn: a one-line
summary by the same model plus the question, so a later question finds it by meaning or by its words.
`ask --memory` / `chat --memory` recall before answering, put the recalled memories in front of the
model as numbered context ([m1], [m2]) and list which ones were used; `imagine memory forget` removes
them. Nothing is remembered without the flag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ImagineError, InputError
from .chunking import snippet
from .index import Index
from .store import Chunk, Hit

if TYPE_CHECKING:
    from ..client import Client
    from ..parts import Message
    from ..response import Response

__all__ = ["MIN_SIMILARITY", "Memory", "Recalled"]

MIN_SIMILARITY = 0.35
KIND = "memory"
SUMMARY_PROMPT = ("Summarise this exchange in one short sentence that says what was asked and the answer.\n\n"
                  "User: {question}\nAssistant: {answer}")


@dataclass(frozen=True)
class Recalled:
    """A memory put in front of the model: its label ([m1]), the chunk, and how close it was."""

    label: str
    chunk: Chunk
    similarity: float

    @property
    def id(self) -> str:
        return self.chunk.source.removeprefix("memory:")


class Memory:
    """The memory of one imagine home."""

    def __init__(self, client: "Client | None" = None) -> None:
        from ..client import default_client

        self.client = client or default_client()
        root = self.client.settings.home / "memory"
        self.index = Index("memory", self.client, create=True, root=root, backend="lance")

    def remember(self, question: str, answer: str, *, log_id: str | None = None,
                 conversation_id: str | None = None, model: str | None = None, summarize: bool = True) -> Chunk:
        """Summarise one turn (with `model`; the first sentences of the answer when that fails) and index it."""
        if not question.strip() or not answer.strip():
            raise InputError("a memory needs both the question and the answer")
        summary = self._summary(question, answer, model) if summarize else ""
        summary = summary or snippet(answer, 200)
        when = time.strftime("%Y-%m-%d %H:%M")
        text = f"{summary}\nAsked: {snippet(question, 300)}"
        memory_id = log_id or f"{int(time.time() * 1000)}"
        meta: dict[str, Any] = {"log_id": log_id, "conversation_id": conversation_id, "when": when,
                                "summary": summary, "question": snippet(question, 300), "answer": snippet(answer, 300)}
        return self.index.add_text(f"memory:{memory_id}", text, kind=KIND, meta=meta)

    def _summary(self, question: str, answer: str, model: str | None) -> str:
        from ..tasks import ask

        prompt = SUMMARY_PROMPT.format(question=snippet(question, 1500), answer=snippet(answer, 3000))
        try:
            text = ask(prompt, model, client=self.client, max_tokens=60).text()
        except ImagineError:
            return ""
        return snippet(text.strip().splitlines()[0] if text.strip() else "", 300)

    def recall(self, query: str, k: int = 3, min_similarity: float = MIN_SIMILARITY) -> list[Recalled]:
        if not query.strip() or not self.index.sources():
            return []
        hits: list[Hit] = self.index.search(query, k, mode="vector")
        close = [h for h in hits if (h.similarity or 0.0) >= min_similarity]
        return [Recalled(f"m{n}", h.chunk, h.similarity or 0.0) for n, h in enumerate(close, start=1)]

    def list(self, limit: int = 1000) -> list[Chunk]:
        chunks = self.index.store.list_chunks({"kind": KIND}, limit)
        return sorted(chunks, key=lambda c: str(c.meta.get("when", "")))

    def forget(self, ids: Sequence[str] = (), *, everything: bool = False) -> int:
        """Forget memories by id (as `memory list` shows them), or all of them; returns how many."""
        known = {c.source.removeprefix("memory:"): c.source for c in self.list()}
        targets = list(known.values()) if everything else []
        for memory_id in ids:
            if memory_id not in known:
                raise InputError(f"no memory with id {memory_id!r}", hint="see `imagine memory list`")
            targets.append(known[memory_id])
        for source in targets:
            self.index.store.delete_source(source)
        return len(targets)

    def close(self) -> None:
        self.index.close()


def context(recalled: Sequence[Recalled]) -> str:
    """The system-prompt block that hands recalled memories to the model."""
    lines = [f"[{r.label}] ({r.chunk.meta.get('when', '')}) The person said: \"{r.chunk.meta.get('question', '')}\" "
             f"You answered: \"{r.chunk.meta.get('answer', '')}\" Summary: {r.chunk.meta.get('summary') or r.chunk.text}"
             for r in recalled]
    return ("Things you remember from earlier conversations with this person (use them only if they help, and "
            "say which you used, like [m1]):\n" + "\n".join(lines))


def remember_response(memory: Memory, question: str, response: "Response", model: str | None = None) -> Chunk | None:
    """Remember a finished turn; a failed or empty reply is not remembered."""
    try:
        answer = response.text()
    except ImagineError:
        return None
    if not answer.strip():
        return None
    return memory.remember(question, answer, log_id=response.id,
                           conversation_id=response.conversation_id, model=model)
