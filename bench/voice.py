"""Voice loop (issue 20): time from the end of the person's speech to the first reply audio byte
(voice-to-voice latency) of `imagine.realtime.VoiceSession` on the bundled models (Silero VAD, Whisper
tiny.en, SmolLM2 through llama.cpp, Piper), fed espeak-ng speech in real time, 20 ms chunks at 24 kHz.

1. Latency: one session (warmed first) answers `--turns` spoken questions, each followed by silence until
   the reply has played out plus 0.5 s. Per turn, from the session's timing marks: VAD end-of-turn
   (speech_end -> turn_end), the transcript's wait after the turn end (it usually started speculatively
   at the first pause) and its compute time (the logged transcription's latency), LLM first token, first
   piece (sentence or clause), TTS first audio, and the total. The session's speech_end is its own VAD's
   estimate; the bench also knows where the speech really ends in the audio it feeds (espeak's trailing
   silence trimmed: the last sample above 0.01), and reports the true total = wall time the first
   ReplyAudio reached the bench - wall time that last sample was spoken (its 20 ms chunk's append time
   less the audio after it in the chunk: the chunking delay counts). p50 and p90 of each.
   Goal: p50 <= 1.0 s, the end-of-turn wait included.
   Baseline, same utterances, models and options, same run: a naive sequential pipeline through the
   public API — a fixed 1.0 s of silence for end of turn (counted, not slept), `client.transcribe` of the
   utterance, `client.ask` for the whole reply (not streamed), `client.speak` of the whole reply; its first
   audio is when the whole WAV exists (after one untimed turn to warm that path). Printed: voice-to-voice
   p50 naive / p50 loop.
2. Barge-in: `--barge-in` turns where a second utterance starts ~1 s into the reply audio. Stop time =
   wall time of ReplyDone(cancelled) - wall time the interruption's first loud sample was spoken
   (it includes the VAD's onset_ms, 64 ms, and the 20 ms chunking). Audio already handed out (at most the
   session's lead_s, 0.25 s) is the client's to drop. Goal: <= 200 ms.
3. Drift: `--minutes` of conversation, turns back to back. The feeder appends on an absolute real-time
   schedule and catches up when late, so its lag = (wall clock - t0) - (audio seconds fed) is the backlog
   of the loop; per turn the mean and max lag, first vs last, and a least-squares slope (ms per minute).
   Goal: no growing lag (slope ~0). Real-time factors: the input path (time inside `session.append`, the
   streaming VAD on the event loop, per audio second) and the whole process (CPU seconds per audio second,
   and per core over `--threads`); plus per reply the output stall (reply playout time - reply audio
   length: > 0 when TTS fell behind the listener).

Run it on an idle machine with 2 cores (`taskset -c 0,1` on a bigger one): Whisper (cpu_threads) and
llama.cpp (n_threads) are set to `--threads` through the client's engine settings; Piper's onnxruntime
and the VAD use their own defaults (ONNX Runtime: one thread per physical core; the VAD one thread).

    .venv/bin/python bench/voice.py [--turns 20] [--barge-in 5] [--minutes 5] [--threads 2] [--quick]

`--quick`: 5 turns, 2 barge-ins, 1 minute of drift, for a check that the bench works (not for figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

THREADS = "2"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("IMAGINE_HOME", tempfile.mkdtemp(prefix="imagine-bench-"))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.speech import synth_wav  # noqa: E402  (the speech tests' espeak-ng synthesis)

from imagine import Audio, Client, Message  # noqa: E402
from imagine.realtime import SessionConfig, VoiceSession  # noqa: E402
from imagine.realtime import events as ev  # noqa: E402
from imagine.realtime.session import DEFAULT_INSTRUCTIONS  # noqa: E402

RATE = 24000
STEP = RATE // 50  # 20 ms chunks
LOUD = 0.01  # a sample above this is speech (espeak's silence is digital zero)
LEAD_S = 0.3  # silence before each question (the VAD's prefix padding has something to keep)
AFTER_S = 0.5  # silence after a reply has played, before the next question
NAIVE_WAIT_S = 1.0  # the naive pipeline's fixed end-of-turn silence
LLM_OPTIONS = {"max_tokens": 60, "temperature": 0, "seed": 1}
TURN_TIMEOUT_S = 45.0
LAG_SLOPE_MS = 5.0  # the drift check: the feeder's lag may grow at most this much per minute

QUESTIONS = [  # (not led by "the capital of France": SmolLM2-135M answers that in French, and later turns follow)
    "How many legs does a spider have?",
    "Why is the sky blue?",
    "What should I cook for dinner tonight?",
    "Who wrote Romeo and Juliet?",
    "How far away is the moon?",
    "What is the boiling point of water?",
    "Can you recommend a good book?",
    "What time zone is London in?",
    "How do I make a cup of tea?",
    "What is the largest ocean on Earth?",
    "Tell me a fun fact about cats.",
    "What is two plus two?",
    "How many days are in a leap year?",
    "What does a bee make?",
    "Which planet is closest to the sun?",
    "What is the opposite of cold?",
    "How do you say hello in Spanish?",
    "What color do you get when you mix blue and yellow?",
    "Why do leaves fall in autumn?",
    "What is the tallest mountain in the world?",
    "How long should I sleep every night?",
    "What is a good name for a dog?",
    "Where do penguins live?",
    "What is the speed of sound?",
    "What is the capital of France?",
]
# replies long enough to be cut ~1 s in
LONG_QUESTIONS = ["Tell me a short story about a brave little dragon.",
                  "Describe a walk through a forest in autumn.",
                  "Explain how a rainbow forms, step by step.",
                  "Tell me about the history of the bicycle.",
                  "Describe your perfect holiday by the sea."]
INTERRUPTIONS = ["Wait, stop. What time is it?", "Sorry, hold on. Where is Paris?", "Stop please, what is one plus one?"]


# -- speech -----------------------------------------------------------------------------------------
@dataclass
class Utterance:
    text: str
    samples: np.ndarray  # 24 kHz float32, speech from its first to its last loud sample

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


def utterance(text: str) -> Utterance:
    samples, rate = Audio(synth_wav(text)).samples(RATE)
    assert rate == RATE
    loud = np.flatnonzero(np.abs(samples) > LOUD)
    return Utterance(text, samples[loud[0]:loud[-1] + 1].astype(np.float32))


# -- the real-time feeder ---------------------------------------------------------------------------
class Feeder:
    """Appends 20 ms chunks to the session on an absolute real-time schedule: queued speech, else silence.
    Late ticks catch up at once (a transport delivering buffered audio), so `lag` is the loop's backlog.
    A mark on a sample index records the wall time that sample was spoken, as a microphone delivering 20 ms
    chunks would have it: the time its chunk was appended less the audio after it in the chunk."""

    def __init__(self, session: VoiceSession) -> None:
        self.session = session
        self.pending: list[np.ndarray] = []
        self.queued = 0  # samples queued so far, over all time (fed + pending)
        self.fed = 0
        self.marks: list[tuple[int, Callable[[float], None]]] = []
        self.lags: list[tuple[float, float]] = []  # (wall, lag) per chunk
        self.append_s = 0.0  # time spent inside session.append
        self.t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def play(self, samples: np.ndarray, *, at: dict[int, Callable[[float], None]] | None = None) -> int:
        """Queue `samples` after what is queued; `at` maps sample offsets in them to callbacks of the wall
        time they are appended. Returns the absolute index of their first sample."""
        first = self.queued
        self.pending.append(samples)
        self.queued += len(samples)
        for offset, callback in (at or {}).items():
            self.marks.append((first + offset, callback))
        self.marks.sort(key=lambda m: m[0])
        return first

    def silence(self, seconds: float) -> None:
        self.play(np.zeros(int(seconds * RATE), np.float32))

    @property
    def idle(self) -> bool:
        return self.fed >= self.queued

    def _take(self) -> np.ndarray:
        out, need = [], STEP
        while need and self.pending:
            head = self.pending[0]
            out.append(head[:need])
            need -= len(out[-1])
            if len(head) <= len(out[-1]):
                self.pending.pop(0)
            else:
                self.pending[0] = head[len(out[-1]):]
        if need:  # nothing queued: silence (and the silence counts as queued and fed)
            out.append(np.zeros(need, np.float32))
            self.queued += need
        return np.concatenate(out)

    async def _run(self) -> None:
        while True:
            delay = self.t0 + self.fed / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.lags.append((now, now - self.t0 - self.fed / RATE))
            chunk = self._take()
            t = time.monotonic()
            self.session.append(chunk, RATE)
            done = time.monotonic()
            self.append_s += done - t
            self.fed += len(chunk)
            while self.marks and self.marks[0][0] < self.fed:  # spoken when its chunk was appended, less the
                index, callback = self.marks.pop(0)               # audio after it in the chunk
                callback(done - (self.fed - 1 - index) / RATE)


# -- events -----------------------------------------------------------------------------------------
class Recorder:
    """Reads the session's events with the wall time each arrives; waits for one that matches."""

    def __init__(self, session: VoiceSession) -> None:
        self.session = session
        self.log: list[tuple[float, Any]] = []
        self.first_audio: dict[str, float] = {}  # response id -> wall time of its first ReplyAudio
        self.audio_s: dict[str, float] = {}  # response id -> seconds of reply audio received
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self.session.events():
            now = time.monotonic()
            if isinstance(event, ev.ReplyAudio):
                self.first_audio.setdefault(event.response_id, now)
                self.audio_s[event.response_id] = self.audio_s.get(event.response_id, 0.0) + \
                    len(event.pcm) / 2 / event.rate
            else:
                self.log.append((now, event))
            if isinstance(event, ev.SessionError):
                print(f"   session error: {event.code}: {event.message}", flush=True)
            self._new.set()

    async def wait(self, since: int, match: Callable[[Any], bool], timeout: float) -> tuple[float, Any] | None:
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.log):
                if match(self.log[index][1]):
                    return self.log[index]
                index += 1
            self._new.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except asyncio.TimeoutError:
                return None

    def events(self, since: int, kind: type) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.log[since:] if isinstance(e, kind)]


