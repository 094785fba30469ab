"""Tasks: thin helpers over the one request path (parts in, modality out).

Each task builds the messages for its kind of request and hands them to `Client.respond`, the one
request path (on the default client unless `client=` is given); it returns a lazy `Response` that logs
itself when it finishes. Sync and async callers share it:

    imagine.ask("Hi").text()                      # sync
    for delta in imagine.ask("Hi"): ...           # sync streaming
    r = await imagine.aask("Hi")                  # async
    async for delta in imagine.aask("Hi"): ...    # async streaming
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import BaseModel

from .client import Client, default_client, get_store, reset_store, schema_of
from .engine import Response, new_id
from .errors import InputError
from .parts import Message, Modality, Part, load_part
from .registry import Registry

if TYPE_CHECKING:
    from .parts import Limits
    from .router import Policy

__all__ = ["aask", "ask", "build_messages", "detect_speech", "draw", "edit", "embed", "get_store", "read_text",
           "reset_store", "respond", "schema_of", "see", "speak", "transcribe"]

PromptLike = str | Message | Sequence[Message] | None
AttachLike = str | os.PathLike[str] | bytes | Part


def _client(client: Client | None, registry: Registry | None = None) -> Client:
    """The caller's client, or the default one (a registry passed alone gets a client of its own)."""
    if client is not None:
        return client
    default = default_client()
    if registry is not None and registry is not default.registry:
        return Client(settings=registry.settings, registry=registry, store=default.store)
    return default


def build_messages(prompt: PromptLike, attach: Sequence[AttachLike] = (), system: str | None = None,
                   limits: "Limits | None" = None) -> list[Message]:
    """The messages one call adds: optional system, then the prompt (with attachments) as a user turn."""
    limits = limits or default_client().settings.part_limits()
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
        tools: Sequence[dict[str, Any]] = (), client: Client | None = None, **option_kwargs: Any) -> Response:
    """Ask a model; returns a lazy Response (iterate to stream, `.text()` to finish, `.parsed` for schema).

    `conversation=True` continues the last logged conversation, a string continues that one.
    A caller holding the conversation itself (the chat REPL) passes `history` and `conversation_id`.
    Extra keyword arguments are engine options (temperature=0, max_tokens=64, seed=1, stop=[...]).
    """
    client = _client(client, registry)
    new_messages = build_messages(prompt, attach, system, client.settings.part_limits())

    history = list(history)
    conversation_id = conversation_id or new_id()
    if conversation:
        store = client.store
        found = store.last_conversation_id() if conversation is True else str(conversation)
        if found is None:
            raise InputError("there is no earlier conversation to continue", hint="drop -c to start one")
        history = store.conversation(found)
        if conversation is not True and not history:
            raise InputError(f"no conversation with id {found!r}", hint="see `imagine logs` for ids")
        conversation_id = found
        if policy is None and store.conversation_is_local_only(found):
            policy = "local_only"  # privacy is per conversation: a local_only chat stays on the device

    return client.respond(tuple(history + new_messages), model, want=Modality.TEXT, new_messages=new_messages,
                          schema=schema, options={**(options or {}), **option_kwargs},
                          conversation_id=conversation_id, log=log, policy=policy, tools=tools)


def respond(messages: Sequence[Message], model: str | None, *, want: Modality, task_default: str | None = None,
            new_messages: Sequence[Message] | None = None, schema: type[BaseModel] | dict[str, Any] | None = None,
            options: dict[str, Any] | None = None, conversation_id: str | None = None, log: bool | None = None,
            registry: Registry | None = None, policy: "str | Policy | None" = None,
            tools: Sequence[dict[str, Any]] = (), client: Client | None = None) -> Response:
    """The one request path (`Client.respond`) on the default client, or on `client`."""
    return _client(client, registry).respond(
        messages, model, want=want, task_default=task_default, new_messages=new_messages, schema=schema,
        options=options, conversation_id=conversation_id, log=log, policy=policy, tools=tools)


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

    registry = registry or default_client().registry
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


def _media(source: MediaLike, kinds: tuple[type[Part], ...], task: str, client: Client | None = None) -> Part:
    limits = (client or default_client()).settings.part_limits()
    part = source if isinstance(source, Part) else load_part(source, limits=limits)
    if not isinstance(part, kinds):
        wanted = " or ".join(k.modality.value for k in kinds)
        raise InputError(f"{task} needs {wanted}, got {part.modality.value}",
                         hint=f"pass a {wanted} file")
    return part


def transcribe(audio: MediaLike, model: str | None = None, *, log: bool | None = None, client: Client | None = None,
        **options: Any) -> Response:
    """Speech to text. The Response streams text; `.parts` holds Segments (timestamps) and Data (language)."""
    from .parts import Audio, Video

    part = _media(audio, (Audio, Video), "transcribe", client)
    return respond([Message.user(part)], model, want=Modality.TEXT, task_default=TASK_DEFAULTS["transcribe"],
                   options=options, log=log, client=client)


