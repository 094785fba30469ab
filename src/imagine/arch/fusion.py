"""Early-fusion mixed-modal language model (Chameleon-style): text and image tokens in one sequence.

Chameleon (Chameleon Team 2024) turns every image into discrete VQ codes and trains one decoder-only
transformer over a single vocabulary of text tokens, image codes and a few markers, so that the same
next-token loss teaches captioning, text-to-image and interleaved documents. Two of its stabilisers are
the lab LM's own options (arch/lm.py): QK-norm against attention-logit drift and a z-loss on the softmax
normaliser. Here the text side is character-level and images are N = h*w codes of a VQ-VAE
(arch/vqvae.py), wrapped as `<boi> c_1 .. c_N <eoi>`.

Generation is constrained the way an image tokenizer requires: once the model emits `<boi>`, only image
codes are allowed for exactly N steps and then `<eoi>` is forced, so every image decodes; in text mode
image codes and `<eoi>` are masked out. `FusionModel` keeps the LM and its VQ-VAE together (one
checkpoint, arch/checkpoint.py) and turns captions into images and images into captions.
Shapes: B batch, T tokens, V vocabulary, N tokens per image, S image side, h = w = S / 2**downsample.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Literal, Sequence

import torch
from torch import Tensor, nn

from .lm import LM, LMConfig, sample_next
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["SPECIALS", "FusionVocab", "Segment", "interleave", "collate", "fusion_lm", "allowed_next",
           "generate_mixed", "segments", "FusionConfig", "FusionModel"]

SPECIALS = ("<pad>", "<bos>", "<eos>", "<boi>", "<eoi>")
Kind = Literal["text", "image"]
Segment = str | Tensor            # a piece of text, or one image as VQ codes (h, w) or (N,)


@dataclass(frozen=True)
class FusionVocab:
    """One id space: [specials | text characters | image codes], in that order.

    Image codes come last so that "is this an image token" is one comparison and the text part can grow
    without renumbering the specials."""
    chars: str                 # the text alphabet, one token per character
    n_codes: int               # K, the VQ-VAE codebook size
    image_tokens: int          # N, codes per image (h * w of the VQ latent grid)

    pad, bos, eos, boi, eoi = range(len(SPECIALS))

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("chars must not repeat")
        if self.n_codes < 1 or self.image_tokens < 1:
            raise ValueError(f"need at least one code and one image token, got {self.n_codes}, {self.image_tokens}")

    @classmethod
    def for_texts(cls, texts: Iterable[str], n_codes: int, image_tokens: int) -> "FusionVocab":
        """The vocabulary covering every character of `texts` (sorted, so it is the same on every run)."""
        return cls("".join(sorted(set("".join(texts)))), n_codes, image_tokens)

    @property
    def text_offset(self) -> int:
        return len(SPECIALS)

    @property
    def image_offset(self) -> int:
        return len(SPECIALS) + len(self.chars)

    @property
    def size(self) -> int:
        return self.image_offset + self.n_codes

    def encode_text(self, text: str) -> list[int]:
        missing = sorted(set(text) - set(self.chars))
        if missing:
            raise ValueError(f"characters {missing} are not in the vocabulary")
        return [self.text_offset + self.chars.index(ch) for ch in text]

    def decode_text(self, ids: Iterable[int]) -> str:
        """Text characters of `ids`; markers and image codes are skipped."""
        return "".join(self.chars[i - self.text_offset] for i in ids if self.text_offset <= i < self.image_offset)

    def image_ids(self, codes: Tensor) -> list[int]:
        """VQ codes (h, w) or (N,) in 0..K-1 -> N vocabulary ids, row-major."""
        flat = codes.reshape(-1)
        if flat.numel() != self.image_tokens:
            raise ValueError(f"an image is {self.image_tokens} tokens, got {flat.numel()} codes")
        return (flat.long() + self.image_offset).tolist()

    def codes_of(self, ids: Tensor) -> Tensor:
        """Vocabulary ids of image tokens -> VQ codes 0..K-1 (same shape)."""
        return ids - self.image_offset

    def is_image(self, ids: Tensor) -> Tensor:
        return ids >= self.image_offset

    def is_text(self, ids: Tensor) -> Tensor:
        return (ids >= self.text_offset) & (ids < self.image_offset)


# -- training sequences -------------------------------------------------------------------------------

def interleave(vocab: FusionVocab, parts: Sequence[Segment],
               loss_on: Iterable[Kind] = ("text", "image")) -> tuple[Tensor, Tensor]:
    """`<bos> part_1 part_2 .. <eos>` with every image wrapped as `<boi> codes <eoi>`.

    Returns ids (T,) and a loss mask (T,): mask[i] says whether token i is a training target (predicted
    from the tokens before it). `<boi>`, codes and `<eoi>` count as image; characters and `<eos>` as text;
    `<bos>` is never a target. So ("a red circle", codes) with loss_on=("image",) trains text-to-image
    only, (codes, "a red circle") with loss_on=("text",) trains captioning only."""
    wanted = set(loss_on)
    ids, mask = [vocab.bos], [False]

    def add(tokens: list[int], kind: Kind) -> None:
        ids.extend(tokens)
        mask.extend([kind in wanted] * len(tokens))

    for part in parts:
        if isinstance(part, str):
            add(vocab.encode_text(part), "text")
        else:
            add([vocab.boi, *vocab.image_ids(part), vocab.eoi], "image")
    add([vocab.eos], "text")
    return torch.tensor(ids), torch.tensor(mask)


def collate(examples: Sequence[tuple[Tensor, Tensor]], pad: int = FusionVocab.pad) -> tuple[Tensor, Tensor]:
    """(ids, mask) pairs -> inputs (B, T-1) and next-token targets (B, T-1), -1 where there is no loss
    (masked-out tokens and right padding), which is `LM.loss`'s ignore_index."""
    longest = max(len(ids) for ids, _ in examples)
    inputs = torch.full((len(examples), longest - 1), pad, dtype=torch.long)
    targets = torch.full((len(examples), longest - 1), -1, dtype=torch.long)
    for row, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        inputs[row, :n] = ids[:-1]
        targets[row, :n] = torch.where(mask[1:], ids[1:], torch.full_like(ids[1:], -1))
    return inputs, targets


