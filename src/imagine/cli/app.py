"""The root `imagine` group: commands load lazily, errors become one line and an exit code.

`COMMANDS` names each command's home ("module:attribute") and its one-line help, so `imagine --help`
lists every command without importing a single command module; a command's module is imported
only when that command runs (or shows its own --help). This module imports no command module.
"""

from __future__ import annotations

import os
import sys
from gettext import gettext as _
from importlib import import_module
from typing import Any, NoReturn, Sequence

import click

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "ImagineGroup", "LazyGroup", "cli", "main"]

EXIT_INTERRUPTED = 130

# name -> ("module:attribute" under imagine.cli, one-line help). The help is the first paragraph of
# the command's docstring, which is what click shortens for the command list.
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("agent:agent", "Let a model answer PROMPT by calling imagine's tasks as tools (read_text, "
                             "transcribe, see, ...), its steps shown as they run."),
    "ask": ("ask:ask", "Ask a model."),
    "chat": ("ask:chat", "Interactive chat."),
    "demo": ("demo:demo", "Run the offline demo on the bundled model: a streamed answer, a schema extraction, "
                          "a summary."),
    "draw": ("image:draw", 'Draw an image from a text PROMPT: imagine draw "a red fox" -m diffusers:FOLDER '
                           "-o steps=30 -o seed=1"),
    "edit": ("image:edit", "Redraw IMAGE following PROMPT (-o strength=0..1), or only its --mask area "
                           "(inpainting)."),
    "embed": ("media:embed", "Embed texts, text FILEs or image FILEs (images default to clip): one JSON array "
                             "per input, one per line; with -o score=true (clip), a last line holds the image x "
                             "text similarity JSON."),
    "engines": ("engines:engines", "Engines and endpoints (`imagine engines add NAME ...` writes an "
                                   "[endpoints.NAME] table)."),
    "flow": ("flow:flow", "Declarative multimodal flows: a YAML DAG of steps run over many items, cached and resumable."),
    "index": ("index:index", "Multimodal indexes over your files: add, list, show, rm, drop (search with "
                             "`imagine search`)."),
    "keys": ("serve:keys", "API keys for `imagine serve`: stored hashed in the imagine home, each shown once."),
    "lab": ("lab:lab", "Train and sample imagine's own small models (needs the torch extra)."),
    "logs": ("logs:logs", "Show logged responses, newest first (`imagine logs show ID` for one)."),
    "mcp": ("mcp:mcp", "MCP both ways: `serve` imagine's tasks as MCP tools; list (`tools`) or `call` any MCP "
                       "server's tools."),
    "memory": ("index:memory", "What `ask --memory` and `chat --memory` remember: list, forget."),
    "models": ("models:models", "List engines: local or cloud, what they take and give, and whether they can "
                                "run here. `imagine models ENGINE` shows one in full: why it is local or cloud, "
                                "its models and options."),
    "read": ("media:read", "Read the text in an IMAGE (OCR)."),
    "route": ("ask:route", "Plan a request without running it: which engines could answer, in what order, "
                           "and why."),
    "see": ("image:see", "Ask a vision-language model about one or more IMAGEs: the last argument is the "
                         "question (with a single argument, the model describes the image)."),
    "search": ("index:search", "Search index NAME for QUERY (or -a IMAGE); prints ranked hits with where each "
                               "came from."),
    "studio": ("serve:studio", "Start the server with the web studio and open it in a browser: chat, compare, "
                               "tasks, history, flows."),
    "serve": ("serve:serve", "Serve imagine's engines over the OpenAI API (chat completions, models) at "
                             "http://HOST:PORT/v1."),
    "speak": ("media:speak", "Speak TEXT (or stdin) to a WAV file (default voice: Piper's; -m espeak for 100+ "
                             "languages)."),
    "talk": ("talk:talk", "Talk with a model by voice: microphone and speaker, or --in FILE (-O OUT.wav); live "
                          "transcript and reply."),
    "transcribe": ("media:transcribe", "Transcribe speech in an audio or video FILE."),
    "vad": ("media:vad", "Find the speech in an audio or video FILE (start and end times in seconds)."),
    "watch": ("media:watch", "Understand a VIDEO: scenes with their on-screen text, and the speech, on one "
                             "timeline."),
}


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _say_notice(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


class ImagineGroup(click.Group):
    """Turns ImagineError (and Ctrl-C) into one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from ..errors import ImagineError

        if ctx.parent is None:  # the root: every command's log failures are said, once each
            return self._invoke_root(ctx)
        return self._invoke(ctx, ImagineError)

    def _invoke_root(self, ctx: click.Context) -> Any:
        import signal

        from .. import engine, store
        from ..errors import ImagineError

        failed: list[Any] = []
        hook = failed.append
        engine.LOG_FAILURE_HOOKS.append(hook)
        store.NOTICE_HOOKS.append(_say_notice)
        from .._bridge import interrupt_handler

        previous: dict[int, Any] = {}
        try:  # SIGTERM takes Ctrl-C's way out, and a repeat during the clean-up waits: the response is logged
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, interrupt_handler)
        except ValueError:  # not the main thread
            pass
        try:
            return self._invoke(ctx, ImagineError)
        finally:
            engine.LOG_FAILURE_HOOKS.remove(hook)
            store.NOTICE_HOOKS.remove(_say_notice)
            for number, handler in previous.items():
                signal.signal(number, handler)
            for response in failed:
                if not response._log_error_read and not sys.stderr.closed:
                    click.echo(f"warning: not logged: {response.log_error}", err=True)

    def _invoke(self, ctx: click.Context, ImagineError: type[Exception]) -> Any:
        try:
            return super().invoke(ctx)
        except ImagineError as exc:
            if _debug(ctx):
                raise
            _fail(str(exc), getattr(exc, "exit_code", 1))
        except KeyboardInterrupt:
            from .._bridge import close_open_streams

            close_open_streams()  # log the partial answer now, not at interpreter shutdown
            click.echo("\ninterrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `imagine ... | head`: the reader left; not an error
            sys.stderr.close()
            sys.exit(0)
        except OSError as exc:
            if _debug(ctx) or exc.errno is None:
                raise
            _fail(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror))


class LazyGroup(ImagineGroup):
    """An ImagineGroup whose commands come from `COMMANDS`, each imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            command = getattr(import_module(f"{__package__}.{module}"), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"imagine.cli.{module}:{attribute} is not a click command")
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click >= 8.4 suggests close names ("Did you mean 'ask'?") from the loaded commands only
            no_such = getattr(click.exceptions, "NoSuchCommand", None)
            if no_such is None or not isinstance(exc, no_such):
                raise
            raise no_such(exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table: click's own shortening, no command module imported."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None and loaded.hidden:
                continue
            stand_in = loaded or click.Command(name, help=self.lazy[name][1])
            rows.append((name, stand_in.get_short_help_str(limit)))
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("IMAGINE_DEBUG") == "1"


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imagine", prog_name="imagine")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """imagine: one multimodal way to use LLM, vision and audio models, local or cloud.

    Models are named ENGINE:MODEL (llama-cpp:path/to/model.gguf) or by an alias
    (auto, local, cloud, a bare engine id). With no -m, the bundled SmolLM2 answers offline.
    """
    ctx.ensure_object(dict)["debug"] = debug


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="imagine")
