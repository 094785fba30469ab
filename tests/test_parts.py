from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from imagine import Audio, Data, Image, InputError, LimitExceeded, Message, Modality, Text, Vector, Video, load_part
from imagine.parts import Limits, Segment, Segments, sniff_mime

from .helpers.media import png_bytes, wav_bytes


def test_sniffs_content_not_extension(tmp_path):
    disguised = tmp_path / "photo.wav"  # a PNG with the wrong extension
    disguised.write_bytes(png_bytes())
    part = load_part(disguised)
    assert isinstance(part, Image) and part.mime == "image/png" and part.name == "photo.wav"
    sound = tmp_path / "sound.png"
    sound.write_bytes(wav_bytes())
    assert isinstance(load_part(sound), Audio)


@pytest.mark.parametrize("head,mime", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"), (b"GIF89a....", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"), (b"fLaC\x00\x00", "audio/flac"),
    (b"OggS\x00\x02", "audio/ogg"), (b"ID3\x04\x00", "audio/mpeg"),
    (b"\x00\x00\x00\x18ftypisom\x00\x00", "video/mp4"), (b"\x00\x00\x00\x18ftypM4A \x00\x00", "audio/mp4"),
    (b"\x1aE\xdf\xa3\x9fB\x86", "video/webm"), (b"hello world", None),
])
def test_sniff_table(head, mime):
    assert sniff_mime(head) == mime


def test_hash_is_content_sha256_and_equality():
    data = png_bytes()
    a, b = Image(data), Image(data, name="other.png")
    import hashlib

    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert a == b and hash(a) == hash(b)
    assert a != Image(png_bytes(color=(0, 0, 255)))
    assert Text("hi").sha256 == hashlib.sha256(b"hi").hexdigest()


def test_parts_are_immutable():
    part = Text("hi")
    with pytest.raises(AttributeError):
        part.text = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Image(png_bytes()).data = b""  # type: ignore[misc]


def test_lazy_decode_and_pixel_limit():
    img = Image(png_bytes((40, 30)))
    assert img.pil().size == (40, 30)
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_PIXELS"):
        img.pil(Limits(max_pixels=100))


def test_byte_limit_names_the_setting(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes())
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_BYTES"):
        load_part(big, limits=Limits(max_bytes=10))


def test_wrong_family_and_undecodable(tmp_path):
    with pytest.raises(InputError, match="not a valid image"):
        Image(wav_bytes())
    broken = tmp_path / "broken.png"
    broken.write_bytes(png_bytes()[:40])  # truncated PNG
    with pytest.raises(InputError, match="could not be decoded"):
        load_part(broken)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="cannot use junk.bin"):
        load_part(junk)
    with pytest.raises(InputError, match="file not found"):
        load_part(tmp_path / "missing.png")
    with pytest.raises(InputError, match="empty"):
        Audio(b"")


def test_text_files_become_text_parts(tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# Title\nsome notes")
    part = load_part(note)
    assert isinstance(part, Text) and part.text.startswith("# Title")


def test_other_parts_and_records():
    vec = Vector([1, 2.5, 3])
    assert len(vec) == 3 and vec.values == (1.0, 2.5, 3.0)
    with pytest.raises(InputError):
        Vector([float("nan")])
    segs = Segments([Segment(0.0, 1.5, "hello"), Segment(1.5, 2.0, "there")])
    assert segs.modality is Modality.SEGMENTS and segs.to_record()["size"] > 0
    assert Data({"a": [1, 2]}).to_record()["value"] == {"a": [1, 2]}
    with pytest.raises(InputError):
        Data({"a": object()})
    video = Video(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 32)
    assert video.modality is Modality.VIDEO and video.mime == "video/mp4"


def test_message_builds_interleaved_parts():
    img = Image(png_bytes())
    msg = Message.user("look:", img, "what colour?")
    assert [p.modality for p in msg.parts] == [Modality.TEXT, Modality.IMAGE, Modality.TEXT]
    assert msg.text == "look:\nwhat colour?"
    assert msg.modalities == {Modality.TEXT, Modality.IMAGE}
    with pytest.raises(InputError):
        Message("robot", ["hi"])  # type: ignore[arg-type]


@given(st.binary(min_size=1, max_size=64))
def test_sniff_never_crashes(data):
    result = sniff_mime(data)
    assert result is None or "/" in result


def test_tool_use_and_result_parts():
    from imagine import ToolResult, ToolUse

    args = {"city": "Oslo"}
    use = ToolUse("call_1", "get_weather", args)
    args["city"] = "Bergen"  # the part keeps its own copy: its hash cannot change under it
    assert use.arguments == {"city": "Oslo"} and use == ToolUse("call_1", "get_weather", {"city": "Oslo"})
    assert use != ToolUse("call_2", "get_weather", {"city": "Oslo"}) and hash(use) == hash(ToolUse(
        "call_1", "get_weather", {"city": "Oslo"}))
    with pytest.raises(AttributeError):
        use.name = "x"  # type: ignore[misc]
    assert use.modality is Modality.DATA
    assert use.to_record() == {"kind": "data", "mime": "application/x-imagine-tool-use+json", "sha256": use.sha256,
                               "size": len(use.content_bytes()), "type": "tool_use", "id": "call_1",
                               "name": "get_weather", "arguments": {"city": "Oslo"}}
    result = ToolResult("call_1", {"temp_c": 12}, name="get_weather")
    assert result.text == '{"temp_c": 12}' and not result.is_error
    assert ToolResult("call_1", "boom", is_error=True).text == "boom"
    record = result.to_record()
    assert record["type"] == "tool_result" and record["call_id"] == "call_1" and record["content"] == {"temp_c": 12}
    assert record["is_error"] is False and record["name"] == "get_weather"
    assert result != ToolResult("call_1", {"temp_c": 12}, name="get_weather", is_error=True)
    with pytest.raises(InputError, match="JSON"):
        ToolResult("call_1", object())
    with pytest.raises(InputError, match="call id"):
        ToolUse("", "get_weather", {})
    with pytest.raises(InputError, match="dict"):
        ToolUse("call_1", "get_weather", [1])  # type: ignore[arg-type]


def test_message_tool_result_and_its_modalities():
    from imagine import ToolResult, ToolUse

    msg = Message.tool_result("call_1", "12 C", name="get_weather")
    assert msg.role == "tool" and msg.parts == (ToolResult("call_1", "12 C", name="get_weather"),)
    assert msg.tool_results == list(msg.parts) and msg.text == ""
    # tool parts read as text: every text engine can take them (natively or as text)
    assert msg.modalities == {Modality.TEXT}
    asked = Message("assistant", ["Let me check.", ToolUse("call_1", "get_weather", {"city": "Oslo"})])
    assert asked.modalities == {Modality.TEXT} and asked.text == "Let me check."
    assert asked.tool_uses == [ToolUse("call_1", "get_weather", {"city": "Oslo"})]