def fusion_lm(vocab: FusionVocab, **overrides: Any) -> LM:
    """The lab LM (RMSNorm, RoPE, SwiGLU, causal attention from arch/layers.py) sized for `vocab`, with
    Chameleon's QK-norm and z-loss on by default."""
    base: dict[str, Any] = dict(vocab_size=vocab.size, block_size=128, n_layer=4, n_head=4, n_embd=128,
                                qk_norm=True, z_loss=1e-4)
    return LM(LMConfig(**{**base, **overrides}))


# -- constrained generation ---------------------------------------------------------------------------

def allowed_next(vocab: FusionVocab, in_image: Tensor, count: Tensor, allow_images: bool = True) -> Tensor:
    """Which ids may come next, (B, V) bool, from each row's state: inside an image after `count` codes
    (only codes until N, then only `<eoi>`), or in text (characters, `<eos>`, and `<boi>` if allowed)."""
    b = in_image.shape[0]
    allowed = torch.zeros(b, vocab.size, dtype=torch.bool, device=in_image.device)
    text_rows = ~in_image
    allowed[text_rows, vocab.text_offset:vocab.image_offset] = True
    allowed[text_rows, vocab.eos] = True
    if allow_images:
        allowed[text_rows, vocab.boi] = True
    codes_left = in_image & (count < vocab.image_tokens)
    allowed[codes_left, vocab.image_offset:] = True
    allowed[in_image & ~codes_left, vocab.eoi] = True
    return allowed


