"""Shared ground for the cloud engines (openai, anthropic, gemini): endpoints, keys, prices, parts.

An *endpoint* is a place to send requests with one wire protocol: the built-in `openai`, `anthropic`
and `gemini` engines are endpoints configured from the usual environment variables, and every
`[endpoints.NAME]` table in config.toml becomes one more engine with that id (a vLLM box, Ollama,
Groq...). Keys come from the environment or the config file, and are never logged or echoed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Generic, TypeVar
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from ..._bridge import on_bridge_loop
from ...config import EndpointSettings, ModelSpec
from ...engine import Engine, installed
from ...errors import EngineUnavailable, InputError
from ...parts import MediaPart, Modality, Part
from .._support.options import StopStrings
from ._catalog import catalog_specs, tier_models

__all__ = ["CloudEngine", "CloudOptions", "CloudOptionsT", "data_url", "is_loopback"]


def is_loopback(url: str | None) -> bool:
    """True for http://localhost / 127.x / ::1 URLs: a server on this machine counts as local."""
    if not url:
        return False
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def data_url(part: MediaPart) -> str:
    """`data:<mime>;base64,...` for an image or audio part (how most APIs take inline media)."""
    return f"data:{part.mime};base64,{base64.b64encode(part.data).decode('ascii')}"


