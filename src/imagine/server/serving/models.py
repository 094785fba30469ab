"""The model list: aliases first, then every ENGINE:MODEL of the engines that can run here."""

from __future__ import annotations

from typing import Any

from ...client import Client
from ...errors import EngineNotFound, ImagineError
from ...registry import BUILTIN_ALIASES

__all__ = ["find_model", "list_models"]


def list_models(client: Client) -> list[dict[str, Any]]:
    registry = client.registry
    cards = [{"id": alias, "object": "model", "created": 0, "owned_by": "imagine"}
             for alias in (*BUILTIN_ALIASES, *sorted(client.settings.aliases))]
    for engine_id in registry.ids:
        cls = registry.engine_class(engine_id)
        if cls.unavailable_reason():
            continue
        try:
            names = registry.engine(engine_id).models()
        except ImagineError:
            continue  # an endpoint that cannot list its models here: left out, not an error
        cards += [{"id": f"{engine_id}:{name}", "object": "model", "created": 0, "owned_by": engine_id}
                  for name in names]
    return cards


def find_model(client: Client, model: str) -> dict[str, Any]:
    for card in list_models(client):
        if card["id"] == model:
            return card
    ref = client.registry.expand(model, configured=False)
    engine_id = ref.partition(":")[0]
    if engine_id in client.registry.ids and not client.registry.engine_class(engine_id).unavailable_reason():
        return {"id": model, "object": "model", "created": 0, "owned_by": engine_id}
    raise EngineNotFound(f"unknown model {model!r}", hint="GET /v1/models lists them")
