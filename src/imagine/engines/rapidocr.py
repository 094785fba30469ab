"""`rapidocr`: text from images with the PP-OCR ONNX models that ship inside the `rapidocr` wheel.

The one model, `pp-ocr`, is the detector + recogniser (+ optional angle classifier) bundled in
`rapidocr/models/`. rapidocr resolves models by language and version and downloads whatever is not
on disk (other languages, other versions, a visualisation font, a character dictionary), so this
engine pins every model by explicit file path and hands rapidocr a local font: nothing it does here
can reach the network.

One `RapidOCR` object is built per process (kept in the shared model cache) and reused; decoding and inference run in a worker
thread, one image at a time (the object keeps per-call settings on itself, so calls are serialised).
Output: the recognised lines in reading order as text, then one Data part per image with each line's
text, confidence and box.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any, AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import EngineUnavailable, ImagineError, InputError, UpstreamError
from ..events import Done, Event, PartOut, TextDelta, Usage
from ..parts import Data, Image, Limits, Modality
from ._support.assets import find_asset, package_dirs
from ._support.cache import file_bytes, model_cache
from ._support.inputs import user_parts

__all__ = ["RapidOcrEngine", "RapidOcrOptions", "bundled_model_files", "reading_order", "tidy_line"]

MODEL = "pp-ocr"

# The longest side rapidocr works on: it scales any bigger image down to this before detecting and
# recognising (its `Global.max_side_len`, set explicitly below so the two always agree). Images are
# decoded at this size in the first place, so a huge page never sits in memory at full size.
MAX_SIDE = 2000
# The longest side the detector runs at. Its activations grow with the area (about 690 MB at 2000 px,
# 350 MB at 1280 px); lines are still cut from the MAX_SIDE image for the recogniser, so text 11 px
# high on a 2000 px page is read as well as with detection at full size, in half the time.
DET_SIDE = 1280

# Fonts rapidocr may use if anything ever asks it to draw results; without one it downloads a font.
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


def bundled_model_files() -> dict[str, Path]:
    """The det / rec / cls ONNX files shipped in the installed rapidocr package, found without
    importing it (importing pulls in cv2 and onnxruntime)."""
    if not package_dirs("rapidocr"):
        raise EngineUnavailable("rapidocr is not installed", hint="pip install 'imagine[vision]'")
    found = {task: find_asset("rapidocr", f"models/*_{task}_*.onnx") for task in ("det", "rec", "cls")}
    missing = [task for task, path in found.items() if path is None]
    if missing:
        raise EngineUnavailable(f"rapidocr is installed but its models folder lacks the {'/'.join(missing)} model",
                                hint="reinstall rapidocr (pip install --force-reinstall 'rapidocr>=3')")
    return {task: path for task, path in found.items() if path is not None}


def _local_font() -> str | None:
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return None


def _to_bgr(img: Any) -> Any:
    """An RGB PIL image as the contiguous uint8 BGR array rapidocr expects."""
    import numpy as np

    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[:, :, ::-1])


# Full-width ASCII forms (U+FF01..U+FF5E) and the ideographic space, mapped to plain ASCII.
_FULLWIDTH = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def tidy_line(text: str) -> str:
    """Plain ASCII punctuation in lines with no CJK script: the multilingual model sometimes reads a
    Latin colon as the full-width one ("due\uff1a $5"); in Chinese or Japanese text those forms are
    right, so they stay there."""
    return text if _CJK.search(text) else text.translate(_FULLWIDTH)


def reading_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort OCR lines top-to-bottom, then left-to-right within a row.

    A line joins the current row when its vertical centre falls inside the row's first box, so
    slightly skewed boxes on one row are not split by a pixel or two of height difference.
    """
    def span(line: dict[str, Any]) -> tuple[float, float, float]:
        xs = [p[0] for p in line["box"]]
        ys = [p[1] for p in line["box"]]
        return min(ys), max(ys), min(xs)

    rows: list[tuple[float, float, list[dict[str, Any]]]] = []
    for line in sorted(lines, key=lambda item: span(item)[0]):
        top, bottom, _ = span(line)
        centre = (top + bottom) / 2
        if rows and rows[-1][0] <= centre <= rows[-1][1]:
            rows[-1][2].append(line)
        else:
            rows.append((top, bottom, [line]))
    return [line for _, _, row in rows for line in sorted(row, key=lambda item: span(item)[2])]


class RapidOcrOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_confidence: float = Field(default=0.5, ge=0, le=1,
                                  description="drop lines the recogniser is less sure of")
    use_angle_cls: bool = Field(default=False, description="detect and fix upside-down text lines "
                                "(slower; only helps with rotated scans)")


