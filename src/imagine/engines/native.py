"""`native`: checkpoints trained in imagine's own lab (`imagine.arch`), served through the one request path.

Model names: the folder `imagine lab train KIND ... -O DIR` wrote (config.json + model.safetensors), as
`-m native:DIR`. config.json's "arch" says the kind, and the kind what the model takes and gives:
`lm` continues text (below); `vit` names the classes an image shows (`imagine see`), `dit` draws the class
a prompt names (`imagine draw`), `vqvae` reconstructs an image (`imagine edit`), `fusion` draws a caption
and captions an image (`draw` and `see`, by the modality asked for): native_vision.py. The
engine declares the union, and `capabilities(model)` the checkpoint's own, so the router refuses a
mismatch (an LM asked to draw) naming the checkpoint's kind. There is no bundled checkpoint, so the engine has no default model and is never
picked by `auto`: a random-weight toy answering "what is 2+2?" would only confuse.

The language models are raw, not chat models: the prompt is the text of the conversation's last user
message, continued token by token. A system prompt and earlier turns are ignored (no error: a chat
client may send them); only text parts are accepted. Generation always runs to `max_tokens`
(finish reason "length"): the models have no end-of-text token.

Each checkpoint is loaded once per process (the shared model cache, keyed by its resolved path and file
times, so re-training into the same folder is picked up and the old weights dropped). torch runs in a worker thread that hands each token's text to the
event loop, so streaming never blocks other work; leaving the stream stops generation.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import secrets
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import ImagineError, InputError, UpstreamError
from ..events import Done, Event, PartOut, Progress, TextDelta, Usage
from ..parts import Image, Modality, Text
from . import native_vision as nv
from ._support.cache import model_bytes, model_cache
from ._support.inputs import last_user, refuse_other_parts, user_parts
from ._support.threads import Finished, stream_from_thread

__all__ = ["NativeEngine", "NativeOptions", "continuation", "start_ids"]

TRAIN_HINT = ("train one with `imagine lab train lm --preset imagine-cpu --data TEXT -O DIR` (or `lab train "
              "vit|vqvae|dit|fusion -O DIR` for images), then pass -m native:DIR")


def _checkpoint_folder(model: str) -> Path:
    """The checkpoint folder `model` names, checked without importing torch (fails before streaming)."""
    return _checkpoint(model)[0]


def _checkpoint(model: str) -> tuple[Path, str, dict[str, Any]]:
    """(folder, kind, config.json) of the checkpoint `model` names, checked without importing torch."""
    if not model.strip():
        raise InputError("the native engine needs a checkpoint folder and has no default", hint=TRAIN_HINT)
    folder = Path(model).expanduser()
    if not folder.exists():
        raise InputError(f"checkpoint folder not found: {folder}", hint=TRAIN_HINT)
    if not folder.is_dir():
        raise InputError(f"{folder} is a file; a native checkpoint is a folder (config.json + model.safetensors)",
                         hint=TRAIN_HINT)
    missing = [f for f in ("config.json", "model.safetensors") if not (folder / f).is_file()]
    if missing:
        raise InputError(f"{folder} is not an imagine LM checkpoint (it lacks {', '.join(missing)}; every lab "
                         "checkpoint has both)", hint=TRAIN_HINT)
    try:
        info = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{folder}/config.json is not valid JSON ({exc})", hint="re-train or re-save the checkpoint") from None
    kind = info.get("arch") if isinstance(info, dict) else None
    if not isinstance(info, dict) or kind not in nv.KIND_LABEL:
        raise InputError(f"{folder} holds a {kind!r} model, not one of the lab's (arch lm, vit, vqvae, dit or fusion)",
                         hint="the native engine runs checkpoints from `imagine lab train`")
    if kind != "lm":
        nv.check_info(folder, info, kind)
    elif not isinstance(info.get("tokenizer"), dict):
        raise InputError(f"{folder}/config.json has no tokenizer", hint="save the checkpoint with "
                         "meta={'tokenizer': tok.to_dict()}, as `imagine lab train lm` does")
    return folder, kind, info


def start_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids to continue from: the prompt, or a newline when it is empty (a fresh line is where
    a text-trained model most naturally starts). Unknown characters are an InputError naming them."""
    try:
        ids: list[int] = tokenizer.encode(prompt or "\n")
    except ValueError as exc:
        if not prompt:
            raise InputError("the prompt is empty and this model's vocabulary has no newline to start from",
                             hint="give a prompt made of characters from its training text") from None
        chars = getattr(tokenizer, "chars", None)
        unknown = "".join(sorted(set(prompt) - set(chars))) if isinstance(chars, str) else ""
        what = f"characters not in this model's vocabulary: {unknown[:40]!r}" if unknown else str(exc)
        raise InputError(f"the prompt has {what}" if unknown else f"cannot encode the prompt: {what}",
                         hint="use only characters from its training text, or train with --tokenizer byte "
                              "(which takes any text)") from None
    return ids


