"""A tiny random-weight Stable Diffusion pipeline (16x16 pixels, a few thousand weights) saved by
diffusers' own saver, so tests load it only through the real diffusers engine. Shared by the engine's
tests (tests/engines/hf/test_diffusers.py) and the server's image endpoints (tests/server/test_images.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SIZE = 16  # the pipeline's default: UNet sample_size 8 x VAE factor 2


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte-level alphabet (GPT-2's table): every byte as a printable character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    codes = {**{b: b for b in keep}, **{b: 256 + i for i, b in enumerate(extra)}}
    return [chr(codes[b]) for b in range(256)]


def tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer from a vocabulary written here: bytes and end-of-word bytes, no merges."""
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_pipeline(root: Path, seed: int = 0) -> Any:
    """A StableDiffusionPipeline of tiny random-weight parts (its tokenizer written under root/tok); the
    caller saves it where it wants it (`pipe.save_pretrained(folder)`)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tok = tokenizer(root / "tok")
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=SIZE)
    end = tok.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=16, bos_token_id=end - 1, eos_token_id=end, pad_token_id=end))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tok,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