def speak(text: str, model: str | None = None, *, log: bool | None = None, client: Client | None = None,
        **options: Any) -> Response:
    """Text to speech; `.parts[0]` is the Audio (WAV). Options such as voice= go to the engine. The default
    voice is Piper's (espeak where Piper is not installed); `model="espeak"` for its 100+ languages."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("nothing to speak: the text is empty")
    default = task_default("speak", (client or default_client()).registry) if model is None or model.strip() in ("", "auto") else None
    return respond([Message.user(text)], model, want=Modality.AUDIO, task_default=default, options=options, log=log,
                   client=client)


def detect_speech(audio: MediaLike, model: str | None = None, *, log: bool | None = None, client: Client | None = None,
        **options: Any) -> Response:
    """Voice activity detection; `.parts[0]` is Segments of speech regions (seconds)."""
    from .parts import Audio, Video

    part = _media(audio, (Audio, Video), "detect_speech", client)
    return respond([Message.user(part)], model, want=Modality.SEGMENTS,
                   task_default=TASK_DEFAULTS["detect_speech"], options=options, log=log, client=client)


def read_text(image: MediaLike, model: str | None = None, *, log: bool | None = None, client: Client | None = None,
        **options: Any) -> Response:
    """OCR. The Response streams the text in reading order; `.parts` holds Data with boxes and confidences."""
    from .parts import Image

    part = _media(image, (Image,), "read_text", client)
    return respond([Message.user(part)], model, want=Modality.TEXT, task_default=TASK_DEFAULTS["read_text"],
                   options=options, log=log, client=client)


def embed(texts: str | Sequence[str | Part] | Part, model: str | None = None, *, log: bool | None = None,
          client: Client | None = None, **options: Any) -> Response:
    """Embeddings; `.parts` holds one Vector per input, in order. Inputs are texts, or Image parts for a
    model that embeds images (default for images: `clip`)."""
    from .parts import Image

    parts: list[str | Part] = [texts] if isinstance(texts, (str, Part)) else list(texts)
    if not parts or not all(isinstance(p, Part) or (isinstance(p, str) and p.strip()) for p in parts):
        raise InputError("embed needs one or more non-empty texts or images")
    images = any(isinstance(p, Image) for p in parts)
    default = TASK_DEFAULTS["embed_image" if images else "embed"]
    return respond([Message("user", parts)], model, want=Modality.VECTOR, task_default=default,
                   options=options, log=log, client=client)


def see(image: MediaLike | Sequence[MediaLike], question: str = "Describe this image.", model: str | None = None,
        *, log: bool | None = None, client: Client | None = None,
        **options: Any) -> Response:
    """Ask a vision-language model about one or more images; the Response streams its answer."""
    from .parts import Image

    sources: list[MediaLike] = list(image) if isinstance(image, (list, tuple)) else [image]  # type: ignore[list-item]
    parts: list[Part] = [_media(src, (Image,), "see", client) for src in sources]
    if not parts:
        raise InputError("see needs at least one image")
    return respond([Message.user(*parts, question)], model, want=Modality.TEXT, options=options, log=log,
                   client=client)


def _role(source: MediaLike, role: str, client: Client | None = None) -> Part:
    """The image under the name that tells the engine its role (the mask, the control image)."""
    from .parts import Image

    part = _media(source, (Image,), role, client)
    assert isinstance(part, Image)
    return Image(part.data, name=role)


def draw(prompt: str, model: str | None = None, *, control: MediaLike | None = None, log: bool | None = None,
         client: Client | None = None, **options: Any) -> Response:
    """Text to image; `.parts` holds the Image(s). Options: steps, guidance, width, height, seed, ...;
    `control` is a conditioning image for a ControlNet model."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("nothing to draw: the prompt is empty")
    parts: list[Part | str] = [_role(control, CONTROL, client)] if control is not None else []
    return respond([Message.user(*parts, prompt)], model, want=Modality.IMAGE, options=options, log=log,
                   client=client)


def edit(image: MediaLike, prompt: str, model: str | None = None, *, mask: MediaLike | None = None,
         control: MediaLike | None = None, log: bool | None = None, client: Client | None = None,
         **options: Any) -> Response:
    """Image to image: with `mask` (white = repaint) it inpaints, without it it redraws the whole image
    (option `strength` sets how far from the input it may go)."""
    from .parts import Image

    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("edit needs a prompt saying what to change")
    parts: list[Part | str] = [_media(image, (Image,), "edit", client)]
    if mask is not None:
        parts.append(_role(mask, MASK, client))
    if control is not None:
        parts.append(_role(control, CONTROL, client))
    return respond([Message.user(*parts, prompt)], model, want=Modality.IMAGE, options=options, log=log,
                   client=client)
