"""What a request gives an engine to work on: the parts of the last user message.

Most local engines act on one message, not on a conversation: transcribe this audio, embed these texts,
read this image. They take the last user message, pick the parts of the kinds they handle, and refuse
a request without them. Written here once so that every engine says the same thing when the parts are
missing: what it needs, and what the message holds instead.
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar, overload

from ...engine import Request
from ...errors import InputError
from ...parts import Message, Part

__all__ = ["holds", "last_user", "refuse_other_parts", "user_parts"]

P = TypeVar("P", bound=Part)
Q = TypeVar("Q", bound=Part)


def last_user(request: Request, *, or_last: bool = False) -> Message | None:
    """The last message with role user; with `or_last`, the last message of any role when no user spoke
    (for engines that act on whatever text came last, as the speech engines do)."""
    found = next((m for m in reversed(request.messages) if m.role == "user"), None)
    if found is None and or_last and request.messages:
        return request.messages[-1]
    return found


def holds(parts: Sequence[Part]) -> str:
    """What parts hold, for an error message: "text and image", "nothing"."""
    kinds = sorted({p.modality.value for p in parts})
    return " and ".join(kinds) if kinds else "nothing"


def refuse_other_parts(message: Message | None, allowed: type[Part] | tuple[type[Part], ...], *, engine: str,
                       takes: str, hint: str | None = None, verb: str = "takes") -> None:
    """An InputError when the message holds a part of a kind the engine cannot use (rather than ignore it):
    "clip embeds text and images, not audio"."""
    other = sorted({p.modality.value for p in (message.parts if message else ()) if not isinstance(p, allowed)})
    if other:
        raise InputError(f"{engine} {verb} {takes}, not {', '.join(other)}", hint=hint)


@overload
def user_parts(request: Request, kind: type[P], *, engine: str, needs: str, hint: str | None = None,
               one: bool = False) -> list[P]: ...
@overload
def user_parts(request: Request, kind: tuple[type[P], type[Q]], *, engine: str, needs: str, hint: str | None = None,
               one: bool = False) -> list[P | Q]: ...
def user_parts(request: Request, kind: type[Part] | tuple[type[Part], ...], *, engine: str, needs: str,
               hint: str | None = None, one: bool = False) -> list[Any]:
    """The parts of `kind` in the last user message, in order; an InputError naming what the engine
    `needs` and what the message holds when there are none (or, with `one`, more than one)."""
    message = last_user(request)
    parts = list(message.parts) if message else []
    found = [p for p in parts if isinstance(p, kind)]
    if not found:
        if message is None:
            raise InputError(f"{engine} needs {needs}, but the request has no user message", hint=hint)
        if not parts:
            raise InputError(f"{engine} needs {needs}, but the last user message has none", hint=hint)
        raise InputError(f"{engine} needs {needs}, but the last user message holds {holds(parts)} and no {needs}",
                         hint=hint)
    if one and len(found) > 1:
        raise InputError(f"{engine} takes one {needs} part, got {len(found)}",
                         hint="send each file in its own request")
    return found
