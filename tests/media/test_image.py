"""Image decoding at the size an engine uses (media/image.py through `Image.pil(max_side=...)`)."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from imagine import Image, InputError, LimitExceeded
from imagine.media import Limits


def encoded(img: PILImage.Image, fmt: str = "PNG") -> Image:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return Image(buf.getvalue(), name=f"x.{fmt.lower()}")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_big_image_comes_back_at_the_side_asked_for(fmt: str) -> None:
    part = encoded(PILImage.new("RGB", (3000, 1500), (200, 10, 10)), fmt)
    assert part.size == (3000, 1500)  # from the header
    small = part.pil(max_side=1000, mode="RGB")
    assert small.size == (1000, 500) and small.mode == "RGB"
    r, g, b = small.getpixel((500, 250))
    assert r > 180 and g < 40 and b < 40
    assert part.pil(max_side=4000).size == (3000, 1500)  # never scaled up


def test_transparency_is_flattened_onto_white_after_scaling() -> None:
    img = PILImage.new("RGBA", (800, 800), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (0, 0, 400, 800))
    small = encoded(img).pil(max_side=100, mode="RGB")
    assert small.size == (100, 100)
    assert small.getpixel((10, 50)) == (0, 0, 255) and small.getpixel((90, 50)) == (255, 255, 255)


def test_palette_and_bilevel_images_scale_too() -> None:
    assert encoded(PILImage.new("P", (900, 300), 3)).pil(max_side=300, mode="RGB").size == (300, 100)
    assert encoded(PILImage.new("1", (900, 300), 1)).pil(max_side=90, mode="L").getpixel((5, 5)) == 255


def test_limits_and_errors_hold_on_the_scaled_path() -> None:
    part = encoded(PILImage.new("RGB", (400, 300)))
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_PIXELS"):
        part.pil(Limits(max_pixels=1000), max_side=10)
    broken = Image(part.data[: len(part.data) // 2] + b"\x00" * 10, mime="image/png")
    with pytest.raises(InputError, match="could not be decoded"):
        broken.pil(max_side=10)
