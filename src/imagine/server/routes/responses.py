"""`POST /v1/responses` (the Responses API)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..deps import Caller, caller
from ..protocol.common import ERRORS
from ..protocol.responses import ResponseObject, ResponsesRequest
from ..serving.admission import admit
from ..serving.responses import complete_response, first_event, plan_response, stream_response
from .chat import LOG_HEADER

router = APIRouter(tags=["responses"])


@router.post("/v1/responses", response_model=ResponseObject, responses=ERRORS)
async def create_response(body: ResponsesRequest, request: Request, who: Caller = Depends(caller)) -> Any:
    plan = await plan_response(body, who, request.app.state.settings)
    headers = {LOG_HEADER: plan.response.id}
    gate = await admit(request, who.key.id if who.key else None, [plan.response])  # a local model's turn, or 429
    if body.stream:
        stream, first = await gate.first(first_event(plan))
        return gate.stream(stream_response(plan, stream, first), media_type="text/event-stream",
                           headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
    return JSONResponse(await gate.complete(complete_response(plan)), headers=headers)