@dataclass
class Turn:
    text: str
    speech_s: float
    true_end: float = 0.0  # wall time the last loud sample was spoken
    timings: dict[str, float] = field(default_factory=dict)
    first_audio: float | None = None
    done: float | None = None
    reply_audio_s: float = 0.0
    status: str = "timeout"
    commits: int = 0  # turns the session committed for this utterance (> 1: it split the question)
    transcript: str = ""
    reply: str = ""
    stt_log_id: str | None = None
    stt_compute: float | None = None
    lag_mean: float = 0.0
    lag_max: float = 0.0

    def stage(self, a: str, b: str) -> float | None:
        t = self.timings
        return t[b] - t[a] if a in t and b in t else None


async def one_turn(feeder: Feeder, rec: Recorder, question: Utterance) -> Turn:
    """Speak `question`, wait for the reply to play out, then AFTER_S of silence."""
    turn = Turn(question.text, question.seconds)
    since = len(rec.log)
    lag_from = len(feeder.lags)
    feeder.silence(LEAD_S)

    def ended(wall: float) -> None:
        turn.true_end = wall

    end_index = feeder.play(question.samples, at={len(question.samples) - 1: ended}) + len(question.samples)

    def answered(e: Any) -> bool:  # a reply over, begun after the whole question was fed, nothing playing
        return isinstance(e, ev.ReplyDone) and feeder.fed >= end_index and not rec.session.replying()

    got = await rec.wait(since, answered, TURN_TIMEOUT_S + question.seconds)
    commits = rec.events(since, ev.TurnCommitted)
    turn.commits = len(commits)
    if commits:
        turn.transcript = commits[-1][1].item.text
        turn.stt_log_id = commits[-1][1].item.log_id
    if got is not None:
        wall, done = got
        turn.done, turn.status, turn.timings = wall, done.status, dict(done.timings)
        turn.reply = done.item.text
        turn.first_audio = rec.first_audio.get(done.response_id)
        turn.reply_audio_s = rec.audio_s.get(done.response_id, 0.0)
    feeder.silence(AFTER_S)
    while not feeder.idle:
        await asyncio.sleep(0.02)
    lags = [lag for _, lag in feeder.lags[lag_from:]]
    if lags:
        turn.lag_mean, turn.lag_max = float(np.mean(lags)), float(np.max(lags))
    return turn


