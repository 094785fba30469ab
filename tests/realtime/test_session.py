"""VoiceSession end to end, in process, on the real bundled models: Silero VAD, Whisper tiny.en, SmolLM2 (GGUF
through llama.cpp) and Piper's joe voice, with espeak-ng speech fed in real time as a microphone would.

The models load once for the module (one warmed client). Every scenario runs its microphone on the
monotonic clock in 20 ms frames at 24 kHz, as a Realtime API client sends them."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import numpy as np
import pytest

from imagine import Client
from imagine.parts import Audio
from imagine.realtime import SessionConfig, VoiceSession
from imagine.realtime import events as ev
from imagine.realtime.audio import from_pcm16

from ..helpers.speech import needs_espeak, synth_wav, trim, wer

pytest.importorskip("onnxruntime", reason="needs the speech extra: pip install -e '.[speech]'")
pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install -e '.[speech]'")
pytest.importorskip("llama_cpp", reason="needs the llama.cpp extra")
pytest.importorskip("piper", reason="needs the piper voice: pip install -e '.[speech]'")

pytestmark = [needs_espeak, pytest.mark.llm]

RATE = 24000
FRAME = RATE // 50  # 20 ms
LLM_OPTIONS = {"max_tokens": 60, "temperature": 0, "seed": 1}


def config(**changes: Any) -> SessionConfig:
    return SessionConfig(llm_options=dict(LLM_OPTIONS), **changes)


def voice(text: str) -> np.ndarray:
    """`text` said by espeak-ng at 24 kHz, trimmed so the speech starts at the first sample."""
    samples, rate = Audio(synth_wav(text)).samples(RATE)
    assert rate == RATE
    return trim(samples)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One client for the module, its speech, language and voice models loaded once."""
    client = Client(home=tmp_path_factory.mktemp("talk-home"))
    asyncio.run(VoiceSession(client, config()).warm())
    yield client
    client.close()


class Mic:
    """A microphone: hands the session 20 ms frames on the monotonic clock (`speed` times real time),
    saying what it was given and silence otherwise, and notes when each frame went in."""

    def __init__(self, session: VoiceSession, speed: float = 1.0) -> None:
        self.session, self.speed = session, speed
        self.script = np.zeros(0, np.float32)
        self.pos = 0  # samples handed over so far
        self.sent_at: list[float] = []  # monotonic time at which frame k was appended
        self.due_at: list[float] = []  # and when it was due
        self._task: asyncio.Task[None] | None = None

    def say(self, audio: np.ndarray) -> int:
        """Queue `audio` after whatever is queued (at the next frame if nothing is); its first sample's index."""
        start = max(self.pos, len(self.script))
        self.script = np.concatenate([self.script, np.zeros(start - len(self.script), np.float32), audio])
        return start

    def said(self) -> bool:
        return self.pos >= len(self.script)

    def start(self) -> None:
        """Start handing frames over (from a coroutine on the session's loop)."""
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        t0 = time.monotonic()
        while True:
            due = t0 + self.pos / RATE / self.speed
            wait = due - time.monotonic()
            await asyncio.sleep(max(0.0, wait))
            self.due_at.append(due)
            frame = self.script[self.pos:self.pos + FRAME]
            frame = np.concatenate([frame, np.zeros(FRAME - len(frame), np.float32)])
            self.session.append(frame, RATE)
            self.sent_at.append(time.monotonic())
            self.pos += FRAME


class Recorder:
    """Every session event with the monotonic time it reached the reader."""

    def __init__(self, session: VoiceSession) -> None:
        self.session = session
        self.events: list[tuple[float, Any]] = []
        self._new = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self.session.events():
            self.events.append((time.monotonic(), event))
            self._new.set()

    async def wait_for(self, kind: type, where: Callable[[Any], bool] = lambda e: True, since: int = 0,
                       timeout: float = 30.0) -> tuple[float, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for when, event in self.events[since:]:
                if isinstance(event, kind) and where(event):
                    return when, event
            self._new.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind.__name__} within {timeout} s; got {self.kinds()}")
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except asyncio.TimeoutError:
                pass

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for _, e in self.events if not isinstance(e, ev.ReplyAudio)]

    async def close(self) -> None:
        await self.session.close()
        await self._task


def reply_audio(events: list[Any], response_id: str) -> np.ndarray:
    chunks = [e for e in events if isinstance(e, ev.ReplyAudio) and e.response_id == response_id]
    assert chunks and {c.rate for c in chunks} == {RATE}
    return from_pcm16(b"".join(c.pcm for c in chunks))


# -- (a) turns: speech in, transcript, reply, speech out ---------------------------------------------------

QUESTIONS = ["How many legs does a spider have?",
             "What color is the sky on a sunny day?",
             "What is two plus three?",
             "What do cows drink?"]


