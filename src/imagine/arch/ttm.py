"""Token Turing Machine memory and a Mirasol-style combiner for long audio+video streams.

Token Turing Machines (Ryoo et al. 2023, "Token Turing Machines", CVPR) keep a fixed-size external memory
of m tokens and handle a stream one step at a time with three token operations:

    read     Z = summarise_r([M ; I])          r tokens from the memory M and this step's inputs I
    process  O = transformer(Z)                a small transformer over just those r tokens
    write    M' = summarise_m([M ; O ; I])     the memory rewritten as m tokens

Because read and write are token *summarisations* (learned weighted sums), the cost of a step depends on
m + n, never on how long the stream has run, and gradients still reach earlier steps through M.

Mirasol3B (Piergiovanni et al. 2024, "Mirasol3B: A Multimodal Autoregressive Model for Time-Aligned and
Contextual Modalities", CVPR) cuts long video and audio into time-aligned chunks and, per chunk, compresses
their joint features into a few tokens with a "Combiner"; its TTM variant carries memory across chunks so
each chunk's tokens also summarise the past. `TTMCombiner` is that: project each modality, tag it, run one
TTM step per chunk. Shapes: B batch, S chunks (steps), N tokens per step, C width, m memory, r read tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .layers import RMSNorm, SwiGLU, attention, swiglu_hidden

__all__ = ["TTMConfig", "Summarise", "TokenTuringMachine", "TTMCombiner"]


@dataclass
class TTMConfig:
    dim: int = 64                 # C
    memory: int = 16              # m memory tokens
    read: int = 8                 # r tokens read (and processed, and output) per step
    n_layer: int = 2              # the process transformer
    n_head: int = 4
    summariser: Literal["query", "tokenlearner"] = "query"

    def __post_init__(self) -> None:
        if self.dim % self.n_head:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_head ({self.n_head})")
        if self.memory < 1 or self.read < 1:
            raise ValueError(f"memory and read must be at least 1 token, got {self.memory}, {self.read}")


class Summarise(nn.Module):
    """x (B, N, C) -> k tokens (B, k, C), each a learned weighted sum of the N inputs.

    "query": k learned queries attend over the inputs (attention pooling, multi-head, QK-norm).
    "tokenlearner": TokenLearner (Ryoo et al. 2021), TTM's default: an MLP scores every input token for
    each of the k outputs, a softmax over the N inputs turns the scores into weights."""

    def __init__(self, dim: int, k: int, n_head: int, kind: Literal["query", "tokenlearner"] = "query") -> None:
        super().__init__()
        self.kind, self.k, self.n_head = kind, k, n_head
        self.norm = RMSNorm(dim)
        if kind == "query":
            self.queries = nn.Parameter(torch.randn(k, dim) * dim ** -0.5)
            self.q_proj = nn.Linear(dim, dim, bias=False)
            self.kv_proj = nn.Linear(dim, 2 * dim, bias=False)
            self.out_proj = nn.Linear(dim, dim, bias=False)
            self.q_norm, self.k_norm = RMSNorm(dim // n_head), RMSNorm(dim // n_head)
        elif kind == "tokenlearner":
            self.score = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, k))
        else:
            raise ValueError(f"summariser must be 'query' or 'tokenlearner', got {kind!r}")

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        if self.kind == "tokenlearner":
            weights = self.score(h).softmax(dim=1)                               # (B, N, k), sums to 1 over N
            return weights.transpose(1, 2) @ x                                   # (B, k, C)
        b, n, c = x.shape
        d = c // self.n_head
        q = self.q_proj(self.queries).view(1, self.k, self.n_head, d).transpose(1, 2).expand(b, -1, -1, -1)
        k, v = self.kv_proj(h).view(b, n, 2, self.n_head, d).permute(2, 0, 3, 1, 4)   # (B, H, N, D)
        y = attention(self.q_norm(q), self.k_norm(k), v, causal=False)           # (B, H, k, D)
        return self.out_proj(y.transpose(1, 2).reshape(b, self.k, c))


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional transformer block (the process step sees all r tokens at once)."""

    def __init__(self, dim: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.q_norm, self.k_norm = RMSNorm(dim // n_head), RMSNorm(dim // n_head)
        self.mlp = SwiGLU(dim, swiglu_hidden(dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.n_head, c // self.n_head).permute(2, 0, 3, 1, 4)
        y = attention(self.q_norm(q), self.k_norm(k), v, causal=False)           # (B, H, N, D)
        x = x + self.out_proj(y.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class TokenTuringMachine(nn.Module):
    """Read, process, write over a memory of m tokens; `forward` runs a whole stream step by step."""

    def __init__(self, cfg: TTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.dim
        self.memory0 = nn.Parameter(torch.randn(cfg.memory, c) * 0.02)          # the memory before step 1
        # which stream a token came from, so that the summarisers can tell memory from new input
        self.role = nn.Parameter(torch.randn(3, c) * 0.02)                      # memory, input, output
        self.reader = Summarise(c, cfg.read, cfg.n_head, cfg.summariser)
        self.process = nn.Sequential(*(EncoderBlock(c, cfg.n_head) for _ in range(cfg.n_layer)))
        self.writer = Summarise(c, cfg.memory, cfg.n_head, cfg.summariser)
        self.norm = RMSNorm(c)

    def init_memory(self, batch: int) -> Tensor:
        return self.memory0.expand(batch, -1, -1)                                 # (B, m, C)

    def read(self, memory: Tensor, inputs: Tensor) -> Tensor:
        """memory (B, m, C), inputs (B, N, C) -> r tokens (B, r, C)."""
        return self.reader(torch.cat([memory + self.role[0], inputs + self.role[1]], dim=1))

    def write(self, memory: Tensor, output: Tensor, inputs: Tensor) -> Tensor:
        """The next memory (B, m, C) from the old one, this step's output and inputs."""
        return self.writer(torch.cat([memory + self.role[0], output + self.role[2], inputs + self.role[1]], dim=1))

    def step(self, memory: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """One TTM step: inputs (B, N, C) -> output (B, r, C) and the new memory (B, m, C)."""
        output = self.norm(self.process(self.read(memory, inputs)))
        return output, self.write(memory, output, inputs)

    def forward(self, stream: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """stream (B, S, N, C) -> outputs (B, S, r, C) and the final memory (B, m, C). Pass `memory` to
        continue a stream that was cut into several calls."""
        memory = self.init_memory(stream.shape[0]) if memory is None else memory
        outputs = []
        for s in range(stream.shape[1]):
            out, memory = self.step(memory, stream[:, s])
            outputs.append(out)
        return torch.stack(outputs, dim=1), memory


class TTMCombiner(nn.Module):
    """Mirasol3B's combiner with TTM memory: per time chunk, video features (B, S, Nv, Cv) and audio
    features (B, S, Na, Ca) are projected to C, tagged with a modality embedding and a position within the
    chunk, and fused into r tokens by one TTM step; the memory carries context across chunks. A causal
    LM can then attend to the (B, S*r, C) chunk tokens, as Mirasol's autoregressive model does."""

    def __init__(self, cfg: TTMConfig, video_dim: int, audio_dim: int, max_chunk_tokens: int = 64) -> None:
        super().__init__()
        self.cfg = cfg
        self.video_proj = nn.Linear(video_dim, cfg.dim)
        self.audio_proj = nn.Linear(audio_dim, cfg.dim)
        self.modality = nn.Parameter(torch.randn(2, cfg.dim) * 0.02)            # video, audio
        self.position = nn.Parameter(torch.randn(max_chunk_tokens, cfg.dim) * 0.02)
        self.ttm = TokenTuringMachine(cfg)

    def chunk_tokens(self, video: Tensor, audio: Tensor) -> Tensor:
        """video (B, S, Nv, Cv), audio (B, S, Na, Ca) -> the TTM's input stream (B, S, Nv+Na, C)."""
        nv, na = video.shape[2], audio.shape[2]
        if max(nv, na) > self.position.shape[0]:
            raise ValueError(f"a chunk holds at most {self.position.shape[0]} tokens per modality, got {max(nv, na)}")
        v = self.video_proj(video) + self.modality[0] + self.position[:nv]
        a = self.audio_proj(audio) + self.modality[1] + self.position[:na]
        return torch.cat([v, a], dim=2)

    def forward(self, video: Tensor, audio: Tensor, memory: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """-> per-chunk tokens (B, S, r, C) and the memory (B, m, C) after the last chunk."""
        if video.shape[:2] != audio.shape[:2]:
            raise ValueError(f"video and audio must have the same batch and chunks, got {tuple(video.shape[:2])} "
                             f"and {tuple(audio.shape[:2])}")
        return self.ttm(self.chunk_tokens(video, audio), memory)
