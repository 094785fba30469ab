"""The diffusers engine on a tiny random-weight Stable Diffusion pipeline saved by the real saver and loaded
only through the engine: every task (text-to-image, image-to-image, inpainting, ControlNet, LoRA), seeds,
schedulers, progress events, and errors that name the option and say how to fix it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("diffusers", reason="needs the hf extra: pip install -e '.[hf]'")

from click.testing import CliRunner  # noqa: E402

from imagine import InputError, OptionsError, tasks  # noqa: E402
from imagine.events import Progress  # noqa: E402
from imagine.parts import Image, Message, Modality  # noqa: E402

from ...helpers.cli import assert_one_line_error, run  # noqa: E402
from ...helpers.diffusion import SIZE, tiny_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """{"pipe", "controlnet", "lora", "pickle"} folders of tiny random-weight models."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("diffusers")
    pipe = tiny_pipeline(root)
    unet = pipe.unet
    pipe.save_pretrained(root / "pipe")
    pipe.save_pretrained(root / "pickle", safe_serialization=False)

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8))
    with torch.no_grad():  # its output convolutions start at zero (no effect): give them weights
        for name, param in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                param.normal_(0, 0.3)
    controlnet.save_pretrained(root / "controlnet")

    # LoRA B starts at zero by default (no effect): init_lora_weights=False makes it random
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(
        root / "lora", unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        safe_serialization=True)
    yield {name: root / name for name in ("pipe", "controlnet", "lora", "pickle")}
    torch.set_num_threads(threads)


def draw(models: dict[str, Path], prompt: str = "a red square", **options: Any) -> Any:
    options.setdefault("steps", 2)
    return tasks.draw(prompt, model=f"diffusers:{models['pipe']}", **options)


def edit(models: dict[str, Path], image: Any, prompt: str = "a blue square", **options: Any) -> Any:
    options.setdefault("steps", 2)
    return tasks.edit(image, prompt, model=f"diffusers:{models['pipe']}", **options)


def pixels(part: Any) -> np.ndarray:
    return np.asarray(part.pil().convert("RGB"), dtype=np.float32)


def picture(width: int, height: int) -> bytes:
    """A PNG with a colour gradient (so every pixel differs)."""
    from PIL import Image as PILImage

    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    rgb = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def steps_seen(response: Any) -> list[Progress]:
    return [e for e in response.events() if isinstance(e, Progress)]


# -- text to image -------------------------------------------------------------------------------------

def test_draw_makes_n_pngs_of_the_asked_size(models):
    response = draw(models, width=24, height=16, n=2, seed=1)
    progress = steps_seen(response)
    assert [(p.done, p.total, p.label) for p in progress] == [(1, 2, "denoise"), (2, 2, "denoise")]
    assert len(response.parts) == 2
    for part in response.parts:
        assert isinstance(part, Image) and part.mime == "image/png" and part.size == (24, 16)
    assert response.usage.extra == {"images": 2, "steps": 2, "seed": 1, "width": 24, "height": 16}
    assert response.provenance["engine"] == "diffusers"
    assert draw(models, seed=1).parts[0].size == (SIZE, SIZE)  # default: the pipeline's sample size


def test_seed_makes_it_reproducible(models):
    first = draw(models, seed=7).parts[0].data
    assert draw(models, seed=7).parts[0].data == first
    assert draw(models, seed=8).parts[0].data != first
    unseeded = draw(models)
    seed = unseeded.usage.extra["seed"]  # a random seed is reported, so the image can be made again
    assert draw(models, seed=seed).parts[0].data == unseeded.parts[0].data


def test_scheduler_changes_the_sampler(models):
    base = draw(models, seed=3, steps=3).parts[0].data
    assert draw(models, seed=3, steps=3, scheduler="euler_a").parts[0].data != base
    assert len(steps_seen(draw(models, seed=3, steps=3, scheduler="dpm++"))) == 3
    assert draw(models, seed=3, steps=3).parts[0].data == base  # the loaded pipeline keeps its own
    with pytest.raises(InputError, match="unknown scheduler 'karras'.*euler, euler_a"):
        draw(models, scheduler="karras")


