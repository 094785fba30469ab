"""Vision transformers for images, video and audio: one pre-norm encoder, three ways of making tokens.

- `ViT`: 2D images cut into patches by a strided Conv2d (the same map as a Linear on `patchify`'s output,
  arch/patches.py, shared with the DiT),
  a class token or mean pooling, learned positions.
- `VideoViT`: Conv3d tubelets (t x p x p), then *factorised* blocks: attention among the patches of one
  frame, then among the frames at one patch position (ViViT model 3 / TimeSformer divided attention), so
  a block costs O(T N^2 + N T^2) instead of O((T N)^2).
- `AudioViT`: a waveform through a log-mel spectrogram written in torch (STFT + triangular mel filters, no
  torchaudio), then the 2D ViT on the (mels x frames) picture with one channel (AST / Mirasol's audio path).

Shapes: B batch, C channels in, H/W pixels, T frames, p patch side, N patches per frame, E model width,
h heads, D head dim, M mel bands, F spectrogram frames, L audio samples, K classes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import GeluMLP, RMSNorm, SwiGLU, attention, swiglu_hidden
from .patches import patchify, unpatchify

__all__ = [
    "ViTConfig", "VideoViTConfig", "AudioViTConfig", "ViT", "VideoViT", "AudioViT", "LogMel",
    "patchify", "unpatchify", "mel_filterbank", "SelfAttention", "Block", "FactorisedBlock",
    "train_classifier", "accuracy", "save", "load",
]


@dataclass
class ViTConfig:
    image_size: tuple[int, int] = (32, 32)     # (H, W)
    patch_size: tuple[int, int] = (4, 4)       # (ph, pw); must divide image_size
    in_channels: int = 3
    n_classes: int = 3
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    mlp: Literal["gelu", "swiglu"] = "gelu"
    mlp_ratio: float = 4.0                     # GELU hidden = ratio * E (SwiGLU uses LLaMA's 8/3 rule)
    norm: Literal["layer", "rms"] = "layer"
    pool: Literal["cls", "mean"] = "cls"
    bias: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.patch_size = (int(self.patch_size[0]), int(self.patch_size[1]))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if any(s % p for s, p in zip(self.image_size, self.patch_size)):
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")

    @property
    def grid(self) -> tuple[int, int]:
        """Patches along (H, W)."""
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass
class VideoViTConfig(ViTConfig):
    frames: int = 8
    tubelet: int = 2                           # frames per token; must divide `frames`
    pool: Literal["cls", "mean"] = "mean"      # factorised blocks have no single place for a class token

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.frames % self.tubelet:
            raise ValueError(f"tubelet ({self.tubelet}) must divide frames ({self.frames})")
        if self.pool != "mean":
            raise ValueError("VideoViT pools by the mean of its tokens (pool='mean')")


@dataclass
class AudioViTConfig(ViTConfig):
    sample_rate: int = 8000
    n_samples: int = 4000                      # clip length L the positions are learned for
    n_fft: int = 256
    hop: int = 64
    n_mels: int = 32
    f_min: float = 0.0
    in_channels: int = 1
    image_size: tuple[int, int] = (0, 0)       # derived: (n_mels, frames padded to the patch width)
    patch_size: tuple[int, int] = (8, 8)

    def __post_init__(self) -> None:
        frames = self.n_samples // self.hop + 1                              # torch.stft with center=True
        pw = int(self.patch_size[1])
        self.image_size = (self.n_mels, pw * math.ceil(frames / pw))
        super().__post_init__()


def config_from_dict(cls: type[ViTConfig], data: dict[str, Any]) -> ViTConfig:
    """A config from JSON values; unknown keys raise ValueError listing the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**data)


# -- the encoder ------------------------------------------------------------------------------------

def _norm(cfg: ViTConfig) -> nn.Module:
    return RMSNorm(cfg.n_embd) if cfg.norm == "rms" else nn.LayerNorm(cfg.n_embd, bias=cfg.bias)


