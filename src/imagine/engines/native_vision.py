"""The native engine's image checkpoints (`imagine lab train vit|vqvae|dit`): what each kind takes and
gives, its options, and the work itself. The engine (native.py) dispatches here by the checkpoint's kind.

- vit: image(s) (+ a question it cannot read) -> text naming the likeliest classes: "red circle (0.97), ...".
  A classifier answers the same whatever is asked; the question is accepted so `imagine see` works.
- dit: a prompt -> image(s) of the class the prompt names ("a red circle"; typos within reach are
  forgiven), sampled by Heun steps with classifier-free guidance; an unknown class lists the classes.
- vqvae: an image (+ any text) -> its reconstruction through the codebook (`imagine edit`).
- fusion: both ways through one early-fusion LM and its VQ-VAE: a caption -> image(s) (`imagine draw`;
  the prompt must use the words and characters it was trained on, else an error lists them), and
  image(s) (+ a question it cannot read) -> a caption each (`imagine see`, greedy unless a temperature
  is set).

Checks read config.json only (no torch), so a wrong request fails before any weights load.
"""

from __future__ import annotations

import difflib
import io
import re
import secrets
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, OptionsError
from ..parts import Modality

__all__ = ["KIND_LABEL", "OPTIONS_OF", "capabilities_of", "check_info", "check_options", "misfit", "match_class",
           "classify_text", "draw_pngs", "new_seed", "reconstruct_png", "fusion_caption", "fusion_draw_pngs",
           "fusion_describe"]

KIND_LABEL = {"lm": "language model", "vit": "ViT classifier", "vqvae": "VQ-VAE", "dit": "DiT image generator",
              "fusion": "mixed-modal fusion model"}
REQUIRED_META = {"vit": ("classes", "image_size", "pixel_range"), "vqvae": ("image_size", "pixel_range"),
                 "dit": ("classes", "image_size", "pixel_range"), "fusion": ("image_size", "pixel_range")}
# options each kind uses; any other option set on a request is refused, naming these
OPTIONS_OF: dict[str, tuple[str, ...]] = {
    "lm": ("max_tokens", "temperature", "top_k", "top_p", "seed"),
    "vit": ("top",),
    "vqvae": ("scale",),
    "dit": ("steps", "guidance", "sampler", "n", "scale", "seed"),
    "fusion": ("temperature", "top_k", "seed", "n", "scale", "max_tokens"),
}
# a chat client sends text-sampling options with every request: a classifier ignores them
IGNORED_BY = {"vit": ("max_tokens", "temperature", "top_k", "top_p", "seed")}
USE = {"lm": 'imagine ask -m native:{f} "To be"', "vit": 'imagine see -m native:{f} IMAGE "what is it?"',
       "vqvae": 'imagine edit -m native:{f} IMAGE "reconstruct"', "dit": 'imagine draw -m native:{f} "a red circle"',
       "fusion": 'imagine see -m native:{f} IMAGE to caption it, or imagine draw -m native:{f} "a red circle"'}


def capabilities_of(kind: str) -> tuple[frozenset[Modality], frozenset[Modality], frozenset[str]]:
    """(inputs, outputs, features) of one checkpoint kind, for the router."""
    text, image = Modality.TEXT, Modality.IMAGE
    return {"lm": (frozenset({text}), frozenset({text}), frozenset({"stream", "seed"})),
            "vit": (frozenset({image, text}), frozenset({text}), frozenset({"stream"})),
            "vqvae": (frozenset({image, text}), frozenset({image}), frozenset()),
            "dit": (frozenset({text}), frozenset({image}), frozenset({"seed"})),
            "fusion": (frozenset({image, text}), frozenset({image, text}), frozenset({"stream", "seed"}))}[kind]


def check_info(folder: Path, info: dict[str, Any], kind: str) -> None:
    """An image checkpoint's config.json holds what serving needs (InputError naming what is missing)."""
    meta = info.get("meta")
    missing = [f"meta.{k}" for k in REQUIRED_META[kind] if not isinstance(meta, dict) or k not in meta]
    if not isinstance(info.get("config"), dict):
        missing.insert(0, "config")
    if missing:
        raise InputError(f"{folder} holds a {kind!r} model but its config.json lacks {', '.join(missing)}",
                         hint=f"re-train it with `imagine lab train {kind} -O DIR`")
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if kind in ("vit", "dit") and not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise InputError(f"{folder}/config.json: meta.classes must be a list of class names",
                         hint=f"re-train it with `imagine lab train {kind} -O DIR`")
    config = info["config"]
    if kind == "fusion" and not (isinstance(config.get("chars"), str) and isinstance(config.get("lm"), dict)
                                 and isinstance(config.get("vqvae"), dict)):
        raise InputError(f"{folder}/config.json: a fusion config needs chars (text), lm and vqvae (objects)",
                         hint="re-train it with `imagine lab train fusion -O DIR`")


