"""`GET /metrics`: Prometheus text. Behind the API key when keys exist (the counters name models and
routes: little, but not for anyone who can reach the port); open on a loopback bind without keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from ..deps import Caller, caller
from ..metrics import exposition

router = APIRouter()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/metrics", tags=["meta"], response_class=PlainTextResponse)
async def metrics(request: Request, who: Caller = Depends(caller)) -> PlainTextResponse:
    return PlainTextResponse(exposition(request.app.state.metrics), media_type=CONTENT_TYPE)
