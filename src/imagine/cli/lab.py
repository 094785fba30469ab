"""`imagine lab`: train imagine's own small models (imagine.arch), list their presets, sample them.
The image models' `train vit|vqvae|dit` are in lab_vision.py, `train fusion` in lab_fusion.py.

Thin like the rest of the CLI. torch, rich and the lab are imported inside the commands, so
`imagine --help` stays fast; training errors (bad preset or option, missing data) become InputError
and so one line on stderr with a non-zero exit. Loaded by the root group when `imagine lab` runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from ._common import FiniteFloat, OutPath, parse_options
from .lab_fusion import FUSION_COMMAND
from .lab_vision import VISION_COMMANDS

__all__ = ["lab"]

SAMPLE_CHARS = 200  # the sample printed after training


def _lab() -> None:
    """Fail with the install command when torch (the lab's one dependency) is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import EngineUnavailable

        raise EngineUnavailable("the model lab needs torch", hint="pip install 'imagine[torch]'") from None


@click.group()
def lab() -> None:
    """Train and sample imagine's own small models (needs the torch extra)."""


@lab.group("train")
def lab_train() -> None:
    """Train a model from scratch: `lm` on your text (character- or byte-level); `vit`, `vqvae`, `dit` on
    coloured shapes drawn from a seed; `fusion` on those shapes and their captions."""


for _vision in VISION_COMMANDS:  # train vit|vqvae|dit live in lab_vision.py
    lab_train.add_command(_vision)
lab_train.add_command(FUSION_COMMAND)  # train fusion: lab_fusion.py


# -- train lm ------------------------------------------------------------------------------------------


def _overrides(pairs: tuple[str, ...], preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`-o key=value` into (TrainConfig overrides, LMConfig overrides from `model.key=value`), checked
    here because a wrong key or type would otherwise surface as a TypeError deep inside training."""
    from dataclasses import fields

    from ..arch.lm import LMConfig
    from ..arch.train import TrainConfig
    from ..errors import InputError

    flags = {"data": "--data", "out_dir": "-O", "device": "--device", "compile": "--compile", "resume": "--resume",
             "preset": "--preset"}
    train_fields = {f.name for f in fields(TrainConfig)} - {"model", *flags}
    model_fields = {f.name for f in fields(LMConfig)}
    base = _recipe(preset)
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in parse_options(pairs).items():
        if key.startswith("model."):
            name = key.removeprefix("model.")
            if name not in model_fields:
                raise InputError(f"unknown model option {key!r}",
                                 hint=f"model options: {', '.join(sorted(model_fields))}")
            model[name] = value
            continue
        if key in flags:
            raise InputError(f"set {key} with {flags[key]}, not -o")
        if key not in train_fields:
            raise InputError(f"unknown training option {key!r}",
                             hint=f"options: {', '.join(sorted(train_fields))}, or model.FIELD for the architecture")
        default = getattr(base, key)
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float, str)) and not isinstance(default, bool)
                and not isinstance(value, type(default)) and not (isinstance(default, float) and isinstance(value, int))):
            raise InputError(f"training option {key!r} must be of type {type(default).__name__}, got {value!r}")
        train[key] = value
    return train, model


def _recipe(preset: str, **overrides: Any) -> Any:
    from ..arch.train import recipe
    from ..errors import InputError

    try:
        return recipe(preset, **overrides)
    except (ValueError, TypeError) as exc:  # an unknown preset or option: the message lists the choices
        raise InputError(str(exc), hint="see `imagine lab presets`" if "preset" in str(exc) else None) from None


def _check_device(device: str) -> None:
    import torch

    from ..errors import InputError

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda, but torch sees no CUDA GPU here", hint="use --device auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps, but this torch has no Apple GPU (MPS) backend", hint="use --device auto or cpu")


def _resume_data(out: str) -> str | None:
    """The data file a run in `out` was trained on, so `--resume` alone continues it."""
    try:
        record = json.loads((Path(out).expanduser() / "config.json").read_text())
        data = record.get("train", {}).get("data")
        return str(data) if data else None
    except (OSError, ValueError, AttributeError):
        return None


def _progress_reporter(console: Any) -> tuple[Any, Callable[[Any], None]]:
    """A rich progress bar on a terminal (step, loss, val loss, tokens/s); else a line per evaluation."""
    if not console.is_terminal:
        def log_line(p: Any) -> None:
            if p.val_loss is not None:
                click.echo(f"step {p.step}/{p.max_iters}  loss {p.loss:.4f}  val loss {p.val_loss:.4f}  "
                           f"{p.tokens_per_s:,.0f} tokens/s  {p.elapsed:.0f} s", err=True)
        return None, log_line

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("step {task.fields[step]}/{task.fields[max_iters]}"),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("val {task.fields[val]}"),
                   TextColumn("{task.fields[speed]} tok/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=console)
    task = bar.add_task("training", total=1000, step=0, max_iters="?", loss="-", val="-", speed="-")

    def update(p: Any) -> None:
        done = p.step / max(1, p.max_iters)
        if p.max_seconds:
            done = max(done, p.elapsed / p.max_seconds)  # a time-boxed run ends at whichever comes first
        fields: dict[str, Any] = dict(step=p.step, max_iters=p.max_iters, loss=f"{p.loss:.4f}",
                                      speed=f"{p.tokens_per_s:,.0f}")
        if p.val_loss is not None:
            fields["val"] = f"{p.val_loss:.4f}"
        bar.update(task, completed=min(1.0, done) * 1000, **fields)

    return bar, update


@lab_train.command("lm")
@click.option("--preset", default="imagine-cpu", show_default=True, help="Architecture + recipe (see `imagine lab presets`).")
@click.option("--data", type=click.Path(dir_okay=False), help="UTF-8 text file to learn from (with --resume: the run's own).")
@click.option("--minutes", type=FiniteFloat(min=0, min_open=True), help="Stop after this many minutes.")
@click.option("--iters", type=click.IntRange(min=1), help="Total optimizer steps (default: the preset's recipe).")
@click.option("--tokenizer", type=click.Choice(["char", "byte"]), help="char: the data's characters (default); byte: any text.")
@click.option("--resume", is_flag=True, help="Continue the run saved in -O (--iters counts the steps before too).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (faster steps after a slow start).")
@click.option("--seed", type=int, help="Seed of the weights and batches (default: the recipe's).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Any training option (batch_size=32, lr=3e-4, eval_interval=100) or model.FIELD=VALUE, repeatable.")
@click.option("-O", "--out", required=True, type=OutPath(), help="Checkpoint folder to write (and to resume from).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
def train_lm(preset: str, data: str | None, minutes: float | None, iters: int | None, tokenizer: str | None,
             resume: bool, device: str, compile_: bool, seed: int | None, options: tuple[str, ...], out: str,
             as_json: bool) -> None:
    """Train a language model on a text file into the folder -O; sample it with `imagine lab sample`
    or `imagine ask -m native:DIR`. Ctrl-C stops; the last evaluation's checkpoint stays, and --resume
    continues from it."""
    _lab()
    from rich.console import Console

    from ..arch.train import train
    from ..errors import InputError

    _check_device(device)
    train_opts, model_opts = _overrides(options, preset)
    flags: dict[str, Any] = {"max_iters": iters, "max_seconds": minutes * 60 if minutes else None,
                             "tokenizer": tokenizer, "seed": seed}
    train_opts.update({k: v for k, v in flags.items() if v is not None})
    data = data or (_resume_data(out) if resume else None)
    if data is None:
        raise InputError("no training data", hint="pass --data FILE.txt (a UTF-8 text file)")
    cfg = _recipe(preset, **train_opts, data=str(Path(data).expanduser().resolve()), out_dir=str(Path(out).expanduser()),
                  device=device, compile=compile_, resume=resume, model=model_opts)

    console = Console(stderr=True)
    bar, report = _progress_reporter(console) if not as_json else (None, None)
    try:
        if bar is not None:
            with bar:
                result = train(cfg, report)
        else:
            result = train(cfg, report)
    except FileNotFoundError as exc:
        raise InputError(str(exc), hint="check the --data path" if not resume else "check --data and -O") from None
    except (ValueError, KeyError) as exc:  # train's deliberate errors: bad option, data shorter than a block
        raise InputError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        raise InputError(f"out of memory on {device}", hint="lower -o batch_size=N or pick a smaller preset") from None

    sample = _sample_after_training(result.model, result.tokenizer, cfg.seed)
    summary = {"preset": preset, "steps": result.steps, "seconds": round(result.seconds, 2),
               "train_loss": result.train_loss, "val_loss": result.val_loss,
               "tokens_per_s": round(result.tokens_per_s, 1), "checkpoint": str(result.out_dir),
               "plot": str(result.plot) if result.plot else None, "sample": sample}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"trained {preset} for {result.steps} steps in {result.seconds:.1f} s "
               f"({result.tokens_per_s:,.0f} tokens/s)")
    click.echo(f"train loss {result.train_loss:.4f} · val loss {result.val_loss:.4f}")
    click.echo(f"checkpoint: {result.out_dir}   (imagine lab sample {result.out_dir} \"...\")")
    if result.plot:
        click.echo(f"loss curve: {result.plot}")
    click.echo(f"sample:\n{sample}")


def _sample_after_training(model: Any, tokenizer: Any, seed: int) -> str:
    """A short continuation from a fresh line, straight from the trained model in memory (no reload)."""
    from ..engines.native import continuation, start_ids

    ids = start_ids(tokenizer, "")
    text = "".join(continuation(model, tokenizer, ids, max_tokens=SAMPLE_CHARS, temperature=0.8, top_k=40,
                                top_p=None, seed=seed))
    return text[:SAMPLE_CHARS]


# -- presets -------------------------------------------------------------------------------------------


@lab.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def presets(as_json: bool) -> None:
    """List the language-model presets: shape, size and which modern parts are on."""
    _lab()
    from ..arch.lm import LM, PRESETS

    rows: list[dict[str, Any]] = []
    for name, cfg in PRESETS.items():
        # built on the CPU to count: the largest preset takes ~0.1 s, while torch's meta device costs
        # seconds to initialise on first use
        params = LM(cfg).num_params()
        # terse, so the table fits 80 columns: "moe 4x2+sh" = 4 experts, top-2, a shared expert;
        # "window 64/g2" = sliding window of 64 with every 2nd layer global
        on = [f"moe {cfg.n_experts}x{cfg.top_k}" + ("+sh" if cfg.shared_expert else "")] if cfg.n_experts else []
        if cfg.window:
            on.append(f"window {cfg.window}" + (f"/g{cfg.global_every}" if cfg.global_every else ""))
        if cfg.qk_norm:
            on.append("qk-norm")
        rows.append({"name": name, "layers": cfg.n_layer, "width": cfg.n_embd, "heads": cfg.n_head,
                     "kv_heads": cfg.kv_heads, "block": cfg.block_size, "params_m": round(params / 1e6, 2),
                     "parts": {("layer", "learned", "gelu"): "gpt-2", ("rms", "rope", "swiglu"): "modern"}.get(
                         (cfg.norm, cfg.pos, cfg.mlp), f"{cfg.norm}/{cfg.pos}/{cfg.mlp}"), "on": on})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="language-model presets", box=box.SIMPLE_HEAD,
                  caption="heads: query/key-value when they differ; params at a 256-token vocabulary")
    table.add_column("name", no_wrap=True)
    for column in ("layers", "width", "heads", "block", "params"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("parts", no_wrap=True)
    table.add_column("on")
    for r in rows:
        heads = str(r["heads"]) if r["heads"] == r["kv_heads"] else f"{r['heads']}/{r['kv_heads']}"
        table.add_row(r["name"], str(r["layers"]), str(r["width"]), heads, str(r["block"]),
                      f"{r['params_m']:.2f}M", r["parts"], ", ".join(r["on"]) or "-")
    Console().print(table)


# -- sample --------------------------------------------------------------------------------------------


@lab.command("sample")
@click.argument("checkpoint", type=click.Path())
@click.argument("prompt", required=False, default="")
@click.option("-n", "--max-tokens", default=200, show_default=True, type=click.IntRange(min=1), help="Tokens to generate.")
@click.option("--temperature", default=0.8, show_default=True, type=FiniteFloat(min=0), help="0 = greedy.")
@click.option("--top-k", default=40, show_default=True, type=click.IntRange(min=0), help="0 = off.")
@click.option("--top-p", type=FiniteFloat(min=0, max=1, min_open=True), help="Nucleus sampling.")
@click.option("--seed", type=int, help="Same seed, same text.")
@click.option("--echo", is_flag=True, help="Print the prompt before its continuation.")
@click.option("--no-log", is_flag=True, help="Do not log this response.")
def sample(checkpoint: str, prompt: str, max_tokens: int, temperature: float, top_k: int, top_p: float | None,
           seed: int | None, echo: bool, no_log: bool) -> None:
    """Continue PROMPT (default: a fresh line) with the model in CHECKPOINT, streaming to stdout."""
    _lab()
    # Through imagine's normal request path (tasks.ask -> registry -> the native engine), not the engine
    # directly: DESIGN.md has nothing else talk to an engine, so a sample gets the same option checks,
    # errors and provenance log as `imagine ask -m native:DIR` (--no-log, or IMAGINE_LOG=0, skips the log).
    from .. import tasks
    from ..parts import Message

    options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "top_k": top_k}
    if top_p is not None:
        options["top_p"] = top_p
    if seed is not None:
        options["seed"] = seed
    # A Message, not a str: ask() strips and rejects an empty str prompt; an empty Text starts a fresh line.
    response = tasks.ask(Message.user(prompt), f"native:{checkpoint}", options=options,
                         log=False if no_log else None)
    pending = prompt if echo else ""  # printed with the first delta, so an error shows no stray prompt
    try:
        for delta in response:
            click.echo(pending + delta, nl=False)
            pending = ""
            sys.stdout.flush()
    finally:
        click.echo()
    if response.log_error:
        click.echo(f"warning: not logged: {response.log_error}", err=True)
