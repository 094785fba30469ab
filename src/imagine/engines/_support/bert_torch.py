"""The BERT encoder's forward pass in torch, for when torch is installed (`imagine[torch]`).

The numpy forward in `engines/minilm.py` stays the reference and the path without torch. The same
weights run here through oneDNN, which on 2 cores measured about 1.5x numpy in float32 and 3.7-3.8x
end to end (bench/index.py) in bfloat16 on a CPU with native bf16 dot products (AVX512-BF16 or AMX): cosine to the float32
vector stays above 0.9999, which leaves rankings as they were. Without native bf16 the CPU emulates it
and bfloat16 is slower than float32, so `auto` picks bfloat16 only where the CPU has it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ...errors import InputError

if TYPE_CHECKING:
    from ..minilm import BertEncoder

__all__ = ["TorchBertForward", "cpu_has_native_bf16", "resolve_precision", "torch_available"]

PRECISIONS = ("auto", "float32", "bfloat16")


@functools.cache
def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 dot products in hardware (the lab's check, shared)."""
    from ...arch.precision import cpu_has_native_bf16 as check

    return check()


def resolve_precision(precision: str) -> str:
    """`auto` -> bfloat16 where the CPU has native bf16, else float32."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", hint="use auto, float32 or bfloat16")
    if precision != "auto":
        return precision
    return "bfloat16" if cpu_has_native_bf16() else "float32"


class TorchBertForward:
    """`forward(ids, mask) -> (B, T, H) float32` like `BertEncoder.forward`, computed in torch.

    Embedding lookup and its LayerNorm stay in float32 (they are a gather and one norm); the six
    layers run in `precision`. Dense layers use addmm on (B*T, H) matrices with weights kept
    pre-transposed, as in the numpy forward. Attention is written out (scores + a -inf bias on
    padding keys, softmax, weighted sum): at BERT's ~100-token, 32-wide heads torch's fused CPU kernel
    measured 1.6x slower than these three ops. The softmax runs in float32 (torch's bf16 softmax
    converts inside and measured slower than converting the scores once; end to end +4-6 %), and a
    batch without padding adds no bias. Padding never changes a result beyond rounding.
    """

    def __init__(self, encoder: "BertEncoder", precision: str) -> None:
        import torch

        self.precision = resolve_precision(precision)
        self.dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float32
        self.hidden, self.heads, self.eps = encoder.hidden, encoder.heads, encoder.eps

        def tensor(array: NDArray[np.float32], dtype: Any = None) -> Any:
            t = torch.from_numpy(array)  # shares the numpy weights in float32
            return t if dtype in (None, torch.float32) else t.to(dtype)

        self.word, self.position, self.token_type = (tensor(a) for a in (encoder.word, encoder.position,
                                                                         encoder.token_type))
        self.emb_ln = tuple(tensor(a) for a in encoder.emb_ln)
        self.layers = [{name: tensor(a, self.dtype) for name, a in layer.items()} for layer in encoder.layers]

    @property
    def nbytes(self) -> int:
        """Extra memory beyond the numpy weights (only the bf16 copies; float32 shares them)."""
        if self.precision == "float32":
            return 0
        return sum(int(t.numel() * t.element_size()) for layer in self.layers for t in layer.values())

    def forward(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> NDArray[np.float32]:
        import torch
        import torch.nn.functional as F

        batch, length = ids.shape
        hidden, heads = self.hidden, self.heads
        with torch.inference_mode():
            ids_t = torch.from_numpy(ids)
            pad = torch.from_numpy(mask == 0)[:, None, None, :]  # (B, 1, 1, T): keys no query may see
            bias = torch.zeros(pad.shape).masked_fill(pad, float("-inf")) if bool(pad.any()) else None
            scale = (hidden // heads) ** -0.5
            x = self.word[ids_t] + self.position[:length][None] + self.token_type[0]
            x = F.layer_norm(x, (hidden,), self.emb_ln[0], self.emb_ln[1], self.eps).to(self.dtype).reshape(batch * length, hidden)
            for w in self.layers:
                qkv = torch.addmm(w["qkv_b"], x, w["qkv_w"])  # (B*T, 3H)
                q, k, v = qkv.view(batch, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
                scores = torch.matmul(q, k.transpose(-1, -2)).float().mul_(scale)  # (B, heads, T, T), float32
                if bias is not None:
                    scores.add_(bias)
                context = torch.matmul(torch.softmax(scores, dim=-1).to(self.dtype), v)  # (B, heads, T, d)
                context = context.transpose(1, 2).reshape(batch * length, hidden)
                x = F.layer_norm(x + torch.addmm(w["out_b"], context, w["out_w"]), (hidden,),
                                 w["ln1_g"], w["ln1_b"], self.eps)
                inner = F.gelu(torch.addmm(w["mlp_in_b"], x, w["mlp_in_w"]))  # exact (erf) GELU, like BERT
                x = F.layer_norm(x + torch.addmm(w["mlp_out_b"], inner, w["mlp_out_w"]), (hidden,),
                                 w["ln2_g"], w["ln2_b"], self.eps)
            return x.view(batch, length, hidden).float().numpy()
