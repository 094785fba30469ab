"""Checkpoints of the lab's image models (ViT classifier, VQ-VAE, DiT, early fusion): safetensors weights +
config.json.

One folder per model: `model.safetensors` (the state dict; never pickle, so loading runs no code) and
`config.json` = {"arch": kind, "kind": kind, "config": the model's dataclass, "meta": what a server needs
to use it without the training code (class names, image size, pixel range), "train": the run's record}.
"arch" is the same key the LM checkpoints use, so one reader can tell every lab checkpoint apart.
A fusion model is one folder too: its LM and VQ-VAE weights sit in the one safetensors file under the
prefixes `lm.` and `vqvae.`, and its config nests both configs (arch/fusion.py's FusionConfig).
Weights go through safetensors' save_model/load_model, which store a tied embedding once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .dit import DiT, DiTConfig
from .fusion import FusionConfig, FusionModel
from .vit import ViT, ViTConfig
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["KINDS", "REQUIRED_META", "build", "config_of", "read_info", "save", "load"]

# kind -> (config dataclass, model class)
KINDS: dict[str, tuple[type, type[nn.Module]]] = {"vit": (ViTConfig, ViT), "vqvae": (VQVAEConfig, VQVAE),
                                                  "dit": (DiTConfig, DiT), "fusion": (FusionConfig, FusionModel)}
# What each kind's "meta" must hold for a server to use it: checked before any weights load.
REQUIRED_META: dict[str, tuple[str, ...]] = {"vit": ("classes", "image_size", "pixel_range"),
                                             "vqvae": ("image_size", "pixel_range"),
                                             "dit": ("classes", "image_size", "pixel_range"),
                                             "fusion": ("image_size", "pixel_range")}


def build(kind: str, config: dict[str, Any]) -> nn.Module:
    """A fresh model of `kind` from JSON config values; unknown kinds or fields raise ValueError."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    cfg_cls, model_cls = KINDS[kind]
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {cfg_cls.__name__} fields {unknown}; known: {sorted(known)}")
    return model_cls(cfg_cls(**config))


def config_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """(kind, JSON-ready config) of a lab image model."""
    for kind, (_, model_cls) in KINDS.items():
        if type(model) is model_cls:
            return kind, asdict(model.cfg)  # type: ignore[call-overload]
    raise ValueError(f"{type(model).__name__} is not a lab image model ({', '.join(KINDS)})")


def save(model: nn.Module, folder: str | Path, meta: dict[str, Any], train: dict[str, Any] | None = None) -> Path:
    """Write model.safetensors + config.json into `folder` (created); returns the folder."""
    from safetensors.torch import save_model

    kind, config = config_of(model)
    missing = [k for k in REQUIRED_META[kind] if k not in meta]
    if missing:
        raise ValueError(f"a {kind} checkpoint needs meta {missing}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"), metadata={"kind": kind})
    record = {"arch": kind, "kind": kind, "config": config, "meta": meta, "train": train or {}}
    (out / "config.json").write_text(json.dumps(record, indent=2))
    return out


def read_info(folder: str | Path) -> dict[str, Any]:
    """config.json of a lab image checkpoint, checked (kind known, meta complete) without building anything."""
    folder = Path(folder)
    info = json.loads((folder / "config.json").read_text())
    if not isinstance(info, dict):
        raise ValueError(f"{folder}/config.json is not a JSON object")
    kind = info.get("kind", info.get("arch"))
    if kind not in KINDS:
        raise ValueError(f"{folder} holds a {kind!r} model, not a lab image model ({', '.join(KINDS)})")
    meta = info.get("meta")
    missing = [k for k in REQUIRED_META[kind] if not isinstance(meta, dict) or k not in meta]
    if not isinstance(info.get("config"), dict) or missing:
        lacks = ", ".join(([] if isinstance(info.get("config"), dict) else ["config"]) + [f"meta.{k}" for k in missing])
        raise ValueError(f"{folder} holds a {kind!r} model but its config.json lacks {lacks}")
    return {**info, "kind": kind}


def load(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model `save` wrote, in eval mode, and its config.json record (with "kind")."""
    from safetensors.torch import load_model

    folder = Path(folder)
    info = read_info(folder)
    model = build(info["kind"], info["config"])
    load_model(model, str(folder / "model.safetensors"), strict=True, device=str(device))
    return model.to(device).eval(), info
