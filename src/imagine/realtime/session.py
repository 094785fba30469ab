"""VoiceSession: the realtime voice loop — audio in, turns, transcript, reply, speech out, barge-in.

    audio frames -> TurnDetector (Silero VAD, streaming) -> Whisper on the utterance (partials while the
    person speaks; the final one starts at the first pause, so it is ready when the silence ends the turn)
    -> the LLM through the one request path (any engine, model or policy; every call logged under the
    session's conversation id) -> reply text cut into sentences -> TTS (Piper by default), each sentence
    as soon as it is written -> audio frames out, paced at most `lead_s` ahead of the listener.

Pacing is what makes barge-in real: the session never hands the transport more than `lead_s` of audio
the listener has not heard yet, so when the person starts speaking over the reply it cancels the
generation and the unsent audio at once, and knows what was heard (the playout clock). The conversation
keeps that heard part as the assistant's turn, marked incomplete, with the whole generated text beside it.

A transport (the WebSocket route, `imagine talk`, a test) calls `append()` with audio as it arrives and
reads `events()`. Everything runs on one asyncio loop; models compute in their engines' worker threads.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import numpy as np

from ..engine import new_id
from ..errors import ImagineError, InputError
from ..parts import Audio, Image, Message, Modality, Part
from . import events as ev
from .audio import Resampler, spoken_prefix
from .context import MediaNotes
from .reply import Reply
from .turns import RATE, Paused, Resumed, SpeechDropped, SpeechStarted, TurnDetector, TurnEnded, TurnSettings, \
    looks_complete

__all__ = ["DEFAULT_INSTRUCTIONS", "SessionConfig", "VoiceSession"]

DEFAULT_INSTRUCTIONS = ("You are a friendly voice assistant. Your answers are spoken aloud, so answer in one or two "
                        "short, plain sentences, without lists or markdown, in the language of the question.")


@dataclass
class SessionConfig:
    """What a session uses; the Realtime API's `session.update` changes these."""

    model: str | None = None  # the LLM: ENGINE:MODEL or an alias; None = the default text engine
    policy: Any = None  # a router policy for the LLM ("local_only", "cheapest", ...)
    instructions: str = DEFAULT_INSTRUCTIONS
    voice: str | None = None  # TTS model (piper, espeak, openai:tts-1 ...); None = the speak task's default
    voice_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"voice": "en_US-lessac-medium"}
    stt_model: str | None = None  # None = the transcribe task's default (bundled Whisper tiny.en)
    stt_options: dict[str, Any] | None = None  # None = greedy decoding when the engine has `beam_size`
    llm_options: dict[str, Any] = field(default_factory=lambda: {"max_tokens": 120})
    turn: TurnSettings | None = field(default_factory=TurnSettings)  # None: no server VAD (manual commits)
    audio_out: bool = True  # False: reply in text only (the Realtime API's modalities ["text"])
    output_rate: int = 24000
    lead_s: float = 0.25  # audio handed out ahead of the listener's playback
    frame_s: float = 0.1  # size of each audio delta
    partial_every_s: float = 1.0  # partial transcript cadence while the person speaks (0 = none)
    history: int = 16  # conversation items sent to the LLM
    tools: list[Any] | None = None  # agent tools callable by voice: built-in names, functions, Tools
    respond_to_turns: bool = True  # a finished turn starts a reply (off: the client asks with respond())
    log: bool = True
    vad_model: str | None = None  # silero-vad model; None = the bundled one


