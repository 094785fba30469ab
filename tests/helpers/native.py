"""Native-engine checkpoints for tests: tiny random-weight LMs saved by the real saver (needs torch:
importorskip it before importing this module)."""

from __future__ import annotations

from pathlib import Path

from imagine.arch.lm import LM, LMConfig
from imagine.arch.tokenizer import ByteTokenizer, CharTokenizer

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
VOCAB = set(TEXT)


def make_checkpoint(folder: Path, tokenizer: CharTokenizer | ByteTokenizer | None = None, seed: int = 0) -> Path:
    import torch

    tok = tokenizer or CharTokenizer.from_text(TEXT)
    torch.manual_seed(seed)
    model = LM(LMConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    return model.save(folder, meta={"tokenizer": tok.to_dict()})
