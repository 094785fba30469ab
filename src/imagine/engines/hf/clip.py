"""`clip`: text and image embeddings in one space (CLIP, SigLIP) through transformers.

A model is a hub id (`openai/clip-vit-base-patch32`, the default, or `google/siglip-base-patch16-224`),
downloaded once into the Hugging Face cache, or a local folder that `save_pretrained` wrote (model and
processor). Whether it is CLIP or SigLIP is read from config.json's `model_type`: SigLIP was trained on
text padded to a fixed length with no attention mask, so its text goes in that way, or its vectors drift.

Every text and image part of the last user message becomes one Vector, in order (L2-normalised unless
`normalize=false`), so a text and an image can be compared with a dot product. With `score=true` a
request holding images *and* texts also gets a Data part: the image x text cosine matrix, the model's
logits (cosine x learned temperature, + bias for SigLIP) and, per image, a softmax over the texts —
zero-shot labelling ("which caption fits this photo?") and text-to-image search in one call. SigLIP
models add `sigmoid`, the independent probability that each pair matches, which is how they were trained.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

from pydantic import Field

from ...engine import Engine, Request
from ...errors import EngineUnavailable, ImagineError, InputError
from ...events import Done, Event, PartOut, Usage
from ...parts import DEFAULT_LIMITS, Data, Image, Limits, Modality, Text, Vector
from .._support.cache import model_cache
from .._support.inputs import last_user, refuse_other_parts
from ._hf import (HF_EXTRA_HINT, HFOptions, ModelSource, hub_kwargs, hub_load_error, hub_model_missing, inspect_model,
                  pick_device, pick_dtype, transformers_dtype_kwarg)

__all__ = ["ClipEngine", "ClipOptions", "DEFAULT_MODEL"]

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
SIGLIP_TYPES = frozenset({"siglip", "siglip2"})
DUAL_ENCODER_TYPES = frozenset({"clip", "chinese_clip", "altclip", "metaclip_2"}) | SIGLIP_TYPES
MODEL_HINT = (f"name a CLIP or SigLIP model: a hub id such as {DEFAULT_MODEL} (downloaded once) or a folder "
              "written by save_pretrained, as -m clip:MODEL")


# -- the engine --------------------------------------------------------------------------------------

@dataclass
class _Loaded:
    """A model with its processor; `components` lets the shared cache count its parameters."""
    model: Any
    tokenizer: Any
    image_processor: Any
    model_type: str
    device: str
    dtype: Any

    @property
    def components(self) -> dict[str, Any]:
        return {"model": self.model}

    @property
    def siglip(self) -> bool:
        return self.model_type in SIGLIP_TYPES


def _check_type(model_type: str | None, ref: str) -> None:
    if model_type not in DUAL_ENCODER_TYPES:
        raise InputError(f"{ref} is a {model_type or 'unknown'} model, not a CLIP-style text+image encoder",
                         hint="clip runs CLIP and SigLIP models (model_type " + ", ".join(sorted(DUAL_ENCODER_TYPES))
                              + "); use -m transformers:MODEL for other models")


class ClipOptions(HFOptions):
    normalize: bool = Field(default=True, description="scale each vector to unit length")
    batch_size: int = Field(default=16, ge=1, le=1024, description="texts or images per forward pass")
    score: bool = Field(default=False, description="add a Data part: image x text similarity and "
                                                    "per-image probabilities (needs images and texts)")


class ClipEngine(Engine[ClipOptions]):
    id = "clip"
    locality = "local"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE})
    outputs = frozenset({Modality.VECTOR})
    default_model = DEFAULT_MODEL
    model_hint = MODEL_HINT
    description = "Text and image embeddings in one space (CLIP, SigLIP) with transformers; -o score=true ranks"
    requires = ("torch", "transformers")
    extra = "hf"
    package = "transformers"
    # Vectors from different models are not comparable, so the router never swaps this in for minilm;
    # `embed` picks it by name for images (tasks.TASK_DEFAULTS).
    auto_select = False

    Options = ClipOptions

    # -- models -----------------------------------------------------------------------------------
    def check_model(self, model: str) -> None:
        # pickle-only folders are judged in stream, where the allow_pickle option is known
        source = inspect_model(model, allow_pickle=True)
        if source.local:
            _check_type(source.model_type, source.ref)
        elif (missing := hub_model_missing(source.ref, self.id)) is not None:
            raise missing

    def load(self, model: str, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False) -> _Loaded:
        """The model and processor for `model`, kept in the shared model cache."""
        source = inspect_model(model, allow_pickle=allow_pickle)
        if source.local:
            _check_type(source.model_type, source.ref)
        elif (missing := hub_model_missing(source.ref, self.id)) is not None:
            raise missing
        where = pick_device(device)
        torch_dtype = pick_dtype(dtype, where)
        key = (self.id, source.ref, where, str(torch_dtype), allow_pickle)
        return model_cache().get(key, lambda: self._create(source, where, torch_dtype, allow_pickle))  # type: ignore[no-any-return]

    def _create(self, source: ModelSource, device: str, dtype: Any, allow_pickle: bool) -> _Loaded:
        try:
            from transformers import AutoConfig, AutoModel, AutoProcessor
        except ImportError as exc:
            raise EngineUnavailable(f"clip needs transformers: {exc}", hint=HF_EXTRA_HINT) from None
        try:
            config = AutoConfig.from_pretrained(source.ref)
            _check_type(getattr(config, "model_type", None), source.ref)  # before a hub download of weights
            net = AutoModel.from_pretrained(source.ref, **{transformers_dtype_kwarg(): dtype},
                                            **hub_kwargs(source, allow_pickle))
            processor = AutoProcessor.from_pretrained(source.ref)
        except ImagineError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise hub_load_error(source, self.id, exc) from None
        if not (hasattr(net, "get_text_features") and hasattr(net, "get_image_features")):
            raise InputError(f"{source.ref} loads as {type(net).__name__}, which has no text and image encoders",
                             hint="use a CLIP or SigLIP model")
        tokenizer = getattr(processor, "tokenizer", None)
        image_processor = getattr(processor, "image_processor", None)
        return _Loaded(net.to(device).eval(), tokenizer, image_processor, config.model_type, device, dtype)

    # -- encoding ---------------------------------------------------------------------------------
    @staticmethod
    def _features(out: Any) -> Any:
        """transformers 5 returns an output object whose pooler_output is the projected embedding;
        4.x returned the tensor itself."""
        import torch

        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def _encode_texts(self, loaded: _Loaded, texts: Sequence[str], batch_size: int) -> tuple[Any, int]:
        """(N, D) float32 numpy embeddings and the number of real (unpadded) tokens read."""
        import numpy as np
        import torch

        if loaded.tokenizer is None:
            raise InputError("this model's folder has no tokenizer, so it cannot embed text",
                             hint="save the processor (or tokenizer) next to the model with save_pretrained")
        text_config = getattr(loaded.model.config, "text_config", None)
        limit = min(int(getattr(loaded.tokenizer, "model_max_length", 77) or 77),
                    int(getattr(text_config, "max_position_embeddings", 77) or 77))
        rows, tokens = [], 0
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            enc = loaded.tokenizer(chunk, padding="max_length" if loaded.siglip else True, truncation=True,
                                   max_length=limit, return_tensors="pt")
            mask = enc.get("attention_mask")
            tokens += int(mask.sum()) if mask is not None else int(enc["input_ids"].numel())
            kwargs = {"input_ids": enc["input_ids"].to(loaded.device)}
            if mask is not None and not loaded.siglip:  # SigLIP was trained without a text mask
                kwargs["attention_mask"] = mask.to(loaded.device)
            with torch.inference_mode():
                rows.append(self._features(loaded.model.get_text_features(**kwargs)).float().cpu().numpy())
        return np.concatenate(rows).astype(np.float32), tokens

    def _encode_images(self, loaded: _Loaded, images: Sequence[Image], batch_size: int,
                       limits: Limits = DEFAULT_LIMITS) -> Any:
        import numpy as np
        import torch

        if loaded.image_processor is None:
            raise InputError("this model's folder has no image processor, so it cannot embed images",
                             hint="save the processor next to the model with save_pretrained")
        rows = []
        for start in range(0, len(images), batch_size):
            pictures = [part.pil(limits).convert("RGB") for part in images[start:start + batch_size]]
            batch = loaded.image_processor(images=pictures, return_tensors="pt")
            kwargs = {k: (v.to(loaded.device, loaded.dtype) if v.is_floating_point() else v.to(loaded.device))
                      for k, v in batch.items() if isinstance(v, torch.Tensor)}
            with torch.inference_mode():
                rows.append(self._features(loaded.model.get_image_features(**kwargs)).float().cpu().numpy())
        return np.concatenate(rows).astype(np.float32)

    def encode(self, loaded: _Loaded, parts: Sequence[Text | Image], batch_size: int,
               limits: Limits = DEFAULT_LIMITS) -> tuple[Any, int]:
        """(N, D) raw embeddings for text and image parts in order, and the text tokens read. Equal
        parts are computed once, so a repeated input gets the very same vector."""
        import numpy as np

        unique: dict[tuple[str, str], Text | Image] = {}
        for part in parts:
            unique.setdefault((type(part).__name__, part.sha256), part)
        texts = [(k, p) for k, p in unique.items() if isinstance(p, Text)]
        images = [(k, p) for k, p in unique.items() if isinstance(p, Image)]
        found: dict[tuple[str, str], Any] = {}
        tokens = 0
        if texts:
            vectors, tokens = self._encode_texts(loaded, [p.text for _, p in texts], batch_size)
            found.update(zip((k for k, _ in texts), vectors))
        if images:
            found.update(zip((k for k, _ in images), self._encode_images(loaded, [p for _, p in images], batch_size,
                                                                                      limits)))
        return np.stack([found[(type(p).__name__, p.sha256)] for p in parts]), tokens

    @staticmethod
    def similarity(loaded: _Loaded, image_vectors: Any, text_vectors: Any, image_names: Sequence[str],
                   texts: Sequence[str]) -> dict[str, Any]:
        """Image x text scores from unit vectors: cosine, the model's logits and per-image softmax."""
        import numpy as np

        def unit(x: Any) -> Any:
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

        cosine = unit(image_vectors).astype(np.float64) @ unit(text_vectors).astype(np.float64).T  # (I, T)
        scale = float(loaded.model.logit_scale.detach().float().exp().cpu())
        bias_param = getattr(loaded.model, "logit_bias", None)
        bias = float(bias_param.detach().float().cpu().reshape(-1)[0]) if bias_param is not None else 0.0
        logits = cosine * scale + bias
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        value: dict[str, Any] = {
            "images": list(image_names), "texts": list(texts), "logit_scale": round(scale, 6),
            "cosine": np.round(cosine, 6).tolist(), "logits": np.round(logits, 6).tolist(),
            "probs": np.round(probs, 6).tolist(),
            "best": [texts[int(i)] for i in probs.argmax(axis=1)],
        }
        if loaded.siglip:
            value["logit_bias"] = round(bias, 6)
            value["sigmoid"] = np.round(1.0 / (1.0 + np.exp(-logits)), 6).tolist()
        return value

    # -- the one method ---------------------------------------------------------------------------
    @staticmethod
    def _parts(request: Request) -> list[Text | Image]:
        message = last_user(request)
        refuse_other_parts(message, (Text, Image), engine="clip", verb="embeds", takes="text and images",
                           hint="send texts and images (PNG, JPEG, GIF, WebP)")
        parts = message.parts if message else ()
        kept = [p for p in parts if isinstance(p, Image) or (isinstance(p, Text) and p.text.strip())]
        if not kept:
            raise InputError("clip embeds text and images, and the last user message has none",
                             hint="pass one or more texts or images; each becomes one vector")
        return kept

    async def stream(self, request: Request[ClipOptions]) -> AsyncIterator[Event]:
        opts = request.options
        parts = self._parts(request)
        images = [p for p in parts if isinstance(p, Image)]
        texts = [p for p in parts if isinstance(p, Text)]
        if opts.score and not (images and texts):
            raise InputError("score compares images with texts, so it needs at least one of each",
                             hint="send images and candidate labels together, or drop -o score=true")
        loaded = await asyncio.to_thread(self.load, request.model, opts.device, opts.dtype, opts.allow_pickle)
        raw, tokens = await asyncio.to_thread(self.encode, loaded, parts, opts.batch_size, request.limits)
        import numpy as np

        vectors = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12) if opts.normalize else raw
        for row in vectors:
            yield PartOut(Vector(row.tolist()))
        if opts.score:
            at_image = [i for i, p in enumerate(parts) if isinstance(p, Image)]
            at_text = [i for i, p in enumerate(parts) if isinstance(p, Text)]
            names = [p.name or f"image {n + 1}" for n, p in enumerate(images)]
            yield PartOut(Data(self.similarity(loaded, raw[at_image], raw[at_text], names, [p.text for p in texts])))
        yield Usage(input_tokens=tokens, cost=0.0, extra={"images": len(images)})
        yield Done()