def _mlp(cfg: ViTConfig) -> nn.Module:
    if cfg.mlp == "swiglu":
        return SwiGLU(cfg.n_embd, swiglu_hidden(cfg.n_embd), bias=cfg.bias)
    return GeluMLP(cfg.n_embd, int(cfg.mlp_ratio * cfg.n_embd), bias=cfg.bias)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention over the token axis, through the lab's one SDPA shim."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor) -> Tensor:
        b, n, e = x.shape                                                    # (B, N, E)
        q, k, v = self.qkv(x).view(b, n, 3, self.n_head, e // self.n_head).permute(2, 0, 3, 1, 4)  # (B, h, N, D)
        y = attention(q, k, v, causal=False, dropout=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, n, e))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1, self.attn = _norm(cfg), SelfAttention(cfg)
        self.norm2, self.mlp = _norm(cfg), _mlp(cfg)

    def forward(self, x: Tensor) -> Tensor:                                  # (B, N, E) -> (B, N, E)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FactorisedBlock(nn.Module):
    """Divided space-time block on (B, T, N, E): attention within each frame (over N), then across frames at
    each patch position (over T), then the MLP; each step pre-norm and residual."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm_s, self.spatial = _norm(cfg), SelfAttention(cfg)
        self.norm_t, self.temporal = _norm(cfg), SelfAttention(cfg)
        self.norm_m, self.mlp = _norm(cfg), _mlp(cfg)

    def forward(self, x: Tensor) -> Tensor:
        b, t, n, e = x.shape                                                 # (B, T, N, E)
        s = x.reshape(b * t, n, e)                                           # one sequence per frame
        x = x + self.spatial(self.norm_s(s)).view(b, t, n, e)
        tt = x.transpose(1, 2).reshape(b * n, t, e)                          # one sequence per patch position
        x = x + self.temporal(self.norm_t(tt)).view(b, n, t, e).transpose(1, 2)
        return x + self.mlp(self.norm_m(x))


class ViT(nn.Module):
    """2D ViT classifier: (B, C, H, W) -> logits (B, K)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.n_embd
        self.patch_embed = nn.Conv2d(cfg.in_channels, e, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, e)) if cfg.pool == "cls" else None
        self.pos = nn.Parameter(torch.randn(1, cfg.n_patches + int(cfg.pool == "cls"), e) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = _norm(cfg)
        self.head = nn.Linear(e, cfg.n_classes)

    def tokens(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> encoded tokens (B, [1 +] N, E), final norm applied."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)                   # (B, N, E)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)   # (B, 1 + N, E)
        x = x + self.pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        h = self.tokens(x)
        pooled = h[:, 0] if self.cls is not None else h.mean(dim=1)         # (B, E)
        return self.head(pooled)                                             # (B, K)


class VideoViT(nn.Module):
    """3D ViT classifier with tubelet tokens and factorised attention: (B, C, T, H, W) -> logits (B, K)."""

    def __init__(self, cfg: VideoViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.n_embd
        kernel = (cfg.tubelet, *cfg.patch_size)
        self.patch_embed = nn.Conv3d(cfg.in_channels, e, kernel_size=kernel, stride=kernel)
        self.pos_space = nn.Parameter(torch.randn(1, 1, cfg.n_patches, e) * 0.02)                 # (1, 1, N, E)
        self.pos_time = nn.Parameter(torch.randn(1, cfg.frames // cfg.tubelet, 1, e) * 0.02)      # (1, T', 1, E)
        self.blocks = nn.ModuleList(FactorisedBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = _norm(cfg)
        self.head = nn.Linear(e, cfg.n_classes)

    def tokens(self, x: Tensor) -> Tensor:
        """Clips (B, C, T, H, W) -> tokens (B, T', N, E) with T' = T / tubelet."""
        x = self.patch_embed(x)                                              # (B, E, T', H/p, W/p)
        x = x.flatten(3).permute(0, 2, 3, 1)                                 # (B, T', N, E)
        x = x + self.pos_space + self.pos_time
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.tokens(x).mean(dim=(1, 2)))                    # (B, K)


# -- audio ------------------------------------------------------------------------------------------

def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    """Triangular filters (M, n_fft // 2 + 1) evenly spaced on the HTK mel scale, each peaking at 1.

    The mel scale spends resolution where pitch perception does (low frequencies), which is why a few
    dozen bands summarise a spectrum well."""
    f_max = sample_rate / 2 if f_max is None else f_max
    to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)                # noqa: E731
    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)                              # (M + 2,) band edges and centres
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (n_fft/2 + 1,)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]               # (M, 1) each
    up = (bins[None] - lo) / (mid - lo)
    down = (hi - bins[None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


class LogMel(nn.Module):
    """Waveforms (B, L) -> log-mel spectrograms (B, M, F), each normalised to zero mean and unit variance
    so that loudness does not matter to the classifier. F = L // hop + 1 (centred frames)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, f_min: float = 0.0) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fbank", mel_filterbank(n_mels, n_fft, sample_rate, f_min), persistent=False)
        self.window: Tensor
        self.fbank: Tensor

    def forward(self, wave: Tensor) -> Tensor:
        spec = torch.stft(wave.float(), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True)                               # (B, n_fft/2 + 1, F)
        mel = self.fbank @ spec.abs().pow(2)                                 # (B, M, F)
        logmel = torch.log(mel + 1e-6)
        mu = logmel.mean(dim=(1, 2), keepdim=True)
        sd = logmel.std(dim=(1, 2), keepdim=True)
        return (logmel - mu) / (sd + 1e-5)


class AudioViT(nn.Module):
    """Audio spectrogram transformer: (B, L) waveforms -> logits (B, K); the spectrogram is an image."""

    def __init__(self, cfg: AudioViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.f_min)
        self.vit = ViT(cfg)

    def spectrogram(self, wave: Tensor) -> Tensor:
        """(B, L) -> (B, 1, M, F') with F' the frames padded (or cut) to the width positions were learned for."""
        spec = self.frontend(wave)                                           # (B, M, F)
        width = self.cfg.image_size[1]
        spec = F.pad(spec, (0, max(0, width - spec.shape[-1])))[..., :width]
        return spec.unsqueeze(1)

    def forward(self, wave: Tensor) -> Tensor:
        return self.vit(self.spectrogram(wave))


# -- training and checkpoints -----------------------------------------------------------------------

def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 256) -> float:
    """Share of `x` classified as `y`, in eval mode and without gradients."""
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return right / max(len(x), 1)


def train_classifier(model: nn.Module, x: Tensor, y: Tensor, *, steps: int, batch: int = 64, lr: float = 3e-3,
                     weight_decay: float = 0.05, seed: int = 0, warmup: int = 20) -> list[float]:
    """AdamW with linear warm-up then cosine decay over `steps` minibatches drawn with `seed`; returns the
    per-step losses. Kept this small so that tests, the bench and the CLI train the same way."""
    gen = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    losses: list[float] = []
    model.train()
    for step in range(steps):
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


_KINDS: dict[str, tuple[type[ViTConfig], type[nn.Module]]] = {
    "vit": (ViTConfig, ViT), "video": (VideoViTConfig, VideoViT), "audio": (AudioViTConfig, AudioViT)}


def save(model: ViT | VideoViT | AudioViT, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """config.json (kind, config, meta such as class names) + model.pt (state dict) in `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    kind = next(k for k, (_, m) in _KINDS.items() if type(model) is m)
    config = {k: v for k, v in asdict(model.cfg).items() if not (kind == "audio" and k == "image_size")}
    (out / "config.json").write_text(json.dumps({"arch": f"vit-{kind}", "config": config, "meta": meta or {}},
                                                indent=2))
    torch.save(model.state_dict(), out / "model.pt")
    return out


def load(folder: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model `save` wrote (in eval mode) and its meta."""
    folder = Path(folder)
    info = json.loads((folder / "config.json").read_text())
    kind = str(info.get("arch", "")).removeprefix("vit-")
    if kind not in _KINDS:
        raise ValueError(f"{folder} holds a {info.get('arch')!r} checkpoint, not a ViT (vit-vit|video|audio)")
    cfg_cls, model_cls = _KINDS[kind]
    model = model_cls(config_from_dict(cfg_cls, info["config"]))
    model.load_state_dict(torch.load(folder / "model.pt", map_location=device, weights_only=True))
    return model.to(device).eval(), dict(info.get("meta", {}))
