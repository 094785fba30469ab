"""The clip engine on tiny random-weight CLIP and SigLIP models made here and saved with save_pretrained:
vector shapes and norms, determinism, the similarity matrix, model checks, and `imagine embed IMAGE`."""

from __future__ import annotations

import io
import json
import math
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers", reason="needs the hf extra: pip install -e '.[hf]'")

from imagine import EngineUnavailable, Image, InputError, Message, Modality, OptionsError, Vector  # noqa: E402
from imagine import get_registry, tasks  # noqa: E402
from imagine.config import get_settings  # noqa: E402
from imagine.engine import Request, Response  # noqa: E402
from imagine.engines.hf.clip import ClipEngine  # noqa: E402
from imagine.parts import Data  # noqa: E402

from ...helpers.cli import run  # noqa: E402
from ...helpers.clip import PROJECTION, tiny_clip  # noqa: E402

SIGLIP_DIM = 24  # the tiny SigLIP embeds in its hidden size (text head projects to it too)
WORDS = "a photo of the red green blue cat dog square circle".split()



def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30), name: str | None = None) -> Image:
    from PIL import Image as PILImage, ImageDraw

    picture = PILImage.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(picture).rectangle((5, 5, size[0] - 8, size[1] - 6), fill=color)
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return Image(buf.getvalue(), name=name)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SigLIP; its SentencePiece tokenizer is trained here on generated captions."""
    spm = pytest.importorskip("sentencepiece")
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    folder = tmp_path_factory.mktemp("tiny-siglip")
    rng = random.Random(0)
    captions = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(300)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(captions), model_writer=model, vocab_size=40,
                                   model_type="unigram", hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, minloglevel=2)
    (folder / "spiece.model").write_bytes(model.getvalue())
    tokenizer = SiglipTokenizer(vocab_file=str(folder / "spiece.model"), model_max_length=16)
    config = SiglipConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, hidden_size=SIGLIP_DIM, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                         projection_size=SIGLIP_DIM, pad_token_id=0, eos_token_id=1, bos_token_id=None),
        vision_config=dict(hidden_size=SIGLIP_DIM, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=30, patch_size=6))
    torch.manual_seed(0)
    SiglipModel(config).save_pretrained(folder)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 30, "width": 30}),
                    tokenizer=tokenizer).save_pretrained(folder)
    return folder


def embed(*parts: Any, model: Path | str, **options: Any) -> Response:
    engine = get_registry().engine("clip")
    request = Request(messages=(Message.user(*parts),), model=str(model), options=engine.parse_options(options),
                      want=Modality.VECTOR, limits=get_settings().part_limits())
    return Response(engine, request).complete()


def vectors(response: Response) -> np.ndarray:
    return np.array([p.values for p in response.parts if isinstance(p, Vector)])


RED, BLUE = (220, 30, 30), (30, 30, 220)


# -- vectors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which, dim", [("clip", PROJECTION), ("siglip", SIGLIP_DIM)])
def test_one_unit_vector_per_part_in_order(which: str, dim: int, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(f"{which}_dir")
    response = embed(png(RED), "a red square", png(BLUE), "a blue dog", model=folder)
    parts = response.parts
    assert len(parts) == 4 and all(isinstance(p, Vector) and len(p) == dim for p in parts)
    got = vectors(response)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the order follows the parts: each alone gives the vector in its slot
    np.testing.assert_allclose(vectors(embed("a blue dog", model=folder))[0], got[3], atol=1e-5)
    np.testing.assert_allclose(vectors(embed(png(RED), model=folder))[0], got[0], atol=1e-5)
    assert not np.allclose(got[1], got[3], atol=1e-3)  # different texts, different vectors
    assert response.usage.extra["images"] == 2 and response.usage.input_tokens > 0
    assert response.usage.cost == 0.0


def test_same_input_gives_the_same_vector(clip_dir: Path) -> None:
    first = vectors(embed("a red cat", png(RED), "a red cat", png(RED), model=clip_dir))
    assert np.array_equal(first[0], first[2]) and np.array_equal(first[1], first[3])
    again = vectors(embed("a red cat", png(RED), model=clip_dir))
    np.testing.assert_allclose(again, first[:2], atol=1e-6)


def test_batch_size_does_not_change_a_vector(clip_dir: Path, siglip_dir: Path) -> None:
    texts = ["a cat", "the red square of a dog", "blue"]
    for folder in (clip_dir, siglip_dir):
        np.testing.assert_allclose(vectors(embed(*texts, model=folder, batch_size=1)),
                                   vectors(embed(*texts, model=folder, batch_size=3)), atol=1e-5)


def test_normalize_off_keeps_the_direction(clip_dir: Path) -> None:
    raw = vectors(embed(png(BLUE), "a dog", model=clip_dir, normalize=False))
    unit = vectors(embed(png(BLUE), "a dog", model=clip_dir))
    assert np.all(np.abs(np.linalg.norm(raw, axis=1) - 1) > 1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-5)


# -- scoring -----------------------------------------------------------------------------------------

def test_score_gives_the_image_by_text_matrix(clip_dir: Path) -> None:
    labels = ["a red square", "a blue circle", "a photo of a dog"]
    response = embed(png(RED, name="red.png"), *labels, png(BLUE), model=clip_dir, score=True)
    *vecs, data = response.parts
    assert len(vecs) == 5 and isinstance(data, Data)
    value = data.value
    assert value["images"] == ["red.png", "image 2"] and value["texts"] == labels
    cosine, probs = np.array(value["cosine"]), np.array(value["probs"])
    assert cosine.shape == probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    unit = np.array([v.values for v in vecs])
    np.testing.assert_allclose(cosine, unit[[0, 4]] @ unit[1:4].T, atol=1e-5)
    assert value["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-4)  # CLIP's initial temperature
    np.testing.assert_allclose(np.array(value["logits"]), cosine * value["logit_scale"], atol=1e-4)
    assert value["best"] == [labels[int(i)] for i in probs.argmax(axis=1)]
    assert "sigmoid" not in value


def test_siglip_score_adds_pairwise_sigmoid(siglip_dir: Path) -> None:
    value = embed(png(RED), "red", "blue", model=siglip_dir, score=True).parts[-1].value
    sigmoid, logits = np.array(value["sigmoid"]), np.array(value["logits"])
    assert sigmoid.shape == (1, 2) and np.all((sigmoid > 0) & (sigmoid < 1))
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-logits)), atol=1e-5)
    assert "logit_bias" in value and np.array(value["probs"]).sum() == pytest.approx(1.0, abs=1e-5)


def test_score_needs_images_and_texts(clip_dir: Path) -> None:
    with pytest.raises(InputError, match="at least one of each"):
        embed("only text", model=clip_dir, score=True)


# -- models and errors --------------------------------------------------------------------------------

def test_options_are_validated() -> None:
    with pytest.raises(OptionsError, match="unknown option"):
        ClipEngine.parse_options({"pooling": "mean"})
    with pytest.raises(OptionsError, match="batch_size"):
        ClipEngine.parse_options({"batch_size": 0})


def test_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a Hugging Face model"):
        embed("text", model=tmp_path)
    with pytest.raises(InputError, match="not a Hugging Face model"):
        get_registry().resolve(f"clip:{tmp_path}", inputs={Modality.TEXT}, want=Modality.VECTOR)


def test_a_model_of_another_kind(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(InputError, match="gpt2 model, not a CLIP-style"):
        get_registry().resolve(f"clip:{tmp_path}", inputs={Modality.TEXT}, want=Modality.VECTOR)


def test_pickle_only_weights_need_allow_pickle(clip_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(clip_dir, folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    get_registry().engine("clip").check_model(str(folder))  # allowed by name; judged with the option
    with pytest.raises(InputError, match="only pickle weights"):
        embed("a cat", model=folder)
    np.testing.assert_allclose(vectors(embed("a cat", model=folder, allow_pickle=True)),
                               vectors(embed("a cat", model=clip_dir)), atol=1e-6)


def test_the_default_hub_model_says_it_needs_a_download() -> None:
    # tests run with HF_HUB_OFFLINE=1 and an empty cache: the default cannot be fetched here
    with pytest.raises(EngineUnavailable, match="must be downloaded first") as caught:
        tasks.embed(png(RED))
    assert "openai/clip-vit-base-patch32" in str(caught.value) and "save_pretrained" in str(caught.value)


def test_other_parts_are_refused(clip_dir: Path) -> None:
    from imagine.parts import Audio
    from imagine.media import encode_wav

    sound = Audio(encode_wav(np.zeros(800, np.float32), 8000))
    with pytest.raises(InputError, match="does not take audio"):
        tasks.embed([sound], model=f"clip:{clip_dir}")
    with pytest.raises(InputError, match="clip embeds text and images, not audio"):
        embed(sound, model=clip_dir)


def test_embed_task_takes_image_paths_and_parts(clip_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png(RED).data)
    response = tasks.embed([Image(path), "a red square"], model=f"clip:{clip_dir}")
    got = [p for p in response.parts if isinstance(p, Vector)]
    assert [len(v) for v in got] == [PROJECTION, PROJECTION]
    assert response.provenance["engine"] == "clip"


def test_cli_embeds_an_image_file(clip_dir: Path, tmp_path: Path, imagine_home: Path) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(png(BLUE).data)
    proc = run("embed", str(path), "a blue circle", "-m", f"clip:{clip_dir}", "-o", "score=true", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    image_vec, text_vec, scores = (json.loads(line) for line in proc.stdout.splitlines())
    assert len(image_vec) == len(text_vec) == PROJECTION
    assert math.isclose(sum(v * v for v in image_vec), 1.0, rel_tol=1e-3)
    assert scores["texts"] == ["a blue circle"] and scores["probs"] == [[1.0]]
