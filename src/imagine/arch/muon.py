"""Muon (MomentUm Orthogonalized by Newton-Schulz) for 2-D hidden weight matrices.

Why not `torch.optim.Muon`: it always runs the Newton-Schulz iteration in bfloat16, which CPUs without
native bf16 matmuls emulate; on such 2-core machines that made the optimizer step ~20x slower than the
same iteration in fp32 (634 ms vs 29 ms for a 4-layer, 128-wide model) and larger than the forward and
backward passes together. Same update rule and coefficients, computed in bf16 where the device has fast
bf16 (GPUs; CPUs with AVX512-BF16 or AMX, see precision.py) and in fp32 elsewhere.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from .precision import fast_bf16

__all__ = ["Muon", "orthogonalize"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # Keller Jordan's quintic, tuned to converge in 5 steps


def orthogonalize(grad: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """An approximation of U V^T for grad = U S V^T (all singular values pushed towards 1)."""
    a, b, c = NS_COEFFICIENTS
    x = grad.bfloat16() if fast_bf16(grad.device) else grad.float()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T                                                   # iterate on the wide side: (m, n), m <= n
    x = x / (x.norm() + eps)
    for _ in range(steps):
        gram = x @ x.T                                            # (m, m)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(grad.dtype)


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalized, scaled by sqrt(max(1, rows/cols))."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.02, momentum: float = 0.95,
                 weight_decay: float = 0.0, nesterov: bool = True, ns_steps: int = 5) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, ns_steps=ns_steps)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D weight matrices only, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(p.grad)
                update = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
                if wd:
                    p.mul_(1 - lr * wd)
                scale = max(1.0, p.shape[0] / p.shape[1]) ** 0.5
                p.add_(orthogonalize(update, group["ns_steps"]), alpha=-lr * scale)
        return loss