async def barge_turn(feeder: Feeder, rec: Recorder, question: Utterance, cut: Utterance,
                     into_s: float = 1.0) -> tuple[float | None, str]:
    """Ask `question`; `into_s` after its reply audio starts, speak `cut` over it. Returns (stop time,
    what happened), then waits for the reply to `cut` to play out."""
    since = len(rec.log)
    feeder.silence(LEAD_S)
    end_index = feeder.play(question.samples) + len(question.samples)
    started = await rec.wait(since, lambda e: isinstance(e, ev.ReplyStarted) and feeder.fed >= end_index,
                             TURN_TIMEOUT_S)
    if started is None:
        return None, "no reply"
    response_id = started[1].response_id
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while response_id not in rec.first_audio and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    if response_id not in rec.first_audio:
        return None, "no reply audio"
    await asyncio.sleep(max(0.0, rec.first_audio[response_id] + into_s - time.monotonic()))
    if not rec.session.replying():
        return None, "reply over before the interruption"
    onset: list[float] = []
    cut_since = len(rec.log)
    feeder.play(cut.samples, at={0: onset.append})
    stopped = await rec.wait(cut_since, lambda e: isinstance(e, ev.ReplyDone) and e.response_id == response_id,
                             TURN_TIMEOUT_S)
    result: tuple[float | None, str]
    if stopped is None:
        result = None, "reply never ended"
    elif stopped[1].status != "cancelled":
        result = None, f"reply {stopped[1].status} ({stopped[1].reason}), not cut"
    else:
        while not onset:
            await asyncio.sleep(0.005)
        result = stopped[0] - onset[0], f"cut: heard {stopped[1].item.text!r}"
    # the interruption is a turn of its own: let its reply play out
    end = feeder.queued
    await rec.wait(cut_since, lambda e: isinstance(e, ev.ReplyDone) and e.response_id != response_id
                   and feeder.fed >= end and not rec.session.replying(), TURN_TIMEOUT_S)
    feeder.silence(AFTER_S)
    while not feeder.idle:
        await asyncio.sleep(0.02)
    return result


