"""Wire models shared by every endpoint: errors, usage, the model list."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["ErrorBody", "ErrorResponse", "ModelCard", "ModelList", "PromptTokensDetails", "Usage"]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens the engine reused (llama.cpp's KV prefix) instead of reading again


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 401, 402, 404, 413, 421, 429, 502, 503)}
