"""Shared ground for the Hugging Face engines (transformers, diffusers, CLIP, hf-speech): where a model
comes from, what it is, and which device and dtype it runs in. Loaded models stay in the one model cache
of every engine (`_support/cache.py`).

A model is a local folder or a hub id (`OWNER/NAME`, downloaded once into the hub cache through the
libraries' own `from_pretrained`, with their progress bars; HF_HUB_OFFLINE=1 keeps it to the cache).
Weights must be safetensors: a folder or repo that only has pickle checkpoints (`.bin`, `.pt`, `.ckpt`,
`.pth`) is refused unless the request sets `allow_pickle`, because unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from ...errors import EngineUnavailable, ImagineError, InputError
from .._support.model_refs import parse_model_ref

__all__ = ["HFOptions", "ModelSource", "describe_folder", "global_torch_rng", "hub_load_error", "hub_model_missing",
           "inspect_model", "pick_device", "pick_dtype", "torch_seed_generator", "transformers_dtype_kwarg",
           "PICKLE_SUFFIXES"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class HFOptions(BaseModel):
    """The options every Hugging Face engine takes; each engine's Options adds its own."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps")
    dtype: str = Field(default="auto", description="auto (fp32 on CPU, half on GPUs), float32, float16, bfloat16")
    allow_pickle: bool = Field(default=False, description="load pickle weights (.bin/.pt/.ckpt): unpickling can run code")
HF_EXTRA_HINT = "pip install 'imagine[hf]'"


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives and what kind of thing it is."""
    ref: str                     # what from_pretrained gets: a folder path or a hub id
    local: bool
    kind: str                    # "pipeline" (diffusers model_index.json), "model" (config.json), "unknown"
    model_type: str | None       # config.json's model_type, or the pipeline class name
    config: dict[str, Any]


def describe_folder(folder: Path) -> tuple[str, str | None, dict[str, Any]]:
    """(kind, model_type, config) read from the JSON files a saved model or pipeline has."""
    for name, kind in (("model_index.json", "pipeline"), ("config.json", "model")):
        path = folder / name
        if path.is_file():
            try:
                config = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{path} is not valid JSON ({exc})", hint="re-save the model with save_pretrained") from None
            model_type = config.get("_class_name") if kind == "pipeline" else config.get("model_type")
            return kind, model_type, config
    return "unknown", None, {}


def _weight_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and (p.suffix in PICKLE_SUFFIXES or p.suffix == ".safetensors")]


def check_weights(folder: Path, allow_pickle: bool) -> None:
    """Refuse a folder whose weights exist only as pickle files, unless the user opted in."""
    files = _weight_files(folder)
    if allow_pickle or not files:
        return
    if not any(p.suffix == ".safetensors" for p in files):
        names = ", ".join(sorted(p.name for p in files)[:3])
        raise InputError(f"{folder} has only pickle weights ({names}); loading them can run arbitrary code",
                         hint="convert them to safetensors, or pass -o allow_pickle=true if you trust the source")


def inspect_model(ref: str, *, allow_pickle: bool = False) -> ModelSource:
    """Resolve a model reference without loading it: a local folder is checked now (not a model, pickle
    only) so errors come before any heavy import; a hub id is passed through to from_pretrained."""
    parsed = parse_model_ref(ref)
    if parsed.is_local:
        folder = parsed.path
        if not folder.exists():
            if not parsed.explicit:  # only a slash made it a path: it may as well have been a bad hub id
                raise InputError(f"{ref!r} is neither a local folder nor a hub id", hint="use OWNER/NAME or a path")
            raise InputError(f"model folder not found: {folder}", hint="pass a folder made by save_pretrained, or a hub id OWNER/NAME")
        if not folder.is_dir():
            raise InputError(f"{folder} is a file; a Hugging Face model is a folder (config.json or model_index.json)",
                             hint="pass the folder that save_pretrained wrote")
        kind, model_type, config = describe_folder(folder)
        if kind == "unknown":
            raise InputError(f"{folder} is not a Hugging Face model: it has no config.json or model_index.json",
                             hint="pass a folder made by save_pretrained, or a hub id OWNER/NAME")
        check_weights(folder, allow_pickle)
        return ModelSource(str(folder.resolve()), True, kind, model_type, config)
    if not parsed.is_hub:
        raise InputError(f"{ref!r} is neither a local folder nor a hub id", hint="use OWNER/NAME or a path")
    return ModelSource(parsed.text, False, "unknown", None, {})


def hub_kwargs(source: ModelSource, allow_pickle: bool) -> dict[str, Any]:
    """from_pretrained arguments: safetensors only unless pickle is allowed."""
    return {} if allow_pickle else {"use_safetensors": True}


# -- loading errors and library-version differences ----------------------------------------------------

def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_model_missing(ref: str, engine_id: str) -> EngineUnavailable | None:
    """When the hub cannot be reached (HF_HUB_OFFLINE) and `ref` is not cached, the error to raise: said
    before any heavy import, instead of a from_pretrained traceback about connection errors."""
    if not _offline():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    if isinstance(try_to_load_from_cache(ref, "config.json"), str):
        return None
    return EngineUnavailable(
        f"{engine_id} model {ref!r} must be downloaded first: it is not in the Hugging Face cache and "
        "HF_HUB_OFFLINE is set",
        hint="download it once with network access (unset HF_HUB_OFFLINE), or pass a local folder written by "
             f"save_pretrained: -m {engine_id}:./FOLDER")


def hub_load_error(source: ModelSource, engine_id: str, exc: BaseException, what: str = "model") -> ImagineError:
    """A from_pretrained failure as one line that says what to do."""
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if "safetensors" in text.lower():
        return InputError(f"cannot load {what} {source.ref}: {text}",
                          hint="it may have only pickle weights; pass -o allow_pickle=true if you trust the source "
                               "(pickle can run code)")
    if source.local:
        return InputError(f"could not load {what} {source.ref}: {type(exc).__name__}: {text}",
                          hint="re-save it with save_pretrained (weights, config and processor files)")
    missing = hub_model_missing(source.ref, engine_id)
    if missing is not None:
        return missing
    return EngineUnavailable(f"could not get {engine_id} {what} {source.ref!r} from the Hugging Face hub: {text}",
                             hint="check the repo id and your network (and HF_TOKEN for gated repos), or pass a "
                                  "local folder written by save_pretrained")


def transformers_dtype_kwarg() -> str:
    """from_pretrained's dtype keyword: `dtype` since transformers 4.56, `torch_dtype` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


