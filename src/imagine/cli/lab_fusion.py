"""`imagine lab train fusion`: an early-fusion LM over characters and VQ-VAE codes, on captioned shapes.

The recipe is arch/train_fusion.py's (bench/lab_fusion.py runs the same one and judges it further): a
VQ-VAE first (or `-o vqvae=DIR`, one `imagine lab train vqvae` wrote), then the LM on "caption -> image"
and "image -> caption" sequences. The folder -O gets one checkpoint (model.safetensors with the LM and
the VQ-VAE, config.json with kind "fusion"), served by `-m native:DIR` both ways: `draw` (caption ->
image) and `see` (image -> caption); plus loss.png and samples.png (one row of samples per caption).
`-o data=two` trains on two shapes side by side ("a red circle left of a blue square", 24x24 images by
default), `-o data=both` on half each; the checkpoint records the words it learnt, and `draw` refuses others.
torch is imported inside the command, so `imagine --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from ._common import FiniteFloat, OutPath
from .lab_vision import _need_torch, _options, _reporter

__all__ = ["FUSION_COMMAND"]

TRAIN_KEYS: dict[str, type] = {"batch_size": int, "lr": float, "n_train": int, "plot": bool, "vq_steps": int,
                               "vq_batch_size": int, "vq_lr": float, "vqvae": str, "data": str}
DATA_SOURCES = {"one": "imagine.arch.data.shapes", "two": "imagine.arch.data.two_shapes",
                "both": "imagine.arch.data.shapes + imagine.arch.data.two_shapes"}
DEFAULT_SIZE = {"one": 16, "two": 24, "both": 24}       # two shapes side by side need more pixels


def _phased(console: Any) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """One progress reporter per phase (VQ-VAE, then LM): (report, close)."""
    reporters = {"vqvae": _reporter(console, "fusion: VQ-VAE", prefix="vqvae ", unit="images"),
                 "lm": _reporter(console, "fusion: LM", prefix="lm    ", unit="sequences")}
    current: dict[str, Any] = {"bar": None, "phase": None}

    def close() -> None:
        if current["bar"] is not None:
            current["bar"].stop()
            current["bar"] = None

    def report(p: Any) -> None:
        if p.phase != current["phase"]:
            close()
            current["phase"] = p.phase
            current["bar"] = reporters[p.phase][0]
            if current["bar"] is not None:
                current["bar"].start()
        reporters[p.phase][1](p)

    return report, close


def _given_vqvae(path: str, size: int | None) -> tuple[Any, int]:
    """A trained VQ-VAE checkpoint to reuse, and its image side (which --size must match)."""
    from ..arch import checkpoint
    from ..errors import InputError

    folder = Path(path).expanduser()
    try:
        model, info = checkpoint.load(folder)
    except FileNotFoundError:
        raise InputError(f"-o vqvae={path}: no checkpoint there (config.json, model.safetensors)",
                         hint="train one with `imagine lab train vqvae -O DIR`, or leave -o vqvae out") from None
    except Exception as exc:  # not JSON, another kind, weights that disagree with the config
        raise InputError(f"-o vqvae={path}: {exc}", hint="pass a folder `imagine lab train vqvae` wrote") from None
    if info["kind"] != "vqvae":
        raise InputError(f"-o vqvae={path} holds a {info['kind']!r} model, not a VQ-VAE",
                         hint="pass a folder `imagine lab train vqvae` wrote")
    side = int(info["meta"]["image_size"])
    if list(info["meta"]["pixel_range"]) != [-1.0, 1.0]:
        raise InputError(f"-o vqvae={path} takes pixels in {info['meta']['pixel_range']}, not [-1, 1]")
    if size is not None and size != side:
        raise InputError(f"--size {size} does not fit -o vqvae={path}, which was trained on {side}x{side} images",
                         hint=f"leave --size out (or pass --size {side})")
    return model, side


def _train(steps: int | None, minutes: float | None, size: int | None, seed: int, threads: int | None,
           options: tuple[str, ...], out: str, as_json: bool) -> None:
    _need_torch()
    from dataclasses import fields

    from rich.console import Console

    from ..arch import checkpoint
    from ..arch.lm import LMConfig
    from ..arch.train_fusion import GRID_PER_CAPTION, SAMPLE_TEMPERATURE, SAMPLE_TOP_K, FusionTrainConfig, train_fusion
    from ..arch.train_vision import plot_curve, save_grid
    from ..arch.vqvae import VQVAEConfig
    from ..errors import InputError

    groups = {"model": {f.name for f in fields(LMConfig)} - {"vocab_size"},
              "vqvae": {f.name for f in fields(VQVAEConfig)}}
    train_opts, models = _options("fusion", options, TRAIN_KEYS, groups)
    plot = train_opts.pop("plot", True)
    data = train_opts.get("data", "one")
    if data not in DATA_SOURCES:
        raise InputError(f"-o data={data}: choose one (one shape a picture), two (two side by side) or both",
                         hint="e.g. -o data=two")
    vq_path = train_opts.pop("vqvae", None)
    vqvae = None
    if vq_path is not None:
        if models["vqvae"]:
            raise InputError("-o vqvae=DIR reuses a trained VQ-VAE, so -o vqvae.FIELD cannot change it")
        vqvae, size = _given_vqvae(vq_path, size)
    cfg = FusionTrainConfig(steps=steps or 2000, seconds=minutes * 60 if minutes else None,
                            size=size or DEFAULT_SIZE[data],
                            seed=seed, threads=threads, model=models["model"], vq_model=models["vqvae"], **train_opts)
    folder = Path(out).expanduser()
    report, close = _phased(Console(stderr=True)) if not as_json else (None, lambda: None)
    try:
        result = train_fusion(cfg, vqvae, report)
    except (ValueError, TypeError, RuntimeError) as exc:   # a field of the wrong type, a size that does not divide
        raise InputError(f"cannot train this fusion model: {exc}") from None
    finally:
        close()
    vocab = result.model.vocab
    record = {"kind": "fusion", "steps": result.steps, "seconds": round(result.seconds, 2), "loss": result.loss,
              "vq_steps": result.vq_steps, "vq_seconds": round(result.vq_seconds, 2), "vq_psnr": result.vq_psnr,
              "vqvae": str(Path(vq_path).expanduser()) if vq_path else None,
              "caption_exact": result.caption_exact, "colour_right": result.colour_right, "seed": seed,
              "size": cfg.size, "n_train": cfg.n_train, "batch_size": cfg.batch_size, "lr": cfg.lr,
              "data": DATA_SOURCES[data], "data_option": data,
              "vq_psnr_two": result.vq_psnr_two, "interrupted": result.interrupted}
    try:
        checkpoint.save(result.model, folder, result.meta, record)
        samples = save_grid(result.samples, len(result.captions), folder / "samples.png")
        curve = (plot_curve(result.history, folder / "loss.png", "fusion LM on captioned shapes", "cross-entropy")
                 if plot and result.history else None)
    except OSError as exc:
        raise InputError(f"cannot write the checkpoint to {folder}: {exc.strerror or exc}") from None
    params = sum(p.numel() for p in result.model.lm.parameters())
    summary = {**record, "sequences_per_s": round(result.sequences_per_s, 1), "checkpoint": str(folder),
               "parameters": params, "chars": vocab.chars, "codes": vocab.n_codes, "image_tokens": vocab.image_tokens,
               "captions": result.captions, "plot": str(curve) if curve else None, "samples": str(samples)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    vq = (f"VQ-VAE {result.vq_steps} steps in {result.vq_seconds:.1f} s (held-out PSNR {result.vq_psnr:.2f} dB)"
          if result.vq_psnr is not None else f"VQ-VAE from {vq_path}")
    grid = result.model.cfg.grid
    if result.vq_psnr_two is not None:
        vq += f", {result.vq_psnr_two:.2f} dB on two-shape images"
    prompt = "a red circle left of a blue square" if data == "two" else "a red circle"
    n_captions = {"one": 12, "two": 132, "both": 144}[data]
    judged = ("samples with both halves in the asked colours" if data == "two" else "samples in the asked colour")
    click.echo(f"trained fusion: {vq}, LM {result.steps} steps in {result.seconds:.1f} s "
               f"({result.sequences_per_s:,.0f} sequences/s)" + (" (stopped early)" if result.interrupted else ""))
    click.echo(f"loss {result.loss:.4f} · held-out captions exact {result.caption_exact:.1%} (chance "
               f"{1 / n_captions:.1%}) · {judged} {result.colour_right:.1%} "
               f"(chance {'6.25' if data == 'two' else '25.0'}%)")
    click.echo(f"checkpoint: {folder}   (imagine draw -m native:{folder} \"{prompt}\"; "
               f"imagine see -m native:{folder} IMAGE)")
    click.echo(f"model: {params / 1e6:.2f} M parameters; vocabulary {vocab.size} = 5 markers + {len(vocab.chars)} "
               f"characters + {vocab.n_codes} codes, {vocab.image_tokens} codes an image ({grid}x{grid})")
    if curve:
        click.echo(f"loss curve: {curve}")
    click.echo(f"samples: {samples} (one row per caption, {GRID_PER_CAPTION} each, temperature "
               f"{SAMPLE_TEMPERATURE:g}, top-k {SAMPLE_TOP_K})")


@click.command("fusion")
@click.option("--steps", type=click.IntRange(min=1), help="LM optimizer steps [default: 2000].")
@click.option("--minutes", type=FiniteFloat(min=0, min_open=True),
              help="Stop after this many minutes in all (a fifth for the VQ-VAE, the rest for the LM).")
@click.option("--size", type=click.IntRange(min=4, max=256),
              help="Image side in pixels [default: 16; 24 with -o data=two|both].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data, weights and batches.")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads (default: torch's).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="data=one|two|both (one shape a picture, two side by side, half each), batch_size, lr, "
                   "n_train, plot=false, vq_steps, vq_batch_size, vq_lr, vqvae=DIR (reuse a "
                   "trained VQ-VAE), model.FIELD=VALUE (the LM), vqvae.FIELD=VALUE; repeatable.")
@click.option("-O", "--out", required=True, type=OutPath(), help="Checkpoint folder to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
def FUSION_COMMAND(steps: int | None, minutes: float | None, size: int | None, seed: int, threads: int | None,
                   options: tuple[str, ...], out: str, as_json: bool) -> None:
    """Train an early-fusion LM (characters + VQ-VAE codes in one sequence) on captioned shapes into -O;
    draw with `imagine draw -m native:DIR "a red circle"` ("a red circle left of a blue square" after
    -o data=two), caption with `imagine see -m native:DIR IMAGE`."""
    _train(steps, minutes, size, seed, threads, options, out, as_json)
