"""Caps on decoded media and on prompt text, checked before decoding or running a model, so a hostile
file or a huge prompt cannot exhaust memory.

They travel on every Request (`Request.limits`), from the caller's settings (`[limits]` in config.toml,
IMAGINE_MAX_* variables)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import InputError, LimitExceeded

if TYPE_CHECKING:
    from ..engine import Engine
    from ..parts import Message

__all__ = ["BYTES_PER_TOKEN_MAX", "DEFAULT_LIMITS", "Limits", "check_context", "check_prompt", "context_error", "prompt_bytes",
           "prompt_too_big", "utf8_size"]

# A token of any tokenizer in use covers at most about this many bytes of ordinary text (English runs
# about 4), so `bytes // BYTES_PER_TOKEN_MAX` is a lower bound on the tokens: a prompt refused by it is
# too long for certain, without tokenizing it.
BYTES_PER_TOKEN_MAX = 8


@dataclass(frozen=True)
class Limits:
    """Caps checked before decoding, so a hostile file cannot exhaust memory."""

    max_bytes: int = 512 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_audio_seconds: float = 4 * 3600
    max_video_frames: int = 20_000
    max_prompt_bytes: int = 8 * 1024 * 1024  # prompt text, all of a request's text parts together


DEFAULT_LIMITS = Limits()


def utf8_size(text: str, cap: int | None = None) -> int:
    """The UTF-8 length of `text`, without encoding it where the answer is plain: a str is at least as
    many bytes as characters, so one longer than `cap` characters is reported as its character count."""
    if text.isascii() or (cap is not None and len(text) > cap):
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_too_big(size: int | None, limits: Limits, what: str = "the prompt") -> LimitExceeded:
    """The one error for prompt text over `max_prompt_bytes` (`size` in bytes, None: not read to the end)."""
    amount = "" if size is None else f"{size:,} bytes, "
    return LimitExceeded(f"{what} is {amount}over the prompt limit of {limits.max_prompt_bytes:,} bytes",
                         hint="shorten it, or raise the limit with IMAGINE_MAX_PROMPT_BYTES or max_prompt_bytes "
                              "under [limits] in config.toml")


def prompt_bytes(messages: Iterable["Message"], cap: int | None = None) -> int:
    """UTF-8 bytes of the text a request carries (text parts and tool results), counted cheaply:
    past `cap` the count may be in characters, which is enough to know it is over."""
    from ..parts import Text, ToolResult

    total = 0
    for message in messages:
        for part in message.parts:
            if isinstance(part, (Text, ToolResult)):
                total += utf8_size(part.text, cap)
    return total


def check_prompt(messages: Iterable["Message"], limits: Limits) -> int:
    """Refuse prompt text over `limits.max_prompt_bytes` (LimitExceeded); else return its size in bytes."""
    size = prompt_bytes(messages, limits.max_prompt_bytes)
    if size > limits.max_prompt_bytes:
        raise prompt_too_big(size, limits, "the prompt text")
    return size


def check_context(size: int, window: int | None, ref: str, option: str | None = None) -> None:
    """Refuse, before running anything, a prompt of `size` bytes that cannot fit a `window`-token context:
    an InputError with the lower-bound estimate, the window and the ways out (`option`: the engine option
    that sets the window). Nothing is refused where the window is unknown (None)."""
    if window is None or size // BYTES_PER_TOKEN_MAX <= window:
        return
    raise_it = f"raise the window with -o {option}=N, which takes more memory; " if option else ""
    raise InputError(f"the prompt is at least ~{size // BYTES_PER_TOKEN_MAX:,} tokens ({size:,} bytes), over the "
                     f"{window:,}-token context window of {ref}",
                     hint=f"{raise_it}shorten the prompt; or use a model with a larger context window")


def context_error(engine: "Engine", model: str, options: Any, size: int) -> InputError | None:
    """`check_context` for one engine and model with the caller's raw options, as the error or None."""
    try:
        parsed = engine.parse_options(options or {})
        option = "n_ctx" if "n_ctx" in engine.Options.model_fields else None
        check_context(size, engine.context_window(model, parsed), f"{engine.id}:{model}", option)
    except InputError as exc:
        return exc
    return None
