"""Chat completions (`POST /v1/chat/completions`): the request as the OpenAI SDK sends it, and the
response and stream-chunk shapes it reads back."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .common import Usage

__all__ = ["ChatCompletion", "ChatCompletionChunk", "ChatRequest", "ChatMessage"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields newer than this server are accepted and ignored


class ImageURL(_Open):
    url: str
    detail: str | None = None


class InputAudio(_Open):
    data: str = Field(description="base64-encoded audio")
    format: str = Field(description="wav or mp3")


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None


class FunctionCall(_Open):
    name: str
    arguments: str = "{}"


class ToolCallIn(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[ContentPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class JsonSchemaFormat(_Open):
    name: str = "output"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class AudioParams(_Open):
    voice: Union[str, dict[str, Any], None] = Field(default=None, description="OpenAI's names use the default voice")
    format: str = Field(default="wav", description="wav, mp3, flac, opus or pcm16")


class ChatRequest(_Open):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = None
    stop: Union[str, list[str], None] = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Union[str, dict[str, Any], None] = None
    user: str | None = None
    modalities: list[str] | None = Field(default=None, description='["text"] or ["text", "audio"]')
    audio: AudioParams | None = None
    # imagine's own, sent by SDKs as extra_body
    policy: str | None = Field(default=None, description="routing policy: local_only, cheapest, cascade, ...")
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="US dollars per request")
    options: dict[str, Any] | None = Field(default=None, description="engine options, passed as they are")


class FunctionOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    audio: dict[str, Any] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
