"""`POST /v1/chat/completions`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..deps import Caller, caller
from ..protocol.chat import ChatCompletion, ChatRequest
from ..protocol.common import ERRORS
from ..serving.admission import admit
from ..serving.chat import complete_chat, first_event, plan_chat, stream_chat

router = APIRouter(tags=["chat"])

LOG_HEADER = "x-imagine-log-id"  # the id(s) of the request's log entries (`imagine logs show ID`)


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(body: ChatRequest, request: Request, who: Caller = Depends(caller)) -> Any:
    plan = await plan_chat(body, who, request.app.state.settings)
    headers = {LOG_HEADER: plan.log_ids}
    gate = await admit(request, who.key.id if who.key else None, plan.responses)  # a local model's slot, or 429
    if body.stream:
        stream, first = await gate.first(first_event(plan))
        return gate.stream(stream_chat(plan, stream, first, gate.next_turn), media_type="text/event-stream",
                           headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"})
    return JSONResponse(await gate.complete(complete_chat(plan, gate.next_turn)), headers=headers)
