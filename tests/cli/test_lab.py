"""`imagine lab`: presets, sample and train lm — in process (CliRunner) where torch is already loaded,
through real subprocesses where the exit code and the one-line error of the real entry point matter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from click.testing import CliRunner, Result  # noqa: E402

from imagine.cli import cli  # noqa: E402

from ..helpers.cli import assert_one_line_error, run  # noqa: E402
from ..helpers.native import TEXT, VOCAB, make_checkpoint  # noqa: E402

# A tiny run of the real nanogpt-cpu recipe: one thread (a loaded 2-core box thrashes with more),
# a 1-layer 32-wide model, 16-token blocks, 2 evaluation batches, no plot unless a test wants one.
TINY = ["--preset", "nanogpt-cpu", "--iters", "6", "-o", "threads=1", "-o", "batch_size=4", "-o", "eval_iters=2",
        "-o", "model.n_layer=1", "-o", "model.n_embd=32", "-o", "model.n_head=2", "-o", "model.block_size=16"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process training sets torch's thread count (-o threads=1); give other tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def lab(*args: str) -> Result:
    return CliRunner().invoke(cli, ["lab", *args])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("lab") / "ckpt")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "play.txt"
    path.write_text(TEXT * 12)
    return path


def test_sample_streams_a_continuation(ckpt):
    result = lab("sample", str(ckpt), "To be", "-n", "30", "--seed", "1")
    assert result.exit_code == 0, result.output
    text = result.stdout.removesuffix("\n")
    assert len(text) == 30 and set(text) <= VOCAB
    again = lab("sample", str(ckpt), "To be", "-n", "30", "--seed", "1", "--echo", "--no-log")
    assert again.stdout == "To be" + result.stdout


def test_sample_without_a_prompt_starts_a_fresh_line(ckpt):
    result = lab("sample", str(ckpt), "-n", "10", "--temperature", "0", "--top-k", "0", "--top-p", "0.9")
    assert result.exit_code == 0, result.output
    assert len(result.stdout) == 11


def test_sample_bad_input_is_one_line(ckpt, tmp_path, imagine_home):
    assert_one_line_error(run("lab", "sample", str(tmp_path / "nope"), "hi", home=imagine_home),
                          "checkpoint folder not found", "imagine lab train lm")
    result = lab("sample", str(ckpt), "Zebra", "-n", "5")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == ("error: the prompt has characters not in this model's vocabulary: 'Z' "
                                     "(use only characters from its training text, or train with --tokenizer "
                                     "byte (which takes any text))")


def test_presets_lists_the_shapes():
    result = lab("presets")
    assert result.exit_code == 0, result.output
    assert "nanogpt-cpu" in result.stdout and "moe-tiny" in result.stdout
    rows = {r["name"]: r for r in json.loads(lab("presets", "--json").stdout)}
    assert rows["nanogpt-cpu"]["layers"] == 4 and rows["nanogpt-cpu"]["block"] == 64
    assert rows["nanogpt-cpu"]["parts"] == "gpt-2" and rows["nanogpt-cpu"]["on"] == []
    assert "qk-norm" in rows["moe-tiny"]["on"] and rows["moe-tiny"]["kv_heads"] == 2


def test_train_writes_a_checkpoint_that_samples(data, tmp_path):
    out = tmp_path / "run"
    proc = lab("train", "lm", *TINY, "-o", "eval_interval=3", "--data", str(data), "-O", str(out))
    assert proc.exit_code == 0, proc.output
    assert "trained nanogpt-cpu for 6 steps" in proc.stdout and "val loss" in proc.stdout
    assert f"checkpoint: {out}" in proc.stdout and f"loss curve: {out / 'loss.png'}" in proc.stdout
    assert proc.stderr.startswith("step 3/6  loss ")  # off a terminal: a line per evaluation, no bar
    sample = proc.stdout.split("sample:\n", 1)[1].removesuffix("\n")
    assert 0 < len(sample) <= 200 and set(sample) <= VOCAB
    assert (out / "model.safetensors").is_file() and (out / "loss.png").is_file()
    result = lab("sample", str(out), "To be", "-n", "20", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert len(result.stdout) == 21 and set(result.stdout) <= VOCAB


def test_train_json_and_resume(data, tmp_path):
    out = tmp_path / "run"
    first = lab("train", "lm", *TINY, "-o", "plot=false", "--data", str(data), "-O", str(out), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["steps"] == 6 and summary["plot"] is None and summary["checkpoint"] == str(out)
    # --resume alone finds the data in the run's record; --iters counts the earlier steps
    resumed = lab("train", "lm", "--preset", "nanogpt-cpu", "--iters", "8", "-o", "threads=1", "-o", "batch_size=4",
                  "-o", "eval_iters=2", "-o", "plot=false", "--resume", "-O", str(out), "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["steps"] == 8


def test_train_bad_input_is_one_line(data, tmp_path):
    cases = [
        (["--data", str(tmp_path / "missing.txt")], "missing.txt' not found"),
        (["--preset", "gpt-5"], "unknown preset 'gpt-5'"),
        (["-o", "batch_sise=4"], "unknown training option 'batch_sise'"),
        (["-o", "model.layers=2"], "unknown model option 'model.layers'"),
        (["-o", "batch_size=big"], "'batch_size' must be of type int"),
        (["-o", "device=cpu"], "set device with --device"),
        (["-o", "model.block_size=4096"], "shorter than one block"),
        (["--resume"], "nothing to resume"),
    ]
    for args, fragment in cases:
        result = lab("train", "lm", "--data", str(data), *args, "-O", str(tmp_path / "o"), "-o", "threads=1")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (args, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)
    assert lab("train", "lm", "-O", str(tmp_path / "o")).stderr.startswith("error: no training data")


def test_lab_help_imports_no_torch():
    code = ("import sys\nfrom imagine.cli import main\n"
            "try:\n    main(['lab', 'train', 'lm', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch', 'rich') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout and "--preset" in proc.stdout, proc.stdout + proc.stderr
