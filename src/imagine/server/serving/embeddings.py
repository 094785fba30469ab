"""Embeddings over the one request path: an EmbeddingRequest -> one `Client.respond` (all inputs in one
message, so a batch is one forward pass and one log row) -> OpenAI's list of embeddings.

`encoding_format=base64` is little-endian float32, which is what the official SDK asks for by default
and decodes with numpy; it is also 4x smaller on the wire than JSON floats. Images travel as data URLs
(OpenAI's API has no image embeddings, so no client expects remote URLs here) and only to an engine that
embeds images."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Request as HttpRequest

from ...errors import ImagineError, LimitExceeded
from ...parts import Image, Message, Modality, Part, Text, Vector
from ..deps import Caller
from ..protocol.media import EmbeddingRequest
from .media import bad_field, finish, log_header, respond, target

__all__ = ["MAX_INPUTS", "OPENAI_EMBEDDING_MODELS", "embed"]

MAX_INPUTS = 2048  # OpenAI's own cap on inputs per request
OPENAI_EMBEDDING_MODELS = ("text-embedding-",)  # text-embedding-3-small, -3-large, -ada-002: the default


def _texts(request: EmbeddingRequest) -> list[str]:
    value = request.input
    if isinstance(value, str):
        return [value]
    if any(isinstance(item, (int, list)) for item in value):
        raise bad_field("input", "token ids are not supported here (each engine has its own tokenizer); "
                                 "send the text")
    return list(value)  # type: ignore[arg-type]


def _is_image_url(text: str) -> bool:
    return text[:11].lower() == "data:image/"


def _image(url: str, field: str, limits: Any) -> Image:
    """An image input from its data URL; a malformed one is a 400 naming the input."""
    head, sep, payload = url.partition(",")
    if not sep or not head.lower().endswith(";base64"):
        raise bad_field(field, "an image data URL must look like data:image/png;base64,...")
    try:
        part = Image(base64.b64decode(payload, validate=True), limits=limits)
        part.validate()
    except LimitExceeded as exc:
        raise bad_field(field, str(exc), 413, "request_too_large") from None
    except (ImagineError, ValueError) as exc:
        raise bad_field(field, f"is not a readable image: {exc}") from None
    return part


async def _parts(texts: list[str], takes_images: bool, engine: str, caller: Caller) -> list[Part]:
    limits = caller.client.settings.part_limits()
    parts: list[Part] = []
    for index, text in enumerate(texts):
        field = f"input[{index}]" if len(texts) > 1 else "input"
        if _is_image_url(text):
            if not takes_images:
                raise bad_field(field, f"is an image, and {engine} embeds text only (name a model that embeds "
                                       "images, such as clip:MODEL)", code="unsupported_value")
            parts.append(_image(text, field, limits))
        elif not text.strip():
            raise bad_field(field, "is empty; every input needs some text")
        else:
            parts.append(Text(text))
    return parts


async def embed(request: EmbeddingRequest, caller: Caller, http: HttpRequest | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The embeddings body and its headers (the log id)."""
    texts = _texts(request)
    if not texts:
        raise bad_field("input", "is empty; give a text or a list of texts")
    if len(texts) > MAX_INPUTS:
        raise bad_field("input", f"has {len(texts)} items; at most {MAX_INPUTS} per request")
    images = any(_is_image_url(t) for t in texts)
    # auto with images: the task's image embedder (clip), as imagine.embed; OpenAI's names are text models
    task = "embed_image" if images and request.model.strip() in ("", "auto") else "embed"
    to = target(caller, request.model, OPENAI_EMBEDDING_MODELS, task)
    options: dict[str, Any] = {}
    if request.dimensions is not None:
        if "dimensions" not in to.fields:
            name = to.engine.id if to.engine is not None else request.model
            raise bad_field("dimensions", f"{name} makes vectors of one fixed size; leave dimensions unset",
                            code="unsupported_value")
        options["dimensions"] = request.dimensions
    engine_name = to.engine.id if to.engine is not None else "this model"
    parts = await _parts(texts, to.takes(Modality.IMAGE), engine_name, caller)
    response = respond(caller, [Message("user", parts)], to, Modality.VECTOR,
                       {**options, **(request.options or {})}, request.policy, request.max_cost)
    await finish(caller, response, param="input", http=http)
    vectors = [p for p in response.parts if isinstance(p, Vector)]
    if len(vectors) != len(texts):  # an engine bug, not the caller's: say so plainly
        raise RuntimeError(f"{response.answered_ref} returned {len(vectors)} vectors for {len(texts)} inputs")
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, request.encoding_format)}
            for i, v in enumerate(vectors)]
    tokens = response.usage.input_tokens or 0
    body = {"object": "list", "data": data, "model": response.answered_ref,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return body, log_header(response)


def _encode(vector: Vector, encoding: str) -> list[float] | str:
    if encoding == "float":
        return list(vector.values)
    import numpy as np

    return base64.b64encode(np.asarray(vector.values, dtype="<f4").tobytes()).decode("ascii")
