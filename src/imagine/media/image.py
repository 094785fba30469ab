"""Still images through Pillow: open (header only, pixel limit checked), decode, and decode *small*.

An engine that resizes its input anyway (OCR to a 2000 px side, CLIP to 224 px) asks `decode_image`
for the size it uses: a JPEG is then decoded at 1/2, 1/4 or 1/8 scale by the codec itself (Pillow's
`draft`), any other format is box-reduced by a whole factor and resampled the moment it is decoded, and
the conversion to the engine's mode happens on the small image. A 7000x7000 PNG so costs one transient
full-size buffer instead of the three or four full-size copies (RGBA, RGB, array, model input) an engine
would otherwise hold at once.
"""

from __future__ import annotations

import io
from typing import Any

from ..errors import InputError, LimitExceeded
from .limits import Limits

__all__ = ["decode_image", "fit_within", "open_image"]

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _undecodable(name: str, exc: Exception) -> InputError:
    return InputError(f"{name} could not be decoded: {exc}", hint="check the file is a complete, valid image")


def open_image(data: bytes, limits: Limits | None, name: str) -> Any:
    """A lazily decoded PIL image: only the header is read, and its pixel count is checked against
    `limits` (None: only Pillow's own decompression-bomb cap, for reading the size alone)."""
    from PIL import Image as PILImage

    try:
        img = PILImage.open(io.BytesIO(data))
        width, height = img.size
    except PILImage.DecompressionBombError as exc:  # Pillow's own cap, far above ours: same answer
        cap = f"{limits.max_pixels:,}" if limits else f"{2 * (PILImage.MAX_IMAGE_PIXELS or 0):,}"
        raise LimitExceeded(f"{name} is over the limit of {cap} pixels ({str(exc).split('(')[1].split(')')[0]})",
                            hint="raise it with IMAGINE_MAX_PIXELS") from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise _undecodable(name, exc) from None
    if limits and width * height > limits.max_pixels:
        raise LimitExceeded(f"{name} has {width}x{height} pixels, over the limit of {limits.max_pixels:,}",
                            hint="raise it with IMAGINE_MAX_PIXELS")
    return img


def fit_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down (aspect kept, each side at least 1) so its longer side is at most `max_side`."""
    width, height = size
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(img: Any, target: tuple[int, int]) -> Any:
    """`img` (decoded) resampled to `target`: a whole-factor box reduce first (cheap, one pass), then
    Lanczos for the rest; alpha is premultiplied by Pillow on the way, so edges do not darken."""
    from PIL import Image as PILImage

    if img.mode not in ("1", "L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"):
        has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")  # palette, 16-bit: no reduce for those
    elif img.mode == "1":
        img = img.convert("L")  # a bilevel scan resamples to grey, not to dithered noise
    factor = min(img.width // target[0], img.height // target[1])
    if factor > 1:
        img = img.reduce(factor)
    if img.size != target:
        img = img.resize(target, PILImage.Resampling.LANCZOS)
    return img


def _to_mode(img: Any, mode: str) -> Any:
    """`img` in `mode`; transparency is flattened onto white when `mode` has no alpha channel."""
    from PIL import Image as PILImage

    if img.mode == mode:
        return img
    if mode not in _ALPHA_MODES and (img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)):
        rgba = img.convert("RGBA")
        img = PILImage.alpha_composite(PILImage.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert(mode)


def decode_image(data: bytes, limits: Limits, name: str, *, max_side: int | None = None,
                 mode: str | None = None, upright: bool = False) -> Any:
    """The decoded PIL image, limit-checked before any pixel is decoded.

    max_side: the longest side the caller uses; a larger image comes back scaled down to it (aspect
    kept), and never wholly decoded at full size when it is a JPEG. mode: convert to this mode (alpha
    flattened onto white when it has none), after scaling. upright: apply the EXIF orientation, so the
    pixels are what a viewer shows (the scale is the same on both axes, so it holds either way).
    """
    from PIL import ImageOps

    img = open_image(data, limits, name)
    target = fit_within(img.size, max_side) if max_side else img.size
    try:
        if target != img.size and img.format == "JPEG":
            img.draft(mode if mode in ("RGB", "L") else None, target)  # the codec decodes at 1/2, 1/4 or 1/8 scale
        img.load()
        if target != img.size:
            img = _shrink(img, fit_within(img.size, max(target)))
        if upright:
            img = ImageOps.exif_transpose(img) or img
        if mode:
            img = _to_mode(img, mode)
    except MemoryError:
        raise
    except Exception as exc:
        raise _undecodable(name, exc) from None
    return img
