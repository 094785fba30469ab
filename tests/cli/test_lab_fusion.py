"""`imagine lab train fusion` and its checkpoint served by `draw`/`see -m native:DIR`: a tiny early-fusion
model (8x8 images, 16 codes, one LM layer) trained for a few steps in process, its save/load round trip,
both directions through the one request path, and every wrong input as one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from click.testing import CliRunner, Result  # noqa: E402

import imagine  # noqa: E402
from imagine import InputError, OptionsError  # noqa: E402
from imagine.arch import checkpoint  # noqa: E402
from imagine.arch.fusion import FusionConfig, FusionModel  # noqa: E402
from imagine.arch.lm import LMConfig  # noqa: E402
from imagine.arch.vqvae import VQVAEConfig  # noqa: E402
from imagine.cli import cli  # noqa: E402
from imagine.engines.native import NativeEngine  # noqa: E402

from ..helpers.cli import assert_one_line_error, run  # noqa: E402
from ..helpers.media import png_bytes  # noqa: E402

TINY_LM = ["-o", "model.n_layer=1", "-o", "model.n_embd=16", "-o", "model.n_head=2"]
TINY_VQ = ["-o", "vqvae.hidden=8", "-o", "vqvae.n_res=0", "-o", "vqvae.downsample=1", "-o", "vqvae.codebook_size=16",
           "-o", "vqvae.code_dim=4"]
COMMON = ["--steps", "4", "--threads", "1", "--seed", "1", "--size", "8", "-o", "n_train=64", "-o", "batch_size=8",
          "-o", "vq_steps=3", "-o", "vq_batch_size=8"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process training sets torch's thread count (--threads 1); give other tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train(out: Path, *extra: str, tiny_vq: bool = True) -> Result:
    return CliRunner().invoke(cli, ["lab", "train", "fusion", *COMMON, *TINY_LM, *(TINY_VQ if tiny_vq else ()),
                                    *extra, "-O", str(out)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    before = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("fusion") / "ckpt"
    result = train(folder)
    torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return folder


def tiny_model(chars: str = " acdeilr") -> FusionModel:
    import torch

    from imagine.arch.fusion import SPECIALS

    torch.manual_seed(0)
    vq = VQVAEConfig(hidden=8, n_res=0, downsample=1, codebook_size=16, code_dim=4)
    lm = LMConfig(vocab_size=len(SPECIALS) + len(chars) + 16, block_size=40, n_layer=1, n_head=2, n_embd=16,
                  qk_norm=True)
    return FusionModel(FusionConfig(chars, 8, lm, vq))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    import torch

    model = tiny_model().eval()
    folder = checkpoint.save(model, tmp_path / "f", {"image_size": 8, "pixel_range": [-1.0, 1.0]})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    info = json.loads((folder / "config.json").read_text())
    assert info["kind"] == info["arch"] == "fusion" and info["config"]["chars"] == " acdeilr"
    assert info["config"]["lm"]["vocab_size"] == 29 and info["config"]["vqvae"]["codebook_size"] == 16
    loaded, record = checkpoint.load(folder)
    assert isinstance(loaded, FusionModel) and not loaded.training and record["meta"]["image_size"] == 8
    ids = torch.randint(0, 29, (2, 12))
    assert torch.equal(loaded(ids)[0], model(ids)[0])
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    assert torch.equal(loaded.codes(images), model.codes(images))
    drawn = loaded.draw("a red circle", 2, generator=torch.Generator().manual_seed(5))
    assert drawn.shape == (2, 3, 8, 8) and torch.equal(
        drawn, model.draw("a red circle", 2, generator=torch.Generator().manual_seed(5)))
    said = loaded.describe(images, 6)
    assert len(said) == 3 and all(len(s) <= 6 and set(s) <= set(" acdeilr") for s in said)


def test_config_is_checked():
    with pytest.raises(ValueError, match="the LM has 30 tokens but the vocabulary 29"):
        FusionConfig(" acdeilr", 8, {"vocab_size": 30}, {"downsample": 1, "codebook_size": 16})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown LMConfig fields \['layers'\]"):
        FusionConfig("ab", 8, {"layers": 2}, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size 10 must be a positive multiple of 2\\*\\*downsample"):
        FusionConfig("ab", 10, {"vocab_size": 263}, {})  # type: ignore[arg-type]


def test_train_writes_checkpoint_pictures_and_summary(trained):
    from PIL import Image

    info = json.loads((trained / "config.json").read_text())
    assert info["kind"] == "fusion" and info["train"]["steps"] == 4 and info["train"]["vq_steps"] == 3
    assert info["meta"]["words"] == ["a", "blue", "circle", "green", "red", "square", "triangle", "yellow"]
    for name in ("model.safetensors", "loss.png", "samples.png"):
        assert (trained / name).is_file(), name
    width, height = Image.open(trained / "samples.png").size
    assert height == 3 * (12 * 9 + 1) and width == 3 * (8 * 9 + 1)   # 12 captions x 8 samples of 8 px, x3


def test_cli_summary_lines_and_json(tmp_path):
    result = train(tmp_path / "a")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "trained fusion: VQ-VAE 3 steps in" in out and "LM 4 steps in" in out
    assert "held-out captions exact " in out and "samples in the asked colour " in out
    assert f"checkpoint: {tmp_path / 'a'}" in out and f"loss curve: {tmp_path / 'a' / 'loss.png'}" in out
    lines = result.stderr.splitlines()
    assert lines[0].startswith("vqvae step ") and lines[-1].startswith("lm    step 4/4  loss ")
    result = train(tmp_path / "b", "--json", "-o", "plot=false")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "fusion" and summary["steps"] == 4 and summary["plot"] is None
    assert 0 <= summary["caption_exact"] <= 1 and 0 <= summary["colour_right"] <= 1
    assert summary["codes"] == 16 and summary["image_tokens"] == 16 and len(summary["captions"]) == 12
    assert not (tmp_path / "b" / "loss.png").exists() and (tmp_path / "b" / "samples.png").is_file()


def test_reuses_a_trained_vqvae(tmp_path):
    vq = CliRunner().invoke(cli, ["lab", "train", "vqvae", "--steps", "2", "--threads", "1", "--size", "8",
                                  "-o", "n_train=32", "-o", "batch_size=8", "-o", "model.hidden=8",
                                  "-o", "model.n_res=0", "-o", "model.codebook_size=8", "-o", "model.code_dim=4",
                                  "-o", "model.downsample=1", "-O", str(tmp_path / "vq")])
    assert vq.exit_code == 0, vq.output
    args = [a for a in COMMON if a not in ("--size", "8")]
    result = CliRunner().invoke(cli, ["lab", "train", "fusion", *args, *TINY_LM, "-o", f"vqvae={tmp_path / 'vq'}",
                                      "--json", "-O", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["vq_steps"] == 0 and summary["codes"] == 8 and summary["size"] == 8
    assert summary["vqvae"] == str(tmp_path / "vq")
    wrong = CliRunner().invoke(cli, ["lab", "train", "fusion", "--size", "16", "-o", f"vqvae={tmp_path / 'vq'}",
                                     "-O", str(tmp_path / "g")])
    assert wrong.exit_code == 2 and "--size 16 does not fit" in wrong.stderr and wrong.stderr.count("\n") == 1


def test_bad_training_input_is_one_line(tmp_path):
    cases = [
        (["-o", "model.layers=2"], "unknown model option 'model.layers'"),
        (["-o", "vqvae.width=2"], "unknown vqvae option 'vqvae.width'"),
        (["-o", "batch=4"], "unknown training option 'batch'"),
        (["--size", "9"], "must be divisible by 2"),
        (["-o", f"vqvae={tmp_path / 'none'}"], "no checkpoint there"),
        (["-o", "data=three"], "-o data=three: choose one (one shape a picture), two (two side by side) or both"),
    ]
    for args, fragment in cases:
        result = train(tmp_path / "bad", *args, tiny_vq="vqvae=" not in args[-1])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (args, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)


def test_two_shape_training_learns_and_draws_relational_captions(tmp_path):
    from PIL import Image

    folder = tmp_path / "two"
    result = train(folder, "-o", "data=two")
    assert result.exit_code == 0, result.output
    assert "samples with both halves in the asked colours " in result.stdout and "(chance 6.25%)" in result.stdout
    assert "dB on two-shape images" in result.stdout and "left of a blue square" in result.stdout
    info = json.loads((folder / "config.json").read_text())
    assert info["meta"]["image_size"] == 8 and info["train"]["data_option"] == "two"
    assert info["train"]["data"] == "imagine.arch.data.two_shapes" and info["train"]["vq_psnr_two"] > 0
    assert {"left", "of", "red", "circle"} <= set(info["meta"]["words"])
    assert Image.open(folder / "samples.png").size[1] == 3 * (12 * 9 + 1)        # 12 two-shape captions
    response = imagine.draw("A red circle left of a blue square.", model=f"native:{folder}", seed=1, n=2, scale=2)
    assert [p.mime for p in response.parts] == ["image/png"] * 2 and [p.size for p in response.parts] == [(16, 16)] * 2
    assert response.usage.extra["caption"] == "a red circle left of a blue square"
    with pytest.raises(InputError, match="the prompt has others: 'above'") as err:
        imagine.draw("a red circle above a blue square", model=f"native:{folder}").complete()
    assert "left, of" in str(err.value)
    both = train(tmp_path / "both", "-o", "data=both", "--json", "-o", "plot=false")
    assert both.exit_code == 0, both.output
    summary = json.loads(both.stdout)
    assert summary["data_option"] == "both" and summary["size"] == 8 and summary["vq_psnr_two"] > 0
    words = json.loads((tmp_path / "both" / "config.json").read_text())["meta"]["words"]
    assert {"left", "of", "triangle"} <= set(words)


def test_default_size_follows_the_data():
    from imagine.cli.lab_fusion import DEFAULT_SIZE

    assert DEFAULT_SIZE == {"one": 16, "two": 24, "both": 24}


def test_draw_makes_images_of_the_caption(trained):
    response = imagine.draw("a red circle", model=f"native:{trained}", seed=3, n=2, scale=2)
    pictures = response.parts
    assert [p.mime for p in pictures] == ["image/png"] * 2 and [p.size for p in pictures] == [(16, 16)] * 2
    assert response.usage.extra == {"images": 2, "seed": 3, "caption": "a red circle", "codes": 16}
    again = imagine.draw("  A Red  Circle. ", model=f"native:{trained}", seed=3, n=2, scale=2)
    assert [p.data for p in again.parts] == [p.data for p in pictures]          # same caption and seed
    assert again.usage.extra["caption"] == "a red circle"
    cold = imagine.draw("a blue square", model=f"native:{trained}", temperature=0, top_k=0)
    assert cold.parts[0].size == (8, 8) and isinstance(cold.usage.extra["seed"], int)


def test_see_captions_images_with_the_vocabulary(trained):
    chars = json.loads((trained / "config.json").read_text())["config"]["chars"]
    picture = imagine.Image(png_bytes((20, 20), (230, 40, 40)))
    text = imagine.see(picture, "what is it?", model=f"native:{trained}").text()
    assert set(text) <= set(chars)              # four steps in, the caption may end at once (it is "" then)
    assert imagine.see(picture, "?", model=f"native:{trained}").text() == text      # greedy: the same again
    short = imagine.see(picture, "?", model=f"native:{trained}", max_tokens=3, temperature=1.0, seed=2).text()
    assert len(short) <= 3 and set(short) <= set(chars)
    two = imagine.see([picture, picture], "?", model=f"native:{trained}").text()
    assert two == f"image 1: {text}\nimage 2: {text}"


def test_bad_prompts_name_what_is_wrong(trained, tmp_path):
    with pytest.raises(InputError, match="trained on 8 words and the prompt has others: 'left', 'of'") as err:
        imagine.draw("a red circle left of a blue square", model=f"native:{trained}").complete()
    assert "use only: a, blue, circle, green, red, square, triangle, yellow" in str(err.value)
    with pytest.raises(InputError, match="draws from a caption, and the prompt is empty"):
        imagine.draw("?!", model=f"native:{trained}").complete()
    no_words = tmp_path / "no-words"
    no_words.mkdir()
    for name in ("model.safetensors", "config.json"):
        (no_words / name).write_bytes((trained / name).read_bytes())
    info = json.loads((no_words / "config.json").read_text())
    del info["meta"]["words"]
    (no_words / "config.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"characters this early-fusion model cannot read: '\$f'"):
        imagine.draw("a red $circle of", model=f"native:{no_words}").complete()
    with pytest.raises(InputError, match="the caption is 59 characters and this model's context leaves room for 29"):
        imagine.draw("a " * 30, model=f"native:{no_words}").complete()


def test_mismatches_and_options_are_refused(trained):
    picture = imagine.Image(png_bytes((20, 20), (230, 40, 40)))
    with pytest.raises(InputError, match=r"fusion model \(kind 'fusion'\) needs image, but the last user message holds text"):
        imagine.ask("a red circle", model=f"native:{trained}").text()
    with pytest.raises(InputError, match=r"kind 'fusion'\) takes a text caption only to draw, not image"):
        imagine.edit(picture, "make it blue", model=f"native:{trained}").complete()
    with pytest.raises(OptionsError, match="option 'steps' does not apply to a mixed-modal fusion model") as err:
        imagine.draw("a red circle", model=f"native:{trained}", steps=3).complete()
    assert "temperature, top_k, seed, n, scale, max_tokens" in str(err.value)
    engine = NativeEngine()
    text, img = imagine.Modality.TEXT, imagine.Modality.IMAGE
    assert engine.capabilities(str(trained))[:2] == ({img, text}, {img, text})


def test_draw_and_see_through_the_entry_point(trained, tmp_path, imagine_home):
    out = tmp_path / "drawn.png"
    drawn = run("draw", "-m", f"native:{trained}", "a green triangle", "-o", "seed=4", "-o", "scale=4",
                "-O", str(out), home=imagine_home)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.splitlines()[0] == f"wrote {out} (32x32)"
    seen = run("see", "-m", f"native:{trained}", str(out), home=imagine_home)
    assert seen.returncode == 0 and not seen.stderr.strip(), seen.stderr
    assert_one_line_error(run("draw", "-m", f"native:{trained}", "a purple hexagon", home=imagine_home),
                          "'purple', 'hexagon'", "use only: a, blue")


def test_fusion_help_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom imagine.cli import main\n"
            "try:\n    main(['lab', 'train', 'fusion', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'rich') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout and "vqvae=DIR" in proc.stdout, proc.stdout + proc.stderr
