"""Images end to end: a real uvicorn server driven by the official openai SDK over a tiny random-weight
diffusers pipeline the test builds: generations and edits as base64 and as URLs fetched from the blob
route, an OpenAI model name aliased to the pipeline, and the errors."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

pytest.importorskip("diffusers", reason="needs the hf extra: pip install -e '.[hf]'")
openai = pytest.importorskip("openai")

from imagine.parts import Message, Modality  # noqa: E402

from ..helpers.diffusion import SIZE, tiny_pipeline  # noqa: E402
from ..helpers.server import Served, served  # noqa: E402
from ..helpers.speech import synth_wav  # noqa: E402

STEPS = {"steps": 2}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    root = tmp_path_factory.mktemp("tiny-sd")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tiny_pipeline(root).save_pretrained(root / "pipe")
    torch.set_num_threads(threads)
    return root / "pipe"


@pytest.fixture(scope="module")
def server(pipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = {"aliases": {"dall-e-2": f"diffusers:{pipe}"}}
    with served(tmp_path_factory.mktemp("serve-images"), config=config) as running:
        yield running


def png(size: int = SIZE, alpha: bool = False) -> bytes:
    from PIL import Image as PILImage

    x, y = np.meshgrid(np.linspace(0, 255, size), np.linspace(0, 255, size))
    rgb = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    picture = PILImage.fromarray(rgb)
    if alpha:  # OpenAI's mask: the transparent left half is to be repainted
        a = np.full((size, size), 255, np.uint8)
        a[:, : size // 2] = 0
        picture = picture.convert("RGBA")
        picture.putalpha(PILImage.fromarray(a))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    from PIL import Image as PILImage

    return np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))


def test_generation_as_base64_with_seed_n_and_size(server, pipe):
    sdk = server.openai()
    raw = sdk.images.with_raw_response.generate(model=f"diffusers:{pipe}", prompt="a red square", n=2, size="24x16",
                                                response_format="b64_json", extra_body={"seed": 3, **STEPS})
    result = raw.parse()
    images = [decoded(base64.b64decode(d.b64_json)) for d in result.data]
    assert len(images) == 2 and images[0].shape == (16, 24, 3) and result.size == "24x16"
    again = sdk.images.generate(model=f"diffusers:{pipe}", prompt="a red square", n=2, size="24x16",
                                response_format="b64_json", extra_body={"seed": 3, **STEPS})
    assert again.data[0].b64_json == result.data[0].b64_json  # same seed, same image
    row = server.client.store.get(raw.headers["x-imagine-log-id"])
    assert row["engine"] == "diffusers"


def test_generation_as_url_served_by_the_blob_route_under_an_aliased_openai_name(server):
    result = server.openai().images.generate(model="dall-e-2", prompt="a lighthouse", response_format="url",
                                             extra_body=STEPS)
    url = result.data[0].url
    assert url.startswith(server.url + "/v1/blobs/")
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert decoded(got.content).shape == (SIZE, SIZE, 3)


def test_blob_route_checks_the_hash_and_types_other_blobs(server):
    assert httpx.get(server.base_url + "/blobs/..%2F..%2Fetc%2Fpasswd").status_code in (400, 404)
    bad = httpx.get(server.base_url + "/blobs/" + "G" * 64)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "sha256"
    missing = httpx.get(server.base_url + "/blobs/" + "0" * 64)
    assert missing.status_code == 404
    wav = synth_wav("blob")
    sha = hashlib.sha256(wav).hexdigest()
    server.client.store.blobs.put(wav, sha)  # in the store, but no response made it: not served
    assert httpx.get(server.base_url + "/blobs/" + sha).status_code == 404
    spoken = server.client.respond([Message.user("blob")], "mock", want=Modality.TEXT)  # not an output either
    assert spoken.text() == "blob"
    assert httpx.get(server.base_url + "/blobs/" + sha).status_code == 404


def test_uploaded_inputs_are_not_served_only_outputs_are(server, pipe):
    """An image someone sent to edit stays private: its hash is a 404, the same as a hash never seen."""
    source = png(alpha=False)
    raw = server.openai().images.with_raw_response.edit(model=f"diffusers:{pipe}", image=("in.png", source),
                                                       prompt="a blue square", response_format="url",
                                                       extra_body={"seed": 2, **STEPS})
    row = server.client.store.get(raw.headers["x-imagine-log-id"])
    uploaded = row["input"][0]["parts"][0]["sha256"]
    assert server.client.store.blobs.get(uploaded) == source  # the log keeps the upload...
    assert httpx.get(server.base_url + "/blobs/" + uploaded).status_code == 404  # ...and does not serve it
    output = httpx.get(raw.parse().data[0].url)
    assert output.status_code == 200 and output.headers["content-type"] == "image/png"


def test_a_jpeg_url_names_the_logged_output_and_converts_when_fetched(server, pipe):
    before = {p.name for p in (server.home / "blobs").rglob("*") if p.is_file()}
    raw = server.openai().images.with_raw_response.generate(
        model=f"diffusers:{pipe}", prompt="a green circle", response_format="url", output_format="jpeg",
        extra_body={"seed": 5, **STEPS})
    url = raw.parse().data[0].url
    sha = url.split("/blobs/")[1].split("?")[0]
    row = server.client.store.get(raw.headers["x-imagine-log-id"])
    assert [p["sha256"] for p in row["output_parts"] if p.get("sha256")] == [sha]  # a row names what the URL names
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and got.content[:3] == b"\xff\xd8\xff"
    after = {p.name for p in (server.home / "blobs").rglob("*") if p.is_file()}
    assert after - before == {sha[2:]}  # the PNG output only: no unnamed converted copy for gc to remove
    assert httpx.get(url.split("?")[0] + "?format=gif").status_code == 400


def test_edit_image_to_image_and_inpainting_with_an_alpha_mask(server, pipe):
    sdk = server.openai()
    source = png()
    redrawn = sdk.images.edit(model=f"diffusers:{pipe}", image=("in.png", source), prompt="a blue square",
                              response_format="b64_json", extra_body={"seed": 1, **STEPS})
    assert decoded(base64.b64decode(redrawn.data[0].b64_json)).shape == (SIZE, SIZE, 3)
    painted = sdk.images.edit(model=f"diffusers:{pipe}", image=("in.png", source), mask=("mask.png", png(alpha=True)),
                              prompt="a blue square", response_format="url", extra_body={"seed": 1, **STEPS})
    out = decoded(httpx.get(painted.data[0].url).content).astype(int)
    original = decoded(source).astype(int)
    # outside the mask (the opaque right half) the input is pasted back; inside it is repainted
    right, left = np.abs(out[:, SIZE // 2 + 1:] - original[:, SIZE // 2 + 1:]), np.abs(out[:, :SIZE // 2 - 1] - original[:, :SIZE // 2 - 1])
    assert right.mean() < 3 < left.mean()


def test_output_format_jpeg(server, pipe):
    result = server.openai().images.generate(model=f"diffusers:{pipe}", prompt="x", output_format="jpeg",
                                             response_format="b64_json", extra_body=STEPS)
    assert base64.b64decode(result.data[0].b64_json)[:3] == b"\xff\xd8\xff"


def test_errors_name_the_field(server, pipe):
    sdk = server.openai()
    with pytest.raises(openai.NotFoundError) as err:
        sdk.images.generate(model="dall-e-3", prompt="a cat")
    assert err.value.body["param"] == "model" and "alias" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.images.generate(model=f"diffusers:{pipe}", prompt="a cat", size="big")
    assert err.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.images.generate(model=f"diffusers:{pipe}", prompt="a cat", n=50)
    assert err.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.images.generate(model="mock", prompt="a cat")
    assert "image" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.images.edit(model=f"diffusers:{pipe}", image=("a.wav", synth_wav("no")), prompt="x")
    assert err.value.body["param"] == "image"
    missing = httpx.post(server.base_url + "/images/edits", data={"prompt": "x", "model": f"diffusers:{pipe}"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "image"


def test_with_keys_a_blob_is_served_only_to_the_key_that_made_it(server):
    from imagine.server.keys import KeyStore

    store = KeyStore(server.home)
    made = [store.create(name) for name in ("maker", "other")]
    try:
        maker, other = (secret for _, secret in made)
        result = server.openai(maker).images.generate(model="dall-e-2", prompt="a red dot", response_format="url",
                                                      extra_body=STEPS)
        url = result.data[0].url
        assert httpx.get(url, headers={"authorization": f"Bearer {maker}"}).status_code == 200
        assert httpx.get(url, headers={"authorization": f"Bearer {other}"}).status_code == 404  # as if unknown
        assert httpx.get(url).status_code == 401
    finally:
        for key, _ in made:
            store.revoke(key.id)
    assert httpx.get(url).status_code == 200  # no keys in use again: this loopback server serves its outputs
