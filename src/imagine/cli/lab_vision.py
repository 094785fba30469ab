"""`imagine lab train vit|vqvae|dit`: the lab's image models, trained on coloured shapes drawn from a seed.

Split from lab.py (the language-model commands) to keep both small; lab.py adds these to its `train`
group. torch, rich and the lab are imported inside the commands, so `imagine --help` stays fast; a bad
option becomes an InputError (one line on stderr, exit 2). The checkpoint folder -O gets
model.safetensors + config.json (served by `-m native:DIR`), loss.png, and a picture of what the model
does: recon.png (VQ-VAE: originals over reconstructions), samples.png (DiT: one row per class).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from ._common import FiniteFloat, OutPath, parse_options

__all__ = ["VISION_COMMANDS"]

GRID_PER_CLASS = 8       # DiT samples a row in samples.png
GRID_STEPS = 20          # Heun steps of those samples
GRID_GUIDANCE = 3.0
TRAIN_KEYS = {"batch_size": int, "lr": float, "n_train": int, "plot": bool}
SERVE = {"vit": 'imagine see -m native:{out} IMAGE "what shape?"',
         "vqvae": 'imagine edit -m native:{out} IMAGE "reconstruct"',
         "dit": 'imagine draw -m native:{out} "{example}"'}
YLABEL = {"vit": "cross-entropy", "vqvae": "MSE + commitment", "dit": "flow-matching MSE"}


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import EngineUnavailable

        raise EngineUnavailable("the model lab needs torch", hint="pip install 'imagine[torch]'") from None


def _options(kind: str, pairs: tuple[str, ...], train_keys: dict[str, type] | None = None,
             groups: dict[str, set[str]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`-o` pairs into (training overrides, model-config overrides), checked here so that a typo is one
    line naming the choices rather than a TypeError deep in training. `groups` maps a prefix ("model")
    to the fields it may set; the second dict is keyed by prefix then, {"model": {...}, ...}."""
    from dataclasses import fields

    from ..arch.checkpoint import KINDS
    from ..errors import InputError

    keys = TRAIN_KEYS if train_keys is None else train_keys
    grouped = groups is not None
    allowed = groups if groups is not None else {"model": {f.name for f in fields(KINDS[kind][0])}}
    train: dict[str, Any] = {}
    found: dict[str, dict[str, Any]] = {prefix: {} for prefix in allowed}
    for key, value in parse_options(pairs).items():
        prefix, dot, name = key.partition(".")
        if dot and prefix in allowed:
            if name not in allowed[prefix]:
                raise InputError(f"unknown {prefix} option {key!r}",
                                 hint=f"{kind} {prefix} fields: {', '.join(sorted(allowed[prefix]))}")
            found[prefix][name] = value
        elif key in keys:
            want = keys[key]
            ok = isinstance(value, want) and (want is bool or not isinstance(value, bool)) or (
                want is float and isinstance(value, int) and not isinstance(value, bool))
            if not ok:
                raise InputError(f"training option {key!r} must be of type {want.__name__}, got {value!r}")
            train[key] = value
        else:
            raise InputError(f"unknown training option {key!r}",
                             hint=f"options: {', '.join(sorted(keys))}, or "
                                  f"{' or '.join(p + '.FIELD' for p in allowed)} for the architecture")
    return train, (found if grouped else found["model"])


