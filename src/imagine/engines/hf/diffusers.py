"""`diffusers`: images from text and from images with any Hugging Face diffusers pipeline.

Model names: a pipeline folder (what `save_pretrained` writes: model_index.json plus one folder per
component) or a hub id such as `stabilityai/sd-turbo`, as `-m diffusers:FOLDER_OR_ID`. There is no
bundled model (image pipelines are gigabytes), so the engine has no default and `auto` never picks it.

One loaded pipeline serves every task; the request's parts choose:
  * text only                          -> text-to-image
  * an image                           -> image-to-image (`strength`, default 0.75, sets how far it may go)
  * an image + an image named "mask"   -> inpainting (white = repaint; `strength` default 1.0); pixels
                                          outside the mask are pasted back from the input (keep_unmasked)
  * + an image named "control"         -> the ControlNet variant of the task (needs -o controlnet=...)
`tasks.draw` / `tasks.edit` name the parts. Options are checked before anything is loaded, the way
diffusers' check_inputs does it, each error naming the option. Weights must be safetensors unless
`allow_pickle` is set. Denoising runs in a worker thread; each step is a Progress event ("denoise").
"""

from __future__ import annotations

import asyncio
import inspect
import io
import math
import secrets
from typing import Any, AsyncIterator, ClassVar

from pydantic import BaseModel, Field

from ...engine import Engine, Request
from ...errors import ImagineError, InputError, UpstreamError
from ...events import Done, Event, PartOut, Progress, Usage
from ...parts import Image, Modality
from .._support.inputs import last_user
from .._support.threads import Finished, stream_from_thread
from . import _diffusers as sd
from . import _hf

__all__ = ["DiffusersEngine", "DiffusersOptions"]

MASK, CONTROL = "mask", "control"  # the part names tasks.draw/edit give (tasks.MASK, tasks.CONTROL)
MODEL_HINT = ("name a diffusers pipeline: -m diffusers:FOLDER (save_pretrained output with model_index.json) "
              "or -m diffusers:OWNER/NAME (e.g. stabilityai/sd-turbo)")
# pipeline argument -> the option that sets it (to name the option when a pipeline does not take it)
_ARG_OPTION = {"negative_prompt": "negative_prompt", "guidance_scale": "guidance", "num_images_per_prompt": "n",
               "strength": "strength", "controlnet_conditioning_scale": "controlnet_scale"}


class _Stopped(Exception):
    """Raised from the step callback when the caller left the stream: ends denoising at once."""


class DiffusersOptions(_hf.HFOptions):
    steps: int = Field(default=25, ge=1, le=1000, description="denoising steps (an edit runs steps x strength)")
    guidance: float = Field(default=7.0, ge=0, le=50, description="classifier-free guidance; <= 1 turns it off")
    width: int | None = Field(default=None, ge=8, le=4096, description="pixels, divisible by 8; default: the "
                              "pipeline's sample size (an edit: the input image's size)")
    height: int | None = Field(default=None, ge=8, le=4096, description="pixels, divisible by 8 (as width)")
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1, description="same seed, same images; unset: "
                             "a random one, reported in usage")
    negative_prompt: str | None = Field(default=None, description="what the image should not show")
    n: int = Field(default=1, ge=1, le=8, description="images to make")
    strength: float | None = Field(default=None, ge=0, le=1, description="edit: how far from the input to go; "
                                   "default 0.75, or 1.0 when inpainting")
    keep_unmasked: bool = Field(default=True, description="inpainting: paste the input back outside the mask "
                                "(the VAE round trip would otherwise soften it)")
    scheduler: str | None = Field(default=None, description="sampler: " + ", ".join(sd.SCHEDULERS) +
                                  "; default: the pipeline's own")
    lora: str | None = Field(default=None, description="LoRA weights: a folder, .safetensors file or hub id")
    lora_scale: float = Field(default=1.0, ge=-10, le=10, description="how strongly the LoRA applies")
    controlnet: str | None = Field(default=None, description="ControlNetModel folder or hub id (needs a "
                                   "control image)")
    controlnet_scale: float = Field(default=1.0, ge=0, le=5, description="how strongly the control image steers")


def check_options(opts: DiffusersOptions) -> None:
    """The checks that need no inputs and no model, so a bad option fails before anything loads."""
    sd.check_size("width", opts.width)
    sd.check_size("height", opts.height)
    sd.check_scheduler(opts.scheduler)
    given = opts.model_fields_set
    if "lora_scale" in given and not opts.lora:
        raise InputError("option 'lora_scale' needs option 'lora'", hint="add -o lora=FOLDER_OR_HUB_ID")
    if "controlnet_scale" in given and not opts.controlnet:
        raise InputError("option 'controlnet_scale' needs option 'controlnet'",
                         hint="add -o controlnet=FOLDER_OR_HUB_ID and a control image")


