"""A decoder-only language model: dense or mixture-of-experts, GQA, sliding window, QK-norm, KV cache.

`LMConfig` switches between GPT-2 parts (LayerNorm, learned positions, GELU, biases: the nanoGPT
baseline) and modern ones (RMSNorm, RoPE, SwiGLU, QK-norm, GQA, local/global windows, MoE). Shapes:
B batch, T tokens, C width, V vocabulary, H query heads, G key/value heads, D head dim.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kv_cache import KVCache, RingKVCache, make_cache
from .layers import MoE, GeluMLP, RMSNorm, SwiGLU, apply_rope, attention, rope_angles, swiglu_hidden

__all__ = ["LMConfig", "LM", "PRESETS", "preset", "sample_next"]

Cache = KVCache | RingKVCache
_C = TypeVar("_C")


@dataclass
class LMConfig:
    vocab_size: int = 256
    block_size: int = 256                      # the longest context seen in training
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None               # None: = n_head (MHA); 1: MQA; between: GQA
    n_embd: int = 128
    norm: Literal["rms", "layer"] = "rms"
    pos: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10_000.0
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    mlp_hidden: int | None = None              # None: 8/3*C for SwiGLU, 4*C for GELU
    bias: bool = False
    fused_qkv: bool = False                    # one q|k|v projection (nanoGPT's c_attn) instead of q and kv
    qk_norm: bool = False                      # RMSNorm on q and k per head (Chameleon, against logit drift)
    window: int | None = None                  # sliding-window attention span
    global_every: int = 0                      # with a window: every n-th layer attends globally (0: none)
    n_experts: int = 0                         # 0: dense MLP
    top_k: int = 2
    shared_expert: bool = False
    aux_loss_weight: float = 0.01
    z_loss: float = 0.0                        # weight of mean(logsumexp(logits)^2) (PaLM)
    tie_embeddings: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head is not None and self.n_kv_head < 1:
            raise ValueError(f"n_kv_head must be at least 1 (or None for one per query head), got {self.n_kv_head}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be at least 1 token (or None for full attention), got {self.window}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads})")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def layer_window(self, layer: int) -> int | None:
        if self.window is None or (self.global_every and (layer + 1) % self.global_every == 0):
            return None
        return self.window

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LMConfig":
        return config_from_dict(cls, data, "LMConfig fields")


def config_from_dict(cls: type[_C], data: dict[str, Any], what: str) -> _C:
    """A config dataclass from JSON/CLI values; unknown keys raise ValueError listing the known ones."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")
    return cls(**data)


def _norm(cfg: LMConfig, dim: int) -> nn.Module:
    return RMSNorm(dim) if cfg.norm == "rms" else nn.LayerNorm(dim, bias=cfg.bias)


class SelfAttention(nn.Module):
    def __init__(self, cfg: LMConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.window = cfg, cfg.layer_window(layer)
        d = cfg.head_dim
        self.qkv_proj: nn.Linear | None = None
        if cfg.fused_qkv:  # one matmul for all three: nanoGPT's c_attn, a little faster at small widths
            self.qkv_proj = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.kv_heads) * d, bias=cfg.bias)
        else:
            self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * d, bias=cfg.bias)
            self.kv_proj = nn.Linear(cfg.n_embd, 2 * cfg.kv_heads * d, bias=cfg.bias)
        self.out_proj = nn.Linear(cfg.n_head * d, cfg.n_embd, bias=cfg.bias)
        self.q_norm = RMSNorm(d) if cfg.qk_norm else None
        self.k_norm = RMSNorm(d) if cfg.qk_norm else None

    def forward(self, x: Tensor, angles: Tensor | None, cache: Cache | None) -> Tensor:
        b, t, _ = x.shape
        cfg = self.cfg
        if self.qkv_proj is not None:
            q_flat, kv_flat = self.qkv_proj(x).split([cfg.n_embd, 2 * cfg.kv_heads * cfg.head_dim], dim=-1)
        else:
            q_flat, kv_flat = self.q_proj(x), self.kv_proj(x)
        q = q_flat.view(b, t, cfg.n_head, cfg.head_dim).transpose(1, 2)                   # (B, H, T, D)
        k, v = kv_flat.view(b, t, 2, cfg.kv_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)   # (B, G, T, D)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        q_pos = k_pos = None
        if cache is not None:
            q_pos = torch.arange(cache.length, cache.length + t, device=x.device)
            k, v, k_pos = cache.update(k, v)                                                # (B, G, S, D)
        y = attention(q, k, v, causal=True, window=self.window, q_pos=q_pos, k_pos=k_pos,
                      dropout=cfg.dropout if self.training else 0.0)                       # (B, H, T, D)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, cfg.n_embd))