def misfit(folder: Path, kind: str, needed: frozenset[Modality], want: Modality) -> InputError | None:
    """Why a request of this shape cannot go to this checkpoint, naming its kind and what it is for."""
    inputs, outputs, _ = capabilities_of(kind)
    what = f"native:{folder} is a {KIND_LABEL[kind]} (kind {kind!r})"
    hint = f"use it as `{USE[kind].format(f=folder)}`"
    if extra := needed - inputs:
        return InputError(f"{what} and does not take {', '.join(sorted(m.value for m in extra))} input", hint=hint)
    if want not in outputs:
        gives = ", ".join(sorted(m.value for m in outputs))
        if want == Modality.IMAGE:
            hint = "to draw, train a DiT or a fusion model (`imagine lab train dit|fusion -O DIR`) and pass -m native:DIR"
        return InputError(f"{what}: it gives {gives}, not {want.value}", hint=hint)
    return None


def check_options(kind: str, opts: Any) -> None:
    """Refuse an option this kind would silently not use (steps on a language model, top_k on a DiT)."""
    allowed = set(OPTIONS_OF[kind]) | set(IGNORED_BY.get(kind, ()))
    wrong = sorted(set(opts.model_fields_set) - allowed)
    if wrong:
        raise OptionsError(f"option {wrong[0]!r} does not apply to a {KIND_LABEL[kind]} checkpoint (kind {kind!r})",
                           hint=f"its options: {', '.join(OPTIONS_OF[kind])}")


# -- ViT: classify ------------------------------------------------------------------------------------

def _pixels(pil: Any, size: int, pixel_range: list[float]) -> Any:
    """A PIL image -> (1, 3, S, S) float tensor in the model's pixel range (squashed to S x S, RGB)."""
    import numpy as np
    import torch
    from PIL import Image

    rgb = pil.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]   # (1, 3, S, S)
    lo, hi = float(pixel_range[0]), float(pixel_range[1])
    return arr * (hi - lo) + lo


def classify_text(model: Any, meta: dict[str, Any], images: list[Any], top: int) -> str:
    """One line per image: its `top` likeliest classes with probabilities, likeliest first."""
    import torch

    from ..arch.train_vision import classify

    x = torch.cat([_pixels(im, int(meta["image_size"]), meta["pixel_range"]) for im in images])
    probs = classify(model, x)                                                   # (N, K)
    classes = meta["classes"]
    lines = []
    for row in probs:
        values, ids = row.topk(min(top, len(classes)))
        lines.append(", ".join(f"{classes[int(i)]} ({float(p):.2f})" for p, i in zip(values, ids)))
    if len(lines) == 1:
        return lines[0]
    return "\n".join(f"image {n}: {line}" for n, line in enumerate(lines, 1))


# -- DiT: draw ----------------------------------------------------------------------------------------

def _words(text: str) -> list[str]:
    return [w[:-1] if w.endswith("s") and len(w) > 3 else w for w in re.findall(r"[a-z]+", text.lower())]


def match_class(prompt: str, classes: list[str]) -> int:
    """The class a prompt names: a class name as a phrase in the prompt, else all of its words anywhere
    (plurals and near-miss spellings forgiven); the longest such name wins. None or a tie is an
    InputError listing the classes."""
    vocab = sorted({w for c in classes for w in _words(c)})
    said_in_order = []
    for word in _words(prompt):
        close = difflib.get_close_matches(word, vocab, n=1, cutoff=0.8)
        said_in_order.append(close[0] if close else word)
    # the class names as phrases first ("a red circle left of a blue square" names two, not four),
    # then as any words of the prompt ("a circle, red")
    text = " " + " ".join(said_in_order) + " "
    named = [i for i, c in enumerate(classes) if f" {' '.join(_words(c))} " in text]
    named = named or [i for i, c in enumerate(classes) if set(_words(c)) <= set(said_in_order)]
    if named:
        longest = max(len(_words(classes[i])) for i in named)
        named = [i for i in named if len(_words(classes[i])) == longest]
    if len(named) == 1:
        return named[0]
    listing = ", ".join(classes)
    if not named:
        raise InputError(f"this DiT draws only its {len(classes)} classes, and {prompt!r} names none of them: {listing}",
                         hint='name one, e.g. "a ' + classes[0] + '"')
    raise InputError(f"{prompt!r} names several classes ({', '.join(classes[i] for i in named)}); this DiT draws one",
                     hint="name one class per drawing")


