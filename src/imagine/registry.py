"""Registry: which engines exist, what they can do, and how a model reference names one.

Engines come from the entry-point group `imagine.engines` (built-ins register there too, in
pyproject.toml), so a third-party package adds an engine just by declaring one. A model reference is
`ENGINE:MODEL`, a bare engine id (its default model), `auto`, `local`, `cloud`, or a user alias.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import re
from dataclasses import dataclass
from typing import Iterable

from .config import Settings, get_settings
from .engine import Engine
from .errors import EngineNotFound, EngineUnavailable, InputError
from .parts import Modality

__all__ = ["ENTRY_POINT_GROUP", "EngineInfo", "Registry", "Resolved", "get_registry", "reset_registry"]

ENTRY_POINT_GROUP = "imagine.engines"
BUILTIN_ALIASES = ("auto", "local", "cloud")


@dataclass(frozen=True)
class EngineInfo:
    """One row of `imagine models`."""

    id: str
    locality: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    features: tuple[str, ...]
    default_model: str
    description: str
    unavailable: str | None  # None when it can run here
    locality_reason: str = ""  # why it counts as local or cloud, where that is not obvious

    @property
    def status(self) -> str:
        """The status in a few words, for a table row; `unavailable` has the whole story."""
        return "ready" if self.unavailable is None else short_reason(self.unavailable)


def short_reason(reason: str) -> str:
    """'needs ANTHROPIC_API_KEY' for 'set ANTHROPIC_API_KEY (or api_key in ...)', the pip command for a
    missing extra, else the reason's first clause."""
    key = re.match(r"set ([A-Z][A-Z0-9_]+)", reason)
    if key:
        return f"needs {key.group(1)}"
    pip = re.search(r"pip install (\S+)", reason)
    if pip:
        return f"pip install {pip.group(1)}"
    first = re.split(r" \(|: |; ", reason, maxsplit=1)[0]
    return first if len(first) <= 40 else first[:39] + "…"


@dataclass(frozen=True)
class Resolved:
    """A reference turned into an engine instance and the model it should run."""

    engine: Engine
    model: str
    ref: str  # the canonical ENGINE:MODEL form

    @property
    def label(self) -> str:
        return self.ref


