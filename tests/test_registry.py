from __future__ import annotations

import pytest

from imagine import EngineNotFound, EngineUnavailable, InputError, Modality, config, get_registry
from imagine.engine import Engine
from imagine.registry import ENTRY_POINT_GROUP, Registry


def test_builtins_come_from_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"llama-cpp", "mock"} <= names
    assert {"llama-cpp", "mock"} <= set(get_registry().ids)


def test_reference_forms():
    reg = get_registry()
    assert reg.resolve("mock").ref == "mock:echo"  # bare id -> default model
    assert reg.resolve("mock:parrot").model == "parrot"


def test_unknown_model_lists_close_matches():
    with pytest.raises(EngineNotFound, match="did you mean llama-cpp"):
        get_registry().resolve("lama-cpp:foo")
    with pytest.raises(EngineNotFound, match="known engines"):
        get_registry().resolve("zzzzzz")


def test_user_aliases_and_loops(monkeypatch, imagine_home):
    imagine_home.mkdir(parents=True, exist_ok=True)
    (imagine_home / "config.toml").write_text('[aliases]\nparrot = "mock:polly"\na = "b"\nb = "a"\n')
    config.reset_settings()
    reg = Registry()
    assert reg.resolve("parrot").ref == "mock:polly"
    with pytest.raises(EngineNotFound, match="alias loop"):
        reg.resolve("a")


def test_auto_uses_configured_model(monkeypatch):
    monkeypatch.setenv("IMAGINE_MODEL", "mock:configured")
    config.reset_settings()
    assert Registry().resolve(None).ref == "mock:configured"
    assert Registry().resolve("auto").ref == "mock:configured"


class PictureOnly(Engine):
    id = "picture-only"
    inputs = frozenset({Modality.IMAGE})
    outputs = frozenset({Modality.TEXT})
    default_model = "p"


class TextOnly(Engine):
    id = "text-only"
    default_model = "t"


class NeedsMissing(Engine):
    id = "needs-missing"
    requires = ("a_module_that_is_not_installed",)
    extra = "nothing"
    default_model = "x"


def test_capability_check_lists_capable_engines():
    reg = Registry()
    reg.register(PictureOnly)
    reg.register(TextOnly)
    with pytest.raises(InputError, match="does not take image input"):
        reg.resolve("text-only", inputs={Modality.IMAGE, Modality.TEXT})
    with pytest.raises(InputError, match="engines that can: picture-only"):
        reg.resolve("text-only", inputs={Modality.IMAGE})


def test_unavailable_engine_names_the_extra():
    reg = Registry()
    reg.register(NeedsMissing)
    with pytest.raises(EngineUnavailable, match=r"pip install 'imagine\[nothing\]'"):
        reg.resolve("needs-missing")
    info = {i.id: i for i in reg.infos()}["needs-missing"]
    assert "a_module_that_is_not_installed" in info.unavailable


def test_cloud_alias_without_keys_says_what_to_set():
    with pytest.raises(EngineUnavailable, match="OPENAI_API_KEY"):
        get_registry().resolve("cloud")


def test_instances_are_reused():
    reg = get_registry()
    assert reg.engine("mock") is reg.engine("mock")
