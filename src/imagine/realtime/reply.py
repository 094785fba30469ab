"""One spoken reply: the LLM's text cut into pieces, each piece spoken, the audio paced out to the listener.

    generate (LLM stream, or the agent loop with tools) --pieces--> synthesize (TTS per piece, resampled)
    --audio--> play (frame_s deltas, at most lead_s ahead of the listener's playback)

The three run as tasks of one `run()`; cancelling it (barge-in) stops all three, and `cut()` says what the
listener had heard by then. The session owns the conversation; a Reply only adds its item to it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ImagineError
from ..events import PartDelta, PartOut, Usage
from ..parts import Audio, Message, Modality
from . import events as ev
from .audio import Playout, Resampler, spoken_prefix, to_pcm16
from .context import agent_answer
from .sentences import SentenceSplitter

if TYPE_CHECKING:
    from .session import VoiceSession

__all__ = ["Reply"]


@dataclass(eq=False)
class Reply:
    """The state of one reply and the pipeline that makes it."""

    session: "VoiceSession"
    id: str
    item: ev.Item
    task: asyncio.Task[None] | None = None
    playout: Playout = field(default_factory=Playout)
    sentences: list[tuple[str, float]] = field(default_factory=list)  # (piece, seconds of its audio)
    generated: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    finished: bool = False

    def cut(self, now: float) -> dict[int, float]:
        """Mark the reply cut short at `now`: its item keeps the words heard. Returns seconds heard per piece."""
        self.finished = True
        heard = self.playout.heard(now)
        self.item.text = spoken_prefix(self.sentences, heard)
        self.item.generated = self.generated
        self.item.status = "incomplete"
        self.item.audio_s = sum(heard.values())
        return heard

    async def run(self) -> None:
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        audio: asyncio.Queue[tuple[int, str, np.ndarray] | None] = asyncio.Queue()
        synth = asyncio.create_task(self._synthesize(pieces, audio) if self.session.config.audio_out else
                                    self._text_only(pieces, audio))
        play = asyncio.create_task(self._play(audio))
        try:
            await self._generate(pieces)
            await synth
            await play
        except asyncio.CancelledError:
            synth.cancel()
            play.cancel()
            await asyncio.gather(synth, play, return_exceptions=True)
            raise
        except ImagineError as exc:
            synth.cancel()
            play.cancel()
            if not self.finished:
                self.cut(self.session.clock())
                self.session.items.append(self.item)
                self.session.emit(ev.SessionError(str(exc), "reply_failed", exc.hint))
                self.session.emit(ev.ReplyDone(self.id, self.item, "failed", type(exc).__name__, self.usage, self.timings))
            return
        if not self.finished:
            self.finished = True
            self.item.text, self.item.status = " ".join(t for t, _ in self.sentences), "completed"
            self.item.audio_s = sum(s for _, s in self.sentences)
            self.session.items.append(self.item)
            self.session.emit(ev.ReplyDone(self.id, self.item, "completed", None, self.usage, self.timings))

    async def _generate(self, pieces: asyncio.Queue[str | None]) -> None:
        config = self.session.config
        messages = self.session._messages()
        if self.session._shown and messages and messages[-1].role == "user":
            messages[-1] = await self.session._notes.with_media(messages[-1], self.session._shown, config.model)
        if config.tools:
            await self._agent_reply(messages, pieces)
            return
        response = self.session.client.respond(messages, config.model, want=Modality.TEXT, new_messages=messages[-1:],
                                               options=dict(config.llm_options), conversation_id=self.session.id,
                                               log=config.log, policy=config.policy)
        self.item.log_id = response.id
        splitter = SentenceSplitter()
        try:
            async for delta in response:
                self.timings.setdefault("llm_first_token", self.session.clock())
                self.generated += delta
                for piece in splitter.push(delta):
                    self.timings.setdefault("first_piece", self.session.clock())
                    pieces.put_nowait(piece)
        finally:
            for piece in splitter.flush():
                self.timings.setdefault("first_piece", self.session.clock())
                pieces.put_nowait(piece)
            pieces.put_nowait(None)
            usage = response.usage if response.done else None
            if isinstance(usage, Usage):
                self.usage = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}

    async def _agent_reply(self, messages: list[Message], pieces: asyncio.Queue[str | None]) -> None:
        """A reply by the agent loop: tools run before the answer, so the answer comes whole."""
        config = self.session.config
        try:
            text = await agent_answer(self.session.client, messages[-1].text, messages[:-1], tools=config.tools or [],
                                      model=config.model, instructions=config.instructions,
                                      options=dict(config.llm_options), policy=config.policy, shown=self.session._shown,
                                      conversation_id=self.session.id, log=config.log)
            self.timings.setdefault("llm_first_token", self.session.clock())
            self.generated = text
            splitter = SentenceSplitter()
            for piece in [*splitter.push(text), *splitter.flush()]:
                self.timings.setdefault("first_piece", self.session.clock())
                pieces.put_nowait(piece)
        finally:
            pieces.put_nowait(None)

    async def _synthesize(self, pieces: asyncio.Queue[str | None],
                          audio: asyncio.Queue[tuple[int, str, np.ndarray] | None]) -> None:
        from ..tasks import task_default

        config, index = self.session.config, 0
        try:
            while (piece := await pieces.get()) is not None:
                client = self.session.client
                response = client.respond([Message.user(piece)], config.voice, want=Modality.AUDIO,
                                          task_default=task_default("speak", client.registry),
                                          options=dict(config.voice_options), conversation_id=self.session.id,
                                          log=config.log)
                out: Resampler | None = None
                streamed = False
                async for event in response.aevents():
                    if isinstance(event, PartDelta) and event.mime == "audio/pcm":
                        samples, rate = event.samples()
                    elif isinstance(event, PartOut) and isinstance(event.part, Audio) and not streamed:
                        samples, rate = event.part.samples(rate=None)  # an engine that does not stream audio
                    else:
                        continue
                    streamed = True
                    if out is None or out.source != rate:
                        out = Resampler(rate, config.output_rate)
                    self.timings.setdefault("tts_first_audio", self.session.clock())
                    audio.put_nowait((index, piece, np.concatenate([out(samples), out.flush()])))
                index += 1
        finally:
            audio.put_nowait(None)

    async def _text_only(self, pieces: asyncio.Queue[str | None],
                         audio: asyncio.Queue[tuple[int, str, np.ndarray] | None]) -> None:
        """No voice: each piece goes out as text at once."""
        try:
            while (piece := await pieces.get()) is not None:
                audio.put_nowait((len(self.sentences), piece, np.zeros(0, np.float32)))
        finally:
            audio.put_nowait(None)

    async def _play(self, audio: asyncio.Queue[tuple[int, str, np.ndarray] | None]) -> None:
        """Hand out the reply audio in `frame_s` deltas, never more than `lead_s` ahead of the listener."""
        config = self.session.config
        rate, frame = config.output_rate, max(1, int(config.frame_s * config.output_rate))
        while (got := await audio.get()) is not None:
            if self.finished:  # cancelled: synthesis may still be unwinding, but no more of it goes out
                return
            index, piece, samples = got
            if index == len(self.sentences):
                self.sentences.append((piece, 0.0))
                self.session.emit(ev.ReplyText(self.id, self.item.id, piece))
            text, total = self.sentences[index]
            self.sentences[index] = (text, total + len(samples) / rate)
            for first in range(0, len(samples), frame):
                ahead = self.playout.end - self.session.clock() - config.lead_s
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if self.finished:  # cancelled while this task waited (barge-in): not one more frame
                    return
                chunk = samples[first:first + frame]
                seconds = len(chunk) / rate
                self.timings.setdefault("first_audio_out", self.session.clock())
                self.playout.push(seconds, self.session.clock(), index)
                self.session.emit(ev.ReplyAudio(self.id, self.item.id, to_pcm16(chunk), rate))
        # the reply is over when the listener has heard it: until then, speech interrupts it
        tail = self.playout.end - self.session.clock()
        if tail > 0:
            await asyncio.sleep(tail)
