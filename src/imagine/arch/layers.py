"""Building blocks shared by every architecture in the lab: norms, rotary positions, attention, MLPs, MoE.

Each block is small enough to read in one sitting and is tested against a plainer reference
(tests/test_arch_layers.py). Shapes: B batch, T query length, S key length, H query heads, G key/value
heads, D head dim, C model width, E experts, N tokens (B*T).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RMSNorm", "rope_angles", "rope_grid", "apply_rope", "attention", "SwiGLU", "GeluMLP", "MoE"]


class RMSNorm(nn.Module):
    """Root-mean-square norm (no mean subtraction, no bias); the mean square is accumulated in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # torch's fused kernel accumulates in fp32 for bf16/fp16 input and returns x's dtype
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


# -- rotary position embedding ----------------------------------------------------------------------

def rope_angles(positions: Tensor, head_dim: int, theta: float = 10_000.0) -> Tensor:
    """Rotation angles for tokens at `positions` (N,) or (N, A) for an A-axis grid (2D images, 3D video).

    The head_dim/2 rotation pairs are shared between the axes in contiguous chunks, each chunk with its own
    geometric frequency ladder, so a 2D position (row, col) rotates one half of the pairs by row and the
    other half by col. Returns (N, head_dim // 2) angles in fp32."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    pos = positions.float()
    if pos.dim() == 1:
        pos = pos[:, None]                                                   # (N, 1)
    n_axes = pos.shape[1]
    pairs = head_dim // 2
    sizes = [pairs // n_axes + (1 if a < pairs % n_axes else 0) for a in range(n_axes)]
    chunks = []
    for axis, size in enumerate(sizes):
        inv_freq = theta ** (-torch.arange(size, dtype=torch.float32, device=pos.device) / max(size, 1))
        chunks.append(pos[:, axis:axis + 1] * inv_freq[None, :])           # (N, size)
    return torch.cat(chunks, dim=-1)                                         # (N, pairs)


def rope_grid(*shape: int, device: torch.device | str | None = None) -> Tensor:
    """Integer positions of every cell of a grid in row-major order: rope_grid(h, w) -> (h*w, 2)."""
    axes = [torch.arange(n, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))


def apply_rope(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate pairs (x[..., i], x[..., i + D/2]) of x (B, H, T, D) by angles (T, D/2)."""
    d2 = x.shape[-1] // 2
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)          # (T, D/2)
    x1, x2 = x[..., :d2], x[..., d2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# -- attention --------------------------------------------------------------------------------------

# On CPU in bf16/fp16 (autocast) three plain ops train faster than SDPA's kernels, whose bf16 CPU paths
# are slow: forward + backward of causal attention at (48, 4, 64, 32) took 2.2 ms written out against 5.3
# for SDPA's math kernel and 11.6 for its flash kernel (4.1 / 7.2 / 14.2 ms at 128 keys, 7.5 / 12.2 / 13.6
# at 256). In float32 the flash kernel is the fastest and is kept. Past this length the (T, S) scores
# written out would cost more memory than they save time.
CPU_WRITTEN_OUT_MAX_LEN = 512


def _written_out_pays(q: Tensor, k: Tensor) -> bool:
    return q.device.type == "cpu" and q.dtype != torch.float32 and k.shape[2] <= CPU_WRITTEN_OUT_MAX_LEN


def _written_out(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, dropout: float) -> Tensor:
    """softmax(q k^T / sqrt(D) masked) v as three ops; the softmax runs in fp32 under autocast."""
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)               # (B, H, T, S)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if dropout:
        probs = F.dropout(probs, dropout)
    return probs.to(v.dtype) @ v


def attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True, window: int | None = None,
              q_pos: Tensor | None = None, k_pos: Tensor | None = None, dropout: float = 0.0) -> Tensor:
    """One attention shim over `scaled_dot_product_attention` for every variant the lab needs.

    q (B, H, T, D); k, v (B, G, S, D) with G dividing H (G == H: multi-head, G == 1: multi-query, else
    grouped-query). `window` keeps only the last `window` positions (a token sees itself and window-1
    before it). `q_pos` (T,) / `k_pos` (S,) are absolute positions, needed when keys come from a cache;
    by default both run 0..T-1. Returns (B, H, T, D)."""
    n_head, n_kv = q.shape[1], k.shape[1]
    if n_head != n_kv:
        if n_head % n_kv:
            raise ValueError(f"{n_head} query heads cannot share {n_kv} key/value heads evenly")
        k = k.repeat_interleave(n_head // n_kv, dim=1)                        # (B, H, S, D)
        v = v.repeat_interleave(n_head // n_kv, dim=1)
    plain = q_pos is None and k_pos is None and q.shape[2] == k.shape[2]
    if plain and window is None:
        # SDPA's own causal mask lets it pick a flash / memory-efficient kernel
        if _written_out_pays(q, k):
            allowed = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril() if causal else None
            return _written_out(q, k, v, allowed, dropout)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)
    if q_pos is None:
        q_pos = torch.arange(k.shape[2] - q.shape[2], k.shape[2], device=q.device)
    if k_pos is None:
        k_pos = torch.arange(k.shape[2], device=q.device)
    rel = q_pos[:, None] - k_pos[None, :]                                     # (T, S) distance back
    allowed = torch.ones_like(rel, dtype=torch.bool)
    if causal:
        allowed &= rel >= 0
    if window is not None:
        allowed &= rel < window
    if _written_out_pays(q, k):
        return _written_out(q, k, v, allowed, dropout)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)