def _reporter(console: Any, kind: str, prefix: str = "", unit: str = "images") -> tuple[Any, Callable[[Any], None]]:
    """A rich bar on a terminal (step, loss, images/s); else a line at every tenth of the budget, each
    starting with `prefix`. `unit` names what the speed counts."""
    def done_of(p: Any) -> float:
        done = p.step / max(1, p.max_steps)
        return max(done, p.elapsed / p.max_seconds) if p.max_seconds else done

    if not console.is_terminal:
        marks = {"next": 0.1}

        def log_line(p: Any) -> None:
            if done_of(p) >= marks["next"] or p.step == p.max_steps:
                marks["next"] = (int(done_of(p) * 10) + 1) / 10
                click.echo(f"{prefix}step {p.step}/{p.max_steps}  loss {p.loss:.4f}  {p.images_per_s:,.0f} {unit}/s  "
                           f"{p.elapsed:.0f} s", err=True)
        return None, log_line

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn(f"[bold]training {kind}"), BarColumn(),
                   TextColumn("step {task.fields[step]}/{task.fields[max_steps]}"),
                   TextColumn("loss {task.fields[loss]}"),
                   TextColumn("{task.fields[speed]} " + ("img" if unit == "images" else unit) + "/s"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    task = bar.add_task("training", total=1000, step=0, max_steps="?", loss="-", speed="-")

    def update(p: Any) -> None:
        bar.update(task, completed=min(1.0, done_of(p)) * 1000, step=p.step, max_steps=p.max_steps,
                   loss=f"{p.loss:.4f}", speed=f"{p.images_per_s:,.0f}")

    return bar, update


def _pictures(result: Any, out: Path, seed: int) -> dict[str, str]:
    """What the trained model does, as PNGs in the checkpoint folder."""
    import torch

    from ..arch.train_vision import generate, save_grid

    if result.kind == "vqvae":
        x = result.held_out.images[:16] * 2 - 1
        with torch.no_grad():
            recon = (result.model(x)[0].clamp(-1, 1) + 1) / 2
        return {"recon": str(save_grid(torch.cat([result.held_out.images[:16], recon]), 2, out / "recon.png"))}
    if result.kind == "dit":
        y = torch.arange(result.model.cfg.n_classes).repeat_interleave(GRID_PER_CLASS)
        images = generate(result.model, y, steps=GRID_STEPS, guidance=GRID_GUIDANCE, seed=seed)
        return {"samples": str(save_grid(images, result.model.cfg.n_classes, out / "samples.png"))}
    return {}


def _train(kind: str, steps: int | None, minutes: float | None, size: int | None, seed: int, threads: int | None,
           labels: str, options: tuple[str, ...], out: str, as_json: bool) -> None:
    _need_torch()
    from rich.console import Console

    from ..arch import checkpoint
    from ..arch.train_vision import VisionTrainConfig, plot_curve, train_vision
    from ..errors import InputError

    train_opts, model_opts = _options(kind, options)
    plot = train_opts.pop("plot", True)
    cfg = VisionTrainConfig(kind, steps=steps, seconds=minutes * 60 if minutes else None, size=size,  # type: ignore[arg-type]
                            seed=seed, threads=threads, labels=labels, model=model_opts, **train_opts)  # type: ignore[arg-type]
    folder = Path(out).expanduser()
    console = Console(stderr=True)
    bar, report = _reporter(console, kind) if not as_json else (None, None)
    try:
        if bar is not None:
            with bar:
                result = train_vision(cfg, report)
        else:
            result = train_vision(cfg, report)
    except (ValueError, TypeError) as exc:   # a model field of the wrong type, a patch that does not divide
        raise InputError(f"cannot train this {kind}: {exc}") from None
    record = {"kind": kind, "steps": result.steps, "seconds": round(result.seconds, 2), "loss": result.loss,
              "metric": result.metric, "score": result.score, "seed": seed, "size": cfg.resolved("size"),
              "n_train": cfg.n_train, "batch_size": cfg.resolved("batch_size"), "lr": cfg.resolved("lr"),
              "data": "imagine.arch.data.shapes", "interrupted": result.interrupted}
    try:
        checkpoint.save(result.model, folder, result.meta, record)
    except OSError as exc:
        raise InputError(f"cannot write the checkpoint to {folder}: {exc.strerror or exc}") from None
    pictures = _pictures(result, folder, seed)
    if plot and result.history:
        pictures["plot"] = str(plot_curve(result.history, folder / "loss.png", f"{kind} on generated shapes",
                                          YLABEL[kind]))
    classes = result.meta.get("classes", [])
    summary = {**record, "images_per_s": round(result.images_per_s, 1), "checkpoint": str(folder),
               "classes": classes, "plot": pictures.get("plot"), **{k: v for k, v in pictures.items() if k != "plot"}}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    score = f"{result.score:.1%}" if result.metric != "held-out PSNR dB" else f"{result.score:.2f} dB"
    metric = result.metric.removesuffix(" dB")
    click.echo(f"trained {kind} for {result.steps} steps in {result.seconds:.1f} s ({result.images_per_s:,.0f} images/s)"
               + (" (stopped early)" if result.interrupted else ""))
    click.echo(f"loss {result.loss:.4f} · {metric} {score}")
    serve = SERVE[kind].format(out=folder, example=f"a {classes[0]}" if classes else "")
    click.echo(f"checkpoint: {folder}   ({serve})")
    if classes:
        click.echo(f"classes: {', '.join(classes)}")
    if "plot" in pictures:
        click.echo(f"loss curve: {pictures['plot']}")
    if "recon" in pictures:
        click.echo(f"reconstructions: {pictures['recon']} (top: originals, bottom: reconstructions)")
    if "samples" in pictures:
        click.echo(f"samples: {pictures['samples']} (one row per class, guidance {GRID_GUIDANCE:g})")


def _command(kind: str, doc: str, size_default: int) -> click.Command:
    def run(steps: int | None, minutes: float | None, size: int | None, seed: int, threads: int | None,
            options: tuple[str, ...], out: str, as_json: bool, labels: str = "both") -> None:
        _train(kind, steps, minutes, size, seed, threads, labels, options, out, as_json)

    run.__doc__ = doc
    params = [
        click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps (default: the recipe's)."),
        click.option("--minutes", type=FiniteFloat(min=0, min_open=True), help="Stop after this many minutes."),
        click.option("--size", type=click.IntRange(min=4, max=256), help=f"Image side in pixels [default: {size_default}]."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data, weights and batches."),
        click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (default: torch's)."),
        click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                     help="batch_size, lr, n_train, plot=false, or model.FIELD=VALUE, repeatable."),
        click.option("-O", "--out", required=True, type=OutPath(), help="Checkpoint folder to write."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar)."),
    ]
    if kind == "vit":
        params.append(click.option("--labels", type=click.Choice(["both", "shape", "colour"]), default="both",
                                   show_default=True, help='What the classes name: "red circle", "circle" or "red".'))
    for param in reversed(params):
        run = param(run)
    return click.command(kind)(run)


VISION_COMMANDS = [
    _command("vit", "Train a ViT classifier on generated coloured shapes into -O; ask it with "
             "`imagine see -m native:DIR IMAGE \"what shape?\"`.", 32),
    _command("vqvae", "Train a VQ-VAE image tokenizer on generated shapes into -O; recon.png shows held-out "
             "originals over their reconstructions.", 32),
    _command("dit", "Train a class-conditional DiT (shape x colour) by flow matching into -O; draw with "
             "`imagine draw -m native:DIR \"a red circle\"`; samples.png has one row per class.", 16),
]