# -- device and dtype --------------------------------------------------------------------------------

def pick_device(name: str = "auto") -> str:
    import torch

    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise InputError("device 'cuda' was asked for but torch sees no CUDA GPU", hint="use -o device=cpu or auto")
        if name == "mps" and not torch.backends.mps.is_available():
            raise InputError("device 'mps' was asked for but this machine has no Apple GPU", hint="use -o device=cpu or auto")
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(name: str, device: str) -> Any:
    """auto: bf16 on CUDA that has it, else fp16 on GPUs, fp32 on the CPU (half precision is slow there)."""
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name != "auto":
        if name not in table:
            raise InputError(f"unknown dtype {name!r}", hint="use auto, float32, float16 or bfloat16")
        return table[name]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


_GLOBAL_RNG_LOCK = threading.Lock()


@contextmanager
def global_torch_rng(seed: int | None, device: str) -> Iterator[None]:
    """For libraries that sample from torch's *global* RNG (transformers' generate, pipelines): one such run
    at a time in the whole process, since any other would move the same generator; with a seed, seeded
    inside a fork of the RNG state so the caller's own random stream is left as it was."""
    import torch

    with _GLOBAL_RNG_LOCK:
        if seed is None:
            yield
            return
        cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            yield


def torch_seed_generator(seed: int | None, device: str) -> Any:
    """A private torch.Generator (never the global RNG, so concurrent requests don't disturb each other)."""
    import torch

    gen = torch.Generator(device="cpu" if device == "mps" else device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen
