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
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import BaseModel

from .config import get_settings
from .engine import Request, Response, new_id, normalize_tools
from .errors import InputError
from .parts import Message, Modality, Part, load_part
from .registry import Registry, get_registry
from .store import Store

if TYPE_CHECKING:
    from .router import Policy

__all__ = ["aask", "ask", "build_messages", "get_store", "reset_store", "respond", "schema_of"]

PromptLike = str | Message | Sequence[Message] | None


class _RawOptions(BaseModel):
    """Options as the caller gave them; the router validates them per candidate engine."""

    model_config = {"extra": "allow"}
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
        log: bool | None = None, registry: Registry | None = None, policy: Any = None,
        tools: Sequence[dict[str, Any]] = (), **option_kwargs: Any) -> Response:
    """Ask a model; returns a lazy Response (iterate to stream, `.text()` to finish, `.parsed` for schema).

    `conversation=True` continues the last logged conversation, a string continues that one.
    A caller holding the conversation itself (the chat REPL) passes `history` and `conversation_id`.
    Extra keyword arguments are engine options (temperature=0, max_tokens=64, seed=1, stop=[...]).
    """
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
        if policy is None and store.conversation_is_local_only(found):
            policy = "local_only"  # privacy is per conversation: a local_only chat stays on the device

    return respond(tuple(history + new_messages), model, want=Modality.TEXT, new_messages=new_messages,
                   schema=schema, options={**(options or {}), **option_kwargs}, conversation_id=conversation_id,
                   log=log, registry=registry, policy=policy, tools=tools)


def respond(messages: Sequence[Message], model: str | None, *, want: Modality, task_default: str | None = None,
            new_messages: Sequence[Message] | None = None, schema: type[BaseModel] | dict[str, Any] | None = None,
            options: dict[str, Any] | None = None, conversation_id: str | None = None, log: bool | None = None,
            registry: Registry | None = None, policy: "str | Policy | None" = None,
            tools: Sequence[dict[str, Any]] = ()) -> Response:
    """The one request path every task goes through: resolve the engine (directly, or through the
    router when a policy or the `auto`/`local`/`cloud` alias asks for a choice), validate options,
    build the Request, and return a lazy Response that logs itself. `task_default` is the engine a
    task uses when the caller names no model."""
    from .router import Policy, get_router

    tools = normalize_tools(tools) if tools else ()  # a malformed tool is the caller's InputError, named
    settings = get_settings()
    registry = registry or get_registry()
    log = settings.log if log is None else log
    if task_default and (model is None or model.strip() in ("", "auto")) and policy is None:
        model = task_default
    chosen = (model or "").strip()
    if policy is None and chosen in ("auto", "local", "cloud") and not (chosen == "auto" and settings.policy == "direct"):
        policy = settings.policy if chosen == "auto" else chosen
    if policy is None and not chosen and settings.policy != "direct":
        policy = settings.policy
    if policy is not None:
        parsed = policy if isinstance(policy, Policy) else Policy.parse(
            policy, max_cost_per_day=settings.max_cost_per_day)
        json_schema, schema_model = schema_of(schema)
        router = get_router(registry)
        decision = router.plan(messages, chosen or "auto", want=want, policy=parsed, options=options,
                               schema=json_schema, tools=tools)
        template = Request(messages=tuple(messages), model="", options=_RawOptions(**(options or {})),
                           schema=json_schema, want=want, tools=tuple(tools))
        routed = router.build(decision, template)
        logged_messages = list(messages if new_messages is None else new_messages)

        def log_routed(response: Response) -> None:
            get_store().log_response(response, logged_messages)

        return Response(engine=routed, request=template, schema_model=schema_model,
                        on_finish=log_routed if log else None,
                        conversation_id=conversation_id or new_id(), model_ref=decision.requested)
    needed = {m for msg in messages for m in msg.modalities}
    resolved = registry.resolve(model, inputs=needed, want=want)
    engine = resolved.engine
    json_schema, schema_model = schema_of(schema)
    if json_schema is not None and "json_schema" not in engine.features:
        raise InputError(f"engine {engine.id} cannot constrain output to a schema",
                         hint="pick an engine with the json_schema feature (see `imagine models`)")
    request = Request(messages=tuple(messages), model=resolved.model, options=engine.parse_options(options),
                      schema=json_schema, want=want, tools=tuple(tools))
    logged = list(messages if new_messages is None else new_messages)

    def on_finish(response: Response) -> None:
        get_store().log_response(response, logged)

    return Response(engine=engine, request=request, schema_model=schema_model,
                    on_finish=on_finish if log else None, conversation_id=conversation_id or new_id(),
                    model_ref=resolved.ref)


