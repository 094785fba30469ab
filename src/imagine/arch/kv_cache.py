"""Key/value caches for incremental decoding, one per attention layer.

`KVCache` keeps every position up to `max_len`. `RingKVCache` serves a sliding-window layer: a token
only ever looks `window` positions back, so the cache keeps just the last `window` keys in a ring and
remembers the absolute position of each slot (the attention mask is built from positions, so the ring's
order never matters). Both hand back keys, values and their positions for `layers.attention`.
Shapes: B batch, G key/value heads, T new tokens, S cached tokens, D head dim.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KVCache", "RingKVCache", "make_cache"]


class KVCache:
    """Preallocated (B, G, max_len, D) buffers filled left to right."""

    def __init__(self, batch: int, n_kv_head: int, head_dim: int, max_len: int, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.max_len = max_len
        self.k = torch.zeros(batch, n_kv_head, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0                                                      # tokens seen so far

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Append k, v (B, G, T, D); return all keys, values (B, G, S, D) and their positions (S,)."""
        start, t = self.length, k.shape[2]
        if start + t > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {start + t} requested")
        self.k[:, :, start:start + t] = k
        self.v[:, :, start:start + t] = v
        self.length = start + t
        positions = torch.arange(self.length, device=k.device)
        return self.k[:, :, :self.length], self.v[:, :, :self.length], positions


class RingKVCache:
    """The last `window` keys and values of a sliding-window layer, in a ring of `window` slots."""

    def __init__(self, batch: int, n_kv_head: int, head_dim: int, window: int, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.window = window
        self.k = torch.zeros(batch, n_kv_head, window, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.pos = torch.full((window,), -1, dtype=torch.long, device=device)  # -1: empty slot
        self.length = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return the cached window plus the new k, v (all of them, so a long prefill still sees its own
        earlier tokens), then keep only the newest `window` positions in the ring."""
        t = k.shape[2]
        new_pos = torch.arange(self.length, self.length + t, device=k.device)   # (T,)
        filled = self.pos >= 0
        keys = torch.cat([self.k[:, :, filled], k], dim=2)                      # (B, G, S+T, D)
        values = torch.cat([self.v[:, :, filled], v], dim=2)
        positions = torch.cat([self.pos[filled], new_pos])
        keep = min(t, self.window)                                              # only these can be seen later
        slots = new_pos[-keep:] % self.window
        self.k[:, :, slots] = k[:, :, -keep:]
        self.v[:, :, slots] = v[:, :, -keep:]
        self.pos[slots] = new_pos[-keep:]
        self.length += t
        return keys, values, positions


def make_cache(batch: int, n_kv_head: int, head_dim: int, max_len: int, window: int | None, *,
               device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> KVCache | RingKVCache:
    """A ring for a windowed layer whose window is shorter than the generation, else a plain cache."""
    if window is not None and window < max_len:
        return RingKVCache(batch, n_kv_head, head_dim, window, device=device, dtype=dtype)
    return KVCache(batch, n_kv_head, head_dim, max_len, device=device, dtype=dtype)