# -- feed-forward -----------------------------------------------------------------------------------

def swiglu_hidden(dim: int, multiple: int = 32) -> int:
    """LLaMA's rule: 2/3 of 4*dim (same parameter count as a 4x GELU MLP), rounded up to `multiple`."""
    hidden = int(8 * dim / 3)
    return multiple * math.ceil(hidden / multiple)


class SwiGLU(nn.Module):
    """silu(x W1) * (x W3), projected back by W2."""

    def __init__(self, dim: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=bias)
        self.w3 = nn.Linear(dim, hidden, bias=bias)
        self.w2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class GeluMLP(nn.Module):
    """GPT-2's 4x MLP with GELU, kept for the nanoGPT baseline."""

    def __init__(self, dim: int, hidden: int, bias: bool = True) -> None:
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class MoE(nn.Module):
    """Mixture of SwiGLU experts with a top-k router, a load-balancing loss and an optional shared expert.

    Expert weights live in stacked tensors (E, ...) so that the readable loop (`forward_loop`) and the fast
    batched dispatch (`forward`) use the very same parameters; the tests hold them equal."""

    def __init__(self, dim: int, hidden: int, n_experts: int, top_k: int = 2, shared_expert: bool = False) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be between 1 and n_experts ({n_experts}), got {top_k}")
        self.n_experts, self.top_k = n_experts, top_k
        self.router = nn.Linear(dim, n_experts, bias=False)
        scale = 1 / math.sqrt(dim)
        self.w1 = nn.Parameter(torch.randn(n_experts, dim, hidden) * scale)              # (E, C, F)
        self.w3 = nn.Parameter(torch.randn(n_experts, dim, hidden) * scale)              # (E, C, F)
        self.w2 = nn.Parameter(torch.randn(n_experts, hidden, dim) / math.sqrt(hidden))  # (E, F, C)
        self.shared = SwiGLU(dim, hidden) if shared_expert else None
        self.aux_loss: Tensor = torch.zeros(())

    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, C) -> weights (N, k) summing to 1 and expert ids (N, k); records the balancing loss."""
        probs = self.router(x).float().softmax(dim=-1)                       # (N, E)
        weights, experts = probs.topk(self.top_k, dim=-1)                    # (N, k)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        # Switch Transformer: E * sum_e (share of assignments to e) * (mean router prob of e); 1 when uniform
        share = F.one_hot(experts, self.n_experts).float().mean(dim=(0, 1))  # (E,)
        self.aux_loss = self.n_experts * (share * probs.mean(dim=0)).sum()
        return weights.to(x.dtype), experts

    def expert(self, e: int, x: Tensor) -> Tensor:
        return (F.silu(x @ self.w1[e]) * (x @ self.w3[e])) @ self.w2[e]

    def forward_loop(self, x: Tensor) -> Tensor:
        """Readable reference: for each expert, run the tokens routed to it and add their weighted output."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])                                      # (N, C)
        weights, experts = self.route(flat)
        out = torch.zeros_like(flat)
        for e in range(self.n_experts):
            token, slot = (experts == e).nonzero(as_tuple=True)              # which tokens chose e, in which slot
            if token.numel():
                out.index_add_(0, token, self.expert(e, flat[token]) * weights[token, slot, None])
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        """Batched dispatch: sort the N*k assignments by expert, pad each expert's group to the largest, run
        all experts in three batched matmuls, and scatter the weighted results back."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])                                      # (N, C)
        n, k = flat.shape[0], self.top_k
        weights, experts = self.route(flat)
        expert_of = experts.reshape(-1)                                      # (N*k,)
        order = expert_of.argsort(stable=True)
        token_of = order // k                                                # source token of each sorted slot
        counts = torch.bincount(expert_of, minlength=self.n_experts)         # (E,)
        starts = counts.cumsum(0) - counts
        rank = torch.arange(n * k, device=x.device) - starts[expert_of[order]]  # place within its expert
        capacity = int(counts.max())
        grouped = flat.new_zeros(self.n_experts, capacity, flat.shape[1])    # (E, cap, C)
        grouped[expert_of[order], rank] = flat[token_of]
        hidden = F.silu(grouped @ self.w1) * (grouped @ self.w3)             # (E, cap, F)
        result = hidden @ self.w2                                            # (E, cap, C)
        gathered = result[expert_of[order], rank] * weights.reshape(-1)[order, None]  # (N*k, C)
        out = torch.zeros_like(flat).index_add_(0, token_of, gathered)
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.reshape(shape)