class Block(nn.Module):
    def __init__(self, cfg: LMConfig, layer: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = _norm(cfg, cfg.n_embd), _norm(cfg, cfg.n_embd)
        self.attn = SelfAttention(cfg, layer)
        hidden = cfg.mlp_hidden or (4 * cfg.n_embd if cfg.mlp == "gelu" else swiglu_hidden(cfg.n_embd))
        self.mlp: nn.Module
        if cfg.n_experts:
            self.mlp = MoE(cfg.n_embd, hidden, cfg.n_experts, cfg.top_k, cfg.shared_expert)
        elif cfg.mlp == "gelu":
            self.mlp = GeluMLP(cfg.n_embd, hidden, bias=cfg.bias)
        else:
            self.mlp = SwiGLU(cfg.n_embd, hidden, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, angles: Tensor | None, cache: Cache | None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), angles, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


class LM(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = _norm(cfg, cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("out_proj.weight", "c_proj.weight", "w2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_caches(self, batch: int, max_len: int) -> list[Cache]:
        p = next(self.parameters())
        return [make_cache(batch, self.cfg.kv_heads, self.cfg.head_dim, max_len, self.cfg.layer_window(i),
                           device=p.device, dtype=p.dtype) for i in range(self.cfg.n_layer)]

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                caches: list[Cache] | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, V) and, with targets (B, T), the training loss.
        With caches, idx continues the sequence the caches have seen."""
        b, t = idx.shape
        start = caches[0].length if caches else 0
        positions = torch.arange(start, start + t, device=idx.device)                     # (T,)
        x = self.tok_emb(idx)                                                                # (B, T, C)
        angles = None
        if self.pos_emb is not None:
            if start + t > self.cfg.block_size:
                raise ValueError(f"learned positions stop at block_size {self.cfg.block_size}; got {start + t}")
            x = x + self.pos_emb(positions)
        else:
            angles = rope_angles(positions, self.cfg.head_dim, self.cfg.rope_theta)        # (T, D/2)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, angles, caches[i] if caches else None)
        logits = self.head(self.norm(x))                                                     # (B, T, V)
        if targets is None:
            return logits, None
        return logits, self.loss(logits, targets)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        flat = logits.float().view(-1, logits.shape[-1])
        loss = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-1)
        if self.cfg.z_loss:
            counted = targets.reshape(-1) != -1                                    # as cross_entropy's ignore_index
            loss = loss + self.cfg.z_loss * flat.logsumexp(dim=-1)[counted].pow(2).mean()
        if self.cfg.n_experts:
            aux = torch.stack([blk.mlp.aux_loss for blk in self.blocks if isinstance(blk.mlp, MoE)]).sum()
            loss = loss + self.cfg.aux_loss_weight * aux
        return loss

    # -- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def stream(self, idx: Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> Iterator[Tensor]:
        """Yield one new token per step, (B,) each, decoding with the KV cache.

        When the context reaches block_size, the caches are rebuilt from the newest half block, so the
        model never attends past the length it was trained on."""
        b = idx.shape[0]
        limit = self.cfg.block_size
        context = idx[:, -limit:]
        caches = self.new_caches(b, limit)
        logits, _ = self(context, caches=caches)
        for _ in range(max_new_tokens):
            nxt = sample_next(logits[:, -1], temperature=temperature, top_k=top_k, top_p=top_p,
                              generator=generator)                                           # (B,)
            yield nxt
            context = torch.cat([context, nxt[:, None]], dim=1)
            if caches[0].length >= limit:
                context = context[:, -(limit // 2):]
                caches = self.new_caches(b, limit)
                logits, _ = self(context, caches=caches)
            else:
                logits, _ = self(nxt[:, None], caches=caches)

    def generate(self, idx: Tensor, max_new_tokens: int, **sampling: Any) -> Tensor:
        """idx (B, T) -> (B, T + max_new_tokens)."""
        new = list(self.stream(idx, max_new_tokens, **sampling))
        return torch.cat([idx, torch.stack(new, dim=1)], dim=1) if new else idx

    # -- checkpoints: safetensors weights + a JSON description, never pickle -------------------------
    def save(self, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / "model.safetensors"))
        info = {"arch": "lm", "config": asdict(self.cfg), **(meta or {})}
        (folder / "config.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> tuple["LM", dict[str, Any]]:
        """The model and the rest of config.json (tokenizer, training record)."""
        from safetensors.torch import load_model

        folder = Path(folder)
        config_file, weights = folder / "config.json", folder / "model.safetensors"
        if not config_file.is_file() or not weights.is_file():
            raise FileNotFoundError(f"{folder} is not an imagine LM checkpoint: it needs config.json and "
                                    "model.safetensors (made by `imagine lab train lm`)")
        info = json.loads(config_file.read_text())
        if info.get("arch") != "lm":
            raise ValueError(f"{folder} holds a {info.get('arch')!r} model, not a language model")
        model = cls(LMConfig.from_dict(info.pop("config")))
        load_model(model, str(weights), device=str(device))
        return model.to(device).eval(), info


def sample_next(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """logits (B, V) -> token ids (B,). Temperature 0 is greedy; top-k then top-p (nucleus) filtering."""
    if temperature <= 0 or top_k == 1:
        return logits.argmax(dim=-1)
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None for no limit), got {top_k}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p                # keep the smallest set reaching top_p
        drop[:, 0] = False                                                   # and always the most likely token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# -- presets ------------------------------------------------------------------------------------------

PRESETS: dict[str, LMConfig] = {
    # nanoGPT's shakespeare-char CPU recipe, as upstream's train.py builds it (bias=False, one c_attn
    # projection, GPT-2 LayerNorm / learned positions / GELU, tied embeddings): the baseline to beat
    "nanogpt-cpu": LMConfig(block_size=64, n_layer=4, n_head=4, n_embd=128, norm="layer", pos="learned",
                            mlp="gelu", bias=False, fused_qkv=True),
    # imagine's best small CPU model (bench/lm_vs_nanogpt.py): modern parts, longer context
    "imagine-cpu": LMConfig(block_size=256, n_layer=4, n_head=4, n_embd=128, qk_norm=True),
    # the speedrun preset (bench/lm_vs_nanogpt.py): 64-character windows for more steps a second, one more
    # layer than imagine-cpu (at batch 48 in bf16 it ends 0.01 lower in the same time than 4 layers)
    "imagine-cpu-64": LMConfig(block_size=64, n_layer=5, n_head=4, n_embd=128, qk_norm=True),
    # the same size with every feature on: GQA, local/global windows, MoE with a shared expert
    "moe-tiny": LMConfig(block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=128, qk_norm=True,
                         window=64, global_every=2, n_experts=4, top_k=2, shared_expert=True, z_loss=1e-4),
    # nanoGPT's shakespeare-char GPU recipe (6 x 384, block 256, dropout 0.2)
    "nanogpt-gpu": LMConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, norm="layer", pos="learned",
                            mlp="gelu", bias=True, dropout=0.2),
}


def preset(name: str, **overrides: Any) -> LMConfig:
    """A copy of preset `name` with `overrides`; unknown names and fields raise ValueError listing the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return LMConfig.from_dict({**asdict(PRESETS[name]), **overrides})
