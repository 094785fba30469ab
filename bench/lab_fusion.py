"""Early-fusion mixed-modal LM on captioned shapes, trained on CPU within a stated budget (arch/fusion.py).

1. VQ-VAE (arch/vqvae.py) on 16x16 coloured shapes (arch/data.py, seed 0): --vq-down 2 stride-2 stages give
   4x4 = 16 tokens per image from --vq-codes codes. Prints held-out PSNR and codebook use.
2. Fusion LM (arch/fusion.py: one vocabulary of markers, characters and VQ codes; QK-norm, z-loss) on
   "<bos> caption <boi> 16 codes <eoi> <eos>" and the reverse order "<bos> <boi> codes <eoi> caption <eos>",
   half each, next-token loss on every token, --lm-steps steps.
3. Judges trained in the same run, as bench/lab_gen.py does: a ViT (arch/vit.py) names the shape; the
   colour is the palette colour nearest the mean lit pixel. Their accuracy on real held-out images and on
   VQ-VAE reconstructions of them is printed: what a perfect token model could score.
4. Text -> image: for each of the 12 captions "a <colour> <shape>", --per-class samples from the prompt
   "<bos> caption" (the model itself must emit <boi>; then exactly 16 codes are forced, and <eoi>), decoded
   by the VQ-VAE and judged: shape / colour / both correct vs chance 1/3, 1/4, 1/12, at each of
   --temperatures. Grid of the first saved as docs/figures/fusion_samples.png (one row per caption).
5. Image -> text: held-out images encoded to codes, prompt "<bos> <boi> codes <eoi>", greedy caption with
   images disallowed; exact-caption, shape-word and colour-word accuracy.
Budgets are steps, not seconds (a busy machine changes the time, not the result); time is printed.
Measured here (2 cores shared with two other training jobs, --threads 1, defaults), 230-293 s in all:
VQ-VAE 3,000 steps in 48 s -> 25.9 dB, perplexity 192 of 256 codes; ViT 600 steps in 19 s; judges on real
held-out images shape 98.5 % / colour 100 %, on their VQ-VAE reconstructions 85.0 % / 100 % (~ a perfect token model);
fusion LM 0.84 M parameters, 2,000 steps x 32 in 184-221 s (final loss 0.62). Text -> image, 96 samples at
temperature 1: 0 without an image, shape right 74.0 % (chance 33.3 %), colour 89.6 % (25 %), both 69.8 %
(8.3 %); at temperature 0.7: shape 84.4 % (the ViT gives reconstructions of real images 85.0 %), colour
97.9 %, both 82.3 %. Image -> text on 600 held-out images: exact caption 94.7 % (chance 8.3 %), shape word
94.7 %, colour word 100 %. At temperature 1 (the grid) some samples mix two colours or shapes: the 16 codes
are sampled one by one and a rare code can break the image.

    .venv/bin/python bench/lab_fusion.py [--threads 1] [--vq-steps 3000] [--lm-steps 2000]
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

from imagine.arch.data import COLOUR_RGB, COLOURS, SHAPES, ShapesData, caption, shapes
from imagine.arch.fusion import FusionVocab, collate, fusion_lm, generate_mixed, interleave, segments
from imagine.arch.lm import LM
from imagine.arch.train_vision import save_grid
from imagine.arch.vit import ViT, ViTConfig
from imagine.arch.vqvae import VQVAE, VQVAEConfig, perplexity, psnr

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def lr_at(frac: float, lr: float, warm: float = 0.03) -> float:
    """Warm-up then cosine over the run's progress."""
    frac = min(frac, 1.0)
    return lr * frac / warm if frac < warm else lr * 0.5 * (1 + np.cos(np.pi * (frac - warm) / (1 - warm)))


def colour_of(images: Tensor) -> Tensor:
    """The palette colour nearest the mean of each image's lit pixels: (N, 3, H, W) in [0, 1] -> (N,)."""
    lit = (images.amax(dim=1, keepdim=True) > 0.4).float()
    mean = (images * lit).sum((2, 3)) / lit.sum((2, 3)).clamp_min(1)
    return torch.cdist(mean, torch.from_numpy(COLOUR_RGB)).argmin(dim=1)


