"""The early-fusion recipe (arch/fusion.py) on captioned shapes, shared by `imagine lab train fusion` and
bench/lab_fusion.py.

1. A VQ-VAE (train_vision's `vqvae` loop) turns 16x16 shapes into 4x4 = 16 codes of 256, unless a trained
   one is passed in.
2. The fusion LM learns "<bos> caption <boi> codes <eoi> <eos>" and the reverse "<bos> <boi> codes <eoi>
   caption <eos>" (every training image in both orders), next-token loss on every token: AdamW, warm-up
   then cosine, gradient clipping, QK-norm and z-loss as Chameleon.
3. Judged cheaply: held-out images captioned greedily (exact-caption rate, chance 1/12), and a grid of
   samples per caption whose colour (the palette colour nearest their lit pixels) is compared with the
   caption's (chance 1/4). Telling the shape needs a trained judge: bench/lab_fusion.py trains one.

Data (`data`): "one" shape a picture ("a red circle", data.shapes), "two" side by side ("a red circle left
of a blue square", data.two_shapes), or "both" (half each). Two shapes need more pixels (32x32 -> 8x8 = 64
codes at the default downsample); the VQ-VAE is still trained on single shapes of that side (it is
convolutional, and it sees 4x4-pixel patches), and for two-shape data the trainer reports its PSNR on
held-out two-shape images too. With two shapes, a sample's colour is judged per half (left, right).

Budgets: LM steps, VQ-VAE steps, and optionally seconds for the whole run (the VQ-VAE gets `vq_share`
of them and the LM what is left); the first limit reached ends a phase. Ctrl-C keeps what was learnt.
Shapes: N images, S image side, h = w code grid, T tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .data import COLOURS, SHAPES, ShapesData, caption, shapes, two_shapes
from .fusion import FusionConfig, FusionModel, FusionVocab, collate, interleave
from .lm import LMConfig
from .train_vision import VisionProgress, VisionTrainConfig, colour_of, train_vision
from .vqvae import VQVAE

__all__ = ["FusionTrainConfig", "FusionProgress", "FusionResult", "VQ_MODEL", "LM_MODEL", "SAMPLE_TEMPERATURE",
           "SAMPLE_TOP_K", "DATA", "train_fusion", "captions_of", "two_captions_of", "two_slots", "fusion_data",
           "half_colours", "judge_captions", "sample_grid"]

VQ_MODEL: dict[str, Any] = dict(hidden=48, n_res=2, downsample=2, codebook_size=256, code_dim=32)
LM_MODEL: dict[str, Any] = dict(n_layer=4, n_head=4, n_embd=128, qk_norm=True, z_loss=1e-4)
SAMPLE_TEMPERATURE, SAMPLE_TOP_K = 0.8, 40      # the native engine's defaults, so the figures are what `draw` gives
GRID_PER_CAPTION = 8
DATA = ("one", "two", "both")           # one shape a picture, two side by side, or half each


@dataclass
class FusionTrainConfig:
    steps: int = 2000                   # LM optimizer steps
    vq_steps: int = 3000                # VQ-VAE steps (unused when a trained VQ-VAE is passed in)
    seconds: float | None = None        # the whole run's time budget; the first of steps and seconds ends a phase
    vq_share: float = 0.2               # of `seconds`, what the VQ-VAE may use
    size: int = 16                      # image side S
    data: str = "one"                   # DATA: what the captioned pictures show
    seed: int = 0                       # weights, batches and training data; held-out data is seed + 1000
    n_train: int = 6000
    batch_size: int = 32                # sequences per LM step
    lr: float = 2e-3
    vq_batch_size: int = 32
    vq_lr: float = 3e-3
    threads: int | None = None
    model: dict[str, Any] = field(default_factory=dict)      # LMConfig overrides
    vq_model: dict[str, Any] = field(default_factory=dict)   # VQVAEConfig overrides


@dataclass
class FusionProgress:
    phase: str                          # "vqvae" or "lm"
    step: int
    max_steps: int
    elapsed: float
    max_seconds: float | None
    loss: float
    images_per_s: float                 # images (VQ-VAE) or sequences (LM) a second


@dataclass
class FusionResult:
    model: FusionModel
    meta: dict[str, Any]
    steps: int
    vq_steps: int
    seconds: float                      # LM training time
    vq_seconds: float
    loss: float
    vq_psnr: float | None               # held-out PSNR dB of the VQ-VAE trained here (None when given one)
    caption_exact: float                # held-out images captioned exactly right
    colour_right: float                 # grid samples in the caption's colour (two shapes: both halves right)
    samples: Tensor                     # (len(captions) * GRID_PER_CAPTION, 3, S, S) in [0, 1], one row per caption
    captions: list[str]
    sequences_per_s: float
    history: list[dict[str, float]]
    vq_history: list[dict[str, float]]
    interrupted: bool = False
    vq_psnr_two: float | None = None    # held-out PSNR dB of the VQ-VAE on two-shape images (data two or both)


def _lr(frac: float, lr: float, warm: float = 0.03) -> float:
    frac = min(frac, 1.0)
    return lr * frac / warm if frac < warm else lr * 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm)))


def captions_of() -> list[str]:
    """The 12 captions "a <colour> <shape>", shape-major (a grid row each)."""
    return [caption(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))]


def two_captions_of(n: int = 12, seed: int = 7) -> list[str]:
    """n distinct two-shape captions "a <colour> <shape> left of a <colour> <shape>", drawn from a seed."""
    out: list[str] = []
    for cap in two_shapes(20 * n, seed=seed, size=8).captions:
        if cap not in out:
            out.append(cap)
    return out[:n]


def fusion_data(kind: str, n: int, seed: int, size: int) -> ShapesData:
    """`n` captioned pictures of DATA `kind`; "both" alternates one- and two-shape images (even rows one)."""
    if kind not in DATA:
        raise ValueError(f"data={kind!r} is not one of {', '.join(DATA)}")
    if kind == "one":
        return shapes(n, seed=seed, size=size)
    if kind == "two":
        return two_shapes(n, seed=seed, size=size)
    one, two = shapes((n + 1) // 2, seed=seed, size=size), two_shapes(n // 2, seed=seed + 500, size=size)
    order = torch.arange(n)
    pick = torch.where(order % 2 == 0, order // 2, len(one) + order // 2)           # one, two, one, two, ..
    images = torch.cat([one.images, two.images])[pick]
    captions = [(one.captions + two.captions)[int(i)] for i in pick]
    return ShapesData(images, torch.cat([one.shape, two.shape])[pick], torch.cat([one.colour, two.colour])[pick],
                      captions)


def half_colours(images: Tensor) -> tuple[Tensor, Tensor]:
    """The palette colour of the left and of the right half of each image (N, 3, S, S) in [0, 1]."""
    w = images.shape[-1]
    return colour_of(images[..., : w // 2]), colour_of(images[..., w - w // 2:])


def two_slots(text: str) -> tuple[str, str, str, str] | None:
    """(left colour, left shape, right colour, right shape) of "a C S left of a C S", or None."""
    parts = text.split(" left of ")
    if len(parts) != 2:
        return None
    a, b = parts[0].split(), parts[1].split()
    if len(a) != 3 or len(b) != 3:
        return None
    return a[1], a[2], b[1], b[2]


def _two_want(captions: list[str], per_caption: int) -> tuple[Tensor, Tensor]:
    """Colour ids of the left and right shape each caption asks for, `per_caption` times each."""
    left, right = [], []
    for caption in captions:  # each caption must parse: a dropped one would shift every later want
        slots = two_slots(caption)
        if slots is None:
            raise ValueError(f"not a two-shape caption: {caption!r}")
        left.append(COLOURS.index(slots[0]))
        right.append(COLOURS.index(slots[2]))
    return (torch.tensor(left).repeat_interleave(per_caption), torch.tensor(right).repeat_interleave(per_caption))


def train_fusion(cfg: FusionTrainConfig, vqvae: VQVAE | None = None,
                 on_progress: Callable[[FusionProgress], None] | None = None) -> FusionResult:
    """Train (or take) the VQ-VAE, then the fusion LM on its codes; judge both directions on held-out data."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.data not in DATA:
        raise ValueError(f"data={cfg.data!r} is not one of {', '.join(DATA)}")
    if min(cfg.steps, cfg.vq_steps, cfg.batch_size, cfg.vq_batch_size, cfg.n_train) < 1:
        raise ValueError("steps, vq_steps, batch_size, vq_batch_size and n_train must be at least 1")
    down = vqvae.cfg.downsample if vqvae is not None else int({**VQ_MODEL, **cfg.vq_model}["downsample"])
    if cfg.size % 2 ** down:
        raise ValueError(f"the image side {cfg.size} must be divisible by {2 ** down} (the VQ-VAE halves it {down} times)")
    t_start = time.perf_counter()
    vq_psnr, vq_steps, vq_seconds, vq_history, interrupted = None, 0, 0.0, [], False
    if vqvae is None:
        def vq_report(p: VisionProgress) -> None:
            if on_progress:
                on_progress(FusionProgress("vqvae", p.step, p.max_steps, p.elapsed, p.max_seconds, p.loss,
                                           p.images_per_s))

        vq = train_vision(VisionTrainConfig(
            "vqvae", steps=cfg.vq_steps, seconds=cfg.seconds * cfg.vq_share if cfg.seconds else None, size=cfg.size,
            seed=cfg.seed, n_train=cfg.n_train, batch_size=cfg.vq_batch_size, lr=cfg.vq_lr,
            model={**VQ_MODEL, **cfg.vq_model}), vq_report)
        assert isinstance(vq.model, VQVAE)
        vqvae, vq_psnr, vq_steps, vq_seconds = vq.model, vq.score, vq.steps, vq.seconds
        vq_history, interrupted = vq.history, vq.interrupted
    vqvae.eval()
    data = fusion_data(cfg.data, cfg.n_train, seed=cfg.seed, size=cfg.size)
    with torch.no_grad():
        codes = torch.cat([vqvae.encode(data.images[i:i + 256] * 2 - 1).codes
                           for i in range(0, len(data.images), 256)])                   # (N, h, w)
    if codes.shape[1] != codes.shape[2] or cfg.size % codes.shape[1]:
        raise ValueError(f"the VQ-VAE makes a {codes.shape[1]}x{codes.shape[2]} grid from {cfg.size}x{cfg.size} images")
    vocab = FusionVocab.for_texts(data.captions, vqvae.cfg.codebook_size, codes.shape[1] * codes.shape[2])
    # every example in both orders, padded once: rows 0..N-1 caption first, N..2N-1 image first
    inputs, targets = collate([interleave(vocab, [cap, c]) for cap, c in zip(data.captions, codes)] +
                              [interleave(vocab, [c, cap]) for cap, c in zip(data.captions, codes)])
    lm_cfg = LMConfig(**{"vocab_size": vocab.size, "block_size": max(48, inputs.shape[1] + 8), **LM_MODEL,
                         **cfg.model})
    torch.manual_seed(cfg.seed)
    model = FusionModel(FusionConfig(vocab.chars, cfg.size, lm_cfg, vqvae.cfg))
    model.vqvae.load_state_dict(vqvae.state_dict())
    model.vqvae.eval()
    lm = model.lm
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    budget = max(1.0, cfg.seconds - (time.perf_counter() - t_start)) if cfg.seconds else None
    history: list[dict[str, float]] = []
    step, loss_value, elapsed = 0, float("nan"), 0.0
    t0 = time.perf_counter()
    lm.train()
    try:
        while not interrupted and step < cfg.steps and not (budget and elapsed >= budget):
            frac = max(step / cfg.steps, elapsed / budget if budget else 0.0)
            for group in opt.param_groups:
                group["lr"] = _lr(frac, cfg.lr)
            idx = torch.randint(0, len(inputs), (cfg.batch_size,), generator=gen)
            _, loss = lm(inputs[idx], targets[idx])
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
            opt.step()
            step += 1
            elapsed = time.perf_counter() - t0
            loss_value = float(loss.detach())
            history.append({"step": step, "elapsed": round(elapsed, 3), "loss": round(loss_value, 5)})
            if on_progress:
                on_progress(FusionProgress("lm", step, cfg.steps, elapsed, budget, loss_value,
                                           step * cfg.batch_size / max(elapsed, 1e-9)))
    except KeyboardInterrupt:   # keep what was learnt: the caller still saves and judges it
        interrupted = True
    model.eval()
    held = fusion_data(cfg.data, 240, seed=cfg.seed + 1000, size=cfg.size)
    exact = judge_captions(model, held.images, held.captions)
    vq_psnr_two = None
    if cfg.data != "one":
        from .vqvae import psnr

        two = two_shapes(240, seed=cfg.seed + 1000, size=cfg.size).images
        with torch.no_grad():
            vq_psnr_two = float(psnr((model.vqvae(two * 2 - 1)[0].clamp(-1, 1) + 1) / 2, two))
    if cfg.data == "two":
        captions = two_captions_of()
        samples = sample_grid(model, captions, GRID_PER_CAPTION, seed=cfg.seed)
        (left, right), (want_left, want_right) = half_colours(samples), _two_want(captions, GRID_PER_CAPTION)
        colour_right = float(((left == want_left) & (right == want_right)).float().mean())
    else:
        captions = captions_of()
        samples = sample_grid(model, captions, GRID_PER_CAPTION, seed=cfg.seed)
        want = torch.arange(len(COLOURS)).repeat(len(SHAPES)).repeat_interleave(GRID_PER_CAPTION)
        colour_right = float((colour_of(samples) == want).float().mean())
    words = sorted({w for cap in data.captions for w in cap.split()})
    meta = {"image_size": cfg.size, "pixel_range": [-1.0, 1.0], "words": words}
    return FusionResult(model, meta, step, vq_steps, elapsed, vq_seconds, loss_value, vq_psnr, exact, colour_right,
                        samples, captions, step * cfg.batch_size / max(elapsed, 1e-9), history, vq_history,
                        interrupted, vq_psnr_two)


def judge_captions(model: FusionModel, images: Tensor, want: list[str]) -> float:
    """The fraction of images (N, 3, S, S) in [0, 1] whose greedy caption is exactly `want`'s."""
    said = model.describe(images * 2 - 1)
    return sum(a == b for a, b in zip(said, want)) / max(1, len(want))


def sample_grid(model: FusionModel, captions: list[str], per_caption: int, *, seed: int = 0,
                temperature: float = SAMPLE_TEMPERATURE, top_k: int | None = SAMPLE_TOP_K) -> Tensor:
    """`per_caption` samples of each caption, (len(captions) * per_caption, 3, S, S) in [0, 1], caption-major."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([model.draw(cap, per_caption, temperature=temperature, top_k=top_k, generator=gen)
                      for cap in captions])
