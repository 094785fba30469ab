"""The native engine's image checkpoints (tiny random-weight ViT, DiT, VQ-VAE saved by arch/checkpoint.py)
through the one request path: see names classes, draw makes images of the checkpoint's size, edit
reconstructs, and every mismatch (kind, class, option, files) is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

import imagine  # noqa: E402
from imagine import InputError, OptionsError  # noqa: E402
from imagine.arch import checkpoint  # noqa: E402
from imagine.arch.dit import DiT, DiTConfig  # noqa: E402
from imagine.arch.train_vision import class_names  # noqa: E402
from imagine.arch.vit import ViT, ViTConfig  # noqa: E402
from imagine.arch.vqvae import VQVAE, VQVAEConfig  # noqa: E402
from imagine.engines.native import NativeEngine  # noqa: E402
from imagine.engines.native_vision import match_class  # noqa: E402

from ..helpers.media import png_bytes  # noqa: E402
from ..helpers.native import make_checkpoint  # noqa: E402

CLASSES = class_names("dit")  # "red circle", "green circle", ... (12)


def save_vit(folder: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=(16, 16), patch_size=(8, 8), n_classes=12, n_layer=1, n_head=2, n_embd=16))
    return checkpoint.save(model, folder, {"classes": CLASSES, "image_size": 16, "pixel_range": [0.0, 1.0]})


def save_dit(folder: Path) -> Path:
    import torch

    torch.manual_seed(0)
    model = DiT(DiTConfig(image_size=8, patch=4, dim=16, depth=1, n_head=2, n_classes=12))
    return checkpoint.save(model, folder, {"classes": CLASSES, "image_size": 8, "pixel_range": [-1.0, 1.0]})


def save_vqvae(folder: Path) -> Path:
    model = VQVAE(VQVAEConfig(hidden=8, n_res=0, downsample=1, codebook_size=8, code_dim=4))
    return checkpoint.save(model, folder, {"image_size": 8, "pixel_range": [-1.0, 1.0]})


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision")
    return {"vit": save_vit(root / "vit"), "dit": save_dit(root / "dit"), "vqvae": save_vqvae(root / "vq"),
            "lm": make_checkpoint(root / "lm")}


def image() -> imagine.Image:
    return imagine.Image(png_bytes((20, 20), (230, 40, 40)))


def test_checkpoints_are_safetensors_with_a_kind(ckpts):
    for kind in ("vit", "dit", "vqvae"):
        info = json.loads((ckpts[kind] / "config.json").read_text())
        assert info["kind"] == info["arch"] == kind and (ckpts[kind] / "model.safetensors").is_file()
        assert not list(ckpts[kind].glob("*.pt"))
        model, loaded = checkpoint.load(ckpts[kind])
        assert loaded["meta"] == info["meta"] and not model.training


def test_see_names_the_likeliest_classes(ckpts):
    response = imagine.see(image(), "what shape?", model=f"native:{ckpts['vit']}")
    answer = response.text()
    names = [part.rsplit(" (", 1)[0] for part in answer.split(", ")]
    assert len(names) == 3 and set(names) <= set(CLASSES)
    probs = [float(part.rsplit(" (", 1)[1].rstrip(")")) for part in answer.split(", ")]
    assert probs == sorted(probs, reverse=True) and response.provenance["engine"] == "native"
    one = imagine.see(image(), "?", model=f"native:{ckpts['vit']}", top=1).text()
    assert one.rsplit(" (", 1)[0] == names[0]
    two = imagine.see([image(), image()], "?", model=f"native:{ckpts['vit']}", top=1).text()
    assert two == f"image 1: {one}\nimage 2: {one}"


def test_draw_makes_images_of_the_checkpoint_size(ckpts):
    response = imagine.draw("a red circle", model=f"native:{ckpts['dit']}", seed=3, steps=2)
    [picture] = response.parts
    assert picture.mime == "image/png" and picture.size == (8, 8)
    assert response.usage.extra["seed"] == 3 and response.usage.extra["class"] == "red circle"
    again = imagine.draw("A RED CIRCLE!", model=f"native:{ckpts['dit']}", seed=3, steps=2).parts[0]
    assert again.data == picture.data                                       # same seed, same image
    many = imagine.draw("blue squares", model=f"native:{ckpts['dit']}", n=2, scale=3, steps=1, sampler="euler")
    assert [p.size for p in many.parts] == [(24, 24), (24, 24)]
    assert many.usage.extra["class"] == "blue square" and isinstance(many.usage.extra["seed"], int)


def test_prompts_are_matched_to_class_names():
    assert CLASSES[match_class("two red circles please", CLASSES)] == "red circle"
    assert CLASSES[match_class("a yelow trianlge", CLASSES)] == "yellow triangle"   # near misses forgiven
    assert CLASSES[match_class("a circle, green", CLASSES)] == "green circle"
    with pytest.raises(InputError, match="names none of them: red circle, green circle") as err:
        match_class("a purple hexagon", CLASSES)
    assert "12 classes" in str(err.value)
    with pytest.raises(InputError, match="names several classes .red circle, blue square"):
        match_class("a red circle and a blue square", CLASSES)


def test_unknown_class_is_a_clear_error(ckpts):
    with pytest.raises(InputError, match="'a purple hexagon' names none of them"):
        imagine.draw("a purple hexagon", model=f"native:{ckpts['dit']}").complete()


def test_edit_reconstructs_with_a_vqvae(ckpts):
    response = imagine.edit(image(), "reconstruct", model=f"native:{ckpts['vqvae']}", scale=2)
    [picture] = response.parts
    assert picture.size == (16, 16) and response.usage.extra["codes"] == 16   # 8x8 -> 4x4 codes


def test_kind_mismatches_are_refused_naming_the_kind(ckpts):
    with pytest.raises(InputError, match=r"is a language model \(kind 'lm'\): it gives text, not image") as err:
        imagine.draw("a red circle", model=f"native:{ckpts['lm']}")
    assert "imagine lab train dit" in str(err.value)
    with pytest.raises(InputError, match=r"ViT classifier \(kind 'vit'\): it gives text, not image"):
        imagine.draw("a red circle", model=f"native:{ckpts['vit']}")
    with pytest.raises(InputError, match=r"DiT image generator \(kind 'dit'\): it gives image, not text"):
        imagine.ask("a red circle", model=f"native:{ckpts['dit']}")
    with pytest.raises(InputError, match=r"kind 'dit'\) and does not take image input"):
        imagine.see(image(), "?", model=f"native:{ckpts['dit']}")
    with pytest.raises(InputError, match="needs image, but the last user message holds text"):
        imagine.ask("what shape?", model=f"native:{ckpts['vit']}").text()


def test_options_of_another_kind_are_refused(ckpts):
    with pytest.raises(OptionsError, match=r"option 'steps' does not apply to a language model checkpoint"):
        imagine.ask("To be", model=f"native:{ckpts['lm']}", steps=3).text()
    with pytest.raises(OptionsError, match="option 'top_k' does not apply to a DiT") as err:
        imagine.draw("a red circle", model=f"native:{ckpts['dit']}", top_k=3).complete()
    assert "steps, guidance, sampler, n, scale, seed" in str(err.value)
    # a chat client's sampling options are harmless to a classifier
    assert imagine.see(image(), "?", model=f"native:{ckpts['vit']}", temperature=0.2, max_tokens=5).text()


def test_capabilities_follow_the_checkpoint(ckpts):
    engine = NativeEngine()
    text, img = imagine.Modality.TEXT, imagine.Modality.IMAGE
    assert engine.capabilities(str(ckpts["lm"]))[:2] == ({text}, {text})
    assert engine.capabilities(str(ckpts["vit"]))[:2] == ({img, text}, {text})
    assert engine.capabilities(str(ckpts["dit"]))[:2] == ({text}, {img})
    assert engine.capabilities(str(ckpts["vqvae"]))[:2] == ({img, text}, {img})


def test_bad_checkpoints_say_what_is_wrong(ckpts, tmp_path):
    with pytest.raises(InputError, match="checkpoint folder not found"):
        imagine.draw("a red circle", model=f"native:{tmp_path / 'nowhere'}")
    folder = save_dit(tmp_path / "no-classes")
    info = json.loads((folder / "config.json").read_text())
    del info["meta"]["classes"]
    (folder / "config.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"holds a 'dit' model but its config.json lacks meta.classes"):
        imagine.draw("a red circle", model=f"native:{folder}")
    broken = save_vit(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        imagine.see(image(), "?", model=f"native:{broken}").text()
    (broken / "config.json").write_text(json.dumps({"arch": "gan", "config": {}}))
    with pytest.raises(InputError, match="holds a 'gan' model, not one of the lab's"):
        imagine.see(image(), "?", model=f"native:{broken}")