def aask(prompt: PromptLike = None, model: str | None = None, **kwargs: Any) -> Response:
    """`ask` for async code: `await aask(...)` runs it to the end; `async for` streams it.

    It is the same lazy Response — one class for both worlds, no parallel async hierarchy.
    """
    return ask(prompt, model, **kwargs)



# -- media tasks: parts in, one modality out, all through `respond` --------------------------------

MediaLike = str | os.PathLike[str] | bytes | Part

# The engine each task uses when no model (or `auto`) is named.
TASK_DEFAULTS = {"transcribe": "whisper", "speak": "piper", "detect_speech": "silero-vad",
                 "read_text": "rapidocr", "embed": "minilm", "embed_image": "clip"}
# Where a task's default cannot run here (its package or bundled model is not installed), the first of
# these that can: Piper's voice is the better one, espeak the one that is there almost everywhere.
TASK_FALLBACKS: dict[str, tuple[str, ...]] = {"speak": ("espeak",)}


def task_default(task: str, registry: Registry | None = None) -> str:
    """The engine `task` uses when no model is named: its default if that can run here, else the first
    fallback that can, else the default anyway (so the error names what to install for it)."""
    from .errors import EngineNotFound, EngineUnavailable

    registry = registry or get_registry()
    for engine_id in (TASK_DEFAULTS[task], *TASK_FALLBACKS.get(task, ())):
        try:
            engine = registry.engine(engine_id)
            engine.check_model(engine.default_model)
        except (EngineNotFound, EngineUnavailable):
            continue
        return engine_id
    return TASK_DEFAULTS[task]


# Image parts with these names play a role in an image request rather than being the image itself.
MASK, CONTROL = "mask", "control"


def _media(source: MediaLike, kinds: tuple[type[Part], ...], task: str) -> Part:
    part = source if isinstance(source, Part) else load_part(source, limits=get_settings().part_limits())
    if not isinstance(part, kinds):
        wanted = " or ".join(k.modality.value for k in kinds)
        raise InputError(f"{task} needs {wanted}, got {part.modality.value}",
                         hint=f"pass a {wanted} file")
    return part


def transcribe(audio: MediaLike, model: str | None = None, *, log: bool | None = None, **options: Any) -> Response:
    """Speech to text. The Response streams text; `.parts` holds Segments (timestamps) and Data (language)."""
    from .parts import Audio, Video

    part = _media(audio, (Audio, Video), "transcribe")
    return respond([Message.user(part)], model, want=Modality.TEXT, task_default=TASK_DEFAULTS["transcribe"],
                   options=options, log=log)