def _state(vocab: FusionVocab, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(in_image, codes so far) for each row of ids (B, T): a prompt may end inside an image."""
    in_image = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    count = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    for t in range(ids.shape[1]):
        in_image, count = _advance(vocab, ids[:, t], in_image, count)
    return in_image, count


def _advance(vocab: FusionVocab, tok: Tensor, in_image: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    opened, closed = tok == vocab.boi, tok == vocab.eoi
    count = torch.where(opened, 0, count + (in_image & vocab.is_image(tok)).long())
    return (in_image | opened) & ~closed, count


@torch.no_grad()
def generate_mixed(model: LM, vocab: FusionVocab, prompt: Tensor, max_new_tokens: int, *,
                   temperature: float = 1.0, top_k: int | None = None, allow_images: bool = True,
                   generator: torch.Generator | None = None) -> Tensor:
    """Continue prompt (B, T) with interleaved text and images, decoding with the KV cache.

    Each step masks the logits to `allowed_next`, so an image is always exactly N codes between `<boi>`
    and `<eoi>`. A row that emits `<eos>` is padded from then on; generation stops when every row has
    finished. The whole sequence must fit in block_size. Returns (B, T + steps taken)."""
    b, t = prompt.shape
    if t + max_new_tokens > model.cfg.block_size:
        raise ValueError(f"{t} + {max_new_tokens} tokens do not fit block_size {model.cfg.block_size}")
    in_image, count = _state(vocab, prompt)
    done = torch.zeros(b, dtype=torch.bool, device=prompt.device)
    caches = model.new_caches(b, t + max_new_tokens)
    logits, _ = model(prompt, caches=caches)
    out = [prompt]
    for _ in range(max_new_tokens):
        allowed = allowed_next(vocab, in_image, count, allow_images)
        masked = logits[:, -1].float().masked_fill(~allowed, float("-inf"))
        nxt = sample_next(masked, temperature=temperature, top_k=top_k, generator=generator)   # (B,)
        nxt = torch.where(done, vocab.pad, nxt)
        out.append(nxt[:, None])
        done |= nxt == vocab.eos
        if bool(done.all()):
            break
        in_image, count = _advance(vocab, nxt, in_image, count)
        logits, _ = model(nxt[:, None], caches=caches)
    return torch.cat(out, dim=1)


def segments(vocab: FusionVocab, ids: Sequence[int] | Tensor) -> list[Segment]:
    """Split one sequence into text strings and images (codes (N,) in 0..K-1), markers dropped; an image
    cut short (no `<eoi>`) is kept with the codes it has, stopping at `<eos>`."""
    seq = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    out: list[Segment] = []
    text: list[int] = []
    image: list[int] | None = None
    for tok in seq:
        if tok == vocab.eos:
            break
        if tok == vocab.boi:
            if text:
                out.append(vocab.decode_text(text))
                text = []
            image = []
        elif tok == vocab.eoi and image is not None:
            out.append(torch.tensor(image) - vocab.image_offset)
            image = None
        elif image is not None and tok >= vocab.image_offset:
            image.append(tok)
        elif vocab.text_offset <= tok < vocab.image_offset:
            text.append(tok)
    if image:
        out.append(torch.tensor(image) - vocab.image_offset)
    if text:
        out.append(vocab.decode_text(text))
    return out


# -- the model a checkpoint holds: LM + image tokenizer ------------------------------------------------

def _sub_config(cls: type, value: Any, name: str) -> Any:
    """A nested config from JSON (a dict) or as given; unknown fields are a ValueError naming them."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a {cls.__name__} or a JSON object, got {type(value).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")
    return cls(**value)


