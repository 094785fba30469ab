"""`native`: text continuation from checkpoints trained in imagine's own lab (`imagine.arch`).

Model names: the folder `imagine lab train lm ... -O DIR` wrote (config.json + model.safetensors), as
`-m native:DIR`. There is no bundled checkpoint, so the engine has no default model and is never
picked by `auto`: a random-weight toy answering "what is 2+2?" would only confuse.

These are raw language models, not chat models: the prompt is the text of the conversation's last user
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
from typing import Any, AsyncIterator, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import ImagineError, InputError, UpstreamError
from ..events import Done, Event, TextDelta, Usage
from ..parts import Modality, Text
from ._support.cache import model_bytes, model_cache
from ._support.inputs import last_user, refuse_other_parts
from ._support.threads import Finished, stream_from_thread

__all__ = ["NativeEngine", "NativeOptions", "continuation", "start_ids"]

TRAIN_HINT = "train one with `imagine lab train lm --preset imagine-cpu --data TEXT -O DIR`, then pass -m native:DIR"


def _checkpoint_folder(model: str) -> Path:
    """The checkpoint folder `model` names, checked without importing torch (fails before streaming)."""
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
        raise InputError(f"{folder} is not an imagine LM checkpoint (it lacks {', '.join(missing)})", hint=TRAIN_HINT)
    try:
        info = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{folder}/config.json is not valid JSON ({exc})", hint="re-train or re-save the checkpoint") from None
    if not isinstance(info, dict) or info.get("arch") != "lm":
        kind = info.get("arch") if isinstance(info, dict) else None
        raise InputError(f"{folder} holds a {kind!r} model, not a language model (arch 'lm')",
                         hint="the native text engine runs checkpoints from `imagine lab train lm`")
    if not isinstance(info.get("tokenizer"), dict):
        raise InputError(f"{folder}/config.json has no tokenizer", hint="save the checkpoint with "
                         "meta={'tokenizer': tok.to_dict()}, as `imagine lab train lm` does")
    return folder


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
    temperature: float = Field(default=0.8, ge=0, le=5, description="0 = greedy")
    top_k: int | None = Field(default=40, ge=0, description="keep the k likeliest tokens; 0 or null = off")
    top_p: float | None = Field(default=None, gt=0, le=1, description="nucleus sampling; null = off")
    seed: int | None = Field(default=None, ge=0, description="same seed, same text")


class NativeEngine(Engine[NativeOptions]):
    id = "native"
    locality = "local"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.TEXT})
    features = frozenset({"stream", "seed"})
    default_model = ""  # no bundled checkpoint: -m native:DIR
    model_hint = TRAIN_HINT
    description = "Text continuation from checkpoints trained with `imagine lab train lm` (-m native:DIR)"
    requires = ("torch", "safetensors")
    extra = "torch"
    package = "torch"
    auto_select = False  # raw continuation of a user-trained toy: only when asked for by name

    Options = NativeOptions

    def check_model(self, model: str) -> None:
        _checkpoint_folder(model)

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
