"""The lab's image generators trained on CPU within a stated budget: a VQ-VAE and a class-conditional DiT.

1. VQ-VAE (arch/vqvae.py) on 32x32 coloured shapes (arch/data.py, seed 0) for --vq-steps (capped by
   --vq-seconds); 8x8 tokens (f=4) of 1,024 codes by default (--vq-down 1: 16x16 tokens, f=2). Prints
   held-out PSNR (goal >= 30 dB), codebook perplexity / usage / restarts and time; saves originals over
   reconstructions as docs/figures/vqvae_recon_f4.png.
2. DiT (arch/dit.py) on shapes drawn at 16x16 (--size), patch 2 (64 tokens), width 96, depth 4 (0.71 M
   parameters), conditioned on shape x colour (12 classes), trained by flow matching on pixels in [-1, 1]
   for --dit-steps of batch 32 (lr 2e-3, warm-up + cosine, logit-normal t, EMA weights for sampling);
   samples --per-class of every class with 20 Heun steps at several guidance scales and saves 8 per class
   of the first as docs/figures/dit_samples.png (one row per class). Each sample is judged by its colour
   (nearest palette colour of its lit pixels) and, when arch/vit.py is there, by a ViT trained here on
   real images to name the shape.
Baseline in the same run: each judge's accuracy on real held-out images (what a perfect generator scores).
Budgets are steps, not seconds, so that a busy machine changes the time but not the result; time is
printed (the --*-seconds caps only stop a run that is far slower than planned).

Measured (2 cores shared with two other training jobs, --threads 1): VQ-VAE 5,000 steps in 194 s ->
32.4 dB. DiT, budget 5,000 steps of batch 32: 612 s at 1 thread on the loaded machine (82 ms a step when
it was idle, so about 7 minutes), ViT judge 99.2 % on real held-out shapes; samples at guidance 1.5 / 3 / 5:
ViT-judged shape 86.2 / 91.7 / 95.1 % (goal >= 90 %), colour 100 % at each; 384 samples take about 50 s
per guidance scale.
How the DiT got there (issue 19), all 5,000 steps, one ViT judge (98.7 % on real), 384 samples, 20 Heun
steps, training time at 1 thread on the loaded machine (idle: 37 ms a step at patch 4, 82 at patch 2 w96):
    patch 4, width 128 (1.27 M, the old default)  guidance 1/2/3/5: 53 / 66 / 76 / 81 %   640 s
      same with uniform t instead of logit-normal  guidance 1/2: 42 / 43 %
    patch 2, width 64 (0.32 M)                     guidance 3/5/8: 69 / 75 / 81 %        359 s
      40 Heun steps instead of 20, guidance 5: 76 % (sampling steps are not the limit)
    patch 2, width 96 (0.71 M)                     guidance 3/5:   92 / 93 %             663 s
(The old figure, 64.6 % at guidance 3 for patch 4, was 96 samples judged by another run's ViT.)
Patch 2 alone does not do it (width 64 is worse than patch 4 at width 128); patch 2 with the width to use
its 64 tokens does. Triangles stay the hardest shape (84-88 %), circles the easiest (95-99 %).

    .venv/bin/python bench/lab_gen.py [--threads 2] [--vq-steps 5000] [--dit-steps 5000] [--skip vq|dit]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from imagine.arch.data import COLOUR_RGB, COLOURS, SHAPES, shapes
from imagine.arch.dit import DiT, DiTConfig, flow_matching_loss, guided, sample
from imagine.arch.train_vision import save_grid
from imagine.arch.vqvae import VQVAE, VQVAEConfig, perplexity, psnr

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def lr_at(frac: float, lr: float, warm: float = 0.03) -> float:
    """Warm-up then cosine over the run's progress `frac` (steps or seconds, whichever is further on)."""
    frac = min(frac, 1.0)
    if frac < warm:
        return lr * frac / warm
    return lr * 0.5 * (1 + np.cos(np.pi * (frac - warm) / (1 - warm)))