# -- image to image and inpainting ---------------------------------------------------------------------

def test_edit_runs_steps_times_strength(models):
    source = picture(24, 16)
    response = edit(models, source, steps=4, strength=0.5, seed=1)
    assert len(steps_seen(response)) == 2 and response.usage.extra["steps"] == 2  # int(4 x 0.5)
    assert response.parts[0].size == (24, 16)  # the input's size
    assert len(steps_seen(edit(models, source, steps=4, seed=1))) == 3  # default strength 0.75
    resized = edit(models, picture(30, 20), width=16, height=32, seed=1)
    assert resized.parts[0].size == (16, 32)
    assert edit(models, picture(30, 21), seed=1).parts[0].size == (24, 16)  # floored to multiples of 8
    with pytest.raises(InputError, match=r"steps x strength = 2 x 0.3 leaves no denoising step"):
        edit(models, source, strength=0.3).complete()


def test_inpainting_repaints_only_the_mask(models):
    from PIL import Image as PILImage

    source = picture(32, 32)
    mask = PILImage.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))  # repaint the left half
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    response = edit(models, source, mask=buf.getvalue(), steps=3, seed=2)
    assert len(steps_seen(response)) == 3  # inpainting's default strength is 1.0: every step
    before, after = pixels(Image(source)), pixels(response.parts[0])
    diff = np.abs(after - before).mean(axis=-1)
    assert diff[:, 16:].max() == 0  # outside the mask: the input, pixel for pixel (keep_unmasked)
    assert diff[:, :16].mean() > 10  # inside: repainted (random weights paint noise)
    # Without the paste-back the pipeline only blends in latent space: the VAE round trip (random here)
    # changes the kept half too, which is why keep_unmasked is the default.
    raw = edit(models, source, mask=buf.getvalue(), steps=3, seed=2, keep_unmasked=False)
    assert np.abs(pixels(raw.parts[0]) - before)[:, 16:].mean() > 1
    smaller_mask = io.BytesIO()
    mask.resize((8, 8)).save(smaller_mask, format="PNG")  # masks are resized to the image
    assert edit(models, source, mask=smaller_mask.getvalue(), seed=2).parts[0].size == (32, 32)


# -- LoRA and ControlNet -------------------------------------------------------------------------------

def test_lora_changes_the_output_and_scale_zero_does_not(models):
    base = pixels(draw(models, seed=4).parts[0])
    with_lora = pixels(draw(models, seed=4, lora=str(models["lora"])).parts[0])
    assert np.abs(with_lora - base).mean() > 1
    off = pixels(draw(models, seed=4, lora=str(models["lora"]), lora_scale=0).parts[0])
    assert np.abs(off - base).max() <= 1  # float noise at most
    assert np.abs(pixels(draw(models, seed=4).parts[0]) - base).max() == 0  # unloaded again afterwards
    with pytest.raises(InputError, match="option 'lora_scale' needs option 'lora'"):
        draw(models, lora_scale=0.5)
    with pytest.raises(InputError, match="option 'lora'.*not found"):
        draw(models, lora=str(models["pipe"].parent / "missing-lora")).complete()


def test_controlnet_steers_with_the_control_image(models):
    control = picture(SIZE, SIZE)
    base = draw(models, seed=5).parts[0].data
    steered = draw(models, seed=5, control=control, controlnet=str(models["controlnet"]))
    assert len(steps_seen(steered)) == 2 and steered.parts[0].data != base
    assert edit(models, picture(SIZE, SIZE), control=control, controlnet=str(models["controlnet"]),
                seed=5).parts[0].size == (SIZE, SIZE)  # the image-to-image ControlNet variant
    with pytest.raises(InputError, match="a control image needs a ControlNet"):
        draw(models, control=control).complete()
    with pytest.raises(InputError, match="option 'controlnet' needs a control image"):
        draw(models, controlnet=str(models["controlnet"])).complete()
    with pytest.raises(InputError, match="is not a ControlNetModel"):
        draw(models, control=control, controlnet=str(models["pipe"])).complete()


# -- errors --------------------------------------------------------------------------------------------