class RapidOcrEngine(Engine[RapidOcrOptions]):
    id = "rapidocr"
    locality = "local"
    inputs = frozenset({Modality.IMAGE})
    outputs = frozenset({Modality.TEXT, Modality.DATA})
    features = frozenset({"boxes"})
    default_model = MODEL
    description = "OCR with the PP-OCR ONNX models shipped in rapidocr (text lines + boxes)"
    requires = ("rapidocr", "onnxruntime")
    extra = "vision"
    package = "rapidocr"

    Options = RapidOcrOptions

    _run_lock = threading.Lock()  # the RapidOCR object keeps per-call settings on itself: one call at a time

    def check_model(self, model: str) -> None:
        if model != MODEL:
            raise InputError(f"rapidocr has no model {model!r}",
                             hint=f"it runs only the PP-OCR models shipped with rapidocr: -m rapidocr:{MODEL}")
        bundled_model_files()

    # -- the OCR object -------------------------------------------------------------------------
    @classmethod
    def load(cls) -> Any:
        """The process-wide `RapidOCR`, built once (the shared model cache), configured to use only the
        shipped files."""
        files = bundled_model_files()

        def create() -> Any:
            params: dict[str, Any] = {
                # explicit paths skip rapidocr's resolve-by-language-then-download step
                "Det.model_path": str(files["det"]),
                "Rec.model_path": str(files["rec"]),
                "Cls.model_path": str(files["cls"]),
                # rapidocr's default scales every image up to a 736 px short side; an 8x blow-up
                # of a one-line screenshot splits words into overlapping boxes ("Quarterly" +
                # "y report"). So: native resolution up to DET_SIDE, only a short side under 64 px
                # scaled up (PaddleOCR 3's own default), and at most MAX_SIDE for the recogniser.
                "Det.limit_type": "max",
                "Det.limit_side_len": DET_SIDE,
                "Global.min_side_len": 64,
                "Global.max_side_len": MAX_SIDE,
                "Global.use_cls": False,
                "Global.log_level": "error",
            }
            font = _local_font()
            if font:
                params["Global.font_path"] = font  # else drawing results would download one
            try:
                from rapidocr import RapidOCR

                return RapidOCR(params=params)
            except ImportError as exc:
                raise EngineUnavailable(f"rapidocr cannot be imported: {exc}",
                                        hint="pip install 'imagine[vision]'") from None
            except Exception as exc:
                raise UpstreamError(f"rapidocr could not start: {type(exc).__name__}: {exc}",
                                    hint="reinstall rapidocr and onnxruntime") from None

        return model_cache().get((cls.id, MODEL), create, size=sum(file_bytes(path) for path in files.values()))

    def _ocr_image(self, part: Image, limits: Limits, opts: RapidOcrOptions) -> list[dict[str, Any]]:
        """Runs in a worker thread: decode one image (limit-checked, at most MAX_SIDE on its longer side,
        upright as a viewer shows it) and return its lines in order, boxes in the original's pixels."""
        width, height = part.size
        img = part.pil(limits, max_side=MAX_SIDE, mode="RGB", upright=True)
        if (width > height) != (img.width > img.height):
            width, height = height, width  # the EXIF orientation turned it a quarter
        scale_x, scale_y = width / img.width, height / img.height
        pixels = _to_bgr(img)
        del img
        ocr = self.load()
        try:
            with self._run_lock:
                result = ocr(pixels, use_cls=opts.use_angle_cls, text_score=opts.min_confidence)
        except ImagineError:
            raise
        except Exception as exc:
            raise UpstreamError(f"rapidocr failed on {part.name or 'the image'}: {type(exc).__name__}: {exc}") from None
        boxes, txts, scores = (getattr(result, a, None) for a in ("boxes", "txts", "scores"))
        if boxes is None or txts is None or scores is None:
            return []  # no text found
        lines = []
        for box, text, score in zip(boxes, txts, scores):
            points = [[min(max(int(round(float(x) * scale_x)), 0), width - 1),
                       min(max(int(round(float(y) * scale_y)), 0), height - 1)] for x, y in box]
            lines.append({"text": tidy_line(str(text)), "confidence": round(float(score), 4), "box": points})
        return reading_order(lines)

    # -- the one method -------------------------------------------------------------------------
    @staticmethod
    def _images(request: Request) -> list[Image]:
        return user_parts(request, Image, engine="rapidocr", needs="images",
                          hint="attach an image (PNG, JPEG, GIF, WebP), e.g. -a scan.png")

    async def stream(self, request: Request[RapidOcrOptions]) -> AsyncIterator[Event]:
        opts = request.options
        images = self._images(request)
        limits = request.limits
        for index, image in enumerate(images):
            lines = await asyncio.to_thread(self._ocr_image, image, limits, opts)
            text = "\n".join(line["text"] for line in lines)
            if index:
                text = "\n\n" + text  # a blank line between images
            if text:
                yield TextDelta(text)
            yield PartOut(Data({"lines": lines, "image": index}))
        yield Usage(cost=0.0)
        yield Done()
