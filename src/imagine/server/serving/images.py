"""Images over the one request path: generations (a prompt -> images) and edits (an image, an optional
mask and a prompt -> images), answered as base64 or as URLs of the server's own blob route.

An image URL points at `GET /v1/blobs/{sha256}`: the log's content-addressed blob store already keeps
every output image, so a URL costs no second copy and outlives the request. A JPEG or WebP URL names the
logged output too (`?format=jpeg`) and converts when fetched: a converted copy stored beside it would
be a blob no log row names, which `imagine logs gc` removes. OpenAI's mask marks the
area to repaint with transparency; imagine's engines take white = repaint, so an alpha mask is
converted here. Model names such as `dall-e-3` mean nothing locally unless the user aliases them to a
diffusers model (`[aliases] dall-e-3 = "diffusers:..."`): the error then says exactly that."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request as HttpRequest

from ...blobs import SHA256
from ...errors import ImagineError, LimitExceeded, StoreError
from ...media.sniff import sniff_mime
from ...parts import Image, Message, Modality, Part
from ..deps import Caller
from ..errors import ApiError
from ..protocol.media import ImageRequest
from ..settings import ServerSettings
from .media import Target, bad_field, finish, log_header, respond, target

__all__ = ["EditForm", "blob", "edit", "generate"]

_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
MASK = "mask"  # the part name imagine's image engines read as the inpainting mask (tasks.MASK)


@dataclass
class EditForm:
    """An edit request, as its multipart form gave it."""

    images: list[tuple[bytes, str | None]]
    mask: tuple[bytes, str | None] | None
    fields: ImageRequest


def _target(caller: Caller, request: ImageRequest) -> Target:
    name = request.model.strip() or "auto"
    if name.startswith(("dall-e", "gpt-image")) and name not in caller.client.registry.settings.aliases:
        raise bad_field("model", f"{name} is OpenAI's; this server draws with a diffusers model: name one "
                                 f"(diffusers:FOLDER_OR_REPO) or alias {name} to it in config.toml",
                        404, "model_not_found")
    return target(caller, name, (), None)


def _options(request: ImageRequest, to: Target, settings: ServerSettings) -> dict[str, Any]:
    if request.n > settings.max_n:
        raise bad_field("n", f"is {request.n}; this server makes at most {settings.max_n} images a request")
    named, fields = to.engine is not None, to.fields
    wanted: dict[str, Any] = {"n": request.n if request.n != 1 else None, "seed": request.seed,
                              "steps": request.steps, "negative_prompt": request.negative_prompt}
    if request.size and request.size != "auto":
        match = _SIZE.fullmatch(request.size)
        if not match:
            raise bad_field("size", f"{request.size!r} is not WIDTHxHEIGHT (e.g. 512x512) or auto")
        wanted["width"], wanted["height"] = int(match[1]), int(match[2])
    options: dict[str, Any] = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if named and key not in fields:
            field = "size" if key in ("width", "height") else key
            raise bad_field(field, f"{to.engine.id} cannot take {field}",  # type: ignore[union-attr]
                            code="unsupported_value")
        options[key] = value
    return {**options, **(request.options or {})}


def _image(data: bytes, name: str | None, field: str, caller: Caller) -> Image:
    if not data:
        raise bad_field(field, "is empty")
    mime = sniff_mime(data[:64]) or ""
    if not mime.startswith("image/"):
        raise bad_field(field, f"{name or 'the upload'} is {mime or 'not a recognised image format'}; send a PNG, "
                               "JPEG or WebP image", code="unsupported_file")
    try:
        part = Image(data, mime=mime, name=name, limits=caller.client.settings.part_limits())
        part.validate()
    except LimitExceeded as exc:
        raise bad_field(field, str(exc), 413, "request_too_large") from None
    except ImagineError as exc:
        raise bad_field(field, str(exc)) from None
    return part


def _mask(part: Image, caller: Caller) -> Image:
    """OpenAI's mask (transparent = repaint) as imagine's (white = repaint); an opaque mask is taken as
    imagine's already."""
    from PIL import Image as PILImage

    picture = part.pil(caller.client.settings.part_limits())
    if "A" not in picture.getbands():
        return Image(part.data, mime=part.mime, name=MASK)
    alpha = picture.getchannel("A")
    white = alpha.point(lambda a: 255 if a < 128 else 0).convert("L")
    buf = io.BytesIO()
    PILImage.merge("RGB", (white, white, white)).save(buf, format="PNG")
    return Image(buf.getvalue(), mime="image/png", name=MASK)


