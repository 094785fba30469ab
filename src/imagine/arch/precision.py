"""Which low-precision path a device runs fast, so the lab (and MiniLM's torch forward) pick bf16 only
where it pays.

bfloat16 halves the bytes and, on hardware with native bf16 dot products, roughly doubles matmul
throughput: CUDA GPUs from Ampere on, and CPUs with AVX512-BF16 (Zen 4 and later, Cooper Lake) or AMX
(Sapphire Rapids and later). A CPU without them emulates bf16 matmuls, slower than float32 (the lab's
Muon step measured ~20x slower that way), so `auto` means float32 there.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["AUTOCAST_MODES", "autocast_dtype", "cpu_has_native_bf16", "fast_bf16"]

AUTOCAST_MODES = ("auto", "bf16", "fp16", "off")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products in hardware (else torch emulates them, slowly)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls are at least as fast as float32 on `device`."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False  # mps and others: float32 unless asked


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `mode` on `device`: `auto` is bf16 where it is fast, else None (float32)."""
    if mode not in AUTOCAST_MODES:
        raise ValueError(f"unknown autocast mode {mode!r}; choose one of {', '.join(AUTOCAST_MODES)}")
    if mode == "auto":
        return torch.bfloat16 if fast_bf16(device) else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]