def test_bad_options_name_the_option(models):
    with pytest.raises(InputError, match=r"option 'width' must be divisible by 8, got 100 \(use 96 or 104\)"):
        draw(models, width=100)
    with pytest.raises(InputError, match="option 'height'.*use 8 or 16"):
        draw(models, height=12)
    with pytest.raises(OptionsError, match="'steps'"):
        draw(models, steps=0)
    with pytest.raises(OptionsError, match="'strength'"):
        edit(models, picture(SIZE, SIZE), strength=1.5)
    with pytest.raises(OptionsError, match="'guidance'"):
        draw(models, guidance=-1)
    with pytest.raises(OptionsError, match="unknown option 'cfg'"):
        draw(models, cfg=3)
    with pytest.raises(InputError, match="option 'strength' applies to editing"):
        draw(models, strength=0.5).complete()
    with pytest.raises(InputError, match="the prompt is empty"):
        draw(models, "  ")


def test_a_mask_needs_an_image(models):
    mask = Image(picture(SIZE, SIZE), name=tasks.MASK)
    response = tasks.respond([Message.user(mask, "fill it")], f"diffusers:{models['pipe']}", want=Modality.IMAGE)
    with pytest.raises(InputError, match="a mask needs the image to inpaint"):
        response.complete()


def test_models_that_are_not_pipelines_are_refused(models, tmp_path):
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(InputError, match="transformers model .llama.*-m transformers:"):
        tasks.draw("x", model=f"diffusers:{lm}")
    with pytest.raises(InputError, match="single diffusers model .ControlNetModel."):
        tasks.draw("x", model=f"diffusers:{models['controlnet']}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="not a Hugging Face model"):
        tasks.draw("x", model=f"diffusers:{empty}")
    with pytest.raises(InputError, match="no default"):
        tasks.draw("x", model="diffusers")


def test_pickle_weights_need_allow_pickle(models):
    model = f"diffusers:{models['pickle']}"
    with pytest.raises(InputError, match="only pickle weights.*allow_pickle=true"):
        tasks.draw("x", model=model, steps=1).complete()
    assert tasks.draw("x", model=model, steps=1, allow_pickle=True, seed=1).parts[0].size == (SIZE, SIZE)


# -- the CLI -------------------------------------------------------------------------------------------

def test_cli_draw_and_edit_write_images(models, tmp_path):
    from imagine.cli import cli

    runner = CliRunner()
    out = tmp_path / "cat.png"
    result = runner.invoke(cli, ["draw", "a", "cat", "-m", f"diffusers:{models['pipe']}", "-o", "steps=2",
                                 "-o", "width=24", "-o", "seed=1", "-O", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (24x16)" in result.stdout and Image(out).size == (24, 16)
    result = runner.invoke(cli, ["draw", "cats", "-m", f"diffusers:{models['pipe']}", "-o", "steps=1",
                                 "-o", "n=2", "-O", str(tmp_path / "many.jpg")])
    assert result.exit_code == 0, result.output
    assert Image(tmp_path / "many-1.jpg").mime == "image/jpeg" and (tmp_path / "many-2.jpg").is_file()
    mask = tmp_path / "mask.png"
    mask.write_bytes(picture(24, 16))
    result = runner.invoke(cli, ["edit", str(out), "a", "dog", "--mask", str(mask), "-m",
                                 f"diffusers:{models['pipe']}", "-o", "steps=2", "-O", str(tmp_path / "dog.png")])
    assert result.exit_code == 0, result.output
    assert Image(tmp_path / "dog.png").size == (24, 16)


def test_cli_bad_size_is_one_line(models, imagine_home):
    proc = run("draw", "a cat", "-m", f"diffusers:{models['pipe']}", "-o", "width=20", home=imagine_home)
    assert_one_line_error(proc, "option 'width' must be divisible by 8", "16 or 24")
    assert proc.returncode == 2


def test_drawing_without_a_model_says_which_engine_to_name() -> None:
    from imagine.errors import ImagineError

    with pytest.raises(ImagineError, match="-m diffusers:MODEL"):
        tasks.draw("a lighthouse")
