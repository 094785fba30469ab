"""`imagine ask`, `chat` and `route`: a prompt to a model, a chat session, a plan without a run."""

from __future__ import annotations

import json
import sys

import click

from ._common import (OPTIONS, FiniteFloat, OutPath, load_schema, parse_options, prompt_text, read_stdin_if_piped,
                      response_payload, write_out)

__all__ = ["ask", "chat", "route"]


@click.command()
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", help="ENGINE:MODEL or alias (default: the configured model, else llama-cpp).")
@OPTIONS
@click.option("-a", "--attach", multiple=True, type=click.Path(), help="Attach a file (image, audio, video, text).")
@click.option("-s", "--system", help="System prompt.")
@click.option("--schema", help="JSON schema (inline or a .json file) the answer must follow.")
@click.option("-c", "--continue", "continue_", is_flag=True, help="Continue the last conversation.")
@click.option("--cid", "conversation", help="Continue the conversation with this id.")
@click.option("-O", "--out", type=OutPath(), help="Also write the answer to this file (or into this folder).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of streaming text.")
@click.option("--no-log", is_flag=True, help="Do not log this response.")
@click.option("-p", "--policy", help="Let the router choose: local_only, local, cloud, cheapest, fastest, best, "
                                     "cascade (comma-separated).")
@click.option("--max-cost", type=FiniteFloat(min=0), help="Refuse plans estimated above this many US dollars.")
@click.option("--index", "index_name", help="Answer from this index (imagine index add ...), citing its sources.")
@click.option("-k", "--top", "k", default=5, show_default=True, type=click.IntRange(1, 50),
              help="With --index: how many chunks to retrieve.")
@click.option("--memory", is_flag=True, help="Recall relevant past turns, and remember this one (imagine memory).")
@click.option("--mcp", "mcp_servers", multiple=True, metavar="CMD|URL",
              help="Let the model call the tools of this MCP server (a command line or an http(s) URL; "
                   "repeatable): the answer comes from an agent run, its steps on stderr, media the tools "
                   "return written to -O (a folder; default: here).")
@click.option("-y", "--yes", is_flag=True, help="With --mcp: run tools their server does not mark read-only "
                                               "without asking.")
def ask(prompt: tuple[str, ...], model: str | None, options: tuple[str, ...], attach: tuple[str, ...],
        system: str | None, schema: str | None, continue_: bool, conversation: str | None,
        out: str | None, as_json: bool, no_log: bool, policy: str | None, max_cost: float | None,
        index_name: str | None, k: int, memory: bool, mcp_servers: tuple[str, ...], yes: bool) -> None:
    """Ask a model. PROMPT may also come on stdin (piped text is put before PROMPT)."""
    from .. import tasks

    text = prompt_text(prompt, read_stdin_if_piped())
    if max_cost is not None:
        from ..router import Policy

        policy = Policy.parse(policy, max_cost=max_cost)  # type: ignore[assignment]
    if mcp_servers:
        _ask_with_mcp(mcp_servers, text, model, options, attach, system, policy, out, as_json, no_log, yes,
                      schema=schema, continuing=continue_ or bool(conversation), index_name=index_name,
                      memory=memory)
        return
    if index_name:
        _ask_index(index_name, text, model, k, attach, schema, continue_ or bool(conversation), options, policy,
                   no_log, as_json)
        return
    recalled, mind = [], None
    if memory:
        from ..index.memory import Memory, context

        mind = Memory()
        recalled = mind.recall(text)
        if recalled:
            system = f"{system}\n\n{context(recalled)}" if system else context(recalled)
    response = tasks.ask(text, model, attach=list(attach), system=system, schema=load_schema(schema),
                         options=parse_options(options), conversation=conversation or continue_ or None,
                         log=False if no_log else None, policy=policy)
    if as_json:
        response.complete()
        payload = response_payload(response)
        if memory:
            payload["memories"] = [{"label": r.label, "id": r.id, "summary": r.chunk.meta.get("summary"),
                                    "similarity": round(r.similarity, 4)} for r in recalled]
        click.echo(json.dumps(payload, indent=2))
    else:
        payload = None
        from ..events import Restart, TextDelta

        try:
            for event in response.events():
                if isinstance(event, TextDelta):
                    click.echo(event.text, nl=False)
                    sys.stdout.flush()
                elif isinstance(event, Restart):
                    click.echo("\n[falling back to the next engine; the answer starts again]", err=True)
        finally:
            click.echo()
    if out:
        target = write_out(out, response, payload)
        click.echo(f"wrote {target}", err=True)
    if response.log_error:
        click.echo(f"warning: not logged: {response.log_error}", err=True)
    if mind is not None:
        from ..index.memory import remember_response

        if recalled and not as_json:
            click.echo("Memories used:\n" + "\n".join(
                f"[{r.label}] {r.chunk.meta.get('when', '')} {r.chunk.meta.get('summary') or r.chunk.text} "
                f"(memory {r.id})" for r in recalled), err=True)
        remember_response(mind, text, response, model)


