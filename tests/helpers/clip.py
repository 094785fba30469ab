"""A tiny random-weight CLIP saved with save_pretrained (2 layers, 32 wide, a character BPE vocabulary
written here): the clip engine's tests and the index's image-vector tests load it through the real loader."""

from __future__ import annotations

import json
from pathlib import Path

PROJECTION = 16  # the tiny CLIP's projection_dim


def tiny_clip(folder: Path) -> Path:
    """Write the model into `folder` and return it."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab: dict[str, int] = {}
    for token in [*letters, *"0123456789.,!?'", *(c + "</w>" for c in letters)]:
        vocab[token] = len(vocab)
    merges = ["r e", "re d</w>", "c a", "ca t</w>", "d o", "do g</w>"]
    for merge in merges:
        vocab[merge.replace(" ", "")] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=30, patch_size=6),
        projection_dim=PROJECTION)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