def config() -> SessionConfig:
    return SessionConfig(llm_options=dict(LLM_OPTIONS))


async def run_session(client: Client, body: Callable[[Feeder, Recorder], Any]) -> Any:
    session = VoiceSession(client, config())
    await session.start()
    rec, feeder = Recorder(session), Feeder(session)
    rec.start()
    feeder.start()
    try:
        return await body(feeder, rec)
    finally:
        await feeder.stop()
        await session.close()


# -- the naive baseline -----------------------------------------------------------------------------
def naive(client: Client, questions: list[Utterance], warm: Utterance) -> list[dict[str, float]]:
    """Per question: seconds of each stage of wait 1 s -> transcribe -> ask (whole) -> speak (whole).
    One untimed turn (`warm`) first, so no first-call cost of this path lands in its figures."""
    history: list[Message] = []
    out = []
    for q in [warm, *questions]:
        audio = Audio.from_samples(np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), q.samples,
                                                   np.zeros(int(0.2 * RATE), np.float32)]), RATE, name="turn.wav")
        t0 = time.monotonic()
        text = client.transcribe(audio, beam_size=1, log=False).text().strip()
        t1 = time.monotonic()
        reply = client.ask(text or "(silence)", system=DEFAULT_INSTRUCTIONS, history=history[-16:], log=False,
                           **LLM_OPTIONS).text().strip()
        t2 = time.monotonic()
        if reply:
            next(p for p in client.speak(reply, log=False).parts if isinstance(p, Audio))
        t3 = time.monotonic()
        if q is warm:
            continue
        history += [Message.user(text), Message.assistant(reply)]
        out.append({"stt": t1 - t0, "llm": t2 - t1, "tts": t3 - t2, "total": NAIVE_WAIT_S + t3 - t0})
    return out


# -- figures ----------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def ms(x: float) -> str:
    return "—" if x != x else f"{x * 1000:.0f}"


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0])


def stt_compute(client: Client, turns: list[Turn]) -> None:
    client.store.flush()
    for turn in turns:
        if turn.stt_log_id:
            try:
                latency = client.store.get(turn.stt_log_id).get("latency_ms")
            except Exception:  # noqa: BLE001 - a missing row only loses this figure
                latency = None
            turn.stt_compute = None if latency is None else latency / 1000