class CloudOptions(BaseModel):
    """Options every chat API understands; engines may extend this."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None
    stop: StopStrings = None
    timeout: float | None = Field(default=None, gt=0, description="seconds; default from the endpoint")


# The options model of one API engine: CloudOptions or a subclass (OpenAIOptions, AnthropicOptions).
CloudOptionsT = TypeVar("CloudOptionsT", bound=CloudOptions)


def _modalities(names: list[str]) -> frozenset[Modality]:
    return frozenset(Modality(n) for n in names)


class CloudEngine(Engine[CloudOptionsT]):
    """Base of the API engines, generic over their options (`class FooEngine(CloudEngine[FooOptions])`).
    Subclasses set `kind`, `sdk`, `known_models`, `Options` and implement `stream`."""

    locality = "cloud"
    in_process = False  # the model runs behind an API: the server it calls queues and batches on its own
    locality_reason: ClassVar[str] = ""  # why it counts as local or cloud (set per endpoint; shown by `imagine models`)
    _clients: "PerLoop[Any]"  # set by each subclass: its SDK client per event loop
    kind: ClassVar[str]  # wire protocol: "openai", "anthropic", "gemini"
    sdk: ClassVar[str]  # importable module of the official SDK
    endpoint: ClassVar[EndpointSettings]  # this engine's endpoint (built-in default or from config)
    known_models: ClassVar[dict[str, ModelSpec]] = {}  # capabilities and list prices (from the catalog)
    catalog_provider: ClassVar[str | None] = None  # the provider's id in models.dev (built-in engines)
    catalog_families: ClassVar[tuple[str, ...]] = ()  # model families offered by default; the first is the default
    featured: ClassVar[tuple[str, ...]] = ()  # the models `auto` and `cloud` consider besides configured ones
    Options = CloudOptions

    # -- endpoints --------------------------------------------------------------------------------
    @classmethod
    def for_endpoint(cls, name: str, endpoint: EndpointSettings) -> type["CloudEngine"]:
        """A subclass bound to a configured endpoint; its id is the endpoint's name."""
        locality = endpoint.locality or ("local" if is_loopback(endpoint.base_url) else "cloud")
        url = display_url(endpoint.base_url) if endpoint.base_url else None
        if endpoint.locality:
            why = f"locality = {endpoint.locality!r} in [endpoints.{name}] of config.toml"
        elif locality == "local":
            why = (f"assumed: {url} is on this machine, but a proxy or tunnel there may forward to a cloud; "
                   f"set locality in [endpoints.{name}] to be sure")
        else:
            why = f"API at {url}" if url else f"the provider's public {cls.kind} API"
        known: dict[str, ModelSpec] = {}
        featured: tuple[str, ...] = ()
        default = cls.default_model
        if name == cls.id:  # a vLLM box does not serve gpt-4o: the catalog is for the provider's own API
            known = {**cls.known_models, **cls.catalog()}
            featured = tuple(tier_models(cls.catalog_provider, cls.catalog_families)) if cls.catalog_provider else ()
            default = featured[0] if featured else default
        specs = {**known, **endpoint.models}
        # an endpoint that lists no models is assumed to chat in text only: declare models to send it media
        inputs = frozenset().union(*(_modalities(s.inputs) for s in specs.values())) if specs \
            else frozenset({Modality.TEXT})
        outputs = frozenset().union(*(_modalities(s.outputs) for s in specs.values())) if specs \
            else frozenset({Modality.TEXT})
        attrs = {"id": name, "endpoint": endpoint, "locality": locality, "locality_reason": why,
                 "inputs": inputs, "outputs": outputs,
                 "default_model": endpoint.default_model or default,
                 "known_models": known, "featured": featured,
                 "description": cls.description if not endpoint.base_url and name == cls.id
                 else f"{cls.kind}-compatible endpoint {display_url(endpoint.base_url) if endpoint.base_url else ''}"}
        return type(f"{cls.__name__}_{name}", (cls,), attrs)

    @classmethod
    def catalog(cls) -> dict[str, ModelSpec]:
        """The provider's chat models from models.dev, limited to what this wire protocol carries."""
        if not cls.catalog_provider:
            return {}
        return catalog_specs(cls.catalog_provider, tuple(sorted(cls.features)),
                             tuple(sorted(m.value for m in cls.inputs)), tuple(sorted(m.value for m in cls.outputs)))

    @classmethod
    def api_key(cls) -> str | None:
        """The key, from the config file or the endpoint's environment variable (never logged)."""
        if cls.endpoint.api_key:
            return cls.endpoint.api_key
        return os.environ.get(cls.endpoint.key_env) if cls.endpoint.key_env else None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if not installed(cls.sdk):
            return f"needs the {cls.sdk} SDK: pip install 'imagine[{cls.extra or 'cloud'}]'"
        if cls.endpoint.key_env and not cls.api_key() and not is_loopback(cls.endpoint.base_url):
            return f"set {cls.endpoint.key_env} (or api_key in [endpoints.{cls.id}] of config.toml)"
        return None

    async def aclose(self) -> None:
        await self._clients.aclose()

    def require_key(self) -> str:
        key = self.api_key()
        if key:
            return key
        if is_loopback(self.endpoint.base_url):
            return "not-needed"  # local servers (Ollama, llama.cpp server, vLLM) usually take any key
        raise EngineUnavailable(f"engine {self.id} has no API key",
                                hint=f"set {self.endpoint.key_env or 'the key'} in the environment")

    def timeout(self, options: CloudOptions) -> float:
        """Seconds to wait for the API: the request's `timeout` option, else the endpoint's."""
        return float(options.timeout or self.endpoint.timeout)

    # -- models -------------------------------------------------------------------------------------
    def spec(self, model: str) -> ModelSpec | None:
        return self.endpoint.models.get(model) or self.known_models.get(model)

    def models(self) -> list[str]:
        """What `auto` and `cloud` consider: the default, configured models, and the featured ones the
        provider's own list (once fetched) says this account can use."""
        featured = list(self.featured)
        listed = self.cached_models()
        if listed is not None:
            featured = [m for m in featured if m in listed]
        names = list(dict.fromkeys([self.default_model, *self.endpoint.models, *featured]))
        return [n for n in names if n]

    # -- the provider's own model list ----------------------------------------------------------------
    async def fetch_model_ids(self) -> list[str]:
        """Model ids from the provider's models endpoint (each API engine implements this)."""
        raise NotImplementedError

    def _models_cache(self) -> Path:
        from ...config import imagine_home

        return (self.cache_dir or imagine_home() / "cache") / f"models-{self.id}.json"

    def cached_models(self, max_age: float | None = None) -> list[str] | None:
        """The provider's model list as last fetched for this endpoint; None if never (or too long ago)."""
        try:
            saved = json.loads(self._models_cache().read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("base_url") != self.endpoint.base_url:
            return None
        if max_age is not None and time.time() - float(saved.get("fetched", 0)) > max_age:
            return None
        models = saved.get("models")
        return [str(m) for m in models] if isinstance(models, list) else None

    async def remote_models(self, *, refresh: bool = False, max_age: float = 86_400) -> list[str]:
        """The provider's own model list, fetched when the cached copy is over a day old (or `refresh`)
        and kept in IMAGINE_HOME/cache, so planning a request never waits on the network."""
        if not refresh:
            cached = self.cached_models(max_age)
            if cached is not None:
                return cached
        ids = sorted(set(await self.fetch_model_ids()))
        path = self._models_cache()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"base_url": self.endpoint.base_url, "fetched": time.time(), "models": ids}))
        tmp.replace(path)
        return ids

    def capabilities(self, model: str) -> tuple[frozenset[Modality], frozenset[Modality], frozenset[str]]:
        spec = self.spec(model)
        if spec is None:  # an unlisted model: assume the engine's general abilities
            return self.inputs, self.outputs, self.features
        return _modalities(spec.inputs), _modalities(spec.outputs), frozenset(spec.features)

    def estimate_cost(self, model: str, input_tokens: int, output_tokens: int, images: int = 0,
                      audio_seconds: float = 0.0) -> float | None:
        spec = self.spec(model)
        if spec is None or spec.price_input is None or spec.price_output is None:
            return 0.0 if self.locality == "local" else None
        cost = input_tokens * spec.price_input / 1e6 + output_tokens * spec.price_output / 1e6
        cost += images * (spec.price_image or 0.0) + audio_seconds / 60 * (spec.price_audio_minute or 0.0)
        return round(cost, 8)

    @staticmethod
    def media_counts(parts: list[Part]) -> tuple[int, float]:
        """(images, audio seconds) in a request, for pricing."""
        from ...parts import Audio, Image

        images = sum(isinstance(p, Image) for p in parts)
        seconds = 0.0
        for p in parts:
            if isinstance(p, Audio):
                try:
                    seconds += p.duration
                except Exception:  # pricing must never fail a request
                    pass
        return images, seconds