def continuation(model: Any, tokenizer: Any, ids: list[int], *, max_tokens: int, temperature: float,
                 top_k: int | None, top_p: float | None, seed: int | None,
                 stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Decoded text, one piece per generated token (some pieces are empty: the bytes of a multi-byte
    character arrive over several tokens). Sync and torch-bound: run it in a worker thread.

    The generator is seeded explicitly even without a seed, so concurrent calls never share torch's
    global RNG and a given seed always gives the same text."""
    import torch

    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    if getattr(tokenizer, "kind", "") == "byte":
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def piece(token: int) -> str:
            return str(decoder.decode(bytes([token])))
    else:
        def piece(token: int) -> str:
            return str(tokenizer.decode([token]))

    for token in model.stream(idx, max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              generator=generator):
        yield piece(int(token[0]))
        if stop():
            return
    if getattr(tokenizer, "kind", "") == "byte":
        yield str(decoder.decode(b"", final=True))  # a cut multi-byte character becomes U+FFFD


class NativeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_tokens: int = Field(default=200, gt=0, le=100_000, description="tokens to generate (always all of them)")
    temperature: float = Field(default=0.8, ge=0, le=5, description="0 = greedy (fusion: image codes; its "
                               "captions are greedy unless this is set)")
    top_k: int | None = Field(default=40, ge=0, description="keep the k likeliest tokens; 0 or null = off")
    top_p: float | None = Field(default=None, gt=0, le=1, description="nucleus sampling; null = off")
    seed: int | None = Field(default=None, ge=0, description="same seed, same text (a DiT: same images; unset: "
                             "a random one, reported in usage)")
    top: int = Field(default=3, ge=1, le=100, description="ViT: how many of the likeliest classes to name")
    steps: int = Field(default=20, ge=1, le=1000, description="DiT: sampling steps")
    guidance: float = Field(default=3.0, ge=0, le=50, description="DiT: classifier-free guidance; 1 = off")
    sampler: Literal["heun", "euler"] = Field(default="heun", description="DiT: ODE solver (heun: 2 calls a step)")
    n: int = Field(default=1, ge=1, le=16, description="DiT/fusion: images to make")
    scale: int = Field(default=1, ge=1, le=32, description="DiT/VQ-VAE/fusion: enlarge the output (nearest neighbour)")


class NativeEngine(Engine[NativeOptions]):
    id = "native"
    locality = "local"
    # the union over checkpoint kinds; `capabilities(model)` narrows it to one checkpoint's
    inputs = frozenset({Modality.TEXT, Modality.IMAGE})
    outputs = frozenset({Modality.TEXT, Modality.IMAGE})
    features = frozenset({"stream", "seed"})
    default_model = ""  # no bundled checkpoint: -m native:DIR
    model_hint = TRAIN_HINT
    description = ("Checkpoints trained with `imagine lab train` (-m native:DIR): lm continues text, vit "
                   "classifies images, dit draws its classes, vqvae reconstructs images, fusion draws "
                   "captions and captions images")
    requires = ("torch", "safetensors")
    extra = "torch"
    package = "torch"
    auto_select = False  # raw continuation of a user-trained toy: only when asked for by name

    Options = NativeOptions

    def check_model(self, model: str) -> None:
        _checkpoint(model)

    def capabilities(self, model: str) -> tuple[frozenset[Modality], frozenset[Modality], frozenset[str]]:
        """One checkpoint's inputs and outputs (read from config.json, nothing loaded)."""
        try:
            kind = _checkpoint(model)[1]
        except InputError:  # check_model says why, in its own words
            return self.inputs, self.outputs, self.features
        return nv.capabilities_of(kind)

    def explain_misfit(self, model: str, needed: frozenset[Modality], want: Modality) -> None:
        folder, kind, _ = _checkpoint(model)
        error = nv.misfit(folder, kind, needed, want)
        if error is not None:
            raise error

    def load_vision(self, model: str) -> tuple[Any, dict[str, Any]]:
        """(model in eval mode, config.json) of an image checkpoint, cached like the LMs."""
        folder = _checkpoint(model)[0].resolve()
        key = (self.id, str(folder), (folder / "model.safetensors").stat().st_mtime_ns,
               (folder / "config.json").stat().st_mtime_ns)
        cache = model_cache()

        def create() -> tuple[Any, dict[str, Any]]:
            try:
                from ..arch.checkpoint import load

                loaded = load(folder)
            except Exception as exc:  # truncated weights, shapes that disagree with config.json, ...
                raise InputError(f"cannot load checkpoint {folder}: {type(exc).__name__}: {exc}",
                                 hint="the files may be incomplete or from another version; re-train it") from None
            cache.discard(lambda k: isinstance(k, tuple) and k[:2] == key[:2] and k != key)
            return loaded

        pair: tuple[Any, dict[str, Any]] = cache.get(key, create, size=lambda p: model_bytes(p[0]))
        return pair

    def load(self, model: str) -> tuple[Any, Any]:
        """(LM in eval mode, tokenizer) for a checkpoint folder, loaded once per process (the shared model
        cache); a folder re-trained since drops its old weights."""
        folder = _checkpoint_folder(model).resolve()
        key = (self.id, str(folder), (folder / "model.safetensors").stat().st_mtime_ns,
               (folder / "config.json").stat().st_mtime_ns)
        cache = model_cache()

        def create() -> tuple[Any, Any]:
            try:
                from ..arch.train import load_checkpoint

                lm, tokenizer, _ = load_checkpoint(folder)
            except (FileNotFoundError, ValueError, KeyError) as exc:
                raise InputError(f"cannot load checkpoint {folder}: {exc}", hint=TRAIN_HINT) from None
            except Exception as exc:  # truncated weights, shapes that disagree with config.json, ...
                raise InputError(f"cannot load checkpoint {folder}: {type(exc).__name__}: {exc}",
                                 hint="the files may be incomplete or from another version; re-train or re-save it") from None
            if tokenizer.vocab_size > lm.cfg.vocab_size:
                raise InputError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                                 f"{lm.cfg.vocab_size}", hint="the checkpoint's config.json was edited or mixed up")
            cache.discard(lambda k: isinstance(k, tuple) and k[:2] == key[:2] and k != key)  # re-trained: old weights go
            return lm, tokenizer

        loaded: tuple[Any, Any] = cache.get(key, create, size=lambda pair: model_bytes(pair[0]))
        return loaded

    @staticmethod
    def prompt(request: Request) -> str:
        """The last user message's text: what a raw continuation model continues."""
        message = last_user(request)
        refuse_other_parts(message, Text, engine="the native engine", verb="continues", takes="text only",
                           hint="send text only")
        return "".join(p.text for p in message.parts if isinstance(p, Text)) if message else ""

    async def stream(self, request: Request[NativeOptions]) -> AsyncIterator[Event]:
        kind = _checkpoint(request.model)[1]
        nv.check_options(kind, request.options)
        if kind != "lm":
            async for event in self._stream_vision(request, kind):
                yield event
            return
        opts = request.options
        prompt = self.prompt(request)
        lm, tokenizer = await asyncio.to_thread(self.load, request.model)
        ids = start_ids(tokenizer, prompt)

        def produce(emit: Callable[[str], None], stop: threading.Event) -> tuple[str, int]:
            """Runs in a worker thread: generate and hand each piece of text to the loop."""
            produced = 0
            for text in continuation(lm, tokenizer, ids, max_tokens=opts.max_tokens,
                                     temperature=opts.temperature, top_k=opts.top_k or None,
                                     top_p=opts.top_p, seed=opts.seed, stop=stop.is_set):
                produced += 1
                if text:
                    emit(text)
            # the byte decoder's final flush is not a token
            return ("cancelled" if stop.is_set() else "length"), min(produced, opts.max_tokens)

        try:
            async for item in stream_from_thread(produce):
                if isinstance(item, Finished):
                    finish, produced = item.value
                    yield Usage(input_tokens=len(ids), output_tokens=produced, cost=0.0)
                    yield Done(finish)
                else:
                    yield TextDelta(item)
        except ImagineError:
            raise
        except Exception as exc:  # torch's own errors, raised in the worker
            raise UpstreamError(f"native generation failed: {type(exc).__name__}: {exc}") from None

    async def _stream_vision(self, request: Request[NativeOptions], kind: str) -> AsyncIterator[Event]:
        """ViT: image(s) -> text; DiT: prompt -> image(s); VQ-VAE: image -> image; fusion: either of
        prompt -> image(s) and image(s) -> text, by the modality asked for."""
        opts = request.options
        label = f"a {nv.KIND_LABEL[kind]} (kind {kind!r})"
        if kind == "fusion" and request.want == Modality.IMAGE:
            async for event in self._fusion_draw(request, label):
                yield event
            return
        if kind == "dit":
            message = last_user(request)
            refuse_other_parts(message, Text, engine=label, takes="a text prompt only", hint="send a prompt naming a class")
            prompt = "".join(p.text for p in message.parts if isinstance(p, Text)) if message else ""
            model, info = await asyncio.to_thread(self.load_vision, request.model)
            class_id = nv.match_class(prompt, info["meta"]["classes"])
            seed = opts.seed if opts.seed is not None else nv.new_seed()

            def draw(emit: Callable[[Any], None], stop: threading.Event) -> list[bytes]:
                def step(done: int) -> None:
                    emit(Progress(done, opts.steps, "sample"))
                    if stop.is_set():
                        raise _Stopped

                return nv.draw_pngs(model, class_id, opts, seed, step)

            try:
                async for item in stream_from_thread(draw):
                    if isinstance(item, Finished):
                        for png in item.value:
                            yield PartOut(Image(png, mime="image/png"))
                        yield Usage(cost=0.0, extra={"images": opts.n, "steps": opts.steps, "seed": seed,
                                                     "class": info["meta"]["classes"][class_id]})
                        yield Done("stop")
                    else:
                        yield item
            except _Stopped:
                return
            except ImagineError:
                raise
            except Exception as exc:
                raise UpstreamError(f"native drawing failed: {type(exc).__name__}: {exc}") from None
            return
        images = user_parts(request, Image, engine=label, needs="image",
                            hint=nv.USE[kind].format(f=request.model), one=kind == "vqvae")
        pictures = [im.pil(request.limits) for im in images]
        model, info = await asyncio.to_thread(self.load_vision, request.model)
        try:
            if kind in ("vit", "fusion"):
                if kind == "vit":
                    text = await asyncio.to_thread(nv.classify_text, model, info["meta"], pictures, opts.top)
                else:
                    text = await asyncio.to_thread(nv.fusion_describe, model, info["meta"], pictures, opts)
                yield TextDelta(text)
                yield Usage(input_tokens=None, output_tokens=None, cost=0.0, extra={"images": len(pictures)})
            else:
                png, tokens = await asyncio.to_thread(nv.reconstruct_png, model, info["meta"], pictures[0], opts.scale)
                yield PartOut(Image(png, mime="image/png"))
                yield Usage(cost=0.0, extra={"images": 1, "codes": tokens})
        except ImagineError:
            raise
        except Exception as exc:
            raise UpstreamError(f"native {kind} failed: {type(exc).__name__}: {exc}") from None
        yield Done("stop")

    async def _fusion_draw(self, request: Request[NativeOptions], label: str) -> AsyncIterator[Event]:
        """A fusion checkpoint asked for an image: the prompt is the caption."""
        opts = request.options
        message = last_user(request)
        refuse_other_parts(message, Text, engine=label, takes="a text caption only to draw",
                           hint="send a caption to draw, or ask for text (`imagine see`) to caption an image")
        prompt = "".join(p.text for p in message.parts if isinstance(p, Text)) if message else ""
        caption = nv.fusion_caption(prompt, _checkpoint(request.model)[2])
        model, _ = await asyncio.to_thread(self.load_vision, request.model)
        seed = opts.seed if opts.seed is not None else nv.new_seed()
        try:
            pngs = await asyncio.to_thread(nv.fusion_draw_pngs, model, caption, opts, seed)
        except ImagineError:
            raise
        except Exception as exc:
            raise UpstreamError(f"native drawing failed: {type(exc).__name__}: {exc}") from None
        for png in pngs:
            yield PartOut(Image(png, mime="image/png"))
        yield Usage(cost=0.0, extra={"images": opts.n, "seed": seed, "caption": caption,
                                     "codes": model.vocab.image_tokens})
        yield Done("stop")


class _Stopped(Exception):
    """Raised inside the sampler when the caller left the stream."""