@dataclass
class FusionConfig:
    """Everything needed to rebuild a fusion model: the text alphabet, the image side, and the configs
    of its LM and VQ-VAE (nested dicts when read from JSON). Codes per image and codebook size follow
    from the VQ-VAE, and the LM's vocabulary must be exactly [specials | chars | codes]."""
    chars: str
    image_size: int                   # S: the VQ-VAE's input side, N = (S / 2**downsample)**2
    lm: LMConfig
    vqvae: VQVAEConfig

    def __post_init__(self) -> None:
        self.lm = _sub_config(LMConfig, self.lm, "lm")
        self.vqvae = _sub_config(VQVAEConfig, self.vqvae, "vqvae")
        if self.image_size < 1 or self.image_size % (2 ** self.vqvae.downsample):
            raise ValueError(f"image_size {self.image_size} must be a positive multiple of 2**downsample "
                             f"({2 ** self.vqvae.downsample})")
        if self.lm.vocab_size != self.vocab.size:
            raise ValueError(f"the LM has {self.lm.vocab_size} tokens but the vocabulary {self.vocab.size} "
                             f"({len(SPECIALS)} markers, {len(self.chars)} characters, {self.vqvae.codebook_size} codes)")

    @property
    def grid(self) -> int:
        """h = w: the side of an image's code grid."""
        return self.image_size // 2 ** self.vqvae.downsample

    @property
    def vocab(self) -> FusionVocab:
        return FusionVocab(self.chars, self.vqvae.codebook_size, self.grid ** 2)


class FusionModel(nn.Module):
    """The LM and the VQ-VAE whose codes it reads and writes: caption -> images (`draw`) and
    images -> captions (`describe`). Pixels are in [-1, 1] going in, [0, 1] coming out."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = cfg.vocab
        self.lm = LM(cfg.lm)
        self.vqvae = VQVAE(cfg.vqvae)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The LM's (logits (B, T, V), loss) over fused ids (B, T)."""
        return self.lm(idx, targets)

    @torch.no_grad()
    def codes(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) in [-1, 1] -> VQ codes (B, h, w), 256 images at a time."""
        return torch.cat([self.vqvae.encode(images[i:i + 256]).codes for i in range(0, len(images), 256)])

    @torch.no_grad()
    def draw(self, caption: str, n: int = 1, *, temperature: float = 1.0, top_k: int | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """`n` images of `caption`, (n, 3, S, S) in [0, 1]. The prompt ends in `<boi>`, so each row is
        exactly N sampled codes (then `<eoi>`), decoded by the VQ-VAE. Characters outside the vocabulary
        are a ValueError naming them."""
        vocab = self.vocab
        prompt = torch.tensor([vocab.bos, *vocab.encode_text(caption), vocab.boi])[None].repeat(n, 1)   # (n, T)
        out = generate_mixed(self.lm, vocab, prompt, vocab.image_tokens + 1, temperature=temperature,
                             top_k=top_k, generator=generator)
        codes = vocab.codes_of(out[:, prompt.shape[1]:prompt.shape[1] + vocab.image_tokens])           # (n, N)
        images = self.vqvae.decode_codes(codes.reshape(n, self.cfg.grid, self.cfg.grid))
        return (images.clamp(-1, 1) + 1) / 2

    @torch.no_grad()
    def describe(self, images: Tensor, max_new_tokens: int | None = None, *, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> list[str]:
        """A caption for each image (B, 3, S, S) in [-1, 1]: the prompt `<bos> <boi> codes <eoi>` continued
        with text only (greedy by default) until `<eos>` or the context is full."""
        vocab = self.vocab
        codes = self.codes(images)
        prompts = torch.stack([interleave(vocab, [c])[0][:-1] for c in codes])   # (B, N + 3), no <eos>
        room = self.cfg.lm.block_size - prompts.shape[1]
        steps = room if max_new_tokens is None else min(max_new_tokens, room)
        captions: list[str] = []
        for i in range(0, len(prompts), 128):
            out = generate_mixed(self.lm, vocab, prompts[i:i + 128], steps, temperature=temperature, top_k=top_k,
                                 allow_images=False, generator=generator)
            captions += [vocab.decode_text(row[prompts.shape[1]:].tolist()) for row in out]
        return captions