def _ask_with_mcp(servers: tuple[str, ...], text: str, model: str | None, options: tuple[str, ...],
                  attach: tuple[str, ...], system: str | None, policy: object, out: str | None, as_json: bool,
                  no_log: bool, yes: bool, *, schema: str | None, continuing: bool, index_name: str | None,
                  memory: bool) -> None:
    """`ask --mcp`: the question answered by an agent run whose tools are the MCP servers' (no built-ins)."""
    from contextlib import ExitStack

    from ..errors import InputError
    from .agent import mcp_tools_for_run, run_agent

    clashing = [flag for flag, given in (("--schema", schema), ("-c/--cid", continuing), ("--index", index_name),
                                         ("--memory", memory)) if given]
    if clashing:
        raise InputError(f"--mcp runs an agent, which does not take {', '.join(clashing)}",
                         hint="drop them, or ask without --mcp")
    with ExitStack() as connected:
        tools = mcp_tools_for_run(connected, servers)
        run_agent(text, tools, 8, model, options, attach, (), yes, (), system, policy,  # type: ignore[arg-type]
                  out, as_json, no_log)


def _ask_index(name: str, text: str, model: str | None, k: int, attach: tuple[str, ...], schema: str | None,
               continuing: bool, options: tuple[str, ...], policy: object, no_log: bool, as_json: bool) -> None:
    from ..errors import InputError
    from ..index import Index
    from .index import print_answer

    if attach or schema or continuing:
        raise InputError("--index answers one question from the index", hint="drop -a, --schema and -c/--cid")
    ix = Index(name)
    result = ix.ask(text, model, k=k, options=parse_options(options), policy=policy,
                    log=False if no_log else None)
    print_answer(result, as_json)
    ix.close()


@click.command()
@click.option("-m", "--model", help="ENGINE:MODEL or alias.")
@OPTIONS
@click.option("-s", "--system", help="System prompt.")
@click.option("-p", "--policy", help="Route every turn with this policy (local_only keeps the chat on the device).")
@click.option("--memory", is_flag=True, help="Recall relevant past turns, and remember these (imagine memory).")
def chat(model: str | None, options: tuple[str, ...], system: str | None, policy: str | None, memory: bool) -> None:
    """Interactive chat. Commands: !attach FILE, !model ID, !new, !help, !quit. Ctrl-C stops a reply."""
    from ..chat import ChatSession

    if hasattr(sys.stdin, "reconfigure"):  # an undecodable line reaches the UTF-8 rule as one turn's error
        sys.stdin.reconfigure(errors="surrogateescape")
    ChatSession(model=model, options=parse_options(options), system=system, policy=policy, memory=memory).run()


@click.command()
@click.argument("prompt", nargs=-1)
@click.option("-a", "--attach", multiple=True, type=click.Path(), help="Files the request would carry.")
@click.option("-m", "--model", default="auto", show_default=True, help="Reference or alias to plan for.")
@click.option("-p", "--policy", help="Routing policy (see `imagine ask --help`).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE")
@click.option("--schema", help="JSON schema the answer must follow (needs json_schema).")
@click.option("--max-cost", type=FiniteFloat(min=0), help="Budget per request in US dollars.")
@click.option("--explain", is_flag=True, help="Show every candidate and why it was kept or dropped.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def route(prompt: tuple[str, ...], attach: tuple[str, ...], model: str, policy: str | None, options: tuple[str, ...],
          schema: str | None, max_cost: float | None, explain: bool, as_json: bool) -> None:
    """Plan a request without running it: which engines could answer, in what order, and why."""
    from ..config import get_settings
    from ..registry import get_registry
    from ..router import Policy, explain as explain_rows, get_router
    from ..tasks import build_messages

    messages = build_messages(prompt_text(prompt) or None, list(attach))
    parsed = Policy.parse(policy or ("auto" if model in ("auto", "") else None), max_cost=max_cost,
                          max_cost_per_day=get_settings().max_cost_per_day)
    decision = get_router(get_registry()).plan(messages, model, policy=parsed, options=parse_options(options),
                                               schema=load_schema(schema))
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
            reason = registry.engine_class(engine_id).locality_reason
            if reason.startswith("assumed"):  # a loopback URL may be a proxy to a cloud: say so
                click.echo(f"{engine_id} counts as local: {reason}")