STAGES = [  # (label, function of a Turn -> seconds or None)
    ("VAD end of turn (speech_end -> turn_end)", lambda t: t.stage("speech_end", "turn_end")),
    ("  true speech end -> turn_end", lambda t: t.timings["turn_end"] - t.true_end if "turn_end" in t.timings else None),
    ("STT wait after turn end", lambda t: max(0.0, t.stage("turn_end", "stt_done"))
     if t.stage("turn_end", "stt_done") is not None else None),
    ("  STT compute (logged latency)", lambda t: t.stt_compute),
    ("LLM first token (stt_done ->)", lambda t: t.stage("stt_done", "llm_first_token")),
    ("first piece (first token ->)", lambda t: t.stage("llm_first_token", "first_piece")),
    ("TTS first audio (first piece ->)", lambda t: t.stage("first_piece", "tts_first_audio")),
    ("audio out (TTS first audio ->)", lambda t: t.stage("tts_first_audio", "first_audio_out")),
    ("voice-to-voice (session's speech_end mark)", lambda t: t.stage("speech_end", "first_audio_out")),
    ("voice-to-voice (true speech end -> first ReplyAudio)",
     lambda t: t.first_audio - t.true_end if t.first_audio and t.true_end else None),
]


def eot(turn: Turn) -> float:
    """True speech end -> the session's turn end (nan when the turn never ended)."""
    return turn.timings["turn_end"] - turn.true_end if "turn_end" in turn.timings and turn.true_end else float("nan")


def column(turns: list[Turn], fn: Callable[[Turn], float | None]) -> list[float]:
    return [v for v in (fn(t) for t in turns) if v is not None]


