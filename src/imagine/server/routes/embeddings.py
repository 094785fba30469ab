"""`POST /v1/embeddings`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..deps import Caller, caller
from ..protocol.common import ERRORS
from ..protocol.media import EmbeddingRequest, EmbeddingResponse
from ..serving.embeddings import embed

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS)
async def embeddings(body: EmbeddingRequest, request: Request, who: Caller = Depends(caller)) -> Any:
    data, headers = await embed(body, who, request)
    return JSONResponse(data, headers=headers)