# -- helpers shared by the API engines (added; generic over the wire protocol) ---------------------------


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds a 429/503 reply asked us to wait, from `retry-after-ms`, or `retry-after` given as seconds
    or as an HTTP date; None when the reply did not say. `headers` is any str->str mapping."""
    import email.utils
    import time

    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        if lower.get("retry-after-ms"):
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = lower.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        import datetime as _dt

        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def display_url(url: str) -> str:
    """`url` without user:password@ or ?query, which may hold credentials; safe for error messages."""
    parts = urlparse(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url.split("?")[0]


def scrub(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` (an API key) masked: servers sometimes echo what they got."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


__all__ += ["display_url", "retry_after_seconds", "scrub"]


# -- helpers shared by the SDK-based engines (anthropic, gemini) ----------------------------------------

_T = TypeVar("_T")


class PerLoop(Generic[_T]):
    """An SDK client for the running event loop.

    SDK clients own an HTTP connection pool tied to the loop that opened it; reusing one from another
    loop hangs or fails. imagine's background loop lives as long as the process, so it keeps one client
    and its warm connections. Any other loop (a caller's own `asyncio.run`) gets a client for the one
    request, closed before the request ends, so no pool or half-read stream outlives its loop."""

    def __init__(self, factory: Callable[[], _T], close: Callable[[_T], Awaitable[None]]) -> None:
        self._factory = factory
        self._close = close
        self._kept: tuple[asyncio.AbstractEventLoop, _T] | None = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[_T]:
        if on_bridge_loop():
            loop = asyncio.get_running_loop()
            if self._kept is None or self._kept[0] is not loop:  # the background loop may have been restarted
                self._kept = (loop, self._factory())
            yield self._kept[1]
            return
        client = self._factory()
        try:
            yield client
        finally:
            await self._close(client)

    async def aclose(self) -> None:
        """Close the kept client, when called on the loop it belongs to (imagine's background loop)."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is asyncio.get_running_loop():
            await self._close(kept[1])


def transport_failure(exc: BaseException) -> str | None:
    """'timeout' or 'transport' when `exc` is an httpx / httpx2 transport error, else None.

    The SDKs wrap most of these, but an error while reading a stream body can surface raw; matching by
    class name and module covers httpx and its fork httpx2 without importing either."""
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] not in ("httpx", "httpx2", "httpcore"):
            continue
        if cls.__name__ in ("TimeoutException", "ReadTimeout", "ConnectTimeout", "WriteTimeout", "PoolTimeout"):
            return "timeout"
        if cls.__name__ in ("HTTPError", "TransportError", "NetworkError", "ProtocolError", "StreamError"):
            return "transport"
    return None


def image_bytes(part: MediaPart, accepted: frozenset[str] | set[str]) -> tuple[str, bytes]:
    """(mime, data) of an image in a format the API accepts, re-encoding others (TIFF, BMP) as PNG."""
    if part.mime in accepted:
        return part.mime, part.data
    pil = getattr(part, "pil", None)
    if pil is None:
        raise InputError(f"{part.mime} is not an image type this API accepts ({', '.join(sorted(accepted))})")
    try:
        img = pil()
    except ImportError:
        raise InputError(f"{part.mime} images must be converted to PNG first, which needs Pillow",
                         hint="pip install pillow, or convert the image to PNG or JPEG") from None
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "image/png", buf.getvalue()


def json_schema_root_is_object(schema: dict[str, Any]) -> bool:
    """True when a JSON schema describes an object at its root (what tool-input schemas must be)."""
    kind = schema.get("type")
    return kind == "object" or (kind is None and "properties" in schema and "$ref" not in schema)


__all__ += ["PerLoop", "image_bytes", "json_schema_root_is_object", "transport_failure"]


def alternating_turns(messages: Any, convert: Callable[[Any], list[Any]], *,
                      engine: str) -> tuple[str, list[tuple[str, list[Any]]]]:
    """(system text, [(role, converted parts)]) for APIs that take the system prompt apart and need
    user/assistant turns to alternate: consecutive turns of one role are merged, empty ones dropped,
    tool results travel as user turns. `convert` maps one message's parts to the API's blocks."""
    system = "\n\n".join(m.text for m in messages if m.role == "system" and m.text)
    turns: list[tuple[str, list[Any]]] = []
    for msg in messages:
        if msg.role == "system":
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = convert(msg.parts)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    if not turns:
        raise InputError("the prompt is empty", hint=f"{engine} needs at least one user message with content")
    return system, turns


__all__ += ["alternating_turns"]
