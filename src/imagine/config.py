"""Settings: explicit argument > IMAGINE_* environment > $IMAGINE_HOME/config.toml > defaults.

IMAGINE_HOME (default: the platform's user data dir) holds config.toml, logs.db and blobs/.
Example config.toml:

    model = "llama-cpp"            # what `auto`/no -m means
    log = true                     # log every response
    [aliases]
    big = "llama-cpp:~/models/qwen2.5-7b-instruct-q4_k_m.gguf"
    [limits]
    max_bytes = 536870912
    max_prompt_bytes = 8388608     # prompt text, refused before any model runs
    [engines.llama-cpp]            # passed to the engine as its settings
    n_ctx = 4096
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .parts import Limits

__all__ = ["EndpointSettings", "ModelSpec", "Settings", "get_settings", "imagine_home", "load_settings",
           "reset_settings"]


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    max_bytes: int = Field(default=Limits.max_bytes, gt=0)
    max_pixels: int = Field(default=Limits.max_pixels, gt=0)
    max_audio_seconds: float = Field(default=Limits.max_audio_seconds, gt=0)
    max_video_frames: int = Field(default=Limits.max_video_frames, gt=0)
    max_prompt_bytes: int = Field(default=Limits.max_prompt_bytes, gt=0)


class ModelSpec(BaseModel):
    """What one model of an endpoint takes, gives and costs (prices in US dollars)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    inputs: list[str] = Field(default_factory=lambda: ["text"])
    outputs: list[str] = Field(default_factory=lambda: ["text"])
    features: list[str] = Field(default_factory=lambda: ["stream"])
    context: int | None = Field(default=None, gt=0, description="context window in tokens")
    price_input: float | None = Field(default=None, ge=0, description="per million input tokens")
    price_output: float | None = Field(default=None, ge=0, description="per million output tokens")
    price_image: float | None = Field(default=None, ge=0, description="per input image")
    price_audio_minute: float | None = Field(default=None, ge=0, description="per minute of input audio")
    quality: float | None = Field(default=None, description="relative strength for the `best` preference")


class EndpointSettings(BaseModel):
    """A configured remote (or local-server) endpoint: `[endpoints.NAME]` in config.toml."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: str = Field(default="openai", description="wire protocol: openai, anthropic or gemini")
    base_url: str | None = None
    key_env: str | None = Field(default=None, description="environment variable holding the API key")
    api_key: str | None = Field(default=None, description="the key itself (prefer key_env)", repr=False)
    locality: str | None = Field(default=None, description="local or cloud; default: local for loopback URLs")
    default_model: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    models: dict[str, ModelSpec] = Field(default_factory=dict)


class Settings(BaseModel):
    """Resolved settings; build with `load_settings()`, never by hand in library code."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    home: Path
    model: str = "llama-cpp"
    log: bool = True
    aliases: dict[str, str] = Field(default_factory=dict)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    engines: dict[str, dict[str, Any]] = Field(default_factory=dict)
    endpoints: dict[str, EndpointSettings] = Field(default_factory=dict)
    policy: str = Field(default="direct", description="routing preference when no -m is given")
    max_cost_per_day: float | None = Field(default=None, ge=0, description="US dollars, across all engines")
    allow_private_urls: bool = Field(default=False, description="let media URLs reach private/local addresses")
    index_url: str | None = Field(default=None, description="postgresql://... keeps new indexes in PostgreSQL + "
                                                            "pgvector; default: LanceDB folders under the home")

    @field_validator("engines")
    @classmethod
    def _finite_engine_settings(cls, engines: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for engine_id, values in engines.items():
            for key, value in values.items():
                if _not_finite(value):
                    raise ValueError(f"{engine_id}.{key} must be a finite number, not {value!r}")
        return engines

    @property
    def db_path(self) -> Path:
        return self.home / "logs.db"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def config_path(self) -> Path:
        return self.home / "config.toml"

    def part_limits(self) -> Limits:
        return Limits(**self.limits.model_dump())

    def engine_settings(self, engine_id: str) -> dict[str, Any]:
        return dict(self.engines.get(engine_id, {}))


def imagine_home() -> Path:
    env = os.environ.get("IMAGINE_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("imagine", appauthor=False))


# IMAGINE_* variables and where they land in the settings tree.
_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "IMAGINE_MODEL": ("model",),
    "IMAGINE_LOG": ("log",),
    "IMAGINE_MAX_BYTES": ("limits", "max_bytes"),
    "IMAGINE_MAX_PIXELS": ("limits", "max_pixels"),
    "IMAGINE_MAX_AUDIO_SECONDS": ("limits", "max_audio_seconds"),
    "IMAGINE_MAX_VIDEO_FRAMES": ("limits", "max_video_frames"),
    "IMAGINE_MAX_PROMPT_BYTES": ("limits", "max_prompt_bytes"),
    "IMAGINE_ALLOW_PRIVATE_URLS": ("allow_private_urls",),
    "IMAGINE_INDEX_URL": ("index_url",),
}


def _deep_set(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def _not_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_not_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_not_finite(v) for v in value.values())
    return False


def _read_config_file(path: Path) -> dict[str, Any]:
    """config.toml as a tree; anything wrong with the file (not UTF-8 text, not TOML, nested past
    reason, unreadable, a `home` key) is one ConfigError naming the file and the problem."""
    if not path.exists():
        return {}
    fix = "fix or remove the file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint=fix) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                          hint="save it as UTF-8 TOML") from None
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {' '.join(str(exc).split())}", hint=fix) from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to read", hint=fix) from None
    if "home" in tree:
        raise ConfigError(f"{path} sets 'home', which config.toml cannot: the home is the folder that holds "
                          "it", hint="remove the key; set IMAGINE_HOME to use another home") from None
    return tree


def load_settings(**explicit: Any) -> Settings:
    """Merge the layers. Keyword arguments are the explicit layer (e.g. `load_settings(model=...)`)."""
    home = Path(explicit.pop("home")) if explicit.get("home") else imagine_home()
    tree: dict[str, Any] = _read_config_file(home / "config.toml")
    source = {key: str(home / "config.toml") for key in tree}
    for var, keys in _ENV_KEYS.items():
        if var in os.environ:
            _deep_set(tree, keys, os.environ[var])
            source[keys[0]] = var
    for key, value in explicit.items():
        if value is not None:
            tree[key] = value
            source[key] = "argument"
    try:
        return Settings(home=home, **tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        origin = source.get(str(err["loc"][0]), "settings")
        raise ConfigError(f"setting {field!r} from {origin}: {' '.join(err['msg'].split())}",
                          hint="see the config section of the README") from None


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded once on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def reset_settings(settings: Settings | None = None) -> None:
    """Forget (or replace) the cached settings; tests and the CLI use this after changing the env."""
    global _settings
    _settings = settings
