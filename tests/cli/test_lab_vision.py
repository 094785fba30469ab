"""`imagine lab train vit|vqvae|dit` and their checkpoints served by `see`/`draw -m native:DIR`: training
in process (CliRunner, torch already loaded), serving and errors through the real entry point too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from click.testing import CliRunner, Result  # noqa: E402

from imagine.arch.train_vision import class_names  # noqa: E402
from imagine.cli import cli  # noqa: E402

from ..helpers.cli import assert_one_line_error, run  # noqa: E402
from ..helpers.native import make_checkpoint  # noqa: E402

# A handful of steps on 64 generated images with the smallest shapes that build: seconds, not minutes.
COMMON = ["--steps", "3", "--threads", "1", "--seed", "1", "-o", "n_train=64", "-o", "batch_size=8"]
TINY = {
    "vit": ["--size", "16", "-o", "model.n_layer=1", "-o", "model.n_embd=16", "-o", "model.n_head=2"],
    "vqvae": ["--size", "16", "-o", "model.hidden=8", "-o", "model.n_res=0", "-o", "model.codebook_size=16",
              "-o", "model.code_dim=4"],
    "dit": ["--size", "8", "-o", "model.dim=16", "-o", "model.depth=1", "-o", "model.n_head=2"],
}
CLASSES = class_names("dit")


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process training sets torch's thread count (--threads 1); give other tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def train(kind: str, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["lab", "train", kind, *COMMON, *TINY[kind], *extra, "-O", str(out)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("labv")
    out = {}
    for kind in ("vit", "dit"):
        result = train(kind, root / kind)
        assert result.exit_code == 0, result.output
        out[kind] = root / kind
    return out


def test_each_kind_trains_into_a_checkpoint_with_pictures(tmp_path):
    pictures = {"vit": [], "vqvae": ["recon.png"], "dit": ["samples.png"]}
    for kind in ("vit", "vqvae", "dit"):
        result = train(kind, tmp_path / kind)
        assert result.exit_code == 0, (kind, result.output)
        folder = tmp_path / kind
        assert f"trained {kind} for 3 steps" in result.stdout and f"checkpoint: {folder}" in result.stdout
        assert f"loss curve: {folder / 'loss.png'}" in result.stdout
        assert result.stderr.splitlines()[-1].startswith("step 3/3  loss ")   # off a terminal: lines, no bar
        info = json.loads((folder / "config.json").read_text())
        assert info["kind"] == kind and info["train"]["steps"] == 3 and info["meta"]["pixel_range"]
        assert info["meta"]["image_size"] == int(TINY[kind][1])
        for name in ["model.safetensors", "loss.png", *pictures[kind]]:
            assert (folder / name).is_file(), (kind, name)
    assert "held-out accuracy" in train("vit", tmp_path / "again").stdout


def test_samples_grid_has_a_row_per_class(trained):
    from PIL import Image

    width, height = Image.open(trained["dit"] / "samples.png").size
    assert height == 3 * (12 * 9 + 1) and width == 3 * (8 * 9 + 1)   # 12 rows of 8 samples, 8 px + 1 px gaps, x3


def test_json_summary_and_labels(tmp_path):
    result = train("vit", tmp_path / "shape", "--labels", "shape", "--json", "-o", "plot=false")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["classes"] == ["circle", "square", "triangle"] and summary["plot"] is None
    assert summary["metric"] == "held-out accuracy" and 0 <= summary["score"] <= 1 and summary["steps"] == 3
    assert not (tmp_path / "shape" / "loss.png").exists()


def test_bad_training_input_is_one_line(tmp_path):
    cases = [
        ("vit", ["-o", "model.layers=2"], "unknown model option 'model.layers'"),
        ("dit", ["-o", "batch=4"], "unknown training option 'batch'"),
        ("vqvae", ["-o", "lr=fast"], "'lr' must be of type float"),
        ("dit", ["--size", "9"], "must be divisible by patch"),
    ]
    for kind, args, fragment in cases:
        result = train(kind, tmp_path / "bad", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (args, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)


def test_see_and_draw_through_the_entry_point(trained, tmp_path, imagine_home):
    image = tmp_path / "shape.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (230, 30, 30)).save(image)
    seen = run("see", "-m", f"native:{trained['vit']}", str(image), "what shape?", "-o", "top=1", home=imagine_home)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip().rsplit(" (", 1)[0] in CLASSES
    out = tmp_path / "drawn.png"
    drawn = run("draw", "-m", f"native:{trained['dit']}", "a red circle", "-o", "steps=2", "-o", "seed=4",
                "-O", str(out), home=imagine_home)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.strip() == f"wrote {out} (8x8)" and Image.open(out).size == (8, 8)
    assert_one_line_error(run("draw", "-m", f"native:{trained['dit']}", "a purple hexagon", home=imagine_home),
                          "names none of them", "red circle")


def test_serving_errors_are_one_line(trained, tmp_path):
    def cli_error(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]

    lm = make_checkpoint(tmp_path / "lm")
    assert "is a language model (kind 'lm'): it gives text, not image" in cli_error(
        "draw", "-m", f"native:{lm}", "a red circle")
    assert "checkpoint folder not found" in cli_error("draw", "-m", f"native:{tmp_path / 'none'}", "a red circle")
    (tmp_path / "empty").mkdir()
    assert "lacks config.json, model.safetensors" in cli_error("see", "-m", f"native:{tmp_path / 'empty'}",
                                                                str(trained["dit"] / "samples.png"), "what?")
    assert "does not apply to a DiT" in cli_error("draw", "-m", f"native:{trained['dit']}", "a red circle",
                                                  "-o", "temperature=1")


def test_vision_help_imports_no_torch():
    code = ("import sys\nfrom imagine.cli import main\n"
            "try:\n    main(['lab', 'train', 'dit', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'rich') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout and "--minutes" in proc.stdout, proc.stdout + proc.stderr
