"""The rapidocr engine on text rendered with Pillow: exact read-back, reading order, boxes, errors, no network."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("rapidocr", reason="needs the vision extra: pip install -e '.[vision]'")

from PIL import Image as PILImage  # noqa: E402
from PIL import ImageDraw, ImageFont  # noqa: E402

from imagine import Image, InputError, LimitExceeded, Message, Modality, OptionsError, get_registry  # noqa: E402
from imagine.config import get_settings, reset_settings  # noqa: E402
from imagine.engine import Request, Response  # noqa: E402
from imagine.engines.rapidocr import RapidOcrEngine, bundled_model_files, reading_order, tidy_line  # noqa: E402
from imagine.parts import Data  # noqa: E402

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
LINES = ["Invoice number 4821", "The quick brown fox jumps", "Meeting at 10:30 tomorrow", "Total due: $318.50"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Any connection attempt fails loudly and is recorded; every test checks none was made."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network access attempted during an OCR test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert attempts == [], f"rapidocr tried to reach the network: {attempts}"


def font(name: str | None, size: int) -> Any:
    if name is None:
        return ImageFont.load_default(size=size)  # Pillow's bundled TTF (Pillow >= 10.1)
    path = DEJAVU / name
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    return ImageFont.truetype(str(path), size)


def render(rows: list[tuple[int, int, str]], typeface: Any, size: tuple[int, int], *, noise: bool = False,
           seed: int = 0, fmt: str = "PNG") -> Image:
    """An Image part with each (x, y, text) drawn dark on white, or on a seeded noisy grey."""
    width, height = size
    if noise:
        rng = np.random.default_rng(seed)
        pixels = np.clip(rng.normal(195, 30, (height, width, 3)), 0, 255).astype(np.uint8)
        img = PILImage.fromarray(pixels)
    else:
        img = PILImage.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    for x, y, text in rows:
        draw.text((x, y), text, fill=(20, 20, 20), font=typeface)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return Image(buf.getvalue(), name=f"test.{fmt.lower()}")


def ocr(*parts: Any, **options: Any) -> Response:
    engine = get_registry().engine("rapidocr")
    request = Request(messages=(Message.user(*parts),), model="pp-ocr", options=engine.parse_options(options),
                      want=Modality.TEXT, limits=get_settings().part_limits())
    return Response(engine, request).complete()


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def data_parts(response: Response) -> list[Data]:
    return [p for p in response.parts if isinstance(p, Data)]


# -- reading text back --------------------------------------------------------------------------

FONTS = [(None, 22), (None, 40), ("DejaVuSans.ttf", 28), ("DejaVuSerif.ttf", 32),
         ("DejaVuSansMono.ttf", 26), ("DejaVuSans-Bold.ttf", 20)]


@pytest.mark.parametrize("noise", [False, True], ids=["plain", "noisy"])
@pytest.mark.parametrize("face,size", FONTS, ids=[f"{n or 'pillow-default'}-{s}" for n, s in FONTS])
def test_rendered_lines_are_read_back_exactly(face: str | None, size: int, noise: bool) -> None:
    typeface = font(face, size)
    step = int(size * 1.9)
    rows = [(20, 20 + i * step, line) for i, line in enumerate(LINES)]
    part = render(rows, typeface, (size * 18, 40 + step * len(LINES)), noise=noise, seed=size)
    response = ocr(part)
    got = response.text().split("\n")
    assert [squash(g) for g in got] == LINES
    (data,) = data_parts(response)
    assert [line["text"] for line in data.value["lines"]] == got
    assert all(0.5 <= line["confidence"] <= 1 for line in data.value["lines"])


def test_jpeg_on_a_coloured_background() -> None:
    img = PILImage.new("RGB", (640, 120), (250, 235, 200))
    ImageDraw.Draw(img).text((20, 35), "Please reply by Friday", fill=(30, 30, 120), font=font(None, 36))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    assert squash(ocr(Image(buf.getvalue())).text()) == "Please reply by Friday"


def test_lines_come_back_in_reading_order() -> None:
    typeface = font(None, 32)
    # drawn out of order, with two boxes sharing the first row and a slight vertical offset
    rows = [(30, 250, "Delta Echo"), (420, 34, "Bravo"), (30, 140, "Charlie"), (30, 30, "Alpha")]
    response = ocr(render(rows, typeface, (700, 320)))
    assert response.text() == "Alpha\nBravo\nCharlie\nDelta Echo"
    ys = [min(p[1] for p in line["box"]) for line in data_parts(response)[0].value["lines"]]
    assert ys[0] < ys[2] < ys[3]


def test_boxes_lie_inside_the_image_and_around_the_text() -> None:
    width, height = 600, 200
    response = ocr(render([(40, 30, "Hello World"), (40, 110, "Second line here")], font(None, 36), (width, height)))
    (data,) = data_parts(response)
    assert data.value["image"] == 0
    lines = data.value["lines"]
    assert len(lines) == 2
    for line in lines:
        assert set(line) == {"text", "confidence", "box"}
        assert len(line["box"]) == 4
        for x, y in line["box"]:
            assert 0 <= x < width and 0 <= y < height
    first_top = min(p[1] for p in lines[0]["box"])
    first_bottom = max(p[1] for p in lines[0]["box"])
    assert 15 <= first_top <= 45 and first_bottom <= 90  # the box hugs the first line's ink


def test_several_images_are_separated_by_a_blank_line() -> None:
    typeface = font("DejaVuSans.ttf", 30)
    first = render([(20, 20, "First page")], typeface, (400, 90))
    second = render([(20, 20, "Second page")], typeface, (400, 90))
    response = ocr("read these", first, second)
    first_text, second_text = response.text().split("\n\n")
    assert (squash(first_text), squash(second_text)) == ("First page", "Second page")
    assert [d.value["image"] for d in data_parts(response)] == [0, 1]
    assert response.usage.cost == 0.0
    assert response.finish_reason == "stop"


def test_a_blank_image_gives_no_text_and_no_lines() -> None:
    response = ocr(render([], font(None, 20), (300, 100)))
    assert response.text() == ""
    assert data_parts(response)[0].value == {"lines": [], "image": 0}


def test_angle_classifier_option_still_reads_upright_text() -> None:
    part = render([(20, 20, "Quarterly report")], font(None, 36), (500, 90))
    assert squash(ocr(part, use_angle_cls=True).text()) == "Quarterly report"


# -- errors -------------------------------------------------------------------------------------


def test_a_message_without_an_image_is_an_input_error() -> None:
    with pytest.raises(InputError, match="attach an image"):
        ocr("there is no picture here")


def test_an_image_over_the_pixel_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_MAX_PIXELS", "10000")
    reset_settings()
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_PIXELS"):
        ocr(render([(5, 5, "too big")], font(None, 20), (200, 100)))


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = PILImage.new("1", (9000, 9000), 1)  # 81 Mpx over the 64 Mpx default, a few KB as PNG
    buf = io.BytesIO()
    bomb.save(buf, "PNG")
    with pytest.raises(LimitExceeded):
        ocr(Image(buf.getvalue()))


def test_options_are_validated() -> None:
    engine = RapidOcrEngine
    with pytest.raises(OptionsError, match="min_confidence"):
        engine.parse_options({"min_confidence": 1.5})
    with pytest.raises(OptionsError, match="unknown option"):
        engine.parse_options({"language": "fr"})


def test_only_the_shipped_model_is_accepted() -> None:
    engine = get_registry().engine("rapidocr")
    engine.check_model("pp-ocr")
    with pytest.raises(InputError, match="pp-ocr"):
        engine.check_model("PP-OCRv4-server")
    assert engine.models() == ["pp-ocr"]


# -- wiring -------------------------------------------------------------------------------------


def test_engine_is_registered_with_its_capabilities() -> None:
    engine = get_registry().engine("rapidocr")
    assert isinstance(engine, RapidOcrEngine)
    assert engine.inputs == {Modality.IMAGE} and engine.outputs == {Modality.TEXT, Modality.DATA}
    assert engine.unavailable_reason() is None
    files = bundled_model_files()
    assert set(files) == {"det", "rec", "cls"} and all(p.stat().st_size > 100_000 for p in files.values())


def test_reading_order_groups_rows_by_vertical_centre() -> None:
    def line(text: str, x: int, y: int, h: int = 30) -> dict[str, Any]:
        return {"text": text, "confidence": 1.0, "box": [[x, y], [x + 50, y], [x + 50, y + h], [x, y + h]]}

    shuffled = [line("d", 0, 100), line("b", 200, 12), line("c", 400, 8), line("a", 0, 10)]
    assert [item["text"] for item in reading_order(shuffled)] == ["a", "b", "c", "d"]


def test_full_width_punctuation_is_plain_ascii_only_outside_cjk_text() -> None:
    assert tidy_line("Total due\uff1a $318\uff0e50") == "Total due: $318.50"
    assert tidy_line("\u5408\u8ba1\uff1a\uff15\u5143") == "\u5408\u8ba1\uff1a\uff15\u5143"


def test_the_guard_would_catch_rapidocr_downloading(tmp_path: Path, no_network: list[Any]) -> None:
    """Proof the no-network fixture bites: rapidocr left to resolve models itself goes to the network."""
    from rapidocr import RapidOCR

    unpinned = RapidOCR(params={"Global.model_root_dir": str(tmp_path), "Global.log_level": "critical"})
    with pytest.raises(Exception):
        unpinned(np.full((64, 256, 3), 255, np.uint8))
    assert no_network, "expected a connection attempt"
    no_network.clear()