def train_vqvae(seconds: float, args: argparse.Namespace) -> VQVAE:
    train = shapes(args.n_train, seed=0).images * 2 - 1                       # (N, 3, 32, 32) in [-1, 1]
    held = shapes(512, seed=1).images * 2 - 1
    cfg = VQVAEConfig(hidden=args.vq_hidden, n_res=2, downsample=args.vq_down, codebook_size=args.vq_codes,
                      code_dim=32)
    torch.manual_seed(0)
    model = VQVAE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.vq_lr)
    gen = torch.Generator().manual_seed(0)
    step, t0 = 0, time.perf_counter()
    while (frac := max(step / args.vq_steps, (time.perf_counter() - t0) / seconds)) < 1:
        elapsed = time.perf_counter() - t0
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, args.vq_lr)
        x = train[torch.randint(0, len(train), (args.vq_batch,), generator=gen)]
        loss, recon, q = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"  vqvae step {step:5d} {elapsed:6.1f}s loss {loss.item():.5f} perplexity "
                  f"{q.perplexity.item():6.1f} usage {q.usage.item():.2f}", flush=True)
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        recon = torch.cat([model(held[i:i + 128])[0] for i in range(0, len(held), 128)])
        codes = torch.cat([model.encode(held[i:i + 128]).codes for i in range(0, len(held), 128)])
    score = psnr((recon.clamp(-1, 1) + 1) / 2, (held + 1) / 2).item()
    ppl = perplexity(codes, cfg.codebook_size).item()
    used = int((torch.bincount(codes.reshape(-1), minlength=cfg.codebook_size) > 0).sum())
    h = 32 >> cfg.downsample
    print(f"VQ-VAE: {step} steps in {train_s:.0f} s ({args.threads} threads); held-out PSNR {score:.2f} dB "
          f"(goal >= 30); {h}x{h} tokens of {cfg.codebook_size} codes: perplexity {ppl:.1f}, {used} codes used "
          f"on held-out, {model.quantizer.restarts} dead-code restarts in training")
    grid = torch.cat([held[:16], recon[:16]])
    path = FIGURES / f"vqvae_recon_f{2 ** cfg.downsample}.png"
    save_grid((grid + 1) / 2, 2, path)
    print(f"  saved {path} (top: originals, bottom: reconstructions)")
    return model


def colour_of(images: Tensor) -> Tensor:
    """The palette colour nearest the mean of each image's lit pixels: images (N, 3, H, W) in [0, 1] -> (N,)."""
    lit = (images.amax(dim=1, keepdim=True) > 0.4).float()                       # (N, 1, H, W)
    mean = (images * lit).sum((2, 3)) / lit.sum((2, 3)).clamp_min(1)           # (N, 3)
    return torch.cdist(mean, torch.from_numpy(COLOUR_RGB)).argmin(dim=1)


def shape_judge(seconds: float, size: int) -> tuple[Callable[[Tensor], Tensor], float] | None:
    """A ViT (arch/vit.py) trained here to name the shape; None when vit.py is not in the tree."""
    try:
        from imagine.arch import vit  # noqa: F401
    except ImportError:
        return None
    return _train_vit(vit, seconds, size)


