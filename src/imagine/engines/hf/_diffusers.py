"""The diffusers engine's loading and checking, kept apart from its request flow.

Checks here run before anything heavy is imported (sizes, scheduler names), so a bad request fails
in milliseconds, naming the option and what would work. Loading goes through `_hf`: one pipeline per
(model, device, dtype) stays in the shared model cache, and every task (text-to-image, image-to-image,
inpainting, each with or without a ControlNet) is derived from it with `from_pipe`, which shares the
loaded weights rather than copying them.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from typing import Any

from ...errors import EngineUnavailable, InputError
from .._support.cache import model_cache
from .._support.model_refs import parse_model_ref
from . import _hf

__all__ = ["SCHEDULERS", "LoadedPipeline", "check_size", "default_size", "load_controlnet", "load_pipeline",
           "make_scheduler", "task_pipeline", "use_lora"]

SIZE_MULTIPLE = 8  # the VAE downsamples by 8 (SD 1.x/2.x, SDXL): other sizes are cropped or rejected
ADAPTER = "imagine"  # the adapter name a request's LoRA is loaded under

# -o scheduler=NAME -> (diffusers class, config overrides, module it needs). Built from the pipeline's own
# scheduler config (`from_config`), so the noise schedule it was trained with is kept; only the sampler changes.
SCHEDULERS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "ddim": ("DDIMScheduler", {}, None),
    "ddpm": ("DDPMScheduler", {}, None),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, None),  # PLMS, as Stable Diffusion ships it
    "lms": ("LMSDiscreteScheduler", {}, "scipy"),
    "euler": ("EulerDiscreteScheduler", {}, None),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, None),
    "heun": ("HeunDiscreteScheduler", {}, None),
    "dpm++": ("DPMSolverMultistepScheduler", {}, None),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, None),
    "unipc": ("UniPCMultistepScheduler", {}, None),
}


def check_size(option: str, value: int | None) -> None:
    """diffusers' own check_inputs rule, applied before loading: a side must be a multiple of 8."""
    if value is None or value % SIZE_MULTIPLE == 0:
        return
    low = value // SIZE_MULTIPLE * SIZE_MULTIPLE
    choices = f"{low} or {low + SIZE_MULTIPLE}" if low else str(SIZE_MULTIPLE)
    raise InputError(f"option {option!r} must be divisible by {SIZE_MULTIPLE}, got {value}",
                     hint=f"use {choices}")


def check_scheduler(name: str | None) -> None:
    if name is not None and name not in SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}", hint=f"use one of: {', '.join(SCHEDULERS)}")


def check_kind(source: _hf.ModelSource, model: str) -> None:
    """A local folder must be a diffusers pipeline; say which engine takes anything else."""
    if source.kind == "pipeline" or not source.local:
        return
    if source.config.get("_class_name"):  # one diffusers model (a UNet, a ControlNet), not a pipeline
        raise InputError(f"{model} holds a single diffusers model ({source.config['_class_name']}), not a pipeline",
                         hint="pass the folder with model_index.json (a ControlNet goes in -o controlnet=FOLDER)")
    raise InputError(f"{model} is a transformers model ({source.model_type or 'config.json'}), not a diffusers "
                     "pipeline", hint=f"run it with the transformers engine: -m transformers:{model}")


# -- loading ----------------------------------------------------------------------------------------

@dataclass(eq=False)
class LoadedPipeline:
    """A pipeline in the model cache, with the lock that keeps one request at a time on its modules
    (a LoRA is injected into the shared UNet, so two requests must not interleave) and the LoRA
    currently loaded into it."""
    pipe: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    lora: tuple[str, bool] | None = None

    @property
    def components(self) -> dict[str, Any]:  # what _hf.model_bytes measures
        return dict(self.pipe.components)


