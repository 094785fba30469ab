"""The `imagine` command: thin — parse, call the core, render events.

Errors are one line on stderr and a non-zero exit code (no traceback unless --debug). Heavy modules
are imported inside the commands that need them, so `imagine --help` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

import click

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class ImagineGroup(click.Group):
    """Turns ImagineError (and Ctrl-C) into one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import ImagineError

        try:
            return super().invoke(ctx)
        except ImagineError as exc:
            if _debug(ctx):
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `imagine ... | head`: the reader left; not an error
            sys.stderr.close()
            sys.exit(0)
        except OSError as exc:
            if _debug(ctx) or exc.errno is None:
                raise
            _fail(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror))


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("IMAGINE_DEBUG") == "1"


def _version() -> str:
    from importlib.metadata import version

    return version("imagine")


@click.group(cls=ImagineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imagine", prog_name="imagine")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """imagine: one multimodal way to use LLM, vision and audio models, local or cloud.

    Models are named ENGINE:MODEL (llama-cpp:path/to/model.gguf) or by an alias
    (auto, local, cloud, a bare engine id). With no -m, the bundled SmolLM2 answers offline.
    """
    ctx.ensure_object(dict)["debug"] = debug


# -- shared option parsing -------------------------------------------------------------------------


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """`-o key=value` pairs; values are JSON when they parse as JSON (numbers, true, lists), else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value (e.g. -o temperature=0)", param_hint="'-o'")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def _load_schema(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    from .errors import InputError

    source = text
    path = Path(text)
    if not text.lstrip().startswith("{") and path.exists():
        source = path.read_text()
    try:
        schema = json.loads(source)
    except json.JSONDecodeError as exc:
        raise InputError(f"--schema is not valid JSON ({exc.msg})", hint="pass a JSON schema or a .json file") from None
    if not isinstance(schema, dict):
        raise InputError("--schema must be a JSON object (a JSON schema)")
    return schema


def _read_stdin_if_piped() -> str | None:
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.read()


def _write_out(out: str, response: Any, payload: dict[str, Any] | None) -> Path:
    """-O: a file gets the answer; a folder gets `<id>.txt` (or .json with --json)."""
    target = Path(out).expanduser()
    ext = ".json" if payload is not None else ".txt"
    if target.is_dir() or out.endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
        target = target / f"{response.id}{ext}"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(payload, indent=2) + "\n" if payload is not None else response.text_so_far()
    target.write_text(body)
    return target


def response_payload(response: Any) -> dict[str, Any]:
    usage = response.usage
    payload = {
        "id": response.id,
        "conversation_id": response.conversation_id,
        "model": f"{response.engine.id}:{response.request.model}",
        "text": response.text_so_far(),
        "finish_reason": response.finish_reason,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "latency_ms": round((response.latency_s or 0) * 1000, 1),
        "ttft_ms": None if response.ttft_s is None else round(response.ttft_s * 1000, 1),
    }
    if response.request.schema is not None:
        payload["parsed"] = response.json()
    return payload


# -- ask ---------------------------------------------------------------------------------------------


@cli.command()
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", help="ENGINE:MODEL or alias (default: the configured model, else llama-cpp).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Engine option, repeatable.")
@click.option("-a", "--attach", multiple=True, type=click.Path(), help="Attach a file (image, audio, video, text).")
@click.option("-s", "--system", help="System prompt.")
@click.option("--schema", help="JSON schema (inline or a .json file) the answer must follow.")
@click.option("-c", "--continue", "continue_", is_flag=True, help="Continue the last conversation.")
@click.option("--cid", "conversation", help="Continue the conversation with this id.")
@click.option("-O", "--out", help="Also write the answer to this file (or into this folder).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming text.")
@click.option("--no-log", is_flag=True, help="Do not log this response.")
@click.option("-p", "--policy", help="Let the router choose: local_only, local, cloud, cheapest, fastest, best, "
                                     "cascade (comma-separated).")
@click.option("--max-cost", type=float, help="Refuse plans estimated above this many US dollars.")
def ask(prompt: tuple[str, ...], model: str | None, options: tuple[str, ...], attach: tuple[str, ...],
        system: str | None, schema: str | None, continue_: bool, conversation: str | None,
        out: str | None, as_json: bool, no_log: bool, policy: str | None, max_cost: float | None) -> None:
    """Ask a model. PROMPT may also come on stdin (piped text is put before PROMPT)."""
    from . import tasks

    text = " ".join(prompt)
    piped = _read_stdin_if_piped()
    if piped and piped.strip():
        text = f"{piped.rstrip()}\n\n{text}" if text else piped
    if max_cost is not None:
        from .router import Policy

        policy = Policy.parse(policy, max_cost=max_cost)  # type: ignore[assignment]
    response = tasks.ask(text, model, attach=list(attach), system=system, schema=_load_schema(schema),
                         options=parse_options(options), conversation=conversation or continue_ or None,
                         log=False if no_log else None, policy=policy)
    if as_json:
        response.complete()
        payload = response_payload(response)
        click.echo(json.dumps(payload, indent=2))
    else:
        payload = None
        from .events import RESTART, Progress, TextDelta

        try:
            for event in response.events():
                if isinstance(event, TextDelta):
                    click.echo(event.text, nl=False)
                    sys.stdout.flush()
                elif isinstance(event, Progress) and event.label == RESTART:
                    click.echo("\n[falling back to the next engine; the answer starts again]", err=True)
        finally:
            click.echo()
    if out:
        target = _write_out(out, response, payload)
        click.echo(f"wrote {target}", err=True)
    if response.log_error:
        click.echo(f"warning: not logged: {response.log_error}", err=True)


# -- chat --------------------------------------------------------------------------------------------


@cli.command()
@click.option("-m", "--model", help="ENGINE:MODEL or alias.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Engine option, repeatable.")
@click.option("-s", "--system", help="System prompt.")
@click.option("-p", "--policy", help="Route every turn with this policy (local_only keeps the chat on the device).")
def chat(model: str | None, options: tuple[str, ...], system: str | None, policy: str | None) -> None:
    """Interactive chat. Commands: !attach FILE, !model ID, !new, !help, !quit. Ctrl-C stops a reply."""
    from .chat import ChatSession

    ChatSession(model=model, options=parse_options(options), system=system, policy=policy).run()


# -- models ------------------------------------------------------------------------------------------


@cli.command()
@click.argument("engine_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--refresh", is_flag=True, help="With ENGINE: fetch the provider's model list again now.")
def models(engine_id: str | None, as_json: bool, refresh: bool) -> None:
    """List engines: local or cloud, what they take and give, and whether they can run here.
    `imagine models ENGINE` shows one in full: why it is local or cloud, its models and options."""
    from .registry import get_registry

    registry = get_registry()
    infos = registry.infos()
    if engine_id is not None:
        _print_engine(registry, engine_id, as_json, refresh)
        return
    if as_json:
        click.echo(json.dumps([{**info.__dict__, "status": info.status} for info in infos], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    wide = console.width >= 110  # the default model gets a column only where rows stay on one or two lines
    table = Table(title="imagine engines", caption="imagine models ENGINE: details, models, options")
    table.add_column("engine", no_wrap=True)
    table.add_column("where", no_wrap=True)
    table.add_column("takes → gives")
    if wide:
        table.add_column("default model", overflow="ellipsis", no_wrap=True, max_width=28)
    table.add_column("status", overflow="ellipsis", no_wrap=True, max_width=26)
    assumed = False
    for info in infos:
        status = "[green]ready[/]" if info.unavailable is None else f"[yellow]{escape(info.status)}[/]"
        where = info.locality
        if info.locality_reason.startswith("assumed"):
            where, assumed = where + "*", True
        takes = "any" if len(info.inputs) >= 6 else " ".join(info.inputs)
        cells = [info.id, where, f"{takes} → {' '.join(info.outputs)}"]
        table.add_row(*cells, *([info.default_model or "-"] if wide else []), status)
    if assumed:
        table.caption = "* local because its URL is on this machine; " + str(table.caption)
    console.print(table)


def _print_engine(registry: Any, engine_id: str, as_json: bool, refresh: bool = False) -> None:
    """`imagine models ENGINE`: everything `imagine models` shortens."""
    info = next((i for i in registry.infos() if i.id == engine_id), None)
    if info is None:
        raise registry._not_found(engine_id)
    cls = registry.engine_class(engine_id) if info.locality != "?" else None
    options = getattr(cls, "Options", None)
    fields = getattr(options, "model_fields", {}) if options is not None else {}
    option_rows = [(name, (field.description or "").split(";")[0],
                    "-" if field.default is None or field.default_factory is not None else repr(field.default))
                   for name, field in fields.items()]
    names: list[str] = []
    listed: list[str] | None = None
    listing_error = ""
    if cls is not None and info.unavailable is None:
        engine = registry.engine(engine_id)
        if hasattr(engine, "remote_models"):  # an API: what the provider itself lists (cached for a day)
            from ._bridge import run_sync
            from .errors import ImagineError

            try:
                listed = run_sync(engine.remote_models(refresh=refresh))
            except ImagineError as exc:
                listing_error = str(exc)
        names = engine.models()
    if as_json:
        click.echo(json.dumps({**info.__dict__, "status": info.status, "models": names, "provider_models": listed,
                               "options": [dict(name=n, description=d, default=v) for n, d, v in option_rows]},
                              indent=2))
        return
    click.echo(f"{info.id}: {info.description}")
    click.echo(f"where:          {info.locality}" + (f" ({info.locality_reason})" if info.locality_reason else ""))
    click.echo(f"takes:          {', '.join(info.inputs) or '-'}")
    click.echo(f"gives:          {', '.join(info.outputs) or '-'}")
    click.echo(f"features:       {', '.join(info.features) or '-'}")
    click.echo(f"default model:  {info.default_model or '(none: name one, -m ' + info.id + ':MODEL)'}")
    if len(names) > 1:
        click.echo(f"models:         {', '.join(names)}")
    if listed is not None:
        click.echo(f"provider lists: {len(listed)} models ({', '.join(listed[:12])}{', …' if len(listed) > 12 else ''})")
    elif listing_error:
        click.echo(f"provider lists: (could not fetch: {listing_error})")
    click.echo(f"status:         {'ready' if info.unavailable is None else info.unavailable}")
    if option_rows:
        click.echo("options (-o key=value):")
        width = max(len(n) for n, _, _ in option_rows)
        for name, description, default in option_rows:
            click.echo(f"  {name:<{width}}  {description}" + (f" (default {default})" if default != "-" else ""))


# -- logs --------------------------------------------------------------------------------------------


@cli.group(cls=ImagineGroup, invoke_without_command=True)
@click.option("-n", "--count", default=10, show_default=True, type=click.IntRange(1, 100000), help="How many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--cost", is_flag=True, help="Sum tokens and cost by day and engine.")
@click.pass_context
def logs(ctx: click.Context, count: int, as_json: bool, cost: bool) -> None:
    """Show logged responses, newest first (`imagine logs show ID` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    from .tasks import get_store

    store = get_store()
    if cost:
        _print_costs(store.cost_by_engine_and_day(), as_json)
        return
    rows = store.recent(count)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo(f"no responses logged yet in {store.db_path}")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"latest {len(rows)} of {store.count()} responses · {store.db_path}")
    console = Console()
    for column in ("id", "time (UTC)", "model", "tokens", "ms", "output"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("tokens", "ms") else "left")
    room = max(16, console.width - 24 - 14 - 20 - 7 - 6 - 19)
    for row in rows:
        text = (row["error"] or row["output_text"]).replace("\n", " ")
        text = text if len(text) <= room else text[: room - 1] + "…"
        out = f"[red]{escape(text)}[/]" if row["error"] else escape(text)
        model = f"{row['engine']}:{row['model']}"
        table.add_row(row["id"], row["created"][5:19].replace("T", " "), model if len(model) <= 20 else model[:19] + "…",
                      f"{_count(row['input_tokens'])}/{_count(row['output_tokens'])}",
                      f"{row['latency_ms'] or 0:.0f}", out)
    console.print(table)


def _count(tokens: int | None) -> str:
    """A logged token count; "?" when the engine could not say (None), never a made-up 0."""
    return "?" if tokens is None else str(tokens)


def _print_costs(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cost by day and engine (US dollars)")
    for column in ("day", "engine", "responses", "tokens in", "tokens out", "cost"):
        table.add_column(column, justify="left" if column in ("day", "engine") else "right")
    for row in rows:
        priced = f"{row['cost']:.6f}" + (f" (+{row['unpriced']} unpriced)" if row["unpriced"] else "")
        unknown = " +?" if row.get("uncounted") else ""  # some responses could not say how many tokens
        table.add_row(row["day"], row["engine"], str(row["responses"]), f"{row['input_tokens']}{unknown}",
                      f"{row['output_tokens']}{unknown}", priced)
    total = sum(r["cost"] for r in rows)
    table.add_row("", "total", str(sum(r["responses"] for r in rows)), "", "", f"{total:.6f}")
    Console().print(table)


@cli.command()
@click.argument("prompt", nargs=-1)
@click.option("-a", "--attach", multiple=True, type=click.Path(), help="Files the request would carry.")
@click.option("-m", "--model", default="auto", show_default=True, help="Reference or alias to plan for.")
@click.option("-p", "--policy", help="Routing policy (see `imagine ask --help`).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE")
@click.option("--schema", help="JSON schema the answer must follow (needs json_schema).")
@click.option("--max-cost", type=float, help="Budget per request in US dollars.")
@click.option("--explain", is_flag=True, help="Show every candidate and why it was kept or dropped.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def route(prompt: tuple[str, ...], attach: tuple[str, ...], model: str, policy: str | None, options: tuple[str, ...],
          schema: str | None, max_cost: float | None, explain: bool, as_json: bool) -> None:
    """Plan a request without running it: which engines could answer, in what order, and why."""
    from .config import get_settings
    from .registry import get_registry
    from .router import Policy, explain as explain_rows, get_router
    from .tasks import build_messages

    messages = build_messages(" ".join(prompt) or None, list(attach))
    parsed = Policy.parse(policy or ("auto" if model in ("auto", "") else None), max_cost=max_cost,
                          max_cost_per_day=get_settings().max_cost_per_day)
    decision = get_router(get_registry()).plan(messages, model, policy=parsed, options=parse_options(options),
                                               schema=_load_schema(schema))
    if as_json:
        click.echo(json.dumps(decision.record(), indent=2))
        return
    plan = decision.plan
    click.echo(f"plan: {' -> '.join(c.ref for c in plan) if plan else '(nothing can take this request)'}"
               f"   [{decision.plan_ms:.2f} ms]")
    if explain or not plan:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"candidates for {decision.requested} ({', '.join(sorted(m.value for msg in messages for m in msg.modalities))} in)")
        for column in ("#", "candidate", "where, est. cost", "why"):
            table.add_column(column)
        for rank, ref, where, why in explain_rows(decision):
            table.add_row(rank, ref, where, escape(why) if rank != "-" else f"[dim]{escape(why)}[/]")
        Console().print(table)
        registry = get_registry()
        for engine_id in dict.fromkeys(c.engine_id for c in decision.candidates):
            reason = getattr(registry.engine_class(engine_id), "locality_reason", "")
            if reason.startswith("assumed"):  # a loopback URL may be a proxy to a cloud: say so
                click.echo(f"{engine_id} counts as local: {reason}")


@logs.command("show")
@click.argument("response_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def logs_show(response_id: str, as_json: bool) -> None:
    """Show one logged response in full (an id prefix is enough)."""
    from .tasks import get_store

    row = get_store().get(response_id)
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    click.echo(f"id:            {row['id']}\nconversation:  {row['conversation_id']}\ntime:          {row['created']}")
    click.echo(f"model:         {row['engine']}:{row['model']}  ({row['engine_version']})")
    click.echo(f"options:       {json.dumps(row['options'])}")
    click.echo(f"usage:         {_count(row['input_tokens'])} in / {_count(row['output_tokens'])} out · "
               f"cost {row['cost']}")
    click.echo(f"latency:       {row['latency_ms']} ms (first token {row['ttft_ms']} ms) · {row['finish_reason']}")
    click.echo(f"routing:       {json.dumps(row['routing'])}")
    for message in row["input"]:
        for part in message["parts"]:
            body = part.get("text") if part["kind"] == "text" else f"[{part['mime']} {part['size']} bytes {part['sha256'][:12]}]"
            click.echo(f"--- {message['role']} ({part['kind']})\n{body}")
    click.echo(f"--- assistant\n{row['output_text']}")
    if row["error"]:
        click.echo(f"--- error\n{row['error']}")


# -- demo --------------------------------------------------------------------------------------------


@cli.command()
@click.option("-m", "--model", help="Run the demo on another model.")
def demo(model: str | None) -> None:
    """Run the offline demo on the bundled model: a streamed answer, a schema extraction, a summary."""
    from .demo import run_demo

    run_demo(model)


from . import cli_engines, cli_image, cli_lab, cli_media  # noqa: E402,F401  (register the media and engines commands)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="imagine")

