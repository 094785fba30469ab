"""engines/_support: the plumbing every engine shares. One model-reference parser (the rules that used to
differ per engine), the last user message's parts with one error wording, bundled files found inside
installed packages without importing them, and the one budgeted model cache."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from imagine.engine import Request
from imagine.engines._support.assets import find_asset, package_dirs, require_asset
from imagine.engines._support.cache import ModelCache, file_bytes, model_bytes
from imagine.engines._support.inputs import last_user, refuse_other_parts, user_parts
from imagine.engines._support.model_refs import parse_model_ref
from imagine.errors import EngineUnavailable, InputError
from imagine.parts import Audio, Image, Message, Text, Video

from ..helpers.media import png_bytes, wav_bytes

LLAMA = {"bundled": ("smollm2",), "hub_file": True, "bare": "path"}    # llama-cpp: OWNER/REPO/FILE.gguf
REPO = {"bundled": ("tiny.en",)}                                        # whisper, minilm, the HF engines
VOICE = {"bundled": ("joe",), "hub": False, "suffixes": (".onnx", ".json")}  # piper: names in one repo
FILE = {"bundled": ("silero-vad-v6",), "hub": False, "bare": "path"}    # silero-vad: a file or the bundled one


@pytest.mark.parametrize("name, rules, kind", [
    ("smollm2", LLAMA, "bundled"), (" SmolLM2 ", LLAMA, "bundled"),
    ("model.gguf", LLAMA, "local"), ("models/model.gguf", LLAMA, "local"),
    ("bartowski/Qwen-GGUF/*Q4_K_M.gguf", LLAMA, "hub"), ("a/b/c", LLAMA, "hub"),
    ("tiny.en", REPO, "bundled"), ("base.en", REPO, "name"), ("Systran/faster-whisper-small", REPO, "hub"),
    ("a/b/c", REPO, "local"), ("a/", REPO, "local"), ("not a/valid", REPO, "local"),
    ("./model", REPO, "local"), ("~/model", REPO, "local"), ("/abs/model", REPO, "local"),
    ("C:\\models\\x", REPO, "local"), ("C:/models/x", LLAMA, "local"),
    ("joe", VOICE, "bundled"), ("en_US-lessac-medium", VOICE, "name"), ("voice.onnx", VOICE, "local"),
    ("voices/x", VOICE, "local"),
    ("silero-vad-v6", FILE, "bundled"), ("vad.onnx", FILE, "local"), ("owner/name", FILE, "local"),
])
def test_one_parser_decides_what_a_model_name_is(name: str, rules: dict, kind: str) -> None:
    assert parse_model_ref(name, **rules).kind == kind


def test_model_refs_carry_the_pieces_each_kind_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = parse_model_ref("OWNER/REPO/sub/x.gguf", hub_file=True)
    assert (hub.repo, hub.file) == ("OWNER/REPO", "sub/x.gguf")
    assert parse_model_ref("OWNER/NAME").repo == "OWNER/NAME"
    assert parse_model_ref("./m").explicit and not parse_model_ref("a/b/c").explicit
    monkeypatch.chdir(tmp_path)
    (tmp_path / "OWNER" / "NAME").mkdir(parents=True)
    existing = parse_model_ref("OWNER/NAME")               # a folder on disk wins over the hub shape
    assert existing.is_local and existing.explicit and existing.path == Path("OWNER/NAME")


def request(*parts: object, role: str = "user") -> Request:
    from imagine.engines.mock import MockEngine

    return Request(messages=(Message(role, list(parts)),), model="m", options=MockEngine.parse_options({}))


def test_user_parts_say_what_the_engine_needs_and_what_came() -> None:
    sound = Audio(wav_bytes())
    assert user_parts(request("hi", sound), (Audio, Video), engine="e", needs="audio or video") == [sound]
    with pytest.raises(InputError, match="e needs audio or video, but the last user message holds image and text "
                                         "and no audio or video"):
        user_parts(request("hi", Image(png_bytes())), (Audio, Video), engine="e", needs="audio or video")
    with pytest.raises(InputError, match="but the last user message has none"):
        user_parts(request(), Text, engine="e", needs="text")
    with pytest.raises(InputError, match="the request has no user message"):
        user_parts(request("x", role="system"), Text, engine="e", needs="text")
    with pytest.raises(InputError, match="e takes one audio or video part, got 2"):
        user_parts(request(sound, sound), (Audio, Video), engine="e", needs="audio or video", one=True)


def test_last_user_and_refusing_other_parts() -> None:
    spoken = request("system text", role="system")
    assert last_user(spoken) is None and last_user(spoken, or_last=True) is spoken.messages[-1]
    with pytest.raises(InputError, match="clip embeds text and images, not audio"):
        refuse_other_parts(request("a", Audio(wav_bytes())).messages[0], (Text, Image), engine="clip",
                           verb="embeds", takes="text and images")


def test_assets_are_found_inside_a_package_without_importing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "imagine_test_assets_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "b.gguf").write_bytes(b"GGUF")
    (package / "a.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_dirs("imagine_test_assets_pkg") == [package]
    assert find_asset("imagine_test_assets_pkg", "*.gguf") == package / "a.gguf"     # sorted: the first
    assert find_asset("imagine_test_assets_pkg", "model", lambda p: (p / "model.bin").is_file()) is None
    (package / "model" / "model.bin").write_bytes(b"")
    assert find_asset("imagine_test_assets_pkg", "model", lambda p: (p / "model.bin").is_file()) == package / "model"
    with pytest.raises(EngineUnavailable, match="holds no voice.onnx"):
        require_asset("imagine_test_assets_pkg", "voice.onnx", what="the voice", install="pip install it")
    with pytest.raises(EngineUnavailable, match="the voice is not installed") as err:
        require_asset("imagine_no_such_package", "voice.onnx", what="the voice", install="pip install it")
    assert "pip install it" in str(err.value)
    assert "imagine_test_assets_pkg" not in sys.modules


class Weights:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def test_the_cache_weighs_any_model_and_drops_stale_entries(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"x" * 300)
    assert file_bytes(tmp_path / "w.bin") == file_bytes(tmp_path) == 300 and file_bytes(tmp_path / "none") == 0
    assert model_bytes(Weights(123)) == 123 and model_bytes(object()) == 0
    cache = ModelCache(budget_bytes=1000)
    cache.get(("e", "a", 1), lambda: Weights(600))                    # measured through nbytes
    cache.get(("e", "b"), lambda: object(), size=300)                 # an explicit size
    cache.get(("e", "c"), lambda: (Weights(200), "tokenizer"), size=lambda pair: model_bytes(pair[0]))
    assert cache.keys() == [("e", "b"), ("e", "c")]                   # 1100 > 1000: the oldest went
    assert cache.discard(lambda key: key[1] == "b") == 1 and cache.keys() == [("e", "c")]


def test_a_failed_load_caches_nothing_and_other_keys_do_not_wait() -> None:
    cache = ModelCache()
    with pytest.raises(ValueError):
        cache.get("bad", lambda: (_ for _ in ()).throw(ValueError("broken")))
    assert cache.keys() == []
    started, release = threading.Event(), threading.Event()

    def slow() -> Weights:
        started.set()
        release.wait(10)
        return Weights(1)

    worker = threading.Thread(target=lambda: cache.get("slow", slow))
    worker.start()
    assert started.wait(10)
    assert cache.get("fast", lambda: Weights(2)).nbytes == 2           # not blocked by the slow load
    release.set()
    worker.join()
    assert set(cache.keys()) == {"slow", "fast"}


def test_tool_calls_and_results_read_as_text_for_engines_without_tools():
    from imagine.engines._support.tool_text import with_tools_as_text
    from imagine.engines.llama_cpp import LlamaCppEngine
    from imagine.parts import ToolResult, ToolUse

    history = (Message.system("be brief"), Message.user("weather in Oslo?"),
               Message("assistant", ["Checking.", ToolUse("c1", "get_weather", {"city": "Oslo"})]),
               Message("tool", [ToolResult("c1", {"temp_c": 12}), ToolResult("c2", "no such city", is_error=True)]))
    flat = with_tools_as_text(history)
    assert flat[:2] == history[:2]  # untouched
    assert flat[2] == Message.assistant("Checking.", '[called tool get_weather with {"city": "Oslo"}]')
    # a result that does not name its tool is named after its call; one without a call, by its id
    assert flat[3] == Message.user('[tool get_weather returned] {"temp_c": 12}', "[tool c2 failed] no such city")
    request = Request(messages=history, model="m", options=LlamaCppEngine.parse_options({}))
    assert LlamaCppEngine._chat_messages(request)[2:] == [
        {"role": "assistant", "content": 'Checking.\n[called tool get_weather with {"city": "Oslo"}]'},
        {"role": "user", "content": '[tool get_weather returned] {"temp_c": 12}\n[tool c2 failed] no such city'}]