def _dtype_arg(dtype: Any) -> dict[str, Any]:
    """diffusers renamed from_pretrained's torch_dtype to dtype (the old name now warns): use the one it takes."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (exists since the rename)
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def load_pipeline(source: _hf.ModelSource, device: str, dtype: Any, allow_pickle: bool) -> LoadedPipeline:
    """The text-to-image pipeline for `source`, loaded once per process (the shared model cache)."""
    def load() -> LoadedPipeline:
        from diffusers import AutoPipelineForText2Image

        try:
            pipe = AutoPipelineForText2Image.from_pretrained(source.ref, **_dtype_arg(dtype),
                                                             **_hf.hub_kwargs(source, allow_pickle))
        except ValueError as exc:
            if "AutoPipeline can't find" in str(exc):
                raise InputError(f"{source.ref} is a {source.model_type or 'diffusers'} pipeline, which cannot "
                                 "draw from text", hint="use a text-to-image pipeline (Stable Diffusion, SDXL, ...)") from None
            raise _hf.hub_load_error(source, "diffusers", exc, what="pipeline") from None
        except (OSError, RuntimeError, TypeError) as exc:
            raise _hf.hub_load_error(source, "diffusers", exc, what="pipeline") from None
        if device != "cpu":
            pipe.to(device)
        return LoadedPipeline(pipe)

    return model_cache().get(("diffusers", source.ref, device, str(dtype), allow_pickle), load)  # type: ignore[no-any-return]


def load_controlnet(ref: str, device: str, dtype: Any, allow_pickle: bool) -> Any:
    """A ControlNetModel from a folder or hub id, cached like pipelines."""
    source = _hf.inspect_model(ref, allow_pickle=allow_pickle)
    if source.local and source.config.get("_class_name") != "ControlNetModel":
        what = source.config.get("_class_name") or source.model_type or source.kind
        raise InputError(f"option 'controlnet': {ref} is not a ControlNetModel (it holds {what})",
                         hint="pass a folder or hub id of a ControlNet, e.g. lllyasviel/sd-controlnet-canny")

    def load() -> Any:
        from diffusers import ControlNetModel

        try:
            model = ControlNetModel.from_pretrained(source.ref, **_dtype_arg(dtype), **_hf.hub_kwargs(source, allow_pickle))
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise _hf.hub_load_error(source, "diffusers", exc, what="ControlNet") from None
        return model.to(device) if device != "cpu" else model

    return model_cache().get(("controlnet", source.ref, device, str(dtype), allow_pickle), load)


def _lora_location(ref: str, allow_pickle: bool) -> tuple[str, str | None, bool]:
    """(folder or hub id, weight file name, is local) for load_lora_weights; a local LoRA is checked here because
    it is a bare weights file or a folder without config.json, which inspect_model would refuse."""
    parsed = parse_model_ref(ref)
    if parsed.is_hub:
        return parsed.text, None, False
    path = parsed.path
    if not path.exists():
        if not parsed.explicit:  # only a slash (or nothing) made it a path: it may as well be a bad hub id
            raise InputError(f"option 'lora': {ref!r} is neither a local file or folder nor a hub id",
                             hint="use OWNER/NAME or a path")
        raise InputError(f"option 'lora': {path} not found", hint="pass the folder save_lora_weights wrote, or a hub id")
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    safe = [p for p in files if p.suffix == ".safetensors"]
    pickled = [p for p in files if p.suffix in _hf.PICKLE_SUFFIXES]
    if safe:
        chosen = next((p for p in safe if p.name == "pytorch_lora_weights.safetensors"), safe[0])
    elif pickled and allow_pickle:
        chosen = pickled[0]
    elif pickled:
        raise InputError(f"option 'lora': {path} has only pickle weights ({pickled[0].name}); loading them can "
                         "run arbitrary code", hint="convert it to safetensors, or pass -o allow_pickle=true")
    else:
        raise InputError(f"option 'lora': {path} holds no LoRA weights (.safetensors)",
                         hint="pass the folder save_lora_weights wrote, or a hub id")
    return str(chosen.parent), chosen.name, True


def use_lora(loaded: LoadedPipeline, ref: str | None, scale: float, allow_pickle: bool) -> None:
    """Make `ref` (or no LoRA) active at `scale`. Call under `loaded.lock`. The last LoRA stays loaded,
    so repeated requests with it skip reading it again; another one (or none) unloads it first."""
    pipe = loaded.pipe
    wanted = (ref, allow_pickle) if ref else None
    if loaded.lora is not None and loaded.lora != wanted:
        pipe.unload_lora_weights()
        loaded.lora = None
    if ref is None:
        return
    if loaded.lora is None:
        if importlib.util.find_spec("peft") is None:
            raise EngineUnavailable("option 'lora' needs peft", hint=_hf.HF_EXTRA_HINT)
        location, weight_name, local = _lora_location(ref, allow_pickle)
        try:
            pipe.load_lora_weights(location, weight_name=weight_name, adapter_name=ADAPTER,
                                   **({} if allow_pickle else {"use_safetensors": True}))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            pipe.unload_lora_weights()  # a half-loaded adapter must not leak into the next request
            source = _hf.ModelSource(ref, local, "lora", None, {})
            raise _hf.hub_load_error(source, "diffusers", exc, what="LoRA") from None
        loaded.lora = wanted
    pipe.set_adapters([ADAPTER], adapter_weights=[scale])


def make_scheduler(pipe: Any, name: str) -> Any:
    """A new scheduler of the named kind from the pipeline's scheduler config; refused when the pipeline
    cannot use it (e.g. flow-matching models such as SD3 or Flux take only their own)."""
    import diffusers

    class_name, overrides, needs = SCHEDULERS[name]
    if needs and importlib.util.find_spec(needs) is None:
        raise EngineUnavailable(f"scheduler {name!r} needs {needs}", hint=f"pip install {needs}, or pick another scheduler")
    current = type(pipe.scheduler).__name__
    fits = {c.__name__ for c in getattr(pipe.scheduler, "compatibles", ())} | {current}
    if class_name not in fits:
        raise InputError(f"scheduler {name!r} ({class_name}) does not fit this pipeline, which uses {current}",
                         hint="leave the scheduler option out to use the pipeline's own")
    return getattr(diffusers, class_name).from_config(pipe.scheduler.config, **overrides)


def task_pipeline(loaded: LoadedPipeline, task: str, scheduler: Any, controlnet: Any) -> Any:
    """The pipeline for `task` ("text", "image" or "inpaint") sharing the loaded modules."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    auto = {"text": AutoPipelineForText2Image, "image": AutoPipelineForImage2Image,
            "inpaint": AutoPipelineForInpainting}[task]
    extra: dict[str, Any] = {}
    if scheduler is not None:
        extra["scheduler"] = scheduler
    if controlnet is not None:
        extra["controlnet"] = controlnet
    try:
        pipe = auto.from_pipe(loaded.pipe, **extra)
    except ValueError as exc:
        what = {"text": "draw from text", "image": "redraw an image", "inpaint": "inpaint"}[task]
        with_cn = " with a ControlNet" if controlnet is not None else ""
        raise InputError(f"this {type(loaded.pipe).__name__} cannot {what}{with_cn}: {exc}".splitlines()[0],
                         hint="use a Stable Diffusion or SDXL pipeline for this task") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def default_size(pipe: Any) -> tuple[int, int]:
    """(width, height) the pipeline was trained at: its denoiser's sample size times the VAE factor."""
    sample = getattr(pipe, "default_sample_size", None)
    if sample is None:
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
    if isinstance(sample, (list, tuple)):
        height, width = int(sample[0]), int(sample[-1])
    elif isinstance(sample, int):
        height = width = sample
    else:
        return 512, 512
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    return width * factor, height * factor
