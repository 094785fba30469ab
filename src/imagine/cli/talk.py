"""`imagine talk`: a spoken conversation in the terminal over the realtime voice loop (`VoiceSession`).

Live it uses the microphone and the speaker (through `sounddevice`, optional: PortAudio is a system
library). With `--in FILE` the person's side comes from a recording instead, fed at the pace it was
spoken, so a conversation can be repeated, measured and tested where no sound card exists; `-O` writes
what a listener would have heard, as a stereo WAV: the person on the left, the assistant on the right.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from ._common import OPTIONS, OutPath, output_path, parse_options

__all__ = ["talk"]

RATE = 16000  # what the loop hears (Silero VAD, Whisper)
OUT_RATE = 24000  # what it speaks, and the rate of the -O recording
CHUNK_S = 0.02  # input is handed over in 20 ms pieces, as a microphone delivers it
TAIL_CAP_S = 30.0  # silence fed after the file ends, at most, waiting for the last reply


class _Pacer:
    """The conversation clock, driven by the input. In real time it is the wall clock and the input is fed
    as it would be recorded. `fast` skips dead air: while nobody speaks and no reply is under way, input is
    fed at once and the clock jumps over it; a turn or a reply in flight is fed in real time, so turn ends,
    barge-in, what the listener heard and the latency figures come out as they would live."""

    def __init__(self, fast: bool) -> None:
        self.fast, self.skipped, self.start, self.fed = fast, 0.0, 0.0, 0.0

    def clock(self) -> float:
        return time.monotonic() + self.skipped

    async def feed_at(self, seconds: float, idle: bool) -> None:
        """Wait until input up to `seconds` would have been recorded (or skip there when idle and fast)."""
        late = self.start + seconds - self.clock()
        if self.fast and idle:
            self.skipped += max(0.0, late)
        elif late > 0:
            await asyncio.sleep(late)
        self.fed = seconds


@dataclass
class _Conversation:
    """What the event reader keeps: the turn in flight, both sides of the recording, each reply's timings."""

    person: list[np.ndarray] = field(default_factory=list)  # input as fed, 16 kHz
    replies: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (start s, samples at OUT_RATE)
    reply_end: float = 0.0  # where the listener's play queue runs dry
    turn_open: bool = False  # speech started, its turn not yet answered or dropped
    turns: list[tuple[str, dict[str, float]]] = field(default_factory=list)  # (status, timings) per reply
    error: Any = None

    def place(self, samples: np.ndarray, now: float) -> float:
        """Reply audio plays when handed out, or when the audio before it ends: the client's play queue."""
        start = max(now, self.reply_end)
        self.replies.append((start, samples))
        self.reply_end = start + len(samples) / OUT_RATE
        return start

    def cut(self, now: float) -> None:
        """Barge-in: the player stops, the audio queued past `now` is never heard."""
        kept = [(s, a[: max(0, int(round((now - s) * OUT_RATE)))]) for s, a in self.replies if s < now]
        self.replies, self.reply_end = kept, min(self.reply_end, now)

    def wav(self, path: Path) -> float:
        """Stereo 16-bit WAV: the person left, the assistant right; returns its length in seconds."""
        from ..realtime.audio import Resampler, to_pcm16

        heard = np.concatenate(self.person) if self.person else np.zeros(0, np.float32)
        resample = Resampler(RATE, OUT_RATE)
        left = np.concatenate([resample(heard), resample.flush()])
        ends = [int(round(s * OUT_RATE)) + len(a) for s, a in self.replies]
        right = np.zeros(max([len(left), *ends]), np.float32)
        for start, samples in self.replies:
            first = int(round(start * OUT_RATE))
            right[first:first + len(samples)] += samples
        left = np.pad(left, (0, len(right) - len(left)))
        with wave.open(str(path), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(OUT_RATE)
            out.writeframes(to_pcm16(np.stack([left, right], axis=1).reshape(-1)))
        return len(right) / OUT_RATE


def _relative(timings: dict[str, float]) -> dict[str, float]:
    """Monotonic marks as seconds after the end of the person's speech (absolute marks mean nothing outside)."""
    base = timings.get("speech_end")
    return {} if base is None else {k: round(v - base, 3) for k, v in timings.items()}


def _event_json(event: Any, now: float, placed: float | None) -> dict[str, Any]:
    from ..realtime import events as ev

    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()
    if isinstance(event, ev.ReplyAudio):  # summarised: the samples go to -O, not into the JSON
        body: dict[str, Any] = {"response_id": event.response_id, "item_id": event.item_id, "rate": event.rate,
                                "bytes": len(event.pcm), "seconds": round(len(event.pcm) / 2 / event.rate, 3),
                                "plays_at": None if placed is None else round(placed, 3)}
    else:
        body = asdict(event)
        if "timings" in body:
            body["timings"] = _relative(body["timings"])
    return {"type": kind, "time": round(now, 3), **body}


class _Display:
    """The live transcript: the person's words as they are heard (one line, rewritten while they speak on a
    terminal), then "you: ...", and the reply as it is spoken, marked when the person cut it short."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self.partial = False  # a partial transcript is on the current line
        self.replying = False  # a reply line is open

    def _end_line(self) -> None:
        if self.partial and self.console.is_terminal:
            self.console.file.write("\r\x1b[2K")
        elif self.replying:
            self.console.print()
        self.partial = self.replying = False

    def show(self, event: Any) -> None:
        from rich.text import Text

        from ..realtime import events as ev

        if isinstance(event, ev.TranscriptPartial) and self.console.is_terminal:
            self._end_line()
            text = event.text[-(self.console.width - 10):]
            self.console.print(Text("you: ", style="dim cyan") + Text(text + " …", style="dim"), end="")
            self.console.file.flush()
            self.partial = True
        elif isinstance(event, ev.TurnCommitted):
            self._end_line()
            self.console.print(Text("you: ", style="bold cyan") + Text(event.item.text))
        elif isinstance(event, ev.TurnDropped):
            self._end_line()
        elif isinstance(event, ev.ReplyText):
            lead = Text(" ")
            if not self.replying:
                self._end_line()
                lead, self.replying = Text("imagine: ", style="bold magenta"), True
            self.console.print(lead + Text(event.text), end="")
            self.console.file.flush()
        elif isinstance(event, ev.ReplyDone):
            if self.replying and event.status == "cancelled":
                self.console.print(Text(" [interrupted]", style="yellow"), end="")
            self._end_line()

    def summary(self, turns: list[tuple[str, dict[str, float]]]) -> None:
        from rich.text import Text

        self._end_line()
        for n, (status, timings) in enumerate(turns, 1):
            marks = _relative(timings)
            if "first_audio_out" not in marks:
                continue
            steps = ", ".join(f"{name} +{marks[key]:.2f}" for name, key in
                              (("turn end", "turn_end"), ("transcript", "stt_done"), ("first token", "llm_first_token"),
                               ("first audio", "tts_first_audio")) if key in marks)
            self.console.print(Text(f"turn {n}: {marks['first_audio_out']:.2f} s from the end of speech to the first "
                                    f"reply audio ({steps})" + (" [interrupted]" if status == "cancelled" else ""),
                                    style="dim"), soft_wrap=True)


class _Speaker:
    """The reply's audio for the sound card: a play queue the output callback drains; a cut empties it."""

    def __init__(self) -> None:
        import threading

        self.lock, self.queue = threading.Lock(), np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> None:
        with self.lock:
            self.queue = np.concatenate([self.queue, samples])

    def clear(self) -> None:
        with self.lock:
            self.queue = np.zeros(0, np.float32)

    def fill(self, out: Any, frames: int, time_info: Any, status: Any) -> None:
        with self.lock:
            got, self.queue = self.queue[:frames], self.queue[frames:]
        out[:, 0] = np.pad(got, (0, frames - len(got)))


def _sounddevice() -> Any:
    """The sounddevice module with a microphone and a speaker behind it, or a one-line error saying what to do."""
    from ..errors import EngineUnavailable

    hint = "pip install sounddevice, which needs the PortAudio library; or talk through files: --in FILE -O OUT.wav"
    try:
        import sounddevice as sd  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        raise EngineUnavailable("no microphone: the sounddevice package is not installed", hint=hint) from None
    except OSError as exc:  # installed, but libportaudio is missing
        raise EngineUnavailable(f"no microphone: sounddevice cannot load PortAudio ({exc})", hint=hint) from None
    for kind in ("input", "output"):
        try:
            sd.query_devices(kind=kind)
        except Exception:
            raise EngineUnavailable(f"no {'microphone' if kind == 'input' else 'speaker'} found (no default audio "
                                    f"{kind} device)", hint="connect one, or talk through files: --in FILE") from None
    return sd


def _read_input(path: str) -> np.ndarray:
    from ..errors import InputError
    from ..parts import Audio, Video, load_part

    part = load_part(path)
    if not isinstance(part, (Audio, Video)):
        raise InputError(f"{path} is not audio or video", hint="give a WAV, FLAC, MP3, OGG, MP4 or WebM file")
    samples, _ = part.samples(RATE)
    if not len(samples):
        raise InputError(f"{path} has no sound")
    return np.asarray(samples, np.float32)


async def _feed_file(session: Any, samples: np.ndarray, pacer: _Pacer, conv: _Conversation) -> None:
    """The recording, then silence until the last turn is answered and its reply heard (at most TAIL_CAP_S)."""
    step, position, tail = int(CHUNK_S * RATE), 0, 0.0
    silence = np.zeros(step, np.float32)
    while True:
        busy = conv.turn_open or session.replying()
        if position < len(samples):
            chunk = samples[position:position + step]
        elif busy and tail < TAIL_CAP_S:
            chunk, tail = silence, tail + CHUNK_S
        else:
            return
        position += len(chunk)
        await pacer.feed_at(position / RATE, idle=not busy)
        conv.person.append(chunk)
        session.append(chunk, RATE)
        await asyncio.sleep(0)  # the event reader sees what this chunk started before the next is paced


async def _feed_mic(session: Any, sd: Any, pacer: _Pacer, conv: _Conversation, speaker: _Speaker) -> None:
    """The microphone until Ctrl-C; the reply plays through the speaker as the session hands it out."""
    loop = asyncio.get_running_loop()
    heard: asyncio.Queue[np.ndarray] = asyncio.Queue()

    def on_audio(data: Any, frames: int, time_info: Any, status: Any) -> None:
        loop.call_soon_threadsafe(heard.put_nowait, np.array(data[:, 0], np.float32))

    block = int(CHUNK_S * RATE)
    with sd.InputStream(samplerate=RATE, channels=1, dtype="float32", blocksize=block, callback=on_audio), \
            sd.OutputStream(samplerate=OUT_RATE, channels=1, dtype="float32", callback=speaker.fill):
        while True:
            chunk = await heard.get()
            pacer.fed += len(chunk) / RATE
            conv.person.append(chunk)
            session.append(chunk, RATE)


def _read_picture(path: str) -> Any:
    from ..errors import InputError
    from ..parts import Image, load_part

    part = load_part(path)
    if not isinstance(part, Image):
        raise InputError(f"--show {path}: not a picture ({part.modality.value})", hint="give a PNG, JPEG or WebP file")
    return part


async def _talk(config: Any, samples: np.ndarray | None, sd: Any, pacer: _Pacer, conv: _Conversation,
                as_json: bool, display: _Display | None, pictures: Sequence[Any] = ()) -> None:
    from ..client import default_client
    from ..realtime import VoiceSession
    from ..realtime import events as ev
    from ..realtime.audio import from_pcm16

    session = VoiceSession(default_client(), config, clock=pacer.clock)
    await session.warm()  # three model loads now, not in the first turn
    for picture in pictures:
        session.show(picture)
    speaker = _Speaker()
    pacer.start = pacer.clock()
    feeder = asyncio.ensure_future(_feed_file(session, samples, pacer, conv) if samples is not None
                                   else _feed_mic(session, sd, pacer, conv, speaker))

    async def read() -> None:
        async for event in session.events():
            now, placed = pacer.fed, None
            if isinstance(event, ev.SpeechStarted):
                conv.turn_open = True
            elif isinstance(event, (ev.TurnCommitted, ev.TurnDropped)):
                conv.turn_open = False  # a committed turn is answered at once: session.replying() takes over
            elif isinstance(event, ev.ReplyAudio):
                samples = from_pcm16(event.pcm)
                placed = conv.place(samples, now)
                speaker.push(samples)
            elif isinstance(event, ev.ReplyDone):
                conv.turns.append((event.status, dict(event.timings)))
                if event.status == "cancelled":
                    conv.cut(now)
                    speaker.clear()
            elif isinstance(event, ev.SessionError):
                conv.error = event
                feeder.cancel()
            if as_json:
                click.echo(json.dumps(_event_json(event, now, placed)))
            elif display is not None:
                display.show(event)

    reader = asyncio.ensure_future(read())
    try:
        await feeder
    except asyncio.CancelledError:
        if conv.error is None:
            raise
    finally:
        await session.close()
        await reader


@click.command()
@click.option("-m", "--model", help="The language model: ENGINE:MODEL or an alias (default: the bundled one).")
@click.option("--voice", help="The speech model: piper, espeak, openai:tts-1, ... (default: Piper's bundled voice).")
@OPTIONS
@click.option("--instructions", help="The system prompt (default: a short spoken-style assistant).")
@click.option("--in", "infile", type=click.Path(), help="Talk from this audio or video FILE instead of the microphone.")
@click.option("-O", "--out", type=OutPath(), help="Write the conversation as heard to this WAV: the person on the "
              "left channel, the assistant on the right.")
@click.option("--realtime/--fast", default=True, help="With --in: feed the file at the pace it was spoken "
              "(default), or skip the silence in which nothing happens.")
@click.option("--show", "shown", multiple=True, type=click.Path(), help="A picture to talk about (\"what does this "
              "say?\"): given to a model that sees, else read with OCR. Repeatable.")
@click.option("--tool", "tools", multiple=True, help="A built-in tool the model may call by voice (read_text, "
              "transcribe, search, ...). Repeatable; -o tool_choice=required makes the bundled model use one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per session event (audio summarised).")
def talk(model: str | None, voice: str | None, options: tuple[str, ...], instructions: str | None,
         infile: str | None, out: str | None, realtime: bool, shown: tuple[str, ...], tools: tuple[str, ...],
         as_json: bool) -> None:
    """Talk with a model by voice: microphone and speaker, or --in FILE (-O OUT.wav); live transcript and reply."""
    from .._bridge import run_sync
    from ..errors import InputError, UpstreamError
    from ..realtime import DEFAULT_INSTRUCTIONS, SessionConfig

    llm_options = {"max_tokens": 120, **parse_options(options)}
    if infile is None and not realtime:
        raise InputError("--fast only applies to --in FILE", hint="a microphone speaks in real time")
    samples = _read_input(infile) if infile is not None else None
    sd = _sounddevice() if samples is None else None
    pictures = [_read_picture(path) for path in shown]
    config = SessionConfig(model=model, voice=voice, llm_options=llm_options, output_rate=OUT_RATE,
                           instructions=DEFAULT_INSTRUCTIONS if instructions is None else instructions,
                           tools=list(tools) or None)
    pacer, conv = _Pacer(fast=not realtime), _Conversation()
    display = None if as_json else _Display()
    if display is not None and samples is None:
        click.echo("listening (Ctrl-C to stop; use headphones: the assistant must not hear itself)", err=True)
    try:
        run_sync(_talk(config, samples, sd, pacer, conv, as_json, display, pictures))
    except KeyboardInterrupt:
        if samples is not None:  # a file stopped early is an interruption; the microphone ends this way
            raise
    if conv.error is not None:
        raise UpstreamError(conv.error.message, hint=conv.error.hint)
    if display is not None:
        display.summary(conv.turns)
    if out:
        target = output_path(out, "talk.wav")
        sys.stdout.flush()  # the transcript first, then where the recording went
        seconds = conv.wav(target)
        click.echo(f"wrote {target} ({seconds:.1f} s)", err=True)