def speak(text: str, model: str | None = None, *, log: bool | None = None, **options: Any) -> Response:
    """Text to speech; `.parts[0]` is the Audio (WAV). Options such as voice= go to the engine. The default
    voice is Piper's (espeak where Piper is not installed); `model="espeak"` for its 100+ languages."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("nothing to speak: the text is empty")
    default = task_default("speak") if model is None or model.strip() in ("", "auto") else None
    return respond([Message.user(text)], model, want=Modality.AUDIO, task_default=default, options=options, log=log)


def detect_speech(audio: MediaLike, model: str | None = None, *, log: bool | None = None, **options: Any) -> Response:
    """Voice activity detection; `.parts[0]` is Segments of speech regions (seconds)."""
    from .parts import Audio, Video

    part = _media(audio, (Audio, Video), "detect_speech")
    return respond([Message.user(part)], model, want=Modality.SEGMENTS,
                   task_default=TASK_DEFAULTS["detect_speech"], options=options, log=log)


def read_text(image: MediaLike, model: str | None = None, *, log: bool | None = None, **options: Any) -> Response:
    """OCR. The Response streams the text in reading order; `.parts` holds Data with boxes and confidences."""
    from .parts import Image

    part = _media(image, (Image,), "read_text")
    return respond([Message.user(part)], model, want=Modality.TEXT, task_default=TASK_DEFAULTS["read_text"],
                   options=options, log=log)


def embed(texts: str | Sequence[str | Part] | Part, model: str | None = None, *, log: bool | None = None,
          **options: Any) -> Response:
    """Embeddings; `.parts` holds one Vector per input, in order. Inputs are texts, or Image parts for a
    model that embeds images (default for images: `clip`)."""
    from .parts import Image

    parts: list[str | Part] = [texts] if isinstance(texts, (str, Part)) else list(texts)
    if not parts or not all(isinstance(p, Part) or (isinstance(p, str) and p.strip()) for p in parts):
        raise InputError("embed needs one or more non-empty texts or images")
    images = any(isinstance(p, Image) for p in parts)
    default = TASK_DEFAULTS["embed_image" if images else "embed"]
    return respond([Message("user", parts)], model, want=Modality.VECTOR, task_default=default,
                   options=options, log=log)


def see(image: MediaLike | Sequence[MediaLike], question: str = "Describe this image.", model: str | None = None,
        *, log: bool | None = None, **options: Any) -> Response:
    """Ask a vision-language model about one or more images; the Response streams its answer."""
    from .parts import Image

    sources: list[MediaLike] = list(image) if isinstance(image, (list, tuple)) else [image]  # type: ignore[list-item]
    parts: list[Part] = [_media(src, (Image,), "see") for src in sources]
    if not parts:
        raise InputError("see needs at least one image")
    return respond([Message.user(*parts, question)], model, want=Modality.TEXT, options=options, log=log)


def _role(source: MediaLike, role: str) -> Part:
    """The image under the name that tells the engine its role (the mask, the control image)."""
    from .parts import Image

    part = _media(source, (Image,), role)
    assert isinstance(part, Image)
    return Image(part.data, name=role)


def draw(prompt: str, model: str | None = None, *, control: MediaLike | None = None, log: bool | None = None,
         **options: Any) -> Response:
    """Text to image; `.parts` holds the Image(s). Options: steps, guidance, width, height, seed, ...;
    `control` is a conditioning image for a ControlNet model."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("nothing to draw: the prompt is empty")
    parts: list[Part | str] = [_role(control, CONTROL)] if control is not None else []
    return respond([Message.user(*parts, prompt)], model, want=Modality.IMAGE, options=options, log=log)


def edit(image: MediaLike, prompt: str, model: str | None = None, *, mask: MediaLike | None = None,
         control: MediaLike | None = None, log: bool | None = None, **options: Any) -> Response:
    """Image to image: with `mask` (white = repaint) it inpaints, without it it redraws the whole image
    (option `strength` sets how far from the input it may go)."""
    from .parts import Image

    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("edit needs a prompt saying what to change")
    parts: list[Part | str] = [_media(image, (Image,), "edit")]
    if mask is not None:
        parts.append(_role(mask, MASK))
    if control is not None:
        parts.append(_role(control, CONTROL))
    return respond([Message.user(*parts, prompt)], model, want=Modality.IMAGE, options=options, log=log)
