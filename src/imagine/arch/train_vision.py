"""One small training loop for the lab's image models on coloured shapes drawn from a seed (data.py).

- `vit`: a ViT classifier naming the shape, the colour, or both ("red circle": 12 classes); judged by
  held-out accuracy. Images in [0, 1].
- `vqvae`: a VQ-VAE image tokenizer; judged by held-out PSNR. Images in [-1, 1].
- `dit`: a class-conditional DiT (shape x colour) trained by flow matching with an EMA copy; judged by
  whether samples come out in the colour asked for (the nearest palette colour of their lit pixels).

The recipes are bench/lab_vit.py's and bench/lab_gen.py's (AdamW/Adam, warm-up then cosine), behind one
loop with a step and a time budget (the first reached ends the run; the schedule follows whichever is
nearer its end), a progress callback and Ctrl-C that keeps what was learnt. Held-out data is another seed.
Shapes: N images, C=3 channels, S image side, K classes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import COLOUR_RGB, COLOURS, SHAPES, ShapesData, shapes
from .dit import DiT, DiTConfig, flow_matching_loss, guided, sample
from .train import running_mean
from .vit import ViT, ViTConfig
from .vqvae import VQVAE, VQVAEConfig, psnr

__all__ = ["VisionTrainConfig", "VisionProgress", "VisionResult", "DEFAULTS", "class_names", "make_model",
           "train_vision", "generate", "classify", "colour_of", "save_grid", "plot_curve"]

Kind = Literal["vit", "vqvae", "dit"]
Labels = Literal["both", "shape", "colour"]

# kind -> recipe defaults (from the benches): steps, batch, lr, image side
DEFAULTS: dict[str, dict[str, Any]] = {
    "vit": {"steps": 1500, "batch_size": 64, "lr": 2e-3, "size": 32},
    "vqvae": {"steps": 5000, "batch_size": 16, "lr": 3e-3, "size": 32},
    "dit": {"steps": 5000, "batch_size": 32, "lr": 2e-3, "size": 16},
}
PIXELS = {"vit": (0.0, 1.0), "vqvae": (-1.0, 1.0), "dit": (-1.0, 1.0)}


@dataclass
class VisionTrainConfig:
    kind: Kind
    steps: int | None = None            # default: the kind's recipe
    seconds: float | None = None        # a time budget; the first of steps and seconds ends the run
    size: int | None = None             # image side S
    seed: int = 0                       # weights, batches and training data; held-out data is seed + 1000
    n_train: int = 8000
    batch_size: int | None = None
    lr: float | None = None
    labels: Labels = "both"             # vit: what the classes name
    threads: int | None = None
    model: dict[str, Any] = field(default_factory=dict)   # overrides of the model's config dataclass

    def resolved(self, key: str) -> Any:
        value = getattr(self, key)
        return DEFAULTS[self.kind][key] if value is None else value


@dataclass
class VisionProgress:
    step: int
    max_steps: int
    elapsed: float
    max_seconds: float | None
    loss: float
    images_per_s: float


@dataclass
class VisionResult:
    kind: str
    model: nn.Module
    meta: dict[str, Any]                # what config.json's "meta" needs: classes, image size, pixel range
    steps: int
    seconds: float
    loss: float
    metric: str                         # "held-out accuracy", "held-out PSNR dB", "colour as asked"
    score: float
    images_per_s: float
    history: list[dict[str, float]]
    held_out: ShapesData
    interrupted: bool = False


def class_names(kind: str, labels: Labels = "both") -> list[str]:
    """The class names in id order: "red circle" (shape x colour, data.class_id's order), "circle" or "red"."""
    if kind == "vit" and labels == "shape":
        return list(SHAPES)
    if kind == "vit" and labels == "colour":
        return list(COLOURS)
    return [f"{c} {s}" for s in SHAPES for c in COLOURS]


def _targets(data: ShapesData, labels: Labels) -> Tensor:
    return {"shape": data.shape, "colour": data.colour, "both": data.class_id}[labels]


def make_model(cfg: VisionTrainConfig) -> nn.Module:
    """The kind's bench architecture at image side `size`, with `cfg.model` overriding any field."""
    size, k = int(cfg.resolved("size")), len(class_names(cfg.kind, cfg.labels))
    if cfg.kind == "vit":
        base: dict[str, Any] = dict(image_size=(size, size), patch_size=(max(1, size // 4),) * 2, n_classes=k,
                                    n_layer=4, n_head=4, n_embd=64, pool="mean")
        return ViT(ViTConfig(**{**base, **cfg.model}))
    if cfg.kind == "vqvae":
        return VQVAE(VQVAEConfig(**{**dict(hidden=48, n_res=2, downsample=2, codebook_size=1024, code_dim=32),
                                    **cfg.model}))
    if cfg.kind == "dit":
        # bench/lab_gen.py: patch 2 (64 tokens at 16x16) and width 96 took ViT-judged shape from 66 % to 92 %
        return DiT(DiTConfig(**{**dict(image_size=size, patch=2, dim=96, depth=4, n_head=4, n_classes=k,
                                       class_dropout=0.1), **cfg.model}))
    raise ValueError(f"unknown model kind {cfg.kind!r}; known: vit, vqvae, dit")


def _lr(frac: float, lr: float, warm: float = 0.03) -> float:
    """Warm-up then cosine over the run's progress `frac` (steps or seconds, whichever is further on)."""
    frac = min(frac, 1.0)
    return lr * frac / warm if frac < warm else lr * 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))


def train_vision(cfg: VisionTrainConfig, on_progress: Callable[[VisionProgress], None] | None = None) -> VisionResult:
    """Train one model of `cfg.kind` on generated shapes, then judge it on held-out ones."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    steps, batch, lr = int(cfg.resolved("steps")), int(cfg.resolved("batch_size")), float(cfg.resolved("lr"))
    size = int(cfg.resolved("size"))
    if steps < 1 or batch < 1 or cfg.n_train < 1:
        raise ValueError("steps, batch_size and n_train must be at least 1")
    torch.manual_seed(cfg.seed)
    model = make_model(cfg)
    data, held = shapes(cfg.n_train, seed=cfg.seed, size=size), shapes(512, seed=cfg.seed + 1000, size=size)
    lo, hi = PIXELS[cfg.kind]
    x_all = data.images * (hi - lo) + lo                                     # (N, 3, S, S)
    y_all = _targets(data, cfg.labels)                                       # (N,)
    gen = torch.Generator().manual_seed(cfg.seed)
    ema: DiT | None = None
    if isinstance(model, VQVAE):
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        wd = 0.05 if isinstance(model, ViT) else 0.0
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                                lr=lr, betas=(0.9, 0.98) if isinstance(model, ViT) else (0.9, 0.999))
    if isinstance(model, DiT):
        ema = DiT(model.cfg)
        ema.load_state_dict(model.state_dict())

    def loss_of(idx: Tensor) -> Tensor:
        x = x_all[idx]
        if isinstance(model, ViT):
            return F.cross_entropy(model(x), y_all[idx])
        if isinstance(model, VQVAE):
            return model.loss(x)[0]
        assert isinstance(model, DiT)
        y = model.drop_labels(y_all[idx], gen)
        return flow_matching_loss(lambda xt, t: model(xt, t, y), x, "logit_normal", gen)

    history: list[dict[str, float]] = []
    step, loss_value, interrupted = 0, float("nan"), False
    t0 = time.perf_counter()
    elapsed = 0.0
    model.train()
    try:
        while step < steps and not (cfg.seconds and elapsed >= cfg.seconds):
            frac = max(step / steps, elapsed / cfg.seconds if cfg.seconds else 0.0)
            for group in opt.param_groups:
                group["lr"] = _lr(frac, lr)
            loss = loss_of(torch.randint(0, len(x_all), (batch,), generator=gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if not isinstance(model, VQVAE):
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    keep = min(0.999, (1 + step) / (10 + step))
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(pm, 1 - keep)
            step += 1
            elapsed = time.perf_counter() - t0
            loss_value = float(loss.detach())
            history.append({"step": step, "elapsed": round(elapsed, 3), "loss": round(loss_value, 5)})
            if on_progress:
                on_progress(VisionProgress(step, steps, elapsed, cfg.seconds, loss_value, step * batch / max(elapsed, 1e-9)))
    except KeyboardInterrupt:   # keep what was learnt: the caller still saves and judges it
        interrupted = True
    trained: nn.Module = (ema if ema is not None else model).eval()
    metric, score = _judge(trained, held, cfg)
    meta = {"classes": class_names(cfg.kind, cfg.labels), "image_size": size, "pixel_range": [lo, hi]}
    if cfg.kind == "vqvae":
        del meta["classes"]
    if cfg.kind == "vit":
        meta["labels"] = cfg.labels
    return VisionResult(cfg.kind, trained, meta, step, elapsed, loss_value, metric, score,
                        step * batch / max(elapsed, 1e-9), history, held, interrupted)


@torch.no_grad()
def _judge(model: nn.Module, held: ShapesData, cfg: VisionTrainConfig) -> tuple[str, float]:
    if isinstance(model, ViT):
        target = _targets(held, cfg.labels)
        return "held-out accuracy", float((classify(model, held.images).argmax(-1) == target).float().mean())
    if isinstance(model, VQVAE):
        x = held.images * 2 - 1
        recon = torch.cat([model(x[i:i + 128])[0] for i in range(0, len(x), 128)])
        return "held-out PSNR dB", float(psnr((recon.clamp(-1, 1) + 1) / 2, held.images))
    assert isinstance(model, DiT)
    y = torch.arange(model.cfg.n_classes).repeat_interleave(2)               # two samples a class
    images = generate(model, y, steps=10, guidance=3.0, seed=cfg.seed)
    return "colour as asked", float((colour_of(images) == y % len(COLOURS)).float().mean())


@torch.no_grad()
def classify(model: ViT, images: Tensor) -> Tensor:
    """images (N, 3, S, S) in [0, 1] -> class probabilities (N, K)."""
    model.eval()
    return torch.cat([model(images[i:i + 256]).softmax(-1) for i in range(0, len(images), 256)])


@torch.no_grad()
def generate(model: DiT, y: Tensor, *, steps: int = 20, guidance: float = 3.0, seed: int = 0,
             method: Literal["euler", "heun"] = "heun", on_step: Callable[[int], None] | None = None) -> Tensor:
    """Class ids y (N,) -> images (N, 3, S, S) in [0, 1]: Heun (or Euler) steps from seeded noise, with
    classifier-free guidance `guidance` (1 = the plain conditional model). `on_step(done)` follows the
    sampler (a progress bar); raising in it stops the sampling."""
    model.eval()
    s = model.cfg.image_size
    x0 = torch.randn(len(y), model.cfg.in_channels, s, s, generator=torch.Generator().manual_seed(seed))
    velocity = guided(model, y, guidance)
    per_step, calls = (2 if method == "heun" else 1), [0]

    def counted(x: Tensor, t: Tensor) -> Tensor:
        out = velocity(x, t)
        calls[0] += 1
        if on_step is not None and calls[0] % per_step == 0:
            on_step(calls[0] // per_step)
        return out

    out = sample(counted, x0, steps=steps, method=method)
    return (out.clamp(-1, 1) + 1) / 2


def colour_of(images: Tensor) -> Tensor:
    """The palette colour nearest the mean of each image's lit pixels: (N, 3, S, S) in [0, 1] -> (N,)."""
    lit = (images.amax(dim=1, keepdim=True) > 0.4).float()                   # (N, 1, S, S)
    mean = (images * lit).sum((2, 3)) / lit.sum((2, 3)).clamp_min(1)        # (N, 3)
    return torch.cdist(mean, torch.from_numpy(COLOUR_RGB)).argmin(dim=1)


def save_grid(images: Tensor, rows: int, path: str | Path, scale: int = 3) -> Path:
    """images (N, 3, S, S) in [0, 1] -> one PNG of `rows` rows, upscaled by `scale`, 1-pixel grey gaps."""
    from PIL import Image

    n, _, h, w = images.shape
    cols = (n + rows - 1) // rows
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, 3), 0.5, np.float32)
    arr = images.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = arr[i]
    img = Image.fromarray((canvas * 255).round().astype(np.uint8))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(out)
    return out


def plot_curve(history: list[dict[str, float]], path: str | Path, title: str, ylabel: str) -> Path:
    """The training loss by step (raw and a running mean) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [h["step"] for h in history]
    ys = [h["loss"] for h in history]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(xs, ys, alpha=0.25, label="loss")
    ax.plot(xs, running_mean(ys), label="running mean")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log" if ys and min(ys) > 0 else "linear")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
