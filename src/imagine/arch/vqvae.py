"""A VQ-VAE image tokenizer: conv encoder, EMA codebook with dead-code restart, conv decoder.

The codebook is learned by exponential moving averages of the encoder outputs assigned to each code
(van den Oord et al. 2017, appendix; Razavi et al. 2019) rather than by a codebook loss, because EMA
updates are stable without a tuned learning rate. Codes that stop being chosen are re-seeded from current
encoder outputs (Jukebox / Dhariwal et al. 2020), which keeps usage — and so perplexity — high. Gradients
cross the non-differentiable nearest-code lookup by the straight-through estimator. An optional VQGAN
(Esser et al. 2021) patch discriminator and feature-matching perceptual term sharpen edges.

Shapes: B batch, C image channels, H W image size, h w latent grid (H / 2**downsample), D code dim,
K codebook size, N vectors (B*h*w).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VQVAEConfig", "VQVAE", "VectorQuantizerEMA", "VQOutput", "PatchDiscriminator", "vqgan_losses",
           "perplexity", "psnr"]


@dataclass
class VQVAEConfig:
    in_channels: int = 3
    hidden: int = 64                  # conv width
    n_res: int = 2                    # residual blocks at the latent resolution, in encoder and decoder each
    downsample: int = 2               # stride-2 stages: 32x32 -> 8x8 tokens with 2
    codebook_size: int = 256          # K
    code_dim: int = 32                # D
    beta: float = 0.25                # commitment weight: keeps the encoder near the codes it picks
    decay: float = 0.99               # EMA decay of code counts and sums
    eps: float = 1e-5                 # Laplace smoothing of counts (no division by zero for unused codes)
    dead_fraction: float = 0.03       # a code is dead (re-seeded) when its EMA count < this x the uniform share

    def __post_init__(self) -> None:
        if self.downsample < 1:
            raise ValueError(f"downsample must be at least 1 stride-2 stage, got {self.downsample}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {self.decay}")


@dataclass
class VQOutput:
    z_q: Tensor              # (B, D, h, w) quantised latents carrying straight-through gradients
    codes: Tensor            # (B, h, w) code indices
    commit_loss: Tensor      # () beta * |z - sg(z_q)|^2
    perplexity: Tensor       # () exp(entropy of code use in this batch): 1 (one code) .. K (uniform)
    usage: Tensor            # () fraction of the K codes used at least once in this batch


def perplexity(codes: Tensor, k: int) -> Tensor:
    """exp(H(p)) of the empirical code distribution: the effective number of codes in use."""
    p = torch.bincount(codes.reshape(-1), minlength=k).float()
    p = p / p.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB over the whole batch (images in [0, data_range])."""
    mse = F.mse_loss(x.float(), y.float())
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-12))


