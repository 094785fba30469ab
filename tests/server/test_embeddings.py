"""POST /v1/embeddings end to end: a real uvicorn server driven by the official openai SDK, on the bundled
MiniLM (text only) and the mock engine."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from ..helpers.media import png_bytes

openai = pytest.importorskip("openai")

TEXTS = ["a red square", "a blue circle", "the cat sat on the mat"]


def test_float_and_base64_decode_to_the_same_vectors(server):
    sdk = server.openai()
    floats = sdk.embeddings.create(model="minilm", input=TEXTS, encoding_format="float")
    raw = httpx.post(server.base_url + "/embeddings", json={"model": "minilm", "input": TEXTS,
                                                           "encoding_format": "base64"})
    assert raw.status_code == 200, raw.text
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw.json()["data"]]
    assert [d.index for d in floats.data] == [0, 1, 2]
    for item, vector in zip(floats.data, decoded):
        assert len(item.embedding) == 384
        np.testing.assert_allclose(item.embedding, vector, rtol=1e-6)
    assert floats.model == "minilm:all-MiniLM-L6-v2" or floats.model.startswith("minilm:")
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens


def test_sdk_default_base64_batch_names_its_log_row_and_openai_names_map_to_minilm(server):
    raw = server.openai().embeddings.with_raw_response.create(model="text-embedding-3-small", input=TEXTS)
    result = raw.parse()  # the SDK asks for base64 and decodes it itself
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384) and result.model.startswith("minilm:")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the batch agrees with one-at-a-time
    single = server.openai().embeddings.create(model="minilm", input=TEXTS[2], encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, vectors[2], atol=1e-5)
    row = server.client.store.get(raw.headers["x-imagine-log-id"])
    assert row["engine"] == "minilm"


def test_dimensions_an_engine_cannot_honour_is_a_400_naming_it(server):
    with pytest.raises(openai.BadRequestError) as err:
        server.openai().embeddings.create(model="minilm", input="hi", dimensions=64)
    assert err.value.body["param"] == "dimensions" and "fixed size" in err.value.body["message"]


def test_an_image_to_a_text_only_engine_names_the_field(server):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    with pytest.raises(openai.BadRequestError) as err:
        server.openai().embeddings.create(model="text-embedding-3-small", input=["a cat", url])
    assert err.value.body["param"] == "input[1]" and "embeds text only" in err.value.body["message"]


def test_bad_inputs_name_the_field(server):
    sdk = server.openai()
    with pytest.raises(openai.BadRequestError) as err:
        sdk.embeddings.create(model="minilm", input=["fine", "  "])
    assert err.value.body["param"] == "input[1]"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.embeddings.create(model="minilm", input=[[1, 2, 3]])
    assert err.value.body["param"] == "input" and "token ids" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.embeddings.create(model="minilm", input="x", encoding_format="hex")  # type: ignore[arg-type]
    assert err.value.body["param"] == "encoding_format"
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="no-such-engine:x", input="x")
