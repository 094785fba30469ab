"""Client: the settings, engines, router and log one caller works with, and the one request path.

    client = imagine.Client(home="~/projects/demo/.imagine", policy="local_only")
    client.ask("Summarise this.", attach=["notes.txt"]).text()
    client.transcribe("talk.wav").text()

A Client owns its settings (read from its home: config.toml, environment, arguments), its registry of
engines (so loaded models stay warm across calls), its router (circuit breakers, latency stats) and its
log store. Two clients with different homes log to different stores. The module-level functions
(`imagine.ask`, `imagine.transcribe`, ...) use a default client bound to IMAGINE_HOME, the way
`httpx.get` uses a default `httpx.Client`.

Every request takes the same path, `Client.respond`: plan (a named model is a plan of one candidate;
aliases and policies make longer plans) -> the router's one executor -> a lazy Response that logs itself.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from .config import Settings, get_settings, load_settings
from .engine import NoOptions, Request, Response, new_id, normalize_tools
from .errors import InputError
from .media.limits import check_prompt
from .parts import Message, Modality
from .registry import Registry, get_registry
from .router import Policy, Router, get_router
from .store import Store

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Client", "default_client", "get_store", "reset_store", "schema_of"]


class Client:
    """Settings + registry + router + store, and the one request path over them.

    `home` (default IMAGINE_HOME) holds config.toml, the log and the blob store; `config` overrides
    settings for this client (e.g. `{"log": False}`); `policy` applies to every request that names none;
    `log_extra` adds columns to every row it logs (the server records the API key that asked)."""

    def __init__(self, home: str | os.PathLike[str] | None = None, *, config: dict[str, Any] | None = None,
                 policy: "str | Policy | None" = None, settings: Settings | None = None,
                 registry: Registry | None = None, router: Router | None = None, store: Store | None = None,
                 log_extra: dict[str, Any] | None = None) -> None:
        if settings is None:
            explicit = dict(config or {})
            if home is not None:
                explicit["home"] = os.path.expanduser(os.fspath(home))
            settings = load_settings(**explicit)
        self.settings = settings
        self.registry = registry or Registry(settings)
        self._router = router or Router(self.registry, spent_today=self._spent_today)
        self.policy = policy
        self.log_extra = log_extra  # more columns for every row this client logs (the server's api_key)
        self._store = store

    # -- what the client owns -------------------------------------------------------------------
    @property
    def router(self) -> Router:
        return self._router

    @property
    def store(self) -> Store:
        """The log under this client's home, opened on first use."""
        if self._store is None or self._store.db_path != self.settings.db_path:
            self._store = Store(self.settings.db_path, self.settings.blob_dir)
        return self._store

    def _spent_today(self) -> float:
        return self.store.cost_since_midnight()

    def index(self, name: str, *, create: bool = False, **kwargs: Any) -> "Any":
        """The index NAME under this client's home (`imagine.index.Index`): add files, search, ask."""
        from .index import Index

        return Index(name, self, create=create, **kwargs)

    def votes(self) -> "Any":
        """The studio's compare votes in this client's log, and their Elo leaderboard (`imagine.votes.Votes`)."""
        from .votes import Votes

        return Votes(self.store)

    def memory(self) -> "Any":
        """The memory of past conversations (`imagine.index.memory.Memory`)."""
        from .index.memory import Memory

        return Memory(self)

    def close(self) -> None:
        """Close the log store (engines keep their models until the process ends)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client home={str(self.settings.home)!r}>"

    # -- the one request path -------------------------------------------------------------------
    def respond(self, messages: Sequence[Message], model: str | None, *, want: Modality,
                task_default: str | None = None, new_messages: Sequence[Message] | None = None,
                schema: "type[BaseModel] | dict[str, Any] | None" = None, options: dict[str, Any] | None = None,
                conversation_id: str | None = None, log: bool | None = None, policy: "str | Policy | None" = None,
                tools: Sequence[dict[str, Any]] = ()) -> Response:
        """Plan the request, hand the plan to the router's executor, and return the lazy Response that
        logs itself. A named model is a plan of one candidate, checked the same way as any plan; without
        a policy it runs alone (no fallback). `task_default` is the engine a task uses when no model is named."""
        settings = self.settings
        tools = normalize_tools(tools) if tools else ()  # a malformed tool is the caller's InputError, named
        log = settings.log if log is None else log
        policy = policy if policy is not None else self.policy
        if task_default and (model is None or model.strip() in ("", "auto")) and policy is None:
            model = task_default
        chosen = (model or "").strip()
        if policy is None and chosen in ("auto", "local", "cloud") and not (chosen == "auto" and settings.policy == "direct"):
            policy = settings.policy if chosen == "auto" else chosen
        if policy is None and not chosen and settings.policy != "direct":
            policy = settings.policy
        parsed = None
        if policy is not None:
            parsed = policy if isinstance(policy, Policy) else Policy.parse(
                policy, max_cost_per_day=settings.max_cost_per_day)
        json_schema, schema_model = schema_of(schema)
        limits = settings.part_limits()
        check_prompt(messages, limits)  # before planning or logging: a huge prompt costs nothing more
        decision = self.router.plan(messages, chosen or "auto", want=want, policy=parsed, options=options,
                                    schema=json_schema, tools=tools, direct=parsed is None)
        first = decision.plan[0] if decision.plan else None
        engine = self.registry.engine(first.engine_id) if first else None
        request = Request(messages=tuple(messages), model=first.model if first else "",
                          options=(first.options if first.options is not None else engine.parse_options(options))
                          if engine and first else NoOptions(),
                          schema=json_schema, want=want, tools=tuple(tools), limits=limits)
        execution = self.router.build(decision, request)  # raises, naming why, when nothing can take it
        assert engine is not None and first is not None
        logged = list(messages if new_messages is None else new_messages)
        store = self.store if log else None
        extra = self.log_extra

        def on_finish(response: Response) -> None:
            assert store is not None
            store.log_response(response, logged, extra=extra)

        return Response(engine=engine, request=request, schema_model=schema_model,
                        on_finish=on_finish if store is not None else None,
                        conversation_id=conversation_id or new_id(), model_ref=decision.requested,
                        decision=decision, source=execution)

    # -- the tasks, bound to this client ---------------------------------------------------------
    def ask(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.ask(*args, client=self, **kwargs)

    def aask(self, *args: Any, **kwargs: Any) -> Response:
        return self.ask(*args, **kwargs)

    def transcribe(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.transcribe(*args, client=self, **kwargs)

    def speak(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.speak(*args, client=self, **kwargs)

    def detect_speech(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.detect_speech(*args, client=self, **kwargs)

    def read_text(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.read_text(*args, client=self, **kwargs)

    def embed(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.embed(*args, client=self, **kwargs)

    def see(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.see(*args, client=self, **kwargs)

    def draw(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.draw(*args, client=self, **kwargs)

    def edit(self, *args: Any, **kwargs: Any) -> Response:
        from . import tasks

        return tasks.edit(*args, client=self, **kwargs)

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        from . import timeline

        return timeline.watch(*args, client=self, **kwargs)


# -- the default client: IMAGINE_HOME, and the process-wide registry, router and store --------------------

_store: Store | None = None
_default: Client | None = None


def get_store() -> Store:
    """The log store under the current IMAGINE_HOME (the default client's)."""
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


class _DefaultClient(Client):
    """The client behind the module-level functions: it follows the process-wide settings, registry and
    store (tests and the CLI reset those), and shares one router per registry."""

    @property
    def router(self) -> Router:  # one per registry for the process: breakers and latency stats persist
        return get_router(self.registry, spent_today=lambda: get_store().cost_since_midnight())

    @property
    def store(self) -> Store:
        return get_store()

    def close(self) -> None:
        reset_store()


def default_client() -> Client:
    """The client `imagine.ask(...)` and the other module-level functions use."""
    global _default
    settings, registry = get_settings(), get_registry()
    if _default is None or _default.settings is not settings or _default.registry is not registry:
        _default = _DefaultClient(settings=settings, registry=registry, router=get_router(registry))
    return _default


def schema_of(schema: "type[BaseModel] | dict[str, Any] | None") -> tuple[dict[str, Any] | None,
                                                                          "type[BaseModel] | None"]:
    """(JSON schema, pydantic class or None) for what the caller passed as `schema=`."""
    from pydantic import BaseModel

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
