"""Timestamps and subtitle formats (SRT, WebVTT) for Segments."""

from __future__ import annotations

from .parts import Segments

__all__ = ["format_timestamp", "to_srt", "to_vtt"]


def format_timestamp(seconds: float, sep: str = ".") -> str:
    """HH:MM:SS.mmm (sep="," for SRT)."""
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def to_srt(segments: Segments) -> str:
    blocks = []
    for number, seg in enumerate(segments.items, 1):
        blocks.append(f"{number}\n{format_timestamp(seg.start, ',')} --> {format_timestamp(seg.end, ',')}\n"
                      f"{seg.text.strip()}\n")
    return "\n".join(blocks)


def to_vtt(segments: Segments) -> str:
    blocks = ["WEBVTT\n"]
    for seg in segments.items:
        blocks.append(f"{format_timestamp(seg.start)} --> {format_timestamp(seg.end)}\n{seg.text.strip()}\n")
    return "\n".join(blocks)
