"""imagine: one multimodal-native way to explore and automate LLM, vision and audio models.

    import imagine
    print(imagine.ask("Write a haiku about tea", temperature=0).text())

The public API is exactly `__all__`; everything else is private and may change.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from .config import Settings, get_settings, load_settings
from .engine import Engine, Request, Response
from .errors import (
    ConfigError,
    EngineNotFound,
    EngineUnavailable,
    ImagineError,
    InputError,
    LimitExceeded,
    OptionsError,
    SchemaError,
    StoreError,
    UpstreamError,
)
from .events import Done, Error, Event, PartOut, Progress, TextDelta, ToolCall, Usage
from .parts import Audio, Data, Image, Message, Modality, Part, Segment, Segments, Text, Vector, Video, load_part
from .registry import Registry, get_registry
from .store import Store
from .tasks import aask, ask, get_store

try:
    __version__ = _version("imagine")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "Audio",
    "ConfigError",
    "Data",
    "Done",
    "Engine",
    "EngineNotFound",
    "EngineUnavailable",
    "Error",
    "Event",
    "Image",
    "ImagineError",
    "InputError",
    "LimitExceeded",
    "Message",
    "Modality",
    "OptionsError",
    "Part",
    "PartOut",
    "Progress",
    "Registry",
    "Request",
    "Response",
    "SchemaError",
    "Segment",
    "Segments",
    "Settings",
    "Store",
    "StoreError",
    "Text",
    "TextDelta",
    "ToolCall",
    "UpstreamError",
    "Usage",
    "Vector",
    "Video",
    "__version__",
    "aask",
    "ask",
    "get_registry",
    "get_settings",
    "get_store",
    "load_part",
    "load_settings",
]
