"""Image commands of the `imagine` CLI: see (ask about images), draw (text to image) and edit (image to
image, inpainting).

Thin like the rest of the CLI: parse, call `tasks.see` / `tasks.draw` / `tasks.edit`, show the denoising
steps as a progress bar on a terminal, write the images. Loaded by the root group when one of them runs.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import click

from ._common import OPTIONS as ENGINE_OPTIONS, OutPath, finish_with_steps, parse_options  # `see`'s plain -o

__all__ = ["draw", "edit", "see"]

MODEL = click.option("-m", "--model", help="ENGINE:MODEL, e.g. diffusers:./my-sd-folder or diffusers:OWNER/NAME.")
OPTIONS = click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                       help="Engine option, repeatable (steps, guidance, width, height, seed, n, strength, "
                            "scheduler, lora, controlnet, ...).")
OUT = click.option("-O", "--out", type=OutPath(), help="Image file to write (.png, .jpg, .webp) or a folder "
                                       "(default: ./image-<id>.png); several images get -1, -2, ...")
CONTROL = click.option("--control", type=click.Path(), help="Conditioning image for a ControlNet (-o controlnet=...).")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _targets(out: str | None, response_id: str, count: int) -> list[Path]:
    """Where each image goes: the -O file (numbered when there are several), or image-<id>.png."""
    if out and (Path(out).expanduser().is_dir() or out.endswith("/")):
        folder, stem, suffix = Path(out).expanduser(), f"image-{response_id}", ".png"
    elif out:
        path = Path(out).expanduser()
        folder, stem, suffix = path.parent, path.stem, path.suffix.lower() or ".png"
    else:
        folder, stem, suffix = Path("."), f"image-{response_id}", ".png"
    if suffix not in FORMATS:
        raise click.BadParameter(f"cannot write {suffix} images; use {', '.join(FORMATS)}", param_hint="'-O'")
    folder.mkdir(parents=True, exist_ok=True)
    if count == 1:
        return [folder / f"{stem}{suffix}"]
    return [folder / f"{stem}-{i}{suffix}" for i in range(1, count + 1)]


def _check_suffix(out: str | None) -> None:
    """Refuse an unwritable -O before the (slow) generation rather than after it."""
    if out and not (Path(out).expanduser().is_dir() or out.endswith("/")):
        suffix = Path(out).suffix.lower()
        if suffix and suffix not in FORMATS:
            raise click.BadParameter(f"cannot write {suffix} images; use {', '.join(FORMATS)}", param_hint="'-O'")


def _write(response: Any, out: str | None) -> None:
    from ..parts import Image

    images = [p for p in response.parts if isinstance(p, Image)]
    if not images:
        raise click.ClickException("the model returned no image")
    for image, target in zip(images, _targets(out, response.id, len(images))):
        fmt = FORMATS[target.suffix.lower()]
        if fmt == "PNG" and image.mime == "image/png":
            target.write_bytes(image.data)
        else:
            picture = image.pil()
            buf = io.BytesIO()
            (picture.convert("RGB") if fmt == "JPEG" else picture).save(buf, format=fmt)
            target.write_bytes(buf.getvalue())
        width, height = image.size
        click.echo(f"wrote {target} ({width}x{height})")
    seed = response.usage.extra.get("seed")
    if seed is not None:
        click.echo(f"seed {seed}", err=True)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="IMAGE... QUESTION")
@click.option("-m", "--model", help="ENGINE:MODEL of a vision-language model, e.g. "
              "transformers:HuggingFaceTB/SmolVLM-256M-Instruct or openai:gpt-4o-mini.")
@ENGINE_OPTIONS
def see(args: tuple[str, ...], model: str | None, options: tuple[str, ...]) -> None:
    """Ask a vision-language model about one or more IMAGEs: the last argument is the question
    (with a single argument, the model describes the image)."""
    from .. import tasks

    images, question = (list(args[:-1]), args[-1]) if len(args) > 1 else (list(args), "Describe this image.")
    for delta in tasks.see(images, question, model, **parse_options(options)):
        click.echo(delta, nl=False)
        sys.stdout.flush()
    click.echo()


@click.command()
@click.argument("prompt", nargs=-1, required=True)
@MODEL
@OPTIONS
@CONTROL
@OUT
def draw(prompt: tuple[str, ...], model: str | None, options: tuple[str, ...], control: str | None,
         out: str | None) -> None:
    """Draw an image from a text PROMPT: imagine draw "a red fox" -m diffusers:FOLDER -o steps=30 -o seed=1"""
    from .. import tasks

    _check_suffix(out)
    response = tasks.draw(" ".join(prompt), model, control=control, **parse_options(options))
    finish_with_steps(response)
    _write(response, out)


@click.command()
@click.argument("image", type=click.Path())
@click.argument("prompt", nargs=-1, required=True)
@click.option("--mask", type=click.Path(), help="Inpaint: white areas of this image are repainted, black kept.")
@MODEL
@OPTIONS
@CONTROL
@OUT
def edit(image: str, prompt: tuple[str, ...], mask: str | None, model: str | None, options: tuple[str, ...],
         control: str | None, out: str | None) -> None:
    """Redraw IMAGE following PROMPT (-o strength=0..1), or only its --mask area (inpainting)."""
    from .. import tasks

    _check_suffix(out)
    response = tasks.edit(image, " ".join(prompt), model, mask=mask, control=control, **parse_options(options))
    finish_with_steps(response)
    _write(response, out)
