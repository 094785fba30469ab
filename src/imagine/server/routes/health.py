"""`GET /health`: liveness for load balancers and `imagine serve` scripts; no key needed, says little."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/health", tags=["meta"])
async def health() -> dict[str, str]:
    return {"status": "ok"}
