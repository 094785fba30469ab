"""`POST /v1/images/generations`, `POST /v1/images/edits` (multipart) and `GET /v1/blobs/{sha256}`, the
route image URLs point at (outputs of logged responses only, never an uploaded input: the caller
needs the server's API key, as for any route, and the content's hash)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ..deps import Caller, caller
from ..protocol.common import ERRORS
from ..protocol.media import ImageRequest, ImagesResponse
from ..serving.audio import MEDIA_HEADERS
from ..serving.images import EditForm, blob, edit, generate

router = APIRouter(tags=["images"])


@router.post("/v1/images/generations", response_model=ImagesResponse, responses=ERRORS)
async def generations(body: ImageRequest, request: Request, who: Caller = Depends(caller)) -> Any:
    data, headers = await generate(body, who, request.app.state.settings, str(request.base_url), request)
    return JSONResponse(data, headers=headers)


async def _file(upload: UploadFile | None) -> tuple[bytes, str | None] | None:
    return None if upload is None else (await upload.read(), upload.filename)


@router.post("/v1/images/edits", response_model=ImagesResponse, responses=ERRORS)
async def edits(
        request: Request,
        prompt: Annotated[str, Form(description="what to change")],
        image: Annotated[list[UploadFile] | None, File(description="the image to edit")] = None,
        images: Annotated[list[UploadFile] | None, File(alias="image[]")] = None,
        mask: Annotated[UploadFile | None, File(description="transparent (or white) = repaint")] = None,
        model: Annotated[str, Form()] = "auto",
        n: Annotated[int, Form()] = 1,
        size: Annotated[str | None, Form()] = None,
        response_format: Annotated[Literal["url", "b64_json"] | None, Form()] = None,
        output_format: Annotated[Literal["png", "jpeg", "webp"] | None, Form()] = None,
        seed: Annotated[int | None, Form()] = None,
        steps: Annotated[int | None, Form()] = None,
        who: Caller = Depends(caller)) -> Any:
    try:
        fields = ImageRequest(prompt=prompt, model=model, n=n, size=size, response_format=response_format,
                              output_format=output_format, seed=seed, steps=steps)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    uploads = [u for u in [*(image or []), *(images or [])]]
    files = [f for f in [await _file(u) for u in uploads] if f is not None]
    form = EditForm(images=files, mask=await _file(mask), fields=fields)
    data, headers = await edit(form, who, request.app.state.settings, str(request.base_url), request)
    return JSONResponse(data, headers=headers)


@router.get("/v1/blobs/{sha256}", response_class=Response, responses={**ERRORS, 200: {"content": {"image/png": {}}}})
async def blobs(sha256: str,
                format: Annotated[Literal["png", "jpeg", "webp"] | None, Query(description="convert an image")] = None,
                compression: Annotated[int | None, Query(ge=0, le=100)] = None,
                who: Caller = Depends(caller)) -> Response:
    data, media_type = await blob(who, sha256, format, compression)
    return Response(data, media_type=media_type,
                    headers={**MEDIA_HEADERS, "cache-control": "private, max-age=31536000, immutable"})
