"""What the media endpoints share: which engine a request's `model` names, which of the request's fields
that engine can honour, and running a Response to its end on imagine's loop.

OpenAI clients hard-code OpenAI's model names (`whisper-1`, `tts-1`, `text-embedding-3-small`); those
mean "the default engine for this task" here, unless the user made an alias of the same name. A field an
engine cannot honour is refused naming the field, never dropped silently, except for OpenAI's purely
cosmetic ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fastapi import Request as HttpRequest

from ...engine import Engine, Response
from ...errors import InputError
from ...parts import Message, Modality
from ...registry import BUILTIN_ALIASES
from ...tasks import task_default
from ..deps import Caller
from ..errors import ApiError
from . import bridge
from .admission import admit

__all__ = ["Target", "bad_field", "finish", "log_header", "respond", "target"]

LOG_HEADER = "x-imagine-log-id"  # as chat: the log row of the request (`imagine logs show ID`)


def bad_field(field: str, message: str, status: int = 400, code: str = "invalid_value") -> ApiError:
    return ApiError(status, f"{field}: {message}", param=field, code=code)


@dataclass(frozen=True)
class Target:
    """Where a request goes: `model` for Client.respond (None = the task's default engine) and the engine
    class it names, when it names one (None for auto / local / cloud: the router decides)."""

    model: str | None
    engine: type[Engine] | None

    @property
    def fields(self) -> set[str]:
        """The engine's option names; empty when no single engine is named."""
        return set(self.engine.Options.model_fields) if self.engine is not None else set()

    def takes(self, modality: Modality) -> bool:
        return self.engine is None or modality in self.engine.inputs


def target(caller: Caller, model: str | None, openai_names: Sequence[str], task: str | None) -> Target:
    """Resolve the request's `model`: an OpenAI name (unless aliased) or auto -> the task's default engine;
    ENGINE:MODEL or an alias -> that engine. An unknown engine is a 404 naming it (EngineNotFound)."""
    registry = caller.client.registry
    name = (model or "").strip() or "auto"
    aliased = name in registry.settings.aliases
    if not aliased and (name in openai_names or any(name.startswith(p) for p in openai_names if p.endswith("-"))):
        name = "auto"
    local_key = caller.key is not None and caller.key.local_only
    if name == "auto" and task is not None:
        engine_id = task_default(task, registry)
        return Target(engine_id, registry.engine_class(engine_id))
    ref = registry.expand(name, configured=False)
    if ref in BUILTIN_ALIASES:
        if local_key and ref == "cloud":
            raise _local_only(name)
        return Target(name, None)
    engine_cls = registry.engine_class(ref.partition(":")[0])
    if local_key and engine_cls.locality != "local":
        raise _local_only(name)
    return Target(name, engine_cls)


def _local_only(model: str) -> ApiError:
    return ApiError(403, f"this API key is local_only: model {model!r} would leave the device",
                    type="permission_error", param="model", code="local_only")


def respond(caller: Caller, messages: list[Message], to: Target, want: Modality, options: dict[str, Any],
            policy: str | None = None, max_cost: float | None = None) -> Response:
    """Plan the request on the caller's Client (planning errors raise here, before anything runs)."""
    return caller.client.respond(messages, to.model, want=want, options=options,
                                 policy=caller.policy(policy, max_cost))


async def finish(caller: Caller, response: Response, param: str | None = None,
                 http: HttpRequest | None = None) -> Response:
    """Run `response` to its end on imagine's loop; the key pays what it cost. An engine's refusal of the
    input (InputError) names `param` when the caller gave one.

    With the HTTP request (`http`), a local model's run waits for its turn in the model's lane first, as
    chat does: a media request is a generation like any other, and one that skipped the line would slow
    every queued chat down (429 when the line is full; cancelled if the client leaves)."""
    try:
        if http is not None:
            gate = await admit(http, caller.key.id if caller.key else None, [response])
            return await gate.complete(bridge.complete(response))
        return await bridge.complete(response)
    except InputError as exc:
        if param is None or type(exc) is not InputError:  # subclasses (LimitExceeded) keep their status
            raise
        raise ApiError(400, str(exc), param=param, code="invalid_value") from None
    finally:
        if caller.key is not None and response.done:
            caller.keys.add_spend(caller.key, response.usage.cost or 0.0)


def log_header(*responses: Response) -> dict[str, str]:
    return {LOG_HEADER: ",".join(r.id for r in responses)}
