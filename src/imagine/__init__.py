"""imagine: one multimodal-native way to explore and automate LLM, vision and audio models.

    import imagine
    print(imagine.ask("Write a haiku about tea", temperature=0).text())

The public API is exactly `__all__`; everything else is private and may change.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below load lazily (PEP 562), so `imagine --help` pays only for the CLI
    from .agents.loop import AgentRun, agent
    from .client import Client, default_client
    from .config import Settings, get_settings, load_settings
    from .engine import Engine, Request, Response
    from .errors import (
        BudgetExceeded,
        ConfigError,
        EngineNotFound,
        EngineUnavailable,
        ImagineError,
        InputError,
        LimitExceeded,
        OptionsError,
        RateLimited,
        Refused,
        SchemaError,
        StoreError,
        UpstreamError,
        UpstreamTimeout,
    )
    from .flows import Flow
    from .events import Done, Error, Event, PartDelta, PartOut, Progress, Restart, TextDelta, ToolCall, Usage
    from .parts import (Audio, Data, Image, Message, Modality, Part, Segment, Segments, Text, ToolResult, ToolUse, Vector,
                        Video, load_part)
    from .registry import Registry, get_registry
    from .store import Store
    from .tasks import (aask, ask, detect_speech, draw, edit, embed, get_store, read_text, see, speak,
                        transcribe)
    from .timeline import watch

_HOMES = {
    "agents.loop": ("AgentRun", "agent"),
    "client": ("Client", "default_client"),
    "timeline": ("watch",),
    "config": ("Settings", "get_settings", "load_settings"),
    "engine": ("Engine", "Request", "Response"),
    "errors": ("BudgetExceeded", "ConfigError", "EngineNotFound", "EngineUnavailable", "ImagineError", "InputError",
               "LimitExceeded", "OptionsError", "RateLimited", "Refused", "SchemaError", "StoreError", "UpstreamError",
               "UpstreamTimeout"),
    "flows": ("Flow",),
    "events": ("Done", "Error", "Event", "PartDelta", "PartOut", "Progress", "Restart", "TextDelta", "ToolCall",
               "Usage"),
    "parts": ("Audio", "Data", "Image", "Message", "Modality", "Part", "Segment", "Segments", "Text", "ToolResult",
              "ToolUse", "Vector", "Video", "load_part"),
    "registry": ("Registry", "get_registry"),
    "store": ("Store",),
    "tasks": ("aask", "ask", "detect_speech", "draw", "edit", "embed", "get_store", "read_text", "see", "speak",
              "transcribe"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def _package_version() -> str:
    """Read on first use: importlib.metadata costs ~20 ms, most of what `imagine --help` would pay."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imagine")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _package_version()
        return value
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'imagine' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AgentRun",
    "Audio",
    "BudgetExceeded",
    "Client",
    "ConfigError",
    "Data",
    "Done",
    "Engine",
    "EngineNotFound",
    "EngineUnavailable",
    "Error",
    "Event",
    "Flow",
    "Image",
    "ImagineError",
    "InputError",
    "LimitExceeded",
    "Message",
    "Modality",
    "OptionsError",
    "Part",
    "PartDelta",
    "PartOut",
    "Progress",
    "RateLimited",
    "Refused",
    "Registry",
    "Request",
    "Response",
    "Restart",
    "SchemaError",
    "Segment",
    "Segments",
    "Settings",
    "Store",
    "StoreError",
    "Text",
    "TextDelta",
    "ToolCall",
    "ToolResult",
    "ToolUse",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "Vector",
    "Video",
    "__version__",
    "aask",
    "agent",
    "ask",
    "default_client",
    "detect_speech",
    "draw",
    "edit",
    "embed",
    "get_registry",
    "get_settings",
    "get_store",
    "load_part",
    "load_settings",
    "read_text",
    "see",
    "speak",
    "transcribe",
    "watch",
]
