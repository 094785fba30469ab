"""The native engine: lab checkpoints (tiny random-weight LMs saved by the real saver) through the one
request path — streaming, usage, seeds, sampling options, errors that say how to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

import imagine  # noqa: E402
from imagine import InputError, OptionsError  # noqa: E402
from imagine.arch.tokenizer import ByteTokenizer  # noqa: E402
from imagine.engines.native import NativeEngine  # noqa: E402

from ..helpers.native import TEXT, VOCAB, make_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("native") / "ckpt")


def ask(ckpt: Path, prompt: str = "To be", **options: object) -> imagine.Response:
    return imagine.ask(prompt, model=f"native:{ckpt}", **options)


def test_continues_with_vocabulary_characters_and_counts_usage(ckpt):
    response = ask(ckpt, seed=1, max_tokens=40)
    text = response.text()
    assert len(text) == 40 and set(text) <= VOCAB  # one character per token
    assert response.usage.input_tokens == len("To be") and response.usage.output_tokens == 40
    assert response.finish_reason == "length"
    assert response.provenance["engine"] == "native" and response.provenance["model"] == str(ckpt)


def test_streamed_deltas_join_to_the_text(ckpt):
    response = ask(ckpt, seed=2, max_tokens=25)
    deltas = list(response)
    assert len(deltas) == 25 and "".join(deltas) == response.text()


def test_seed_makes_it_reproducible(ckpt):
    first = ask(ckpt, seed=7, max_tokens=40).text()
    assert ask(ckpt, seed=7, max_tokens=40).text() == first
    assert ask(ckpt, seed=8, max_tokens=40).text() != first  # 40 near-uniform draws: a collision is ~impossible


def test_greedy_and_sampling_options(ckpt):
    greedy = ask(ckpt, temperature=0, max_tokens=30).text()
    assert ask(ckpt, temperature=0, max_tokens=30).text() == greedy
    assert ask(ckpt, top_k=1, seed=3, max_tokens=30).text() == greedy  # top-1 sampling is greedy
    nucleus = ask(ckpt, top_p=0.5, top_k=0, seed=3, max_tokens=30).text()
    assert len(nucleus) == 30 and set(nucleus) <= VOCAB


def test_long_prompts_and_generations_pass_the_block_size(ckpt):
    response = ask(ckpt, TEXT * 2, seed=1, max_tokens=80)  # prompt and output both longer than block_size 32
    assert len(response.text()) == 80 and response.usage.input_tokens == 2 * len(TEXT)


def test_only_the_last_user_message_is_continued(ckpt):
    # the system prompt holds characters outside the vocabulary: ignored, not an error
    response = imagine.ask("that is", model=f"native:{ckpt}", system="You are Yorick!", seed=1, max_tokens=5)
    assert len(response.text()) == 5 and response.usage.input_tokens == len("that is")


def test_unknown_characters_are_named(ckpt):
    with pytest.raises(InputError, match=r"not in this model's vocabulary: '\?Qz'") as err:
        ask(ckpt, "To be? Quiz", max_tokens=5).text()
    assert "--tokenizer byte" in str(err.value)


def test_missing_or_wrong_checkpoints_say_how_to_fix(ckpt, tmp_path):
    with pytest.raises(InputError, match="checkpoint folder not found") as err:
        ask(tmp_path / "nowhere").text()
    assert "imagine lab train lm" in str(err.value) and "-m native:DIR" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="not an imagine LM checkpoint .it lacks config.json, model.safetensors"):
        ask(empty)
    (empty / "config.json").write_text(json.dumps({"arch": "vit", "config": {}}))
    (empty / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="holds a 'vit' model"):
        ask(empty)
    with pytest.raises(InputError, match="no default model") as err:  # the registry answers a bare `-m native`
        imagine.ask("To be", model="native")
    assert "imagine lab train lm" in str(err.value)                    # with the engine's own hint
    with pytest.raises(InputError, match="imagine lab train lm"):
        NativeEngine().check_model("")


def test_corrupt_weights_are_an_input_error(tmp_path):
    folder = make_checkpoint(tmp_path / "broken")
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        ask(folder, max_tokens=3).text()


def test_options_are_validated(ckpt):
    with pytest.raises(OptionsError, match="unknown option 'stop'"):
        ask(ckpt, stop="\n")
    with pytest.raises(OptionsError, match="'temperature'"):
        ask(ckpt, temperature=-1)


def test_byte_checkpoints_take_any_text(tmp_path):
    folder = make_checkpoint(tmp_path / "bytes", ByteTokenizer())
    response = ask(folder, "naïve café ✓", seed=1, max_tokens=30)
    deltas = list(response)
    assert "".join(deltas) == response.text()
    assert response.usage.input_tokens == len("naïve café ✓".encode()) and response.usage.output_tokens == 30


def test_retrained_folder_is_reloaded(tmp_path):
    folder = make_checkpoint(tmp_path / "ckpt", seed=1)
    before = ask(folder, seed=1, max_tokens=30).text()
    assert ask(folder, seed=1, max_tokens=30).text() == before  # cached
    import os

    make_checkpoint(folder, seed=2)
    stat = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse clocks
    assert ask(folder, seed=1, max_tokens=30).text() != before


def test_leaving_the_stream_stops_generation(ckpt):
    response = ask(ckpt, seed=1, max_tokens=100_000)
    for _ in response:
        break
    assert response.finish_reason == "cancelled"


def test_image_input_is_refused(ckpt):
    from ..helpers.media import png_bytes

    image = imagine.Image(png_bytes())
    with pytest.raises(InputError, match="does not take image input"):
        imagine.ask("To be", model=f"native:{ckpt}", attach=[image])


def test_models_lists_native():
    from click.testing import CliRunner

    from imagine.cli import cli

    rows = {r["id"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).stdout)}
    info = rows["native"]
    assert info["unavailable"] is None and info["locality"] == "local" and "seed" in info["features"]
    assert "native" not in imagine.get_registry().capable({imagine.Modality.TEXT}, imagine.Modality.TEXT)