class VoiceSession:
    """One conversation by voice. `async with VoiceSession(client) as s:` then `s.append(...)` audio and
    `async for event in s.events()`."""

    def __init__(self, client: Any, config: SessionConfig | None = None, *, clock: Any = time.monotonic) -> None:
        self.client, self.config, self.clock = client, config or SessionConfig(), clock
        self.id = new_id()
        self.items: list[ev.Item] = []
        self._queue: asyncio.Queue[ev.SessionEvent | None] = asyncio.Queue()
        self._detector: TurnDetector | None = None
        self._resamplers: dict[int, Resampler] = {}
        self._audio_in = 0.0  # seconds of input audio so far
        self._buffered: np.ndarray | None = None  # manual mode: the audio since the last commit
        self._history_from = 0  # the first item the LLM is shown (see _messages)
        self._user_item: str | None = None  # the item id of the speech under way
        self._speculative: tuple[int, asyncio.Task[tuple[str, str | None]]] | None = None  # (pause serial, transcription)
        self._partial: asyncio.Task[None] | None = None
        self._next_partial = 0.0
        self._reply: Reply | None = None
        self._replies: dict[str, Reply] = {}  # by assistant item id: what truncate() needs
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._shown: list[Part] = []  # pictures the person is showing (show()), newest last
        self._notes = MediaNotes(client, self.id, log=self.config.log)

    # -- lifetime ---------------------------------------------------------------------------------------
    async def start(self) -> "VoiceSession":
        """Load the VAD model (once per process) so the first audio frame is scored at once."""
        if self.config.turn is not None and self._detector is None:
            engine = self.client.registry.engine("silero-vad")
            name = self.config.vad_model or engine.default_model
            model = await asyncio.to_thread(engine.load, name)
            self._detector = TurnDetector(model, self.config.turn)
        return self

    async def warm(self) -> None:
        """Load the speech, language and voice models now (one tiny unlogged call each), so the first
        turn is answered as fast as the rest instead of waiting for three model loads."""
        from .. import tasks

        config = self.config
        noise = (np.random.default_rng(0).standard_normal(RATE) * 0.01).astype(np.float32)
        options = self._stt_options()
        calls = [tasks.transcribe(Audio.from_samples(noise, RATE), config.stt_model, log=False, client=self.client,
                                  **options),
                 self.client.respond(self._messages() + [Message.user("Hi")], config.model, want=Modality.TEXT,
                                     options={**{k: v for k, v in config.llm_options.items() if k != "tool_choice"},
                                              "max_tokens": 1}, log=False, policy=config.policy),  # no tools here
                 tasks.speak("Hello.", config.voice, log=False, client=self.client, **config.voice_options)]

        async def run(response: Any) -> None:
            await response

        await asyncio.gather(self.start(), *(run(c) for c in calls))

    async def close(self) -> None:
        self._closed = True
        if self._reply is not None and self._reply.task is not None:
            self._reply.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queue.put_nowait(None)

    async def __aenter__(self) -> "VoiceSession":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[ev.SessionEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    def emit(self, event: ev.SessionEvent) -> None:
        if not self._closed:
            self._queue.put_nowait(event)

    def update(self, config: SessionConfig) -> None:
        """New settings; a change of turn detection takes effect at once (the speech under way is dropped)."""
        turn_changed = config.turn != self.config.turn
        self.config = config
        if turn_changed:
            self._detector = None
            if config.turn is not None:
                self._spawn(self.start())

    # -- audio in ---------------------------------------------------------------------------------------
    def append(self, samples: np.ndarray, rate: int) -> None:
        """Input audio as it arrives (mono float32 in [-1, 1] at `rate`)."""
        if rate != RATE:
            samples = self._resamplers.setdefault(rate, Resampler(rate, RATE))(samples)
        self._audio_in += len(samples) / RATE
        if self._detector is None:  # turn detection off: the audio waits for commit()
            self._buffered = samples if self._buffered is None else np.concatenate([self._buffered, samples])
            return
        for event in self._detector.feed(samples):
            self._on_turn_event(event)
        self._maybe_partial()

    def commit(self) -> None:
        """End the person's turn now (a client's manual commit, or turn detection off)."""
        if self._detector is not None:
            event = self._detector.end_turn()
            if event is not None:
                self._on_turn_event(event)
            return
        audio, self._buffered = self._buffered, None
        if audio is not None and len(audio):
            item_id = new_id()
            self._finish_turn(TurnEnded(self._audio_in, audio, -1, len(audio) / RATE, True), item_id)

    def clear(self) -> None:
        """Forget the input audio not yet part of a turn."""
        self._buffered = None
        if self._detector is not None:
            self._detector._reset()
            self._user_item = None

    def _on_turn_event(self, event: Any) -> None:
        if isinstance(event, SpeechStarted):
            self._user_item = new_id()
            self._next_partial = event.at + self.config.partial_every_s
            cut = self.cancel_reply("turn_detected") if self.replying() else None
            self.emit(ev.SpeechStarted(event.at, self._user_item, interrupted=cut))
        elif isinstance(event, Paused):
            self._start_speculative(event)
        elif isinstance(event, Resumed):
            self._drop_speculative()
        elif isinstance(event, SpeechDropped):
            self._drop_speculative()
            if self._user_item:
                self.emit(ev.TurnDropped(self._user_item, "too short"))
            self._user_item = None
        elif isinstance(event, TurnEnded):
            item_id, self._user_item = self._user_item or new_id(), None
            self._finish_turn(event, item_id)

    # -- transcription ------------------------------------------------------------------------------------
    def _stt_options(self) -> dict[str, Any]:
        if self.config.stt_options is not None:
            return dict(self.config.stt_options)
        from ..tasks import task_default

        engine_id = (self.config.stt_model or task_default("transcribe", self.client.registry)).split(":")[0]
        try:
            fields = self.client.registry.engine(engine_id).Options.model_fields
        except ImagineError:
            return {}
        chosen = {"beam_size": 1} if "beam_size" in fields else {}  # greedy: a third faster, as good on short turns
        if "vad_gate" in fields:
            chosen["vad_gate"] = False  # the turn detector's Silero has already found the speech in this audio
        return chosen

    async def _transcribe(self, audio: np.ndarray, log: bool) -> tuple[str, str | None]:
        from ..tasks import TASK_DEFAULTS

        part = Audio.from_samples(audio, RATE, name="turn.wav")
        # tasks.transcribe, but logged under the session's conversation id, beside the replies
        response = self.client.respond([Message.user(part)], self.config.stt_model, want=Modality.TEXT,
                                       task_default=TASK_DEFAULTS["transcribe"], options=self._stt_options(),
                                       conversation_id=self.id, log=log and self.config.log)
        await response
        return response.text().strip(), response.id if log else None

    def _start_speculative(self, event: Paused) -> None:
        self._drop_speculative()
        detector = self._detector
        task = self._spawn(self._transcribe(event.audio, log=True))
        self._speculative = (event.serial, task)

        def judged(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or done.exception() is not None or detector is None or detector is not self._detector:
                return
            ended = detector.complete(event.serial, looks_complete(done.result()[0]))
            if ended is not None:
                self._on_turn_event(ended)

        task.add_done_callback(judged)

    def _drop_speculative(self) -> None:
        if self._speculative is not None:
            self._speculative[1].cancel()
            self._speculative = None

    def _maybe_partial(self) -> None:
        detector = self._detector
        every = self.config.partial_every_s
        if (not every or detector is None or detector.state != "speech" or self._user_item is None
                or detector.now < self._next_partial or (self._partial is not None and not self._partial.done())):
            return
        self._next_partial = detector.now + every
        item_id, audio = self._user_item, detector.utterance()

        async def partial() -> None:
            text, _ = await self._transcribe(audio, log=False)
            if text and self._user_item == item_id:
                self.emit(ev.TranscriptPartial(item_id, text))

        self._partial = self._spawn(partial())

    def _finish_turn(self, event: TurnEnded, item_id: str) -> None:
        now = self.clock()
        timings = {"speech_end": now - max(0.0, self._audio_in - event.at), "turn_end": now}
        speculative = self._speculative[1] if self._speculative and self._speculative[0] == event.serial else None
        self._speculative = None
        self.emit(ev.SpeechStopped(event.at, item_id))
        if self._partial is not None:
            self._partial.cancel()

        async def finish() -> None:
            try:
                if speculative is not None:
                    text, log_id = await speculative
                else:
                    text, log_id = await self._transcribe(event.audio, log=True)
            except ImagineError as exc:
                self.emit(ev.SessionError(f"transcription failed: {exc}", "transcription_failed", exc.hint))
                return
            timings["stt_done"] = self.clock()
            if not text:
                self.emit(ev.TurnDropped(item_id, "no words"))
                return
            item = ev.Item(item_id, "user", text, audio_s=event.speech_s, log_id=log_id)
            self.items.append(item)
            self.emit(ev.TurnCommitted(item, timings))
            speaking_again = self._detector is not None and self._detector.state != "idle"
            if self.config.respond_to_turns and not speaking_again:  # else the next turn answers both
                self.respond(timings=timings)

        self._spawn(finish())

    # -- text and pictures in -------------------------------------------------------------------------------
    def show(self, part: Part) -> None:
        """A picture the person is showing: the following turns can ask about it ("what does this say?").
        The four newest stay in view."""
        if not isinstance(part, Image):
            raise InputError(f"only pictures can be shown to a voice session, not {part.modality.value}",
                             hint="attach an image (PNG, JPEG, WebP)")
        self._shown = [*self._shown, part][-4:]

    def add_item(self, role: str, text: str) -> ev.Item:
        """A typed message (the Realtime API's conversation.item.create)."""
        item = ev.Item(new_id(), role, text)  # type: ignore[arg-type]
        self.items.append(item)
        return item

    # -- the reply ----------------------------------------------------------------------------------------
    def replying(self) -> bool:
        """A reply is being generated, or its audio is still playing."""
        return self._reply is not None and not self._reply.finished

    def respond(self, *, timings: dict[str, float] | None = None) -> str:
        """Start a reply to the conversation so far (cancelling one under way); returns its response id."""
        if self.replying():
            self.cancel_reply("superseded")
        reply = Reply(self, new_id(), ev.Item(new_id(), "assistant", "", status="in_progress"),
                      timings=dict(timings or {}))
        self._reply = reply
        self._replies = {reply.item.id: reply, **dict(list(self._replies.items())[-7:])}
        self.emit(ev.ReplyStarted(reply.id, reply.item.id))
        reply.task = self._spawn(reply.run())
        return reply.id

    def cancel_reply(self, reason: str = "client_cancelled") -> str | None:
        """Stop the reply under way: generation, synthesis and unsent audio. The conversation keeps what
        the listener heard. Returns the cut reply's item id (None when nothing was playing)."""
        reply = self._reply
        if reply is None or reply.finished:
            return None
        if reply.task is not None:
            reply.task.cancel()
        reply.cut(self.clock())
        self.items.append(reply.item)
        self.emit(ev.ReplyDone(reply.id, reply.item, "cancelled", reason, reply.usage, reply.timings))
        return reply.item.id

    def _messages(self) -> list[Message]:
        messages = [Message.system(self.config.instructions)] if self.config.instructions else []
        # The window slides in jumps, not item by item: between jumps every prompt starts with the one before
        # it, so the LLM reuses its cached prefix and reads only the new turn (sliding by one item changed
        # the prefix every turn, and the reply's first token came ~1.4 s later once history was full).
        if len(self.items) - self._history_from > self.config.history:
            self._history_from = len(self.items) - max(2, self.config.history // 2)
        for item in self.items[self._history_from:]:
            if not item.text:
                continue
            text = item.text + (" —" if item.status == "incomplete" else "")  # the listener cut it off here
            make = {"system": Message.system, "user": Message.user}.get(item.role, Message.assistant)
            messages.append(make(text))
        return messages

    def truncate(self, item_id: str, audio_end_ms: int) -> ev.Item:
        """The client says the listener heard `audio_end_ms` of reply `item_id` (it stopped playback there):
        the conversation keeps only those words. Raises KeyError for an item that is not a recent reply."""
        reply = self._replies[item_id]
        if reply.task is not None and not reply.finished:
            self.cancel_reply("client_cancelled")
        left, heard = audio_end_ms / 1000, {}
        for index, (_, seconds) in enumerate(reply.sentences):
            heard[index] = min(seconds, max(0.0, left))
            left -= seconds
        item = reply.item
        total = sum(s for _, s in reply.sentences)
        if audio_end_ms / 1000 < total - 1e-3:
            item.generated = item.generated or reply.generated
            item.text, item.status = spoken_prefix(reply.sentences, heard), "incomplete"
            item.audio_s = audio_end_ms / 1000
        return item

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._report)
        return task

    def _report(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, ImagineError):
            self.emit(ev.SessionError(str(exc), "session_error", exc.hint))
        else:
            self.emit(ev.SessionError(f"{type(exc).__name__}: {exc}", "server_error"))