def test_turns_are_transcribed_answered_spoken_and_logged(client: Any) -> None:
    spoken = [voice(q) for q in QUESTIONS]  # synthesised up front: espeak must not hold up the loop

    async def scenario() -> tuple[VoiceSession, Recorder]:
        session = await VoiceSession(client, config()).start()
        recorder, mic = Recorder(session), Mic(session)
        mic.start()
        for question in spoken:
            since = len(recorder.events)
            mic.say(question)
            await recorder.wait_for(ev.ReplyDone, since=since, timeout=40)
        await mic.stop()
        await recorder.close()
        return session, recorder

    session, recorder = asyncio.run(scenario())
    events = [e for _, e in recorder.events]
    assert not recorder.of(ev.SessionError), recorder.of(ev.SessionError)
    committed = recorder.of(ev.TurnCommitted)
    assert [c.item.role for c in committed] == ["user"] * len(QUESTIONS)
    for question, turn in zip(QUESTIONS, committed):
        print(f"heard {turn.item.text!r} for {question!r}: WER {wer(question, turn.item.text):.2f}")
        assert wer(question, turn.item.text) <= 0.15, (question, turn.item.text)
    done = recorder.of(ev.ReplyDone)
    assert [d.status for d in done] == ["completed"] * len(QUESTIONS)
    assert len(recorder.of(ev.ReplyStarted)) == len(QUESTIONS) and not recorder.of(ev.TurnDropped)

    client.store.flush()
    rows = {row["id"]: row for row in client.store.recent(100, conversation_id=session.id)}
    errors = words = 0.0
    for turn, reply in zip(committed, done):
        # the session's conversation in the log: the transcription, then the LLM's reply
        assert turn.item.log_id in rows and rows[turn.item.log_id]["output_text"].strip() == turn.item.text
        assert reply.item.log_id in rows
        logged = rows[reply.item.log_id]["output_text"]
        assert logged.strip() and reply.item.text and reply.item.status == "completed"
        # the reply's speech, as the client received it, says the logged reply: TTS -> STT round trip
        samples = reply_audio(events, reply.response_id)
        assert abs(len(samples) / RATE - reply.item.audio_s) <= 0.05
        heard = client.transcribe(Audio.from_samples(samples, RATE), log=False).text()
        print(f"reply {logged!r}\n  heard {heard!r}: WER {wer(logged, heard):.2f}, {len(samples) / RATE:.1f} s")
        assert wer(logged, heard) < 1, (logged, heard)  # each reply's audio says at least some of its words
        errors, words = errors + wer(logged, heard) * len(logged.split()), words + len(logged.split())
    # Whisper tiny.en hearing Piper's joe (whose synthesis is not deterministic) on these short replies:
    # per reply mostly 0.00, now and then one phrase misheard (0.12-0.38 on a 3-8 word reply); pooled over
    # the four replies 0.00-0.12 measured. 0.35 pooled leaves room for two such slips at once.
    assert errors / words <= 0.35, errors / words
    # the items: question, answer, question, answer...
    assert [(i.role, i.status) for i in session.items] == [("user", "completed"), ("assistant", "completed")] * len(
        QUESTIONS)


# -- (b) barge-in -----------------------------------------------------------------------------------------