def _train_vit(vit: object, seconds: float, size: int) -> tuple[Callable[[Tensor], Tensor], float]:
    mod = vit
    cfg = mod.ViTConfig(image_size=(size, size), patch_size=(size // 4, size // 4), n_classes=len(SHAPES), n_layer=3,  # type: ignore[attr-defined]
                        n_head=4, n_embd=64)
    model = mod.ViT(cfg)  # type: ignore[attr-defined]
    train, held = shapes(6000, seed=10, size=size), shapes(600, seed=11, size=size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for g in opt.param_groups:
            g["lr"] = lr_at(elapsed / seconds, 1e-3)
        idx = torch.randint(0, len(train), (64,), generator=gen)
        loss = F.cross_entropy(model(train.images[idx]), train.shape[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()

    def judge(images: Tensor) -> Tensor:
        with torch.no_grad():
            return model(images).argmax(-1)

    return judge, (judge(held.images) == held.shape).float().mean().item()


def train_dit(seconds: float, args: argparse.Namespace) -> DiT:
    data = shapes(args.n_train, seed=0, size=args.size)
    x_all, y_all = data.images * 2 - 1, data.class_id                          # 12 classes: shape x colour
    cfg = DiTConfig(image_size=args.size, patch=args.dit_patch, dim=args.dit_dim, depth=args.dit_depth,
                    n_head=args.dit_dim // 32, n_classes=len(SHAPES) * len(COLOURS), class_dropout=0.1)
    torch.manual_seed(0)
    model = DiT(cfg)
    ema = DiT(cfg)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=args.dit_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    step, t0 = 0, time.perf_counter()
    while (frac := max(step / args.dit_steps, (time.perf_counter() - t0) / seconds)) < 1:
        elapsed = time.perf_counter() - t0
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, args.dit_lr)
        idx = torch.randint(0, len(x_all), (args.batch,), generator=gen)
        y = model.drop_labels(y_all[idx], gen)
        loss = flow_matching_loss(lambda x, t: model(x, t, y), x_all[idx], args.t_dist, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        step += 1
        if step % 200 == 0:
            print(f"  dit   step {step:5d} {elapsed:6.1f}s loss {loss.item():.4f}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DiT: {n_params / 1e6:.2f} M parameters, {step} steps in {time.perf_counter() - t0:.0f} s "
          f"({args.threads} threads), batch {args.batch}")
    return ema.eval()


def sample_classes(model: DiT, per_class: int, steps: int, cfg_scale: float, method: str = "heun") -> tuple[Tensor, Tensor]:
    n_cls = model.cfg.n_classes
    y = torch.arange(n_cls).repeat_interleave(per_class)                       # (n_cls * per_class,)
    size = model.cfg.image_size
    x0 = torch.randn(len(y), 3, size, size, generator=torch.Generator().manual_seed(123))
    out = sample(guided(model, y, cfg_scale), x0, steps=steps, method=method)  # type: ignore[arg-type]
    return ((out.clamp(-1, 1) + 1) / 2), y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vq-steps", type=int, default=5000)
    ap.add_argument("--vq-seconds", type=float, default=900, help="a cap: the run stops at steps or seconds")
    ap.add_argument("--dit-steps", type=int, default=5000)
    ap.add_argument("--dit-seconds", type=float, default=900)
    ap.add_argument("--vit-seconds", type=float, default=60)
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=32, help="DiT batch")
    ap.add_argument("--vq-batch", type=int, default=16)
    ap.add_argument("--vq-down", type=int, default=2)
    ap.add_argument("--vq-codes", type=int, default=1024)
    ap.add_argument("--vq-hidden", type=int, default=48)
    ap.add_argument("--vq-lr", type=float, default=3e-3)
    ap.add_argument("--size", type=int, default=16, help="DiT image size (the VQ-VAE always uses 32)")
    ap.add_argument("--dit-patch", type=int, default=2)
    ap.add_argument("--dit-dim", type=int, default=96)
    ap.add_argument("--dit-depth", type=int, default=4)
    ap.add_argument("--dit-lr", type=float, default=2e-3)
    ap.add_argument("--t-dist", choices=["uniform", "logit_normal"], default="logit_normal")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", default="3,1.5,5", help="guidance scales, comma-separated; the first is drawn")
    ap.add_argument("--per-class", type=int, default=32, help="samples judged per class (8 of each are drawn)")
    ap.add_argument("--skip", choices=["vq", "dit"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.skip != "vq":
        train_vqvae(args.vq_seconds, args)
    if args.skip == "dit":
        return
    model = train_dit(args.dit_seconds, args)
    held = shapes(600, seed=11, size=args.size)
    print(f"colour judge on real held-out images: {(colour_of(held.images) == held.colour).float().mean().item():.1%}")
    judged = shape_judge(args.vit_seconds, args.size)
    if judged is None:
        print("shape judge: arch/vit.py not in the tree; no ViT verdict")
    else:
        print(f"ViT shape judge on real held-out images: {judged[1]:.1%}")
    for i, scale in enumerate(float(c) for c in args.cfg.split(",")):
        t0 = time.perf_counter()
        imgs, y = sample_classes(model, args.per_class, args.steps, scale)
        want_shape, want_colour = y // len(COLOURS), y % len(COLOURS)
        colour_ok = colour_of(imgs) == want_colour
        line = (f"guidance {scale}: {len(y)} samples ({args.steps} Heun steps) in {time.perf_counter() - t0:.1f} s; "
                f"colour as asked {colour_ok.float().mean().item():.1%}")
        if judged is not None:
            shape_ok = judged[0](imgs) == want_shape
            line += (f"; ViT says the asked shape {shape_ok.float().mean().item():.1%} (goal >= 90 %); "
                     f"both {(shape_ok & colour_ok).float().mean().item():.1%}")
        print(line)
        if i == 0:
            drawn = imgs.view(model.cfg.n_classes, args.per_class, *imgs.shape[1:])[:, :8].flatten(0, 1)
            save_grid(drawn, model.cfg.n_classes, FIGURES / "dit_samples.png")
            print(f"  saved {FIGURES / 'dit_samples.png'} (guidance {scale}; row = class: " +
                  ", ".join(f"{c} {s}" for s in SHAPES for c in COLOURS) + ")")


if __name__ == "__main__":
    main()
