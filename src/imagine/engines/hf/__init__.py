"""Hugging Face engines, one file per engine id (transformers, diffusers, clip, hf-speech); `_hf` holds
what they share (model sources, the safetensors rule, device and dtype, torch's global RNG)."""