def test_speech_over_the_reply_stops_it_at_once_and_keeps_what_was_heard(client: Any) -> None:
    ask, interrupt = voice("Tell me a long story about a dragon."), voice("Wait, stop. What is your name?")

    async def scenario() -> tuple[VoiceSession, Recorder, Mic, int]:
        session = await VoiceSession(client, config()).start()
        recorder, mic = Recorder(session), Mic(session)
        mic.start()
        mic.say(ask)
        first_audio, _ = await recorder.wait_for(ev.ReplyAudio, timeout=40)
        await asyncio.sleep(max(0.0, first_audio + 1.0 - time.monotonic()))
        onset = mic.say(interrupt)  # trimmed: the speech starts at this very sample
        await recorder.wait_for(ev.TurnCommitted, where=lambda e: e.item.text.startswith("Wait"), timeout=40)
        await mic.stop()
        await recorder.close()
        return session, recorder, mic, onset

    session, recorder, mic, onset = asyncio.run(scenario())
    assert not recorder.of(ev.SessionError), recorder.of(ev.SessionError)
    first = recorder.of(ev.ReplyStarted)[0]
    cut_at, cut = next((t, e) for t, e in recorder.events if isinstance(e, ev.ReplyDone))
    assert cut.response_id == first.response_id
    assert (cut.status, cut.reason) == ("cancelled", "turn_detected")
    onset_at = mic.sent_at[onset // FRAME]  # when the frame holding the first sample of speech went in
    stop_s = cut_at - onset_at
    late = max(mic.sent_at[k] - mic.due_at[k] for k in range(onset // FRAME, len(mic.sent_at)))
    print(f"barge-in: the reply stopped {stop_s * 1000:.0f} ms after the frame holding the speech onset went in "
          f"(frames up to {late * 1000:.0f} ms late from then on)")
    # the requirement: the reply stops within 200 ms of the onset of speech. Silero needs 64 ms of it
    # (two 32 ms chunks) and the cut is made in the same append() that scores them: 60-80 ms measured here
    assert 0 < stop_s <= 0.2
    started = next(e for e in recorder.of(ev.SpeechStarted) if e.interrupted is not None)
    assert started.interrupted == cut.item.id
    # not one more frame of the cut reply after it was cancelled
    after = [e for t, e in recorder.events if t >= cut_at and isinstance(e, ev.ReplyAudio)]
    assert all(e.response_id != first.response_id for e in after)
    order = [e for _, e in recorder.events]
    later = order[order.index(cut):]
    assert not [e for e in later if isinstance(e, ev.ReplyAudio) and e.response_id == cut.response_id]
    assert [e.response_id for e in recorder.of(ev.ReplyDone)].count(first.response_id) == 1

    # the conversation keeps what was heard of it, marked incomplete, with all the model had written
    item = next(i for i in session.items if i.id == cut.item.id)
    assert item.role == "assistant" and item.status == "incomplete"
    assert item.generated and item.text
    heard, generated = item.text.split(), item.generated.split()
    print(f"heard {item.text!r} of {item.generated!r}")
    assert heard == generated[:len(heard)] and len(heard) < len(generated), (item.text, item.generated)
    sent_s = len(reply_audio([e for _, e in recorder.events], first.response_id)) / RATE
    assert 0.8 <= item.audio_s <= sent_s  # about the 1 s the person listened to, never more than was sent
    assert [i.role for i in session.items][:3] == ["user", "assistant", "user"]
    assert session.items[2].text.startswith("Wait")


# -- (c) no speech, no turn -----------------------------------------------------------------------------------

@pytest.mark.parametrize("background", ["silence", "white noise", "1 kHz tone"])
def test_silence_and_noise_are_not_turns(client: Any, background: str) -> None:
    seconds = 10.0
    n = int(seconds * RATE)
    if background == "silence":
        audio = np.zeros(n, np.float32)
    elif background == "white noise":
        audio = (np.random.default_rng(7).standard_normal(n) * 10 ** (-25 / 20)).astype(np.float32)  # -25 dBFS
    else:
        audio = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(n) / RATE)).astype(np.float32)

    async def scenario() -> Recorder:
        session = await VoiceSession(client, config()).start()
        # Turn detection counts samples, not seconds: the audio goes in 5x faster than real time, then a
        # second of real time lets any turn it set off (transcription, reply) show itself.
        recorder, mic = Recorder(session), Mic(session, speed=5.0)
        mic.say(audio)
        mic.start()
        while not mic.said():
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        await mic.stop()
        await recorder.close()
        return recorder

    recorder = asyncio.run(scenario())
    assert not recorder.of(ev.TurnCommitted) and not recorder.of(ev.ReplyStarted), recorder.kinds()
    assert not recorder.of(ev.SessionError)
    assert set(recorder.kinds()) <= {"SpeechStarted", "TurnDropped"}


# -- (d) turn detection off: the client commits ------------------------------------------------------------

def test_without_turn_detection_a_commit_ends_the_turn(client: Any) -> None:
    question = "What do cows drink?"
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), voice(question), np.zeros(RATE, np.float32)])

    async def scenario() -> tuple[VoiceSession, Recorder]:
        session = await VoiceSession(client, config(turn=None)).start()
        recorder = Recorder(session)
        session.commit()  # nothing said yet: nothing to commit
        for first in range(0, len(audio), FRAME):
            session.append(audio[first:first + FRAME], RATE)
        await asyncio.sleep(0.2)
        assert recorder.events == []  # no VAD: the audio waits for the commit
        session.commit()
        await recorder.wait_for(ev.ReplyDone, timeout=40)
        await recorder.close()
        return session, recorder

    session, recorder = asyncio.run(scenario())
    assert [k for k in recorder.kinds() if k != "ReplyText"] == ["SpeechStopped", "TurnCommitted", "ReplyStarted",
                                                                 "ReplyDone"]
    assert recorder.of(ev.ReplyText)
    (turn,) = recorder.of(ev.TurnCommitted)
    assert wer(question, turn.item.text) <= 0.15, turn.item.text
    (done,) = recorder.of(ev.ReplyDone)
    assert done.status == "completed" and done.item.text
    assert [i.role for i in session.items] == ["user", "assistant"]