def train_vqvae(args: argparse.Namespace) -> VQVAE:
    train = shapes(args.n_train, seed=0, size=args.size).images * 2 - 1
    held = shapes(512, seed=1, size=args.size).images * 2 - 1
    cfg = VQVAEConfig(hidden=48, n_res=2, downsample=args.vq_down, codebook_size=args.vq_codes, code_dim=32)
    torch.manual_seed(0)
    model = VQVAE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(args.vq_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step / args.vq_steps, 3e-3)
        loss, _, q = model.loss(train[torch.randint(0, len(train), (32,), generator=gen)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            print(f"  vqvae step {step + 1:5d} {time.perf_counter() - t0:6.1f}s loss {loss.item():.5f} "
                  f"perplexity {q.perplexity.item():.1f}", flush=True)
    model.eval()
    with torch.no_grad():
        recon, q = model(held)
    print(f"VQ-VAE: {args.vq_steps} steps in {time.perf_counter() - t0:.0f} s; held-out PSNR "
          f"{psnr((recon.clamp(-1, 1) + 1) / 2, (held + 1) / 2).item():.2f} dB; "
          f"{q.codes.shape[1]}x{q.codes.shape[2]} tokens, perplexity {perplexity(q.codes, cfg.codebook_size).item():.1f}"
          f" of {cfg.codebook_size} codes", flush=True)
    return model


def train_vit(args: argparse.Namespace) -> Callable[[Tensor], Tensor]:
    """A ViT trained here to name the shape (images in [0, 1])."""
    size = args.size
    cfg = ViTConfig(image_size=(size, size), patch_size=(size // 4, size // 4), n_classes=len(SHAPES),
                    n_layer=3, n_head=4, n_embd=64)
    torch.manual_seed(0)
    model = ViT(cfg)
    train = shapes(6000, seed=10, size=size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for step in range(args.vit_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step / args.vit_steps, 1e-3)
        idx = torch.randint(0, len(train), (64,), generator=gen)
        loss = F.cross_entropy(model(train.images[idx]), train.shape[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    print(f"ViT judge: {args.vit_steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)

    def judge(images: Tensor) -> Tensor:
        with torch.no_grad():
            return model(images).argmax(-1)

    return judge


def encode(vq: VQVAE, images: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.cat([vq.encode(images[i:i + 256] * 2 - 1).codes for i in range(0, len(images), 256)])


def train_lm(vocab: FusionVocab, codes: Tensor, captions: list[str], args: argparse.Namespace) -> LM:
    torch.manual_seed(0)
    model = fusion_lm(vocab, block_size=48, n_layer=args.lm_layers, n_head=4, n_embd=args.lm_dim)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lm_lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    # every example in both orders, padded once: rows 0..N-1 caption first, N..2N-1 image first
    all_in, all_tgt = collate([interleave(vocab, [cap, c]) for cap, c in zip(captions, codes)] +
                              [interleave(vocab, [c, cap]) for cap, c in zip(captions, codes)])
    for step in range(args.lm_steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step / args.lm_steps, args.lm_lr)
        idx = torch.randint(0, len(all_in), (args.batch,), generator=gen)
        inputs, targets = all_in[idx], all_tgt[idx]
        _, loss = model.train()(inputs, targets)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 250 == 0:
            print(f"  lm    step {step + 1:5d} {time.perf_counter() - t0:6.1f}s loss {loss.item():.4f}", flush=True)
    print(f"fusion LM: {model.num_params() / 1e6:.2f} M parameters, vocabulary {vocab.size} ({len(vocab.chars)} "
          f"characters, {vocab.n_codes} codes, 5 markers), {args.lm_steps} steps x batch {args.batch} in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return model.eval()


def text_to_image(model: LM, vq: VQVAE, vocab: FusionVocab, args: argparse.Namespace,
                  judge: Callable[[Tensor], Tensor], grid: int, temperature: float, save: bool) -> None:
    gen = torch.Generator().manual_seed(123)
    images, want_shape, want_colour, no_image = [], [], [], 0
    t0 = time.perf_counter()
    for s in range(len(SHAPES)):
        for c in range(len(COLOURS)):
            prompt = interleave(vocab, [caption(s, c)])[0][:-1][None].repeat(args.per_class, 1)   # no <eos>
            out = generate_mixed(model, vocab, prompt, vocab.image_tokens + 3, temperature=temperature,
                                 top_k=args.top_k, generator=gen)
            for row in out:
                found = [p for p in segments(vocab, row[prompt.shape[1]:]) if isinstance(p, Tensor)]
                codes = found[0] if found and found[0].numel() == vocab.image_tokens else None
                if codes is None:
                    no_image += 1
                    images.append(torch.zeros(3, args.size, args.size))
                else:
                    with torch.no_grad():
                        img = vq.decode_codes(codes.view(1, grid, grid))[0]
                    images.append(((img.clamp(-1, 1) + 1) / 2))
                want_shape.append(s)
                want_colour.append(c)
    imgs = torch.stack(images)
    shape_ok = judge(imgs) == torch.tensor(want_shape)
    colour_ok = colour_of(imgs) == torch.tensor(want_colour)
    n = len(imgs)
    print(f"text -> image: {n} samples (temperature {temperature}, top-k {args.top_k}) in "
          f"{time.perf_counter() - t0:.1f} s; {no_image} without an image; shape right "
          f"{shape_ok.float().mean().item():.1%} (chance {1 / len(SHAPES):.1%}), colour right "
          f"{colour_ok.float().mean().item():.1%} (chance {1 / len(COLOURS):.1%}), both "
          f"{(shape_ok & colour_ok).float().mean().item():.1%} (chance {1 / (len(SHAPES) * len(COLOURS)):.1%})")
    if not save:
        return
    path = FIGURES / "fusion_samples.png"
    save_grid(imgs, len(SHAPES) * len(COLOURS), path, scale=4)
    print(f"  saved {path} (row = caption: " + ", ".join(caption(s, c) for s in range(len(SHAPES))
                                                         for c in range(len(COLOURS))) + ")")


def image_to_text(model: LM, vocab: FusionVocab, codes: Tensor, held: ShapesData) -> None:
    t0 = time.perf_counter()
    words, exact, shape_ok, colour_ok = [], 0, 0, 0
    prompts = torch.stack([interleave(vocab, [c])[0][:-1] for c in codes])      # "<bos> <boi> codes <eoi>"
    out = torch.cat([generate_mixed(model, vocab, prompts[i:i + 100], 24, temperature=0.0, allow_images=False)
                     for i in range(0, len(prompts), 100)])
    for row, s, c in zip(out, held.shape.tolist(), held.colour.tolist()):
        text = vocab.decode_text(row[prompts.shape[1]:].tolist())
        words.append(text)
        exact += text == caption(s, c)
        shape_ok += SHAPES[s] in text.split()
        colour_ok += COLOURS[c] in text.split()
    n = len(codes)
    print(f"image -> text: {n} held-out images, greedy, in {time.perf_counter() - t0:.1f} s; exact caption "
          f"{exact / n:.1%} (chance {1 / 12:.1%}), shape word {shape_ok / n:.1%}, colour word {colour_ok / n:.1%};"
          f" e.g. {words[:3]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--vq-steps", type=int, default=3000)
    ap.add_argument("--vq-down", type=int, default=2)
    ap.add_argument("--vq-codes", type=int, default=256)
    ap.add_argument("--vit-steps", type=int, default=600)
    ap.add_argument("--lm-steps", type=int, default=2000)
    ap.add_argument("--lm-dim", type=int, default=128)
    ap.add_argument("--lm-layers", type=int, default=4)
    ap.add_argument("--lm-lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--temperatures", default="1.0,0.7", help="comma-separated; the first is drawn")
    ap.add_argument("--top-k", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    vq = train_vqvae(args)
    judge = train_vit(args)
    held = shapes(600, seed=11, size=args.size)
    with torch.no_grad():
        recon = (vq(held.images * 2 - 1)[0].clamp(-1, 1) + 1) / 2
    for name, imgs in (("real held-out images", held.images), ("their VQ-VAE reconstructions", recon)):
        print(f"judges on {name}: shape {(judge(imgs) == held.shape).float().mean().item():.1%}, colour "
              f"{(colour_of(imgs) == held.colour).float().mean().item():.1%}")
    data = shapes(args.n_train, seed=0, size=args.size)
    codes = encode(vq, data.images)                                              # (N, h, w)
    vocab = FusionVocab.for_texts(data.captions, args.vq_codes, codes.shape[1] * codes.shape[2])
    model = train_lm(vocab, codes, data.captions, args)
    for i, temp in enumerate(float(t) for t in args.temperatures.split(",")):
        text_to_image(model, vq, vocab, args, judge, codes.shape[1], temp, save=i == 0)
    image_to_text(model, vocab, encode(vq, held.images), held)
    print(f"total {time.perf_counter() - t_start:.0f} s at {args.threads} thread(s)")


if __name__ == "__main__":
    main()
