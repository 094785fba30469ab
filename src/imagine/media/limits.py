"""Caps on decoded media, checked before and while decoding, so a hostile file cannot exhaust memory.

They travel on every Request (`Request.limits`), from the caller's settings (`[limits]` in config.toml,
IMAGINE_MAX_* variables)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Caps checked before decoding, so a hostile file cannot exhaust memory."""

    max_bytes: int = 512 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_audio_seconds: float = 4 * 3600
    max_video_frames: int = 20_000


DEFAULT_LIMITS = Limits()
