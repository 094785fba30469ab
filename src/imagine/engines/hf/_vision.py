"""Vision-language side of the `transformers` engine: telling a VLM from a text model, loading one,
and turning a conversation with images into processor inputs.

A VLM (LLaVA, SmolVLM, Qwen-VL, Gemma 3, ...) is recognised from its config — a `vision_config`, or a
`...ForConditionalGeneration` architecture whose processor has an image processor — never from its name.
It is loaded as AutoProcessor + AutoModelForImageTextToText (AutoModelForVision2Seq on older
transformers). Images keep their place in the conversation: each Image part becomes an `{"type": "image"}`
entry between the text entries of its message, and the processor's chat template decides how the model
sees it; the PIL images go to the processor in the same order.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...errors import InputError
from ...parts import Image
from ._hf import transformers_dtype_kwarg

__all__ = ["VLM_EXAMPLES", "config_is_vision", "fold_system", "load_vision", "looks_vision",
           "render_vision_prompt", "vision_inputs"]

VLM_EXAMPLES = "HuggingFaceTB/SmolVLM-256M-Instruct or llava-hf/llava-interleave-qwen-0.5b-hf"

# One turn of the conversation as the engine keeps it: role and ordered parts (text or images).
Turn = tuple[str, list["str | Image"]]


def config_is_vision(config: dict[str, Any]) -> bool | None:
    """From a config.json dict (no transformers import): True for a VLM, False for a plain text model,
    None when only loading the processor can tell."""
    if not config:
        return None
    if "vision_config" in config:
        return True
    archs = config.get("architectures") or []
    if any("ForConditionalGeneration" in a for a in archs):
        return None  # T5 and Whisper are named so too: the processor decides
    return False


def looks_vision(ref: str, config: Any, common: dict[str, Any]) -> bool:
    """True when the loaded AutoConfig describes a vision-language model."""
    if getattr(config, "vision_config", None) is not None:
        return True
    archs = getattr(config, "architectures", None) or []
    if not any("ForConditionalGeneration" in a for a in archs):
        return False
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(ref, **common)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return getattr(processor, "image_processor", None) is not None


def load_vision(ref: str, *, dtype: Any, device: str, common: dict[str, Any], weights: dict[str, Any]) -> tuple[Any, Any]:
    """(model in eval mode on `device`, processor) for a vision-language model."""
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(ref, **common)
    if getattr(processor, "tokenizer", None) is None:
        raise InputError(f"{ref} has a processor without a tokenizer, so its answers cannot be decoded",
                         hint="save the full processor (processor.save_pretrained) next to the model")
    classes = [getattr(transformers, name, None) for name in
               ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")]
    last: Exception | None = None
    for cls in [c for c in classes if c is not None]:
        try:
            model = cls.from_pretrained(ref, **{transformers_dtype_kwarg(): dtype}, **weights, **common)
            break
        except ValueError as exc:  # "Unrecognized configuration class" for this auto class: try the next
            last = exc
    else:
        assert last is not None
        raise last
    return model.to(device).eval(), processor


def _entries(parts: Sequence["str | Image"]) -> list[dict[str, Any]]:
    return [{"type": "image"} if isinstance(p, Image) else {"type": "text", "text": p} for p in parts]


def _plain_prompt(turns: Sequence[Turn], image_token: str) -> str:
    """For a processor without a chat template: `role: text` lines, images as the image token."""
    lines = [f"{role}: " + "".join(image_token if isinstance(p, Image) else p for p in parts) for role, parts in turns]
    return "\n".join(lines) + "\nassistant:"


def render_vision_prompt(processor: Any, turns: Sequence[Turn]) -> str:
    """The prompt text with one image placeholder per image, in message order."""
    from jinja2 import TemplateError

    if getattr(processor, "chat_template", None):
        chat = [{"role": role, "content": _entries(parts)} for role, parts in turns]
        try:
            return str(processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))
        except TemplateError:
            if not turns or turns[0][0] != "system":
                raise
            # some templates refuse a system turn: fold it into the first user turn and try once more
            merged = fold_system(turns, "\n\n")
            chat = [{"role": role, "content": _entries(parts)} for role, parts in merged]
            return str(processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))
    return _plain_prompt(turns, getattr(processor, "image_token", "<image>"))


def fold_system(turns: Sequence[Turn], sep: str | None = None) -> list[Turn]:
    """The system turn merged into the first user turn, for chat templates that refuse a system role."""
    system, rest = turns[0], list(turns[1:])
    if rest and rest[0][0] == "user":
        return [("user", [*system[1], *([sep] if sep else []), *rest[0][1]]), *rest[1:]]
    return [("user", list(system[1])), *rest]


def vision_inputs(processor: Any, turns: Sequence[Turn], device: str, dtype: Any) -> dict[str, Any]:
    """Processor outputs for `turns` as tensors on `device` (floating ones, the pixels, in `dtype`)."""
    prompt = render_vision_prompt(processor, turns)
    images = [p.pil().convert("RGB") for _, parts in turns for p in parts if isinstance(p, Image)]
    bos = getattr(processor.tokenizer, "bos_token", None)
    kwargs: dict[str, Any] = {"text": prompt, "return_tensors": "pt",
                              "add_special_tokens": not (bos and prompt.startswith(bos))}
    if images:
        kwargs["images"] = images
    try:
        batch = processor(**kwargs)
    except ValueError as exc:  # e.g. more images than the template placed, or an unsupported size
        raise InputError(f"the processor could not take this conversation: {exc}",
                         hint="check the number of images matches what the model accepts") from None
    return {k: (v.to(device, dtype=dtype) if v.is_floating_point() else v.to(device)) if hasattr(v, "to") else v
            for k, v in batch.items()}
