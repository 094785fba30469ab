"""Tasks: thin helpers over the one request path (parts in, modality out).

`ask` builds messages, resolves the model through the registry, validates options against the engine,
and returns a lazy `Response` that logs itself when it finishes. Sync and async callers share it:

    imagine.ask("Hi").text()                      # sync
    for delta in imagine.ask("Hi"): ...           # sync streaming
    r = await imagine.aask("Hi")                  # async
    async for delta in imagine.aask("Hi"): ...    # async streaming
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from pydantic import BaseModel

from .config import get_settings
from .engine import Request, Response, new_id
from .errors import InputError
from .parts import Message, Modality, Part, load_part
from .registry import Registry, get_registry
from .store import Store

__all__ = ["aask", "ask", "build_messages", "get_store", "reset_store", "schema_of"]

PromptLike = str | Message | Sequence[Message] | None
AttachLike = str | os.PathLike[str] | bytes | Part

_store: Store | None = None


def get_store() -> Store:
    """The process-wide log store under IMAGINE_HOME."""
    global _store
    settings = get_settings()
    if _store is None or _store.db_path != settings.db_path:
        _store = Store(settings.db_path, settings.blob_dir)
    return _store


def reset_store() -> None:
    global _store
    if _store is not None:
        _store.close()
    _store = None


def schema_of(schema: type[BaseModel] | dict[str, Any] | None) -> tuple[dict[str, Any] | None, type[BaseModel] | None]:
    """(JSON schema, pydantic class or None) for what the caller passed as `schema=`."""
    if schema is None:
        return None, None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema(), schema
    if isinstance(schema, dict):
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InputError(f"schema is not a valid JSON schema: {exc.message}") from None
        return schema, None
    raise InputError(f"schema must be a pydantic model class or a JSON schema dict, not {type(schema).__name__}")


def build_messages(prompt: PromptLike, attach: Sequence[AttachLike] = (), system: str | None = None) -> list[Message]:
    """The messages one call adds: optional system, then the prompt (with attachments) as a user turn."""
    limits = get_settings().part_limits()
    attached = [a if isinstance(a, Part) else load_part(a, limits=limits) for a in attach]
    messages: list[Message] = [Message.system(system)] if system else []
    if prompt is None or isinstance(prompt, str):
        text = (prompt or "").strip()
        if not text and not attached:
            raise InputError("the prompt is empty", hint="give some text, or attach a file with -a")
        messages.append(Message.user(*([prompt] if prompt and text else []), *attached))
    elif isinstance(prompt, Message):
        messages.append(prompt)
    else:
        given = list(prompt)
        if not given or not all(isinstance(m, Message) for m in given):
            raise InputError("prompt must be a str, a Message or a non-empty list of Messages")
        messages.extend(given)
        if attached:
            messages.append(Message.user(*attached))
    if not any(m.parts for m in messages):
        raise InputError("the prompt is empty", hint="give some text, or attach a file with -a")
    return messages


def ask(prompt: PromptLike = None, model: str | None = None, *, attach: Sequence[AttachLike] = (),
        system: str | None = None, schema: type[BaseModel] | dict[str, Any] | None = None,
        options: dict[str, Any] | None = None, conversation: str | bool | None = None,
        history: Sequence[Message] = (), conversation_id: str | None = None,
        log: bool | None = None, registry: Registry | None = None, **option_kwargs: Any) -> Response:
    """Ask a model; returns a lazy Response (iterate to stream, `.text()` to finish, `.parsed` for schema).

    `conversation=True` continues the last logged conversation, a string continues that one.
    A caller holding the conversation itself (the chat REPL) passes `history` and `conversation_id`.
    Extra keyword arguments are engine options (temperature=0, max_tokens=64, seed=1, stop=[...]).
    """
    settings = get_settings()
    registry = registry or get_registry()
    log = settings.log if log is None else log
    new_messages = build_messages(prompt, attach, system)

    history = list(history)
    conversation_id = conversation_id or new_id()
    if conversation:
        store = get_store()
        found = store.last_conversation_id() if conversation is True else str(conversation)
        if found is None:
            raise InputError("there is no earlier conversation to continue", hint="drop -c to start one")
        history = store.conversation(found)
        if conversation is not True and not history:
            raise InputError(f"no conversation with id {found!r}", hint="see `imagine logs` for ids")
        conversation_id = found

    messages = tuple(history + new_messages)
    needed = {m for msg in messages for m in msg.modalities}
    resolved = registry.resolve(model, inputs=needed, want=Modality.TEXT)
    engine = resolved.engine
    json_schema, schema_model = schema_of(schema)
    if json_schema is not None and "json_schema" not in engine.features:
        raise InputError(f"engine {engine.id} cannot constrain output to a schema",
                         hint="pick an engine with the json_schema feature (see `imagine models`)")
    parsed_options = engine.parse_options({**(options or {}), **option_kwargs})
    request = Request(messages=messages, model=resolved.model, options=parsed_options, schema=json_schema)

    def on_finish(response: Response) -> None:
        get_store().log_response(response, new_messages)

    return Response(engine=engine, request=request, schema_model=schema_model,
                    on_finish=on_finish if log else None, conversation_id=conversation_id,
                    model_ref=resolved.ref)


def aask(prompt: PromptLike = None, model: str | None = None, **kwargs: Any) -> Response:
    """`ask` for async code: `await aask(...)` runs it to the end; `async for` streams it.

    It is the same lazy Response — one class for both worlds, no parallel async hierarchy.
    """
    return ask(prompt, model, **kwargs)