def draw_pngs(model: Any, class_id: int, opts: Any, seed: int, on_step: Callable[[int], None]) -> list[bytes]:
    """`opts.n` PNGs of class `class_id` at the model's image size (times `opts.scale`)."""
    import torch

    from ..arch.train_vision import generate

    y = torch.full((opts.n,), class_id, dtype=torch.long)
    images = generate(model, y, steps=opts.steps, guidance=opts.guidance, seed=seed, method=opts.sampler,
                      on_step=on_step)
    return [_png(im, opts.scale) for im in images]


def _png(image: Any, scale: int) -> bytes:
    """(3, S, S) in [0, 1] -> PNG bytes, enlarged `scale` times by nearest neighbour."""
    import numpy as np
    from PIL import Image

    arr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(arr)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def new_seed() -> int:
    return secrets.randbits(31)


# -- VQ-VAE: reconstruct ------------------------------------------------------------------------------

def reconstruct_png(model: Any, meta: dict[str, Any], pil: Any, scale: int) -> tuple[bytes, int]:
    """The image through encoder -> codebook -> decoder at the model's size; (PNG, tokens used)."""
    import torch

    lo, hi = meta["pixel_range"]
    x = _pixels(pil, int(meta["image_size"]), meta["pixel_range"])
    with torch.no_grad():
        recon, q = model(x)
    image = (recon[0].clamp(lo, hi) - lo) / (hi - lo)
    return _png(image, scale), int(q.codes.numel())


# -- fusion: caption -> image, image -> caption ------------------------------------------------------

def fusion_caption(prompt: str, info: dict[str, Any]) -> str:
    """The prompt as a caption the model can read: spaces collapsed, lower-cased when its alphabet is,
    trailing . ! ? dropped when it has none. Words or characters it never saw are an InputError listing
    them and what it knows (a fusion LM reads any string of its characters, but unseen words only make
    noise), as is a caption too long for its context."""
    config, meta = info["config"], info["meta"]
    chars: str = config["chars"]
    text = " ".join(prompt.split())
    if not any(ch.isupper() for ch in chars):
        text = text.lower()
    text = text.rstrip("".join(ch for ch in ".!?" if ch not in chars))
    words = meta.get("words") if isinstance(meta.get("words"), list) else None
    example = '"a red circle"' if words and {"a", "red", "circle"} <= set(words) else "a caption like its training ones"
    if not text:
        raise InputError("this early-fusion model draws from a caption, and the prompt is empty",
                         hint=f"write one, e.g. {example}")
    if words is not None:
        unknown = list(dict.fromkeys(w for w in text.split(" ") if w not in words))
        if unknown:
            raise InputError(f"this early-fusion model was trained on {len(words)} words and the prompt has others: "
                             f"{', '.join(repr(w) for w in unknown[:10])}",
                             hint=f"use only: {', '.join(words)}; e.g. {example}")
    odd = "".join(sorted(set(text) - set(chars)))
    if odd:
        raise InputError(f"the prompt has characters this early-fusion model cannot read: {odd[:40]!r}",
                         hint=f"use only {chars!r}; e.g. {example}")
    lm = config["lm"]
    room = int(lm.get("block_size", 0)) - 3 - _image_tokens(config)
    if len(text) > room:
        raise InputError(f"the caption is {len(text)} characters and this model's context leaves room for {room}",
                         hint=f"shorten it, e.g. {example}")
    return text


def _image_tokens(config: dict[str, Any]) -> int:
    return int((int(config["image_size"]) // 2 ** int(config["vqvae"].get("downsample", 2))) ** 2)


def _generator(seed: int | None) -> Any:
    import torch

    return torch.Generator().manual_seed(seed if seed is not None else new_seed())


def fusion_draw_pngs(model: Any, caption: str, opts: Any, seed: int) -> list[bytes]:
    """`opts.n` PNGs of `caption` (image side times `opts.scale`), codes sampled at `opts.temperature`."""
    images = model.draw(caption, opts.n, temperature=opts.temperature, top_k=opts.top_k or None,
                        generator=_generator(seed))
    return [_png(im, opts.scale) for im in images]


def fusion_describe(model: Any, meta: dict[str, Any], images: list[Any], opts: Any) -> str:
    """A caption per image (one line each, numbered when several): greedy unless the request set a
    temperature, at most `opts.max_tokens` characters."""
    import torch

    x = torch.cat([_pixels(im, int(meta["image_size"]), meta["pixel_range"]) for im in images])
    sampled = "temperature" in opts.model_fields_set
    said = model.describe(x, opts.max_tokens, temperature=opts.temperature if sampled else 0.0,
                          top_k=(opts.top_k or None) if sampled else None, generator=_generator(opts.seed))
    if len(said) == 1:
        return str(said[0])
    return "\n".join(f"image {n}: {line}" for n, line in enumerate(said, 1))
