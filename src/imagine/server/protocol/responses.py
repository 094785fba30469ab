"""The Responses API (`POST /v1/responses`): the request as the official SDK's `client.responses.create`
sends it, and the Response object it reads back.

Input items stay loosely typed (`list[dict]`) on purpose: the item kinds are many and growing (messages,
function calls and their outputs, reasoning, ...), and serving/responses.py refuses the unsupported
ones by name (`input[3].type`), which a pydantic union would turn into an unreadable error list."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ResponseObject", "ResponsesRequest", "TextConfig", "TextFormat"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields newer than this server are accepted and ignored


class TextFormat(_Open):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(_Open):
    format: TextFormat | None = None


class ResponsesRequest(_Open):
    model: str
    input: Union[str, list[dict[str, Any]]] = Field(description="a prompt, or a list of input items")
    instructions: str | None = Field(default=None, description="a system message for this request only")
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    text: TextConfig | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Union[str, dict[str, Any], None] = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = Field(default=None, description="continue the conversation of that "
                                                                        "response (its logged turns)")
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    # imagine's own, sent by SDKs as extra_body
    policy: str | None = Field(default=None, description="routing policy: local_only, cheapest, cascade, ...")
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="US dollars per request")
    options: dict[str, Any] | None = Field(default=None, description="engine options, passed as they are")


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int] = Field(default_factory=dict)
    output_tokens_details: dict[str, int] = Field(default_factory=dict)


class ResponseObject(BaseModel):
    """Documented for the OpenAPI schema; the server builds it as a plain dict."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "failed", "in_progress"]
    model: str
    output: list[dict[str, Any]]
    usage: ResponseUsage | None = None
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: Union[str, dict[str, Any]] = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = Field(default_factory=dict)
