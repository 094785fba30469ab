"""Cutting images into patch vectors and back: one layout for every patch model of the lab (ViT, DiT).

Each vector is laid out (C, ph, pw), the order of a Conv2d kernel, so `conv.weight.flatten(1)` applied to
these vectors is exactly a strided-conv patch embedding, and a Linear head whose outputs `unpatchify`
reads is the transpose of that map. Shapes: B batch, C channels, H/W pixels, ph/pw patch side, N patches.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["patchify", "unpatchify"]


def _sides(patch: int | tuple[int, int]) -> tuple[int, int]:
    return (patch, patch) if isinstance(patch, int) else (int(patch[0]), int(patch[1]))


def patchify(x: Tensor, patch: int | tuple[int, int]) -> Tensor:
    """Images (B, C, H, W) -> patch vectors (B, N, C*ph*pw), row-major over the patch grid."""
    ph, pw = _sides(patch)
    b, c, h, w = x.shape
    if h % ph or w % pw:
        raise ValueError(f"patch {(ph, pw)} must divide the image size {(h, w)}")
    x = x.reshape(b, c, h // ph, ph, w // pw, pw)                            # (B, C, H/ph, ph, W/pw, pw)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // ph) * (w // pw), c * ph * pw)


def unpatchify(tokens: Tensor, patch: int | tuple[int, int], size: tuple[int, int], channels: int) -> Tensor:
    """Inverse of `patchify`: (B, N, C*ph*pw) -> (B, C, H, W) for image `size` (H, W)."""
    ph, pw = _sides(patch)
    h, w = size
    b = tokens.shape[0]
    x = tokens.reshape(b, h // ph, w // pw, channels, ph, pw)               # (B, H/ph, W/pw, C, ph, pw)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, channels, h, w)
