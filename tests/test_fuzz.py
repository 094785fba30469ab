"""Fuzzing the parsers that take what a person types or a file holds (issue 13, bad bytes and odd values).

Each one returns a result or raises an ImagineError whose message is one line; never another exception.
IMAGINE_FUZZ_EXAMPLES sets how many examples each test tries (default 200)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from imagine.errors import ImagineError

FUZZ = settings(max_examples=int(os.environ.get("IMAGINE_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# text as a person may type it, and as Python hands over undecodable bytes (lone surrogates)
any_text = st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
                     st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)))
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"RIFF\x00\x00\x00\x00WAVE",
         b"fLaC", b"ID3", b"\xff\xfb", b"OggS", b"\x1aE\xdf\xa3", b"\x00\x00\x00\x18ftypisom", b"BM", b"II*\x00", b""]
any_bytes = st.builds(lambda head, tail: head + tail, st.sampled_from(MAGIC), st.binary(max_size=300))


def one_line(exc: ImagineError) -> None:
    assert "\n" not in str(exc) and "\r" not in str(exc) and str(exc).strip(), repr(str(exc))


@FUZZ
@given(st.lists(any_text, max_size=4))
def test_cli_options_parse_or_say_why(pairs):
    from imagine.cli._common import parse_options

    try:
        options = parse_options(pairs)
    except ImagineError as exc:
        one_line(exc)
    else:
        assert isinstance(options, dict)


@FUZZ
@given(any_text, st.one_of(st.none(), st.floats(), st.integers()))
def test_policy_parses_or_says_why(text, max_cost):
    from imagine.router import Policy

    try:
        policy = Policy.parse(text, max_cost=max_cost)
    except ImagineError as exc:
        one_line(exc)
    else:
        assert policy.max_cost is None or policy.max_cost == policy.max_cost  # never nan


@FUZZ
@given(st.one_of(st.none(), any_text, st.binary(max_size=64)), st.one_of(st.none(), any_text))
def test_build_messages_or_say_why(prompt, system):
    from imagine.media.limits import DEFAULT_LIMITS
    from imagine.tasks import build_messages

    try:
        messages = build_messages(prompt, (), system, DEFAULT_LIMITS)
    except ImagineError as exc:
        one_line(exc)
    else:
        assert messages and all(m.parts for m in messages if m.role == "user")


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt EXIF it is given
@FUZZ
@given(any_bytes)
def test_load_part_on_any_bytes(data):
    from imagine.parts import Part, load_part

    try:
        part = load_part(data)
    except ImagineError as exc:
        one_line(exc)
    else:
        assert isinstance(part, Part)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(any_bytes, st.sampled_from(["x.png", "x.txt", "x.wav", "x.mp4", "x"]))
def test_load_part_on_any_file(tmp_path_factory, data, name):
    from imagine.parts import Part, load_part

    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    try:
        part = load_part(path)
    except ImagineError as exc:
        one_line(exc)
    else:
        assert isinstance(part, Part)


@FUZZ
@given(any_bytes, st.integers(1, 4096))
def test_audio_blocks_on_any_bytes(data, block):
    """The streaming decoder that long recordings go through: blocks of exactly `block` samples (the last
    one shorter, never empty) or one clear error."""
    from imagine.parts import Audio

    try:
        sizes = [len(b) for b in Audio(data or b"\x00", mime="audio/wav").blocks(16000, block)]
    except ImagineError as exc:
        one_line(exc)
    else:
        assert all(size == block for size in sizes[:-1]) and all(0 < size <= block for size in sizes)


def test_the_examples_setting_is_read():
    assert FUZZ.max_examples == int(os.environ.get("IMAGINE_FUZZ_EXAMPLES", "200")) and FUZZ.deadline is None