class DiffusersEngine(Engine[DiffusersOptions]):
    id = "diffusers"
    locality = "local"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE})
    outputs = frozenset({Modality.IMAGE})
    features = frozenset({"seed"})
    default_model = ""
    model_hint: ClassVar[str | None] = MODEL_HINT
    description = "Images from text or images with any diffusers pipeline (img2img, inpaint, ControlNet, LoRA)"
    requires = ("torch", "diffusers", "transformers")
    extra = "hf"
    package = "diffusers"
    auto_select = False  # no default model: only when named

    Options = DiffusersOptions

    @classmethod
    def parse_options(cls, raw: dict[str, Any] | BaseModel | None) -> DiffusersOptions:
        opts = super().parse_options(raw)
        check_options(opts)
        return opts

    def check_model(self, model: str) -> None:
        if not model.strip():
            raise InputError("the diffusers engine needs a model and has no default", hint=MODEL_HINT)
        sd.check_kind(_hf.inspect_model(model, allow_pickle=True), model)  # pickle is judged per request

    # -- the request ----------------------------------------------------------------------------
    @staticmethod
    def _inputs(request: Request) -> tuple[str, Image | None, Image | None, Image | None]:
        """(prompt, init image, mask, control image) from the last user message."""
        message = last_user(request)
        if message is None:
            raise InputError("the diffusers engine needs a user message with a prompt")
        roles: dict[str, list[Image]] = {"init": [], MASK: [], CONTROL: []}
        for part in message.parts:
            if isinstance(part, Image):
                roles[part.name if part.name in (MASK, CONTROL) else "init"].append(part)
        for role, found in roles.items():
            if len(found) > 1:
                raise InputError(f"one {'input image' if role == 'init' else role + ' image'} at a time, got {len(found)}")
        prompt = message.text.strip()
        if not prompt:
            raise InputError("nothing to draw: the prompt is empty", hint="say what the image should show")
        first = {role: found[0] if found else None for role, found in roles.items()}
        return prompt, first["init"], first[MASK], first[CONTROL]

    @staticmethod
    def _task(opts: DiffusersOptions, init: Image | None, mask: Image | None, control: Image | None) -> tuple[str, float]:
        """("text" | "image" | "inpaint", strength), refusing combinations that cannot work."""
        if mask is not None and init is None:
            raise InputError("a mask needs the image to inpaint", hint="imagine edit IMAGE PROMPT --mask MASK")
        if control is not None and not opts.controlnet:
            raise InputError("a control image needs a ControlNet", hint="add -o controlnet=FOLDER_OR_HUB_ID")
        if opts.controlnet and control is None:
            raise InputError("option 'controlnet' needs a control image", hint="pass --control IMAGE")
        task = "inpaint" if mask is not None else "image" if init is not None else "text"
        given = opts.model_fields_set
        if task == "text" and "strength" in given:
            raise InputError("option 'strength' applies to editing an image", hint="use `imagine edit`, or drop it")
        if task != "inpaint" and "keep_unmasked" in given:
            raise InputError("option 'keep_unmasked' applies to inpainting", hint="add --mask MASK, or drop it")
        strength = opts.strength if opts.strength is not None else 1.0 if task == "inpaint" else 0.75
        if task != "text" and int(opts.steps * strength) < 1:
            need = f"steps to at least {math.ceil(1 / strength)}" if strength else "strength above 0"
            raise InputError(f"steps x strength = {opts.steps} x {strength} leaves no denoising step to run",
                             hint=f"raise {need}")
        return task, strength

    async def stream(self, request: Request[DiffusersOptions]) -> AsyncIterator[Event]:
        opts = request.options
        check_options(opts)
        prompt, init, mask, control = self._inputs(request)
        task, strength = self._task(opts, init, mask, control)
        source = _hf.inspect_model(request.model, allow_pickle=opts.allow_pickle)
        sd.check_kind(source, request.model)
        limits = request.limits

        def prepare() -> dict[str, Any]:
            """Worker thread: load (cached), pick the size, decode and fit the images to it."""
            pictures = {role: part.pil(limits) for role, part in (("init", init), (MASK, mask), (CONTROL, control))
                        if part is not None}  # decoded first: a bad image fails before the slow load
            device = _hf.pick_device(opts.device)
            dtype = _hf.pick_dtype(opts.dtype, device)
            loaded = sd.load_pipeline(source, device, dtype, opts.allow_pickle)
            controlnet = sd.load_controlnet(opts.controlnet, device, dtype, opts.allow_pickle) if opts.controlnet else None
            scheduler = sd.make_scheduler(loaded.pipe, opts.scheduler) if opts.scheduler else None
            if "init" in pictures:
                w0, h0 = pictures["init"].size
                width, height = opts.width or w0 // 8 * 8, opts.height or h0 // 8 * 8
                if width < 8 or height < 8:
                    raise InputError(f"the input image is {w0}x{h0}; it needs at least 8x8 pixels")
            else:
                dw, dh = sd.default_size(loaded.pipe)
                width, height = opts.width or dw, opts.height or dh
            fitted = {role: _fit(img, (width, height), "L" if role == MASK else "RGB") for role, img in pictures.items()}
            return {"loaded": loaded, "controlnet": controlnet, "scheduler": scheduler, "device": device,
                    "pictures": fitted, "size": (width, height)}

        try:
            ready = await asyncio.to_thread(prepare)
            async for item in stream_from_thread(lambda emit, stop: self._run(
                    ready, opts, prompt, task, strength, emit, stop)):
                if isinstance(item, Finished):
                    if item.value is None:
                        yield Done("cancelled")
                        return
                    pngs, steps, seed = item.value
                    for data in pngs:
                        yield PartOut(Image(data, mime="image/png"))
                    width, height = ready["size"]
                    yield Usage(cost=0.0, extra={"images": len(pngs), "steps": steps, "seed": seed,
                                                 "width": width, "height": height})
                    yield Done("stop")
                else:
                    yield item
        except ImagineError:
            raise
        except ValueError as exc:  # diffusers' own check_inputs
            raise InputError(f"diffusers rejected the request: {exc}".splitlines()[0]) from None
        except Exception as exc:  # torch's errors (out of memory, shapes), raised in the worker
            raise UpstreamError(f"diffusers failed: {type(exc).__name__}: {exc}".splitlines()[0],
                                hint="lower width/height or n, or try -o dtype=float16 on a GPU") from None

    def _run(self, ready: dict[str, Any], opts: DiffusersOptions, prompt: str, task: str, strength: float,
             emit: Any, stop: Any) -> tuple[list[bytes], int, int] | None:
        """Worker thread: denoise with one Progress per step; None when the caller left mid-way."""
        loaded: sd.LoadedPipeline = ready["loaded"]
        pictures, (width, height) = ready["pictures"], ready["size"]
        seed = opts.seed if opts.seed is not None else secrets.randbits(32)  # short enough to retype
        generator = _hf.torch_seed_generator(seed, ready["device"])
        steps = 0

        def on_step(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal steps
            steps += 1
            emit(Progress(i + 1, getattr(pipe, "num_timesteps", None), "denoise"))
            if stop.is_set():
                raise _Stopped
            return tensors

        with loaded.lock:
            sd.use_lora(loaded, opts.lora, opts.lora_scale, opts.allow_pickle)
            pipe = sd.task_pipeline(loaded, task, ready["scheduler"], ready["controlnet"])
            args: dict[str, Any] = dict(prompt=prompt, negative_prompt=opts.negative_prompt, generator=generator,
                                        num_inference_steps=opts.steps, guidance_scale=opts.guidance,
                                        num_images_per_prompt=opts.n, output_type="pil", callback_on_step_end=on_step)
            if task == "text":
                args.update(width=width, height=height)
                if CONTROL in pictures:
                    args.update(image=pictures[CONTROL])
            else:
                args.update(image=pictures["init"], strength=strength)
                if task == "inpaint":
                    args.update(mask_image=pictures[MASK], width=width, height=height)
                if CONTROL in pictures:
                    args.update(control_image=pictures[CONTROL])
            if CONTROL in pictures:
                args.update(controlnet_conditioning_scale=opts.controlnet_scale)
            try:
                images = pipe(**_accepted(pipe, args, opts.model_fields_set)).images
            except _Stopped:
                return None
            if task == "inpaint" and opts.keep_unmasked:
                images = [pipe.image_processor.apply_overlay(pictures[MASK], pictures["init"], img) for img in images]
        return [_png(img) for img in images], steps, seed


def _accepted(pipe: Any, args: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """The arguments this pipeline's __call__ takes; an option the user set that it lacks is an error
    (a default it lacks, or an unset one, is dropped)."""
    params = inspect.signature(pipe.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return args
    kept = {}
    for name, value in args.items():
        if name in params:
            kept[name] = value
        elif value is not None and _ARG_OPTION.get(name) in given:
            raise InputError(f"{type(pipe).__name__} does not take option {_ARG_OPTION[name]!r}",
                             hint="drop it for this model")
    return kept


def _fit(img: Any, size: tuple[int, int], mode: str) -> Any:
    """The image in `mode` at exactly `size` (masks and control images follow the output size)."""
    from PIL import Image as PILImage

    img = img.convert(mode)
    return img if img.size == size else img.resize(size, PILImage.Resampling.LANCZOS)


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
