"""The transformers engine on tiny random-weight models (a 2-layer Llama and a tiny LLaVA) built here,
saved with save_pretrained and loaded only through the engine's real loader: streaming, usage, seeds,
stop strings, the schema repair turn, images in a VLM, and errors that say what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the hf extra: pip install -e '.[hf]'")

import imagine  # noqa: E402
from imagine import InputError, SchemaError, tasks  # noqa: E402
from imagine.engines.hf import transformers as tt  # noqa: E402
from imagine.parts import Image  # noqa: E402

from ...helpers.cli import assert_one_line_error, run  # noqa: E402
from ...helpers.media import png_bytes  # noqa: E402
from ...helpers.tiny_llama import TEMPLATE, make_tokenizer, never_eos, save_tiny_llama, text_config  # noqa: E402

IMAGE_TOKENS = (30 // 6) ** 2  # 25 patches; LLaVA's "default" strategy drops the CLS token


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = tmp_path_factory.mktemp("hf") / "tiny-llava"
    tok = make_tokenizer()
    pixels = CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    LlavaProcessor(image_processor=pixels, tokenizer=tok, patch_size=6, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=TEMPLATE).save_pretrained(folder)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=30, patch_size=6, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=text_config(len(tok)),
                         image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=IMAGE_TOKENS)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    never_eos(model.lm_head)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from PIL import Image as PILImage, ImageDraw

    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, colour in enumerate([(220, 40, 40), (40, 40, 220)]):
        img = PILImage.new("RGB", (48, 40), (250, 250, 250))
        ImageDraw.Draw(img).ellipse((8 + 6 * i, 6, 38, 34), fill=colour)
        paths.append(folder / f"pic{i}.png")
        img.save(paths[-1])
    return paths


def ask(folder: Path, prompt: str = "the cat sees a dog", **options: Any) -> imagine.Response:
    return imagine.ask(prompt, model=f"transformers:{folder}", **options)


# -- text models --------------------------------------------------------------------------------------------

def test_streams_text_with_exact_usage(llm):
    response = ask(llm, seed=1, max_tokens=12)
    deltas = list(response)
    assert deltas and "".join(deltas) == response.text()
    assert response.finish_reason == "length" and response.usage.output_tokens == 12  # no eos: all 12
    tok = make_tokenizer()
    prompt = tok.apply_chat_template([{"role": "user", "content": "the cat sees a dog"}], add_generation_prompt=True,
                                     tokenize=False)
    assert response.usage.input_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert response.provenance["engine"] == "transformers" and response.provenance["model"] == str(llm)


def test_seed_and_greedy_are_deterministic(llm):
    first = ask(llm, seed=7, temperature=1.0, max_tokens=16).text()
    assert ask(llm, seed=7, temperature=1.0, max_tokens=16).text() == first
    assert ask(llm, seed=8, temperature=1.0, max_tokens=16).text() != first  # 16 near-uniform draws
    assert ask(llm, temperature=0, max_tokens=10).text() == ask(llm, temperature=0, max_tokens=10).text()


def test_max_tokens_bounds_output(llm):
    for n in (1, 5):
        response = ask(llm, temperature=0, max_tokens=n)
        assert response.usage.output_tokens == n and response.finish_reason == "length"
    sampled = ask(llm, seed=3, max_tokens=6)
    assert sampled.usage.output_tokens <= 6


def test_stop_string_cuts_the_text_and_ends_generation(llm):
    full = ask(llm, temperature=0, max_tokens=24).text()
    words = full.split()
    assert len(words) >= 4, full
    stop = words[2]
    cut = ask(llm, temperature=0, max_tokens=24, stop=[stop])
    assert cut.text() == full[:full.find(stop)]
    assert cut.finish_reason == "stop" and cut.usage.output_tokens < 24


def test_leaving_the_stream_stops_generation(llm):
    response = ask(llm, temperature=0, max_tokens=400)
    for _ in response:
        break  # the Halt criterion ends generate() at its next step; the worker thread is awaited
    assert response.finish_reason == "cancelled"


def test_stop_cutter_holds_back_a_partial_stop():
    cutter = tt.StopCutter(["END"])
    assert cutter.feed("abc E") == "abc " and cutter.feed("N") == "" and cutter.feed("x") == "ENx"
    assert cutter.feed("yEND and more") == "y" and cutter.hit and cutter.feed("z") == "" and cutter.flush() == ""


def test_prompt_without_a_chat_template_is_role_lines():
    class Plain:
        chat_template = None

    turns: list[Any] = [("system", ["be brief"]), ("user", ["hi", "there"])]
    assert tt.render_text_prompt(Plain(), turns) == "system: be brief\nuser: hi\nthere\nassistant:"


# -- structured output ------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def counting(monkeypatch: pytest.MonkeyPatch, replies: list[str] | None = None) -> list[list[Any]]:
    """Record each generation's conversation; with `replies`, answer with them instead of the model
    (the only thing replaced: prompting, checking, repair and events stay real)."""
    calls: list[list[Any]] = []
    real = tt.run_generation

    def fake(loaded: Any, turns: Any, opts: Any, *, on_text: Any, cancel: Any) -> tt.Generated:
        calls.append(list(turns))
        if replies is None:
            return real(loaded, turns, opts, on_text=on_text, cancel=cancel)
        text = replies[len(calls) - 1]
        on_text(text)
        return tt.Generated(text, 10, 5, "stop")

    monkeypatch.setattr(tt, "run_generation", fake)
    return calls


def test_schema_failure_repairs_once_then_says_so(llm, monkeypatch):
    calls = counting(monkeypatch)  # the real random model: it cannot write valid JSON
    response = ask(llm, "give me json", schema=SCHEMA, temperature=0, max_tokens=8)
    with pytest.raises(SchemaError, match="even after one repair attempt"):
        response.text()
    assert len(calls) == 2
    assert "JSON schema" in calls[0][0][1][-1]  # the schema went into the system turn
    repair = calls[1][-1]
    assert repair[0] == "user" and "not valid JSON" in repair[1][0] and calls[1][-2][0] == "assistant"
    assert response.usage.output_tokens == 16  # both tries counted


def test_schema_repair_turn_fixes_the_answer(llm, monkeypatch):
    calls = counting(monkeypatch, ["Sure! {answer: cat}", '```json\n{"answer": "cat"}\n```'])
    response = ask(llm, "give me json", schema=SCHEMA)
    assert response.parsed == {"answer": "cat"} and response.text() == '{"answer": "cat"}'
    assert len(calls) == 2 and "not valid JSON" in calls[1][-1][1][0]
    assert response.usage.output_tokens == 10


def test_schema_valid_first_time_needs_no_repair(llm, monkeypatch):
    calls = counting(monkeypatch, ['{"answer": "dog"}'])
    assert ask(llm, "give me json", schema=SCHEMA).json() == {"answer": "dog"} and len(calls) == 1


def test_schema_mismatch_names_the_place(llm, monkeypatch):
    counting(monkeypatch, ['{"answer": 3}', '{"answer": 4}'])
    with pytest.raises(SchemaError, match=r"at answer: 4 is not of type 'string'"):
        ask(llm, "give me json", schema=SCHEMA).text()


# -- vision-language models -----------------------------------------------------------------------------

def see(vlm: Path, images: list[Path], question: str = "what is this", **options: Any) -> imagine.Response:
    return tasks.see(images, question, model=f"transformers:{vlm}", **options)


def test_vlm_answers_about_an_image(vlm, pictures):
    response = see(vlm, pictures[:1], seed=2, max_tokens=8)
    deltas = list(response)
    assert "".join(deltas) == response.text() and response.text().strip()
    assert response.usage.output_tokens == 8
    assert see(vlm, pictures[:1], seed=2, max_tokens=8).text() == response.text()


def test_vlm_puts_image_tokens_in_the_prompt(vlm, pictures):
    plain = ask(vlm, "what is this", temperature=0, max_tokens=2).usage.input_tokens
    one = see(vlm, pictures[:1], temperature=0, max_tokens=2).usage.input_tokens
    two = see(vlm, pictures, temperature=0, max_tokens=2).usage.input_tokens
    assert two - one == IMAGE_TOKENS and one - plain >= IMAGE_TOKENS  # (the text around may split differently)


def test_vlm_keeps_images_in_message_order():
    from imagine.engines.hf._vision import render_vision_prompt

    class Proc:
        chat_template = TEMPLATE
        tokenizer = None

        def apply_chat_template(self, chat: Any, **kwargs: Any) -> str:
            return make_tokenizer().apply_chat_template(chat, **kwargs)

    img = Image(png_bytes())
    prompt = render_vision_prompt(Proc(), [("user", ["first", img, "then"])])
    assert prompt == "<s>user: first<image>then</s>\n<s>assistant: "


# -- errors -----------------------------------------------------------------------------------------------

def test_image_to_a_text_model_is_refused(llm, pictures):
    with pytest.raises(InputError, match="no vision tower"):
        see(llm, pictures[:1]).text()


def test_folders_that_are_not_chat_models(tmp_path, llm):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("hello")
    with pytest.raises(InputError, match="not a Hugging Face model"):
        ask(tmp_path / "notes")
    pipe = tmp_path / "sd"
    pipe.mkdir()
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(InputError, match="diffusers") as info:
        ask(pipe)
    assert "diffusers:" in str(info.value)


def test_pickle_only_weights_need_allow_pickle(tmp_path, llm):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(llm, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError, match="allow_pickle"):
        ask(folder, max_tokens=3).text()
    assert ask(folder, max_tokens=3, temperature=0, allow_pickle=True).text() == ask(llm, max_tokens=3, temperature=0).text()


def test_unknown_option_and_missing_model(llm):
    with pytest.raises(imagine.OptionsError, match="unknown option 'temprature'"):
        ask(llm, temprature=0)
    with pytest.raises(InputError, match="no default model"):
        imagine.ask("hi", model="transformers")


# -- CLI ----------------------------------------------------------------------------------------------------

def test_cli_see_and_models(vlm, pictures, imagine_home):
    """In process (CliRunner) where torch is loaded already; real subprocesses for the one-line error and
    `imagine models`, which import nothing heavy."""
    from click.testing import CliRunner

    from imagine.cli import cli

    result = CliRunner().invoke(cli, ["see", *map(str, pictures), "what is this", "-m", f"transformers:{vlm}",
                                      "-o", "max_tokens=6", "-o", "temperature=0"])
    assert result.exit_code == 0, result.output
    expected = see(vlm, pictures, max_tokens=6, temperature=0).text()
    assert expected.strip() and result.stdout == expected + "\n"
    assert_one_line_error(run("see", str(pictures[0].parent / "missing.png"), "what", "-m", f"transformers:{vlm}",
                              home=imagine_home), "file not found")
    listed = json.loads(run("models", "--json", home=imagine_home).stdout)
    row = next(r for r in listed if r["id"] == "transformers")
    assert row["inputs"] == ["image", "text"] and row["unavailable"] is None
