"""The lab's training loop: the loss falls, checkpoints are safetensors + JSON, resume continues the run,
the schedule and Muon behave. Small models on a synthetic corpus made from a seed, a few seconds each."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from imagine.arch.muon import Muon, orthogonalize  # noqa: E402
from imagine.arch.train import (TrainConfig, load_checkpoint, lr_factor, prepare_data, recipe,  # noqa: E402
                                train)

TINY = {"block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sentences from a tiny grammar: learnable structure, generated reproducibly from a seed."""
    rng = random.Random(7)
    subjects, verbs, objects = ["the cat", "a dog", "my king", "her lord"], ["sees", "loves", "fears"], \
        ["the moon", "a rose", "the sea", "his crown"]
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(3000)]
    path = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def quick(corpus: Path, **overrides: object) -> TrainConfig:
    base = dict(data=str(corpus), max_iters=150, batch_size=16, eval_interval=50, eval_iters=4, warmup_iters=10,
                model=TINY, plot=False)
    return recipe(str(overrides.pop("preset", "imagine-cpu")), **{**base, **overrides})


@pytest.mark.parametrize("preset", ["nanogpt-cpu", "imagine-cpu", "imagine-cpu-64", "moe-tiny"])
def test_loss_falls(corpus: Path, preset: str) -> None:
    seen: list[float] = []
    result = train(quick(corpus, preset=preset), on_progress=lambda p: seen.append(p.loss))
    assert result.steps == 150 and len(seen) == 150
    first, last = sum(seen[:10]) / 10, sum(seen[-10:]) / 10
    assert first > 2.5                       # about ln(vocab) at the start
    assert last < 0.6 * first                # the grammar is learnt, not just the letter frequencies
    assert result.val_loss < 0.6 * first
    vals = [h["val_loss"] for h in result.history if "val_loss" in h]
    assert len(vals) == 3 and vals[-1] < vals[0]


def test_checkpoint_is_safetensors_and_json_and_resume_continues(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train(quick(corpus, out_dir=str(out), max_iters=60, plot=True))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "loss.png", "model.safetensors", "train_state.json", "train_state.safetensors"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "config.json").read_text())
    assert record["arch"] == "lm" and record["tokenizer"]["kind"] == "char" and record["train"]["step"] == 60

    model, tokenizer, meta = load_checkpoint(out)
    x = torch.tensor([tokenizer.encode("the cat sees")])
    assert torch.equal(model(x)[0], first.model(x)[0])

    resumed = train(quick(corpus, out_dir=str(out), max_iters=120, resume=True))
    assert resumed.steps == 120
    steps = [h["step"] for h in resumed.history if "loss" in h]
    assert steps == list(range(1, 121))      # the history carries on from step 60, nothing repeated
    assert resumed.val_loss < first.val_loss


def test_interrupted_run_saves_and_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    """Ctrl-C at step 50 saves the folder; resuming it to step 80 == 80 straight steps (same batches, same
    optimizer moments, same schedule)."""
    straight = train(quick(corpus, max_iters=80, eval_interval=1000, optimizer="muon"))
    out = tmp_path / "run"

    def interrupt(progress: object) -> None:
        if getattr(progress, "step") == 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(quick(corpus, out_dir=str(out), max_iters=80, eval_interval=1000, optimizer="muon"),
              on_progress=interrupt)
    assert json.loads((out / "train_state.json").read_text())["step"] == 50
    resumed = train(quick(corpus, out_dir=str(out), max_iters=80, eval_interval=1000, optimizer="muon",
                          resume=True))
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_bad_input_is_named(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train(quick(corpus, data=str(tmp_path / "missing.txt")))
    with pytest.raises(ValueError, match="nanogpt-cpu"):
        recipe("no-such-preset")
    with pytest.raises(ValueError, match="unknown training options"):
        recipe("imagine-cpu", learning_rate=1)
    with pytest.raises(ValueError, match="tokenizer must be"):
        prepare_data(corpus, "words")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(quick(corpus, out_dir=str(tmp_path / "empty"), resume=True))


def test_byte_tokenizer_trains(corpus: Path) -> None:
    result = train(quick(corpus, tokenizer="byte", max_iters=40, eval_interval=40))
    assert result.model.cfg.vocab_size == 256 and result.tokenizer.decode(result.tokenizer.encode("é!")) == "é!"


def test_lr_schedule_warms_up_then_decays_to_the_floor_by_iterations_or_time() -> None:
    cfg = TrainConfig(max_iters=1000, warmup_iters=100, min_lr_ratio=0.1)
    factors = [lr_factor(s, 0.0, cfg, None if s < 100 else 0.0) for s in range(1000)]
    assert factors[0] < 0.02 and abs(factors[99] - 100 / 101) < 1e-9 and abs(factors[100] - 1.0) < 1e-9
    assert all(a >= b for a, b in zip(factors[100:], factors[101:]))
    assert abs(lr_factor(1000, 0.0, cfg, 0.0) - 0.1) < 1e-9
    timed = TrainConfig(max_iters=10**9, max_seconds=100.0, warmup_iters=10)
    assert abs(lr_factor(50, 55.0, timed, 10.0) - 0.55) < 1e-9     # half-way in time: the cosine's middle
    assert abs(lr_factor(60, 100.0, timed, 10.0) - 0.1) < 1e-9


def test_orthogonalize_pushes_singular_values_towards_one() -> None:
    g = torch.randn(64, 24) @ torch.diag(torch.logspace(-1, 0.5, 24))        # condition number ~100
    s = torch.linalg.svdvals(orthogonalize(g))
    assert s.min() > 0.5 and s.max() < 1.3
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 30
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])
