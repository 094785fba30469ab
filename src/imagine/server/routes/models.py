"""`GET /v1/models` and `GET /v1/models/{model}`: every available ENGINE:MODEL and the aliases."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ..deps import Caller, caller
from ..protocol.common import ERRORS, ModelCard, ModelList
from ..serving.models import find_model, list_models

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
async def models(who: Caller = Depends(caller)) -> Any:
    return {"object": "list", "data": list_models(who.client)}


@router.get("/v1/models/{model:path}", response_model=ModelCard, responses=ERRORS)
async def model(model: str, who: Caller = Depends(caller)) -> Any:
    return find_model(who.client, model)