async def _answer(caller: Caller, response: Any, request: ImageRequest, base_url: str,
                  param: str, http: HttpRequest | None) -> tuple[dict[str, Any], dict[str, str]]:
    await finish(caller, response, param=param, http=http)
    images = [p for p in response.parts if isinstance(p, Image)]
    if not images:
        raise RuntimeError(f"{response.answered_ref} returned no image")
    fmt = request.output_format or "png"
    as_url = request.response_format == "url"
    data = []
    for part in images:
        same = part.mime == _FORMATS[fmt][1]
        if as_url:  # the logged output itself; another format is converted when the URL is fetched
            query = "" if same else f"?format={fmt}" + (
                f"&compression={max(0, min(100, request.output_compression))}" if request.output_compression is not None else "")
            data.append({"url": f"{base_url.rstrip('/')}/v1/blobs/{part.sha256}{query}", "revised_prompt": None})
        else:
            body = part.data if same else await asyncio.to_thread(_convert, part, fmt, request.output_compression)
            data.append({"b64_json": base64.b64encode(body).decode("ascii"), "revised_prompt": None})
    width, height = images[0].size
    return ({"created": int(time.time()), "data": data, "output_format": fmt, "size": f"{width}x{height}"},
            log_header(response))


def _convert(part: Image, fmt: str, compression: int | None) -> bytes:
    picture = part.pil()
    kind, _ = _FORMATS[fmt]
    if kind == "JPEG":
        picture = picture.convert("RGB")
    buf = io.BytesIO()
    quality = {} if compression is None or kind == "PNG" else {"quality": max(1, min(100, 100 - compression))}
    picture.save(buf, format=kind, **quality)
    return buf.getvalue()


async def generate(request: ImageRequest, caller: Caller, settings: ServerSettings,
                   base_url: str, http: HttpRequest | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The images body for a text-to-image request, and its headers."""
    if not request.prompt.strip():
        raise bad_field("prompt", "is empty; say what to draw")
    to = _target(caller, request)
    options = _options(request, to, settings)
    response = respond(caller, [Message.user(request.prompt)], to, Modality.IMAGE, options, request.policy,
                       request.max_cost)
    return await _answer(caller, response, request, base_url, "prompt", http)


async def edit(form: EditForm, caller: Caller, settings: ServerSettings,
               base_url: str, http: HttpRequest | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The images body for an edit (image-to-image, or inpainting with a mask), and its headers."""
    request = form.fields
    if not request.prompt.strip():
        raise bad_field("prompt", "is empty; say what to change")
    if not form.images:
        raise bad_field("image", "is required: the image to edit")
    if len(form.images) > 1:
        raise bad_field("image", f"{len(form.images)} images given; this server edits one at a time",
                        code="unsupported_value")
    to = _target(caller, request)
    if not to.takes(Modality.IMAGE):
        raise bad_field("image", f"{to.engine.id} takes no images", code="unsupported_value")  # type: ignore[union-attr]
    parts: list[Part | str] = [_image(*form.images[0], "image", caller)]
    if form.mask is not None:
        parts.append(_mask(_image(*form.mask, "mask", caller), caller))
    options = _options(request, to, settings)
    response = respond(caller, [Message.user(*parts, request.prompt)], to, Modality.IMAGE, options,
                       request.policy, request.max_cost)
    return await _answer(caller, response, request, base_url, "image", http)


def _is_output(store: Any, sha256: str, key_id: str | None = None) -> bool:
    """Whether some logged response made the blob (it is in a row's output parts), for API key `key_id`
    when keys are in use. The LIKE narrows the scan to rows that mention the hash at all; the JSON check
    then makes sure it names an output part and is not, say, text that happens to contain it."""
    sql = "SELECT output_parts FROM responses WHERE error IS NULL AND output_parts LIKE ?"
    params: tuple[Any, ...] = (f"%{sha256}%",)
    if key_id is not None:
        sql, params = sql + " AND api_key = ?", (*params, key_id)
    rows = store._query(sql, params)
    for (cell,) in rows:
        try:
            parts = json.loads(cell or "[]")
        except ValueError:
            continue
        if any(isinstance(p, dict) and p.get("sha256") == sha256 for p in parts):
            return True
    return False


async def blob(caller: Caller, sha256: str, fmt: str | None = None,
               compression: int | None = None) -> tuple[bytes, str]:
    """A blob the log's responses made, and its content type; `fmt` converts an image on the way out.

    Only outputs: the blob store also holds every input callers uploaded (images to edit, audio to
    transcribe), and serving those to anyone who knows a hash would let a caller fetch another's upload,
    or learn whether a well-known image was ever sent here by asking for its hash. Inputs are a 404,
    exactly like a hash never seen, so the answer reveals nothing. With API keys in use, only the key
    whose request made the blob gets it: another key's output is the same 404."""
    if not SHA256.fullmatch(sha256):
        raise bad_field("sha256", "must be 64 lowercase hex digits (a blob's sha256)")
    missing = ApiError(404, f"no blob {sha256}", param="sha256", code="not_found")
    store = caller.client.store
    try:
        key_id = caller.key.id if caller.key is not None else None
        if not await asyncio.to_thread(_is_output, store, sha256, key_id):
            raise missing
        data = store.blobs.get(sha256)
    except StoreError:
        raise missing from None
    mime = sniff_mime(data[:64]) or "application/octet-stream"
    if fmt is None or mime == _FORMATS[fmt][1]:
        return data, mime
    if not mime.startswith("image/"):
        raise bad_field("format", f"blob {sha256[:12]} is {mime}, not an image to convert")
    image = Image(data, mime=mime, limits=caller.client.settings.part_limits())
    return await asyncio.to_thread(_convert, image, fmt, compression), _FORMATS[fmt][1]