class VectorQuantizerEMA(nn.Module):
    """Nearest-neighbour codebook whose entries are EMA means of the vectors assigned to them."""

    embed: Tensor
    cluster_size: Tensor
    embed_sum: Tensor
    initted: Tensor

    def __init__(self, k: int, dim: int, decay: float = 0.99, eps: float = 1e-5, beta: float = 0.25,
                 dead_fraction: float = 0.03) -> None:
        super().__init__()
        self.k, self.dim, self.decay, self.eps, self.beta = k, dim, decay, eps, beta
        self.dead_fraction = dead_fraction
        embed = torch.randn(k, dim)                                            # (K, D)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(k))                    # (K,) EMA assignment counts
        self.register_buffer("embed_sum", embed.clone())                       # (K, D) EMA assigned sums
        self.register_buffer("initted", torch.tensor(False))
        self.restarts = 0                                                      # codes re-seeded so far

    def assign(self, flat: Tensor) -> Tensor:
        """flat (N, D) -> index (N,) of the nearest code in squared Euclidean distance."""
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t()
                + self.embed.pow(2).sum(1)[None, :])                           # (N, K)
        return dist.argmin(dim=1)

    @torch.no_grad()
    def _sample(self, flat: Tensor, n: int) -> Tensor:
        """n rows of flat (N, D), with replacement only when N < n."""
        if flat.shape[0] >= n:
            return flat[torch.randperm(flat.shape[0], device=flat.device)[:n]].clone()
        return flat[torch.randint(0, flat.shape[0], (n,), device=flat.device)].clone()

    @torch.no_grad()
    def init_from(self, flat: Tensor) -> None:
        """Seed the codebook from data, so that no code starts far from every encoder output."""
        self.embed.copy_(self._sample(flat, self.k))
        self.embed_sum.copy_(self.embed)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def ema_update(self, flat: Tensor, idx: Tensor) -> None:
        """One EMA step of counts and sums, then restart codes whose count has decayed to nothing."""
        counts = torch.bincount(idx, minlength=self.k).type_as(flat)           # (K,)
        sums = torch.zeros_like(self.embed).index_add_(0, idx, flat)          # (K, D) sum of assigned vectors
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.k * self.eps) * n  # (K,) never 0
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        # relative to the uniform share N/K, so that the rule does not depend on batch or codebook size
        share = flat.shape[0] / self.k
        dead = self.cluster_size < self.dead_fraction * share                  # (K,)
        n_dead = int(dead.sum())
        if n_dead:
            fresh = self._sample(flat, n_dead)                                 # (n_dead, D)
            self.embed[dead] = fresh
            self.embed_sum[dead] = fresh * share                               # count = share: embed == fresh
            self.cluster_size[dead] = share
            self.restarts += n_dead

    def forward(self, z: Tensor) -> VQOutput:
        """z (B, D, h, w) -> quantised z_q (B, D, h, w); updates the codebook in training mode."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)                            # (N, D)
        if self.training and not bool(self.initted):
            self.init_from(flat.detach())
        idx = self.assign(flat.detach())                                       # (N,)
        if self.training:
            self.ema_update(flat.detach(), idx)
        quant = F.embedding(idx, self.embed).view(b, h, w, d).permute(0, 3, 1, 2)  # (B, D, h, w)
        commit = self.beta * F.mse_loss(z, quant.detach())
        z_q = z + (quant - z).detach()         # straight-through: forward is quant, backward is identity
        usage = (torch.bincount(idx, minlength=self.k) > 0).float().mean()
        return VQOutput(z_q, idx.view(b, h, w), commit, perplexity(idx, self.k), usage)

    def lookup(self, codes: Tensor) -> Tensor:
        """codes (B, h, w) -> latents (B, D, h, w): how a token model's output becomes an image again."""
        return F.embedding(codes, self.embed).permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class VQVAE(nn.Module):
    """Encoder -> EMA vector quantiser -> decoder. Images are expected in [-1, 1]."""

    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, hd = cfg.in_channels, cfg.hidden
        enc: list[nn.Module] = []
        for i in range(cfg.downsample):                                         # (B, hd, H/2^i, W/2^i)
            enc += [nn.Conv2d(c if i == 0 else hd, hd, 4, stride=2, padding=1), nn.ReLU()]
        enc += [nn.Conv2d(hd, hd, 3, padding=1)] + [ResBlock(hd) for _ in range(cfg.n_res)]
        enc += [nn.ReLU(), nn.Conv2d(hd, cfg.code_dim, 1)]                      # (B, D, h, w)
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizerEMA(cfg.codebook_size, cfg.code_dim, cfg.decay, cfg.eps, cfg.beta,
                                            cfg.dead_fraction)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, hd, 3, padding=1)]
        dec += [ResBlock(hd) for _ in range(cfg.n_res)] + [nn.ReLU()]
        for i in range(cfg.downsample):                                         # upsample back to H x W
            last = i == cfg.downsample - 1
            dec.append(nn.ConvTranspose2d(hd, c if last else hd, 4, stride=2, padding=1))
            if not last:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> VQOutput:
        """x (B, C, H, W) -> quantiser output with codes (B, h, w)."""
        return self.quantizer(self.encoder(x))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes (B, h, w) -> images (B, C, H, W)."""
        return self.decoder(self.quantizer.lookup(codes))

    def forward(self, x: Tensor) -> tuple[Tensor, VQOutput]:
        """x (B, C, H, W) -> reconstruction (B, C, H, W) and the quantiser output (its commit loss included)."""
        q = self.encode(x)
        return self.decoder(q.z_q), q

    def loss(self, x: Tensor) -> tuple[Tensor, Tensor, VQOutput]:
        """Total loss (reconstruction MSE + commitment), the reconstruction, and the quantiser output."""
        recon, q = self(x)
        return F.mse_loss(recon, x) + q.commit_loss, recon, q


# -- optional VQGAN terms ---------------------------------------------------------------------------

class PatchDiscriminator(nn.Module):
    """PatchGAN: a real/fake logit per overlapping patch rather than per image, judging local texture."""

    def __init__(self, in_channels: int = 3, hidden: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = hidden
        for _ in range(n_layers - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.GroupNorm(8, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 3, padding=1))                          # (B, 1, H/2^n, W/2^n)
        self.net = nn.Sequential(*layers)

    def features(self, x: Tensor) -> list[Tensor]:
        """Activations after every non-linearity: the perceptual (feature-matching) term compares these."""
        out = []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def vqgan_losses(disc: PatchDiscriminator, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hinge GAN losses and a feature-matching perceptual loss.

    Without a pretrained network (offline), the discriminator's own features stand in for LPIPS: the
    generator matches them on real and reconstructed images. Returns (generator adversarial loss,
    perceptual loss, discriminator loss); the caller weights them and steps two optimisers."""
    g_adv = -disc(fake).mean()
    feats_real = [f.detach() for f in disc.features(real)]
    perceptual = sum((F.l1_loss(f, r) for f, r in zip(disc.features(fake), feats_real)), torch.zeros(()))
    d_loss = F.relu(1 - disc(real)).mean() + F.relu(1 + disc(fake.detach())).mean()
    return g_adv, perceptual, d_loss
