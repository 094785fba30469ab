"""What the model gets beside the words: pictures the person shows, and tools it may call by voice.

A picture goes to the model as it is when the model takes images (a vision-language model: the `see`
path); otherwise the loop reads the text in it (`read_text`, the bundled PP-OCR) once and tells the model
what it says, so "what does this say?" works with the bundled text-only model too. With tools, the turn is
answered by the agent loop (`imagine.agent`): the model calls them, sees their results, then answers,
every call logged under the voice session's conversation id.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ImagineError
from ..parts import Image, Message, Modality, Part

__all__ = ["MediaNotes", "agent_answer", "takes_images"]


def takes_images(client: Any, model: str | None) -> bool:
    """Whether `model` (None = the default text model) can be given an image directly."""
    try:
        client.registry.resolve(model, inputs=(Modality.TEXT, Modality.IMAGE))
    except ImagineError:
        return False
    return True


class MediaNotes:
    """The text read from each shown picture, read once per picture (by content hash)."""

    def __init__(self, client: Any, conversation_id: str, log: bool = True) -> None:
        self.client, self.conversation_id, self.log = client, conversation_id, log
        self._read: dict[str, str] = {}

    async def note(self, image: Image) -> str:
        key = image.sha256
        if key not in self._read:
            from ..tasks import TASK_DEFAULTS

            response = self.client.respond([Message.user(image)], None, want=Modality.TEXT,
                                           task_default=TASK_DEFAULTS["read_text"], log=self.log,
                                           conversation_id=self.conversation_id)  # read_text, in the conversation
            await response
            self._read[key] = " ".join(response.text().split())
        text = self._read[key]
        return (f'[The person is showing you a picture. The text in it reads: "{text}"]' if text else
                "[The person is showing you a picture with no readable text in it.]")

    async def with_media(self, message: Message, shown: Sequence[Part], model: str | None) -> Message:
        """`message` with the shown pictures in it, or with notes of what they say."""
        images = [p for p in shown if isinstance(p, Image)]
        if not images:
            return message
        if takes_images(self.client, model):
            return Message(role=message.role, parts=(*images, *message.parts))
        notes = [await self.note(image) for image in images]
        return Message(role=message.role, parts=(*message.parts, "\n".join(notes)))


async def agent_answer(client: Any, question: str, history: Sequence[Message], *, tools: Sequence[Any],
                       model: str | None, instructions: str, options: dict[str, Any], policy: Any,
                       shown: Sequence[Part], conversation_id: str, log: bool) -> str:
    """The reply to `question` from the agent loop with `tools` (the conversation so far goes in as context)."""
    from ..agents.loop import AgentRun

    said = [f"{m.role}: {m.text}" for m in history if m.role in ("user", "assistant") and m.text]
    prompt = (("Conversation so far:\n" + "\n".join(said[-8:]) + "\n\n") if said else "") + question
    run = AgentRun(prompt, list(tools), model, attach=list(shown), system=instructions, policy=policy,
                   options=options, log=log, client=client)
    run.run_id = conversation_id  # the agent's model calls join the voice conversation in the log
    await run
    return run.text()