async def phases(client: Client, args: argparse.Namespace, questions: list[Utterance], long: list[Utterance],
                 cuts: list[Utterance]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    t = time.monotonic()
    await VoiceSession(client, config()).warm()  # the models load once per process; each phase's session is new
    print(f"warm: {time.monotonic() - t:.1f} s (VAD, Whisper, SmolLM2, Piper loaded)", flush=True)

    async def latency(feeder: Feeder, rec: Recorder) -> list[Turn]:
        turns = []
        for i, q in enumerate(questions[:args.turns]):
            turn = await one_turn(feeder, rec, q)
            turns.append(turn)
            v2v = turn.first_audio - turn.true_end if turn.first_audio and turn.true_end else float("nan")
            print(f"   {i + 1:>2}. {turn.status:<9} v2v {ms(v2v):>5} ms (end of turn {ms(eot(turn)):>4})  "
                  f"{turn.transcript!r} -> {turn.reply[:60]!r}"
                  + (f"  (split into {turn.commits} turns)" if turn.commits > 1 else ""), flush=True)
        return turns

    if args.turns:
        print(f"1. latency: {args.turns} turns in one session", flush=True)
        results["turns"] = await run_session(client, latency)

    async def barge(feeder: Feeder, rec: Recorder) -> list[float]:
        stops = []
        for i in range(args.barge_in):
            stop, what = await barge_turn(feeder, rec, long[i % len(long)], cuts[i % len(cuts)])
            print(f"   {i + 1:>2}. stop {ms(stop) if stop is not None else '—':>5} ms  {what}", flush=True)
            if stop is not None:
                stops.append(stop)
        return stops

    if args.barge_in:
        print(f"2. barge-in: {args.barge_in} replies interrupted ~1 s in", flush=True)
        results["barge"] = await run_session(client, barge)

    async def drift(feeder: Feeder, rec: Recorder) -> dict[str, Any]:
        turns, i = [], 0
        cpu0, wall0, append0 = time.process_time(), time.monotonic(), feeder.append_s
        fed0 = feeder.fed
        while feeder.fed - fed0 < args.minutes * 60 * RATE:
            turn = await one_turn(feeder, rec, questions[i % len(questions)])
            turns.append(turn)
            i += 1
            print(f"   {i:>3}. at {(feeder.fed - fed0) / RATE:6.1f} s  lag mean {ms(turn.lag_mean):>4} ms max "
                  f"{ms(turn.lag_max):>4} ms  v2v {ms(turn.first_audio - turn.true_end) if turn.first_audio else '—':>5} ms"
                  f" (end of turn {ms(eot(turn)):>4})  {turn.status}", flush=True)
        audio = (feeder.fed - fed0) / RATE
        return {"turns": turns, "audio_s": audio, "wall_s": time.monotonic() - wall0,
                "cpu_s": time.process_time() - cpu0, "append_s": feeder.append_s - append0}

    if args.minutes:
        print(f"3. drift: {args.minutes:g} min of conversation", flush=True)
        results["drift"] = await run_session(client, drift)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--barge-in", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2, help="Whisper cpu_threads and llama.cpp n_threads")
    parser.add_argument("--quick", action="store_true", help="5 turns, 2 barge-ins, 1 minute: a check, not figures")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.barge_in, args.minutes = 5, 2, 1.0

    client = Client(config={"engines": {"whisper": {"cpu_threads": args.threads},
                                        "llama-cpp": {"n_threads": args.threads}}})
    client.store.write_in_background()  # as the server does: the event loop never waits on SQLite
    print(f"home {client.settings.home}, {os.cpu_count()} CPUs visible, {args.threads} threads for Whisper and "
          f"llama.cpp; llm options {LLM_OPTIONS}", flush=True)

    t = time.monotonic()
    questions = [utterance(q) for q in QUESTIONS]
    questions = (questions * (args.turns // len(questions) + 1))[:max(args.turns, len(questions))]
    long = [utterance(q) for q in LONG_QUESTIONS]
    cuts = [utterance(q) for q in INTERRUPTIONS]
    print(f"speech: {len(QUESTIONS)} questions, {np.mean([q.seconds for q in questions]):.1f} s on average "
          f"(espeak-ng, {time.monotonic() - t:.1f} s to make)", flush=True)

    results = asyncio.run(phases(client, args, questions, long, cuts))
    base = naive(client, questions[:args.turns], cuts[0]) if args.turns and not args.no_baseline else []

    # -- report -------------------------------------------------------------------------------------------
    rows: list[tuple[str, str, str]] = []  # latency stages: (label, p50, p90)
    checks: list[tuple[str, str, str]] = []  # (check, value, goal)
    print()
    turns: list[Turn] = results.get("turns", [])
    loop_p50 = float("nan")
    if turns:
        stt_compute(client, turns)
        good = [t for t in turns if t.status == "completed" and t.first_audio]
        print(f"latency over {len(good)} of {len(turns)} turns (completed; {sum(t.commits > 1 for t in turns)} split "
              f"into more than one turn by the VAD)")
        print(f"  {'stage':<54}{'p50 ms':>8}{'p90 ms':>8}")
        for label, fn in STAGES:
            values = column(good, fn)
            rows.append((label.strip(), ms(pct(values, 50)), ms(pct(values, 90))))
            print(f"  {label:<54}{ms(pct(values, 50)):>8}{ms(pct(values, 90)):>8}")
        true_v2v = column(good, STAGES[-1][1])
        loop_p50 = pct(true_v2v, 50)
        vad_skew = column(good, lambda t: t.timings["speech_end"] - t.true_end if "speech_end" in t.timings else None)
        print(f"  (the session's speech_end mark - the true end: p50 {ms(pct(vad_skew, 50))} ms; "
              f"goal: voice-to-voice p50 <= 1000 ms: {'met' if loop_p50 <= 1.0 else 'NOT met'})")
    if base:
        print(f"naive baseline over {len(base)} turns (wait {NAIVE_WAIT_S:g} s, transcribe, ask whole, speak whole)")
        for key, label in (("stt", "STT"), ("llm", "LLM whole reply"), ("tts", "TTS whole reply"),
                           ("total", "voice-to-voice")):
            values = [b[key] for b in base]
            print(f"  {label:<54}{ms(pct(values, 50)):>8}{ms(pct(values, 90)):>8}")
        naive_p50 = pct([b["total"] for b in base], 50)
        rows.append(("naive baseline voice-to-voice", ms(naive_p50), ms(pct([b["total"] for b in base], 90))))
        print(f"  ratio voice-to-voice p50 naive / loop: {naive_p50 / loop_p50:.2f}x")
        checks.append(("voice-to-voice p50, naive / loop", f"{naive_p50 / loop_p50:.2f}x", "—"))
    if turns:
        checks.insert(0, ("voice-to-voice p50 (true speech end)", f"{ms(loop_p50)} ms", "<= 1000 ms"))

    stops = results.get("barge")
    if stops is not None:
        p50, worst = pct(stops, 50), (max(stops) if stops else float("nan"))
        print(f"barge-in stop over {len(stops)} of {args.barge_in}: p50 {ms(p50)} ms, max {ms(worst)} ms "
              f"(goal <= 200 ms: {'met' if worst <= 0.2 else 'p50 met' if p50 <= 0.2 else 'NOT met'})")
        checks.append(("barge-in stop, p50 / max", f"{ms(p50)} / {ms(worst)} ms", "<= 200 ms"))

    drift = results.get("drift")
    if drift:
        dturns: list[Turn] = drift["turns"]
        minutes = [(t.true_end - dturns[0].true_end) / 60 if t.true_end else 0.0 for t in dturns]
        lag = [t.lag_mean for t in dturns]
        per_min = slope(minutes, lag)
        v2v = [(m, t.first_audio - t.true_end) for m, t in zip(minutes, dturns) if t.first_audio and t.true_end]
        v2v_slope = slope([m for m, _ in v2v], [v for _, v in v2v])
        stall = [t.done - t.first_audio - t.reply_audio_s for t in dturns
                 if t.done and t.first_audio and t.status == "completed"]
        rtf_in = drift["append_s"] / drift["audio_s"]
        cpu = drift["cpu_s"] / drift["audio_s"]
        print(f"drift over {len(dturns)} turns, {drift['audio_s']:.0f} s of audio in {drift['wall_s']:.0f} s of wall time")
        print(f"  feeder lag (mean per turn): first {ms(lag[0])} ms, last {ms(lag[-1])} ms, slope "
              f"{per_min * 1000:+.1f} ms/min; worst tick {ms(max(t.lag_max for t in dturns))} ms")
        print(f"  voice-to-voice: first {ms(v2v[0][1]) if v2v else '—'} ms, last {ms(v2v[-1][1]) if v2v else '—'} ms, "
              f"slope {v2v_slope * 1000:+.1f} ms/min")
        print(f"  reply playout stall (playout time - audio length): p50 {ms(pct(stall, 50))} ms, "
              f"max {ms(max(stall) if stall else float('nan'))} ms")
        print(f"  real-time factor: input path (session.append) {rtf_in:.3f}; process CPU {cpu:.2f} s per audio s "
              f"= {cpu / args.threads:.2f} of {args.threads} cores (goal < 1: {'met' if cpu / args.threads < 1 else 'NOT met'})")
        verdict = "too few turns to judge" if len(dturns) < 5 else "met" if per_min * 1000 <= LAG_SLOPE_MS else "NOT met"
        print(f"  no growing lag (slope <= {LAG_SLOPE_MS:g} ms/min over >= 5 turns): {verdict}")
        checks.append((f"drift over {drift['audio_s'] / 60:.1f} min: feeder lag first -> last, slope",
                       f"{ms(lag[0])} -> {ms(lag[-1])} ms, {per_min * 1000:+.1f} ms/min", f"<= {LAG_SLOPE_MS:g} ms/min"))
        checks.append(("drift: voice-to-voice slope", f"{v2v_slope * 1000:+.0f} ms/min", "—"))
        checks.append(("real-time factor (process CPU s per audio s, per core)", f"{cpu / args.threads:.2f}", "< 1"))
        checks.append(("reply playout stall, max", f"{ms(max(stall) if stall else float('nan'))} ms", "—"))

    print(f"\nfor the README ({args.threads} threads, {os.cpu_count()} CPUs visible; "
          f"{len(turns)} turns, {args.barge_in} barge-ins, {args.minutes:g} min drift):\n")
    if rows:
        print("| voice loop stage | p50 ms | p90 ms |")
        print("|---|---:|---:|")
        for label, a, b in rows:
            print(f"| {label} | {a} | {b} |")
        print()
    print("| check | measured | goal |")
    print("|---|---:|---:|")
    for label, a, b in checks:
        print(f"| {label} | {a} | {b} |")


if __name__ == "__main__":
    main()