class Registry:
    """Engine classes by id, instantiated lazily (one instance per process, so models stay loaded)."""

    def __init__(self, settings: Settings | None = None, *, load_plugins: bool = True) -> None:
        self.settings = settings or get_settings()
        self._classes: dict[str, type[Engine]] = {}
        self._broken: dict[str, str] = {}  # entry points that failed to import, with the reason
        self._instances: dict[str, Engine] = {}
        self.generation = 0  # bumped whenever the engines change: what the router cached is stale then
        if load_plugins:
            self._load_entry_points()
            self._bind_endpoints()

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._classes:
                continue
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not break imagine
                self._broken[ep.name] = f"plugin {ep.value} failed to import: {exc}"
                continue
            if not (isinstance(cls, type) and issubclass(cls, Engine)):
                self._broken[ep.name] = f"plugin {ep.value} is not an imagine Engine subclass"
                continue
            self._classes[ep.name] = cls

    def _bind_endpoints(self) -> None:
        """Bind API engines to their endpoints: built-ins to the usual environment variables (or their
        [endpoints.ID] table), and every other [endpoints.NAME] table to a new engine of its kind."""
        protocols: dict[str, type[Engine]] = {}
        for engine_id, cls in list(self._classes.items()):
            default = cls.default_endpoint()
            if default is None or cls.kind is None:
                continue
            protocols.setdefault(cls.kind, cls)
            endpoint = self.settings.endpoints.get(engine_id) or default
            self._classes[engine_id] = cls.for_endpoint(engine_id, endpoint)
        for name, endpoint in self.settings.endpoints.items():
            if name in self._classes:
                continue
            base = protocols.get(endpoint.kind)
            if base is None:
                kinds = ", ".join(sorted(protocols)) or "none installed"
                self._broken[name] = f"[endpoints.{name}] has kind {endpoint.kind!r}; known kinds: {kinds}"
                continue
            self._classes[name] = base.for_endpoint(name, endpoint)

    def register(self, cls: type[Engine], *, replace: bool = False) -> type[Engine]:
        """Add an engine class (plugins use entry points; tests and scripts may call this)."""
        if cls.id in self._classes and not replace and self._classes[cls.id] is not cls:
            raise ValueError(f"an engine with id {cls.id!r} is already registered")
        self._classes[cls.id] = cls
        self._instances.pop(cls.id, None)
        self.generation += 1
        return cls

    # -- lookup ---------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return sorted(self._classes)

    def engine_class(self, engine_id: str) -> type[Engine]:
        if engine_id in self._classes:
            return self._classes[engine_id]
        if engine_id in self._broken:
            raise EngineUnavailable(f"engine {engine_id} is installed but broken: {self._broken[engine_id]}")
        raise self._not_found(engine_id)

    def engine(self, engine_id: str) -> Engine:
        """The (single) instance of an engine, checking it can run here."""
        cls = self.engine_class(engine_id)
        reason = cls.unavailable_reason()
        if reason:
            raise EngineUnavailable(f"engine {engine_id} is not available: {reason}")
        if engine_id not in self._instances:
            instance = cls(self.settings.engine_settings(engine_id))
            instance.cache_dir = self.settings.home / "cache"
            self._instances[engine_id] = instance
        return self._instances[engine_id]

    async def aclose(self) -> None:
        """Release what the loaded engines keep (connection pools), e.g. before the registry is replaced."""
        for engine in list(self._instances.values()):
            await engine.aclose()

    def infos(self) -> list[EngineInfo]:
        rows = []
        for engine_id in self.ids:
            cls = self._classes[engine_id]
            rows.append(EngineInfo(
                id=engine_id, locality=cls.locality,
                inputs=tuple(sorted(m.value for m in cls.inputs)),
                outputs=tuple(sorted(m.value for m in cls.outputs)),
                features=tuple(sorted(cls.features)), default_model=cls.default_model,
                description=cls.description, unavailable=cls.unavailable_reason(),
                locality_reason=cls.locality_reason))
        for engine_id, reason in sorted(self._broken.items()):
            rows.append(EngineInfo(engine_id, "?", (), (), (), "", "", reason))
        return rows

    def _not_found(self, name: str) -> EngineNotFound:
        choices = [*self._classes, *self.settings.aliases, *BUILTIN_ALIASES]
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known engines: {', '.join(self.ids) or 'none'}"
        return EngineNotFound(f"unknown model or engine {name!r}", hint=f"{hint} See `imagine models`")

    # -- resolution -----------------------------------------------------------------------------
    def expand(self, ref: str | None, *, configured: bool = True) -> str:
        """`ref` with user aliases followed (and, with `configured`, `auto` -> the configured default
        model, if any); an alias loop is an error naming the loop."""
        ref = (ref or "").strip() or "auto"
        seen: list[str] = []
        while ref in self.settings.aliases or (configured and ref == "auto" and self.settings.model not in ("auto", "")):
            if ref in seen:
                raise EngineNotFound(f"alias loop: {' -> '.join([*seen, ref])}", hint="fix [aliases] in config.toml")
            seen.append(ref)
            ref = self.settings.aliases[ref] if ref in self.settings.aliases else self.settings.model
        return ref

    def resolve(self, ref: str | None, *, inputs: Iterable[Modality] = (Modality.TEXT,),
                want: Modality = Modality.TEXT) -> Resolved:
        """Turn a model reference into an engine + model, checking the engine can take the request: the
        check the router runs on a named model (and, for an alias, the first engine that could)."""
        needed = set(inputs)
        ref = self.expand(ref)
        if ref in BUILTIN_ALIASES:
            return self._pick(ref, needed, want)
        engine_id, _, model = ref.partition(":")
        engine = self.engine(engine_id)
        self._check_capable(engine, needed, want)
        model = model or engine.default_model
        if not model:
            raise InputError(f"engine {engine_id} has no default model",
                             hint=engine.model_hint or f"name one: -m {engine_id}:MODEL")
        engine.check_model(model)
        return Resolved(engine, model, f"{engine_id}:{model}")

    def capable(self, needed: set[Modality], want: Modality, locality: str | None = None, *,
                named_only: bool = False) -> list[str]:
        """Ids of available engines that take `needed` and give `want`: the auto-selectable ones, or with
        `named_only` the ones that run only when a model is named (they have no default model)."""
        found = []
        for engine_id in self.ids:
            cls = self._classes[engine_id]
            if named_only and (cls.default_model or cls.auto_select):
                continue
            if (not named_only and not cls.auto_select) or cls.unavailable_reason():
                continue
            if locality and cls.locality != locality:
                continue
            if needed <= cls.inputs and want in cls.outputs and (not cls.needs_one_of or needed & cls.needs_one_of):
                found.append(engine_id)
        return found

    def _pick(self, alias: str, needed: set[Modality], want: Modality) -> Resolved:
        locality = None if alias == "auto" else alias
        candidates = self.capable(needed, want, locality)
        if not candidates:
            what = f"{'/'.join(sorted(m.value for m in needed))} -> {want.value}"
            if alias == "cloud":
                hint = "set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY, or add an endpoint to config.toml"
            else:
                hint = "see `imagine models` for engines and the extras they need"
            raise EngineUnavailable(f"no {'' if alias == 'auto' else alias + ' '}engine here can do {what}", hint=hint)
        engine = self.engine(candidates[0])
        engine.check_model(engine.default_model)
        return Resolved(engine, engine.default_model, f"{engine.id}:{engine.default_model}")

    def _check_capable(self, engine: Engine, needed: set[Modality], want: Modality) -> None:
        missing = needed - engine.inputs
        lacking = bool(engine.needs_one_of) and not (needed & engine.needs_one_of)
        if not missing and not lacking and want in engine.outputs:
            return
        if lacking:
            kinds = " or ".join(sorted(m.value for m in engine.needs_one_of))
            problem = f"engine {engine.id} needs {kinds} input"
        elif missing:
            problem = f"engine {engine.id} does not take {', '.join(sorted(m.value for m in missing))} input"
        else:
            problem = f"engine {engine.id} does not produce {want.value}"
        others = self.capable(needed, want)
        named = self.capable(needed, want, named_only=True)
        if others:
            hint = f"engines that can: {', '.join(others)}"
        elif named:
            hint = "name a model for one that can: " + ", ".join(f"-m {e}:MODEL" for e in named)
        else:
            hint = "no installed engine can; see `imagine models`"
        raise InputError(problem, hint=hint)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry (engines stay loaded across calls)."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def reset_registry(registry: Registry | None = None) -> None:
    global _registry
    _registry = registry
