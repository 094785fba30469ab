"""The Client and the one request path: every request is a plan run by one executor, whether it names a
model, an alias or a policy; two clients keep their own settings and logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagine
from imagine import Client, InputError, TextDelta


def test_two_clients_with_different_homes_log_to_different_stores(tmp_path: Path):
    first, second = Client(home=tmp_path / "a"), Client(home=tmp_path / "b", config={"log": True})
    try:
        one = first.ask("hello from a", "mock")
        two = second.ask("hello from b", "mock")
        assert one.text() == "hello from a" and two.text() == "hello from b"
        assert [r["output_text"] for r in first.store.recent(5)] == ["hello from a"]
        assert [r["output_text"] for r in second.store.recent(5)] == ["hello from b"]
        assert first.store.db_path.parent == tmp_path / "a" and second.store.db_path.parent == tmp_path / "b"
        assert first.registry is not second.registry  # engines (and loaded models) belong to each client
    finally:
        first.close()
        second.close()


def test_a_client_policy_applies_to_its_requests(tmp_path: Path):
    with Client(home=tmp_path, policy="local_only") as client:
        response = client.ask("hi", "mock")
        response.text()
        assert response.routing["policy"]["local_only"] is True
    assert imagine.ask("hi", "mock", log=False).routing["policy"]["local_only"] is False


def test_the_module_functions_use_the_default_client(imagine_home: Path):
    response = imagine.ask("logged by default", "mock")
    response.text()
    assert imagine.default_client().store.recent(1)[0]["output_text"] == "logged by default"
    assert imagine.default_client().settings.home == imagine_home


@pytest.mark.parametrize("policy", [None, "local", "cheapest"])
def test_tools_are_refused_the_same_way_with_and_without_a_policy(policy):
    """An engine without tool calling (mock) named with tools is refused up front, never answered as if the
    tools were not there — with or without a policy."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with pytest.raises(InputError, match="engine mock cannot call tools") as caught:
        imagine.ask("weather in Paris?", "mock", tools=[tool], policy=policy)
    assert "tools feature" in (caught.value.hint or "")


def test_tools_reach_an_engine_that_takes_them(mock_engine, monkeypatch):
    monkeypatch.setattr(type(mock_engine), "features", type(mock_engine).features | {"tools"})
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    for policy in (None, "local"):
        imagine.ask("weather?", "mock", tools=[tool], policy=policy).text()
        assert mock_engine.requests[-1].tools[0]["name"] == "get_weather"


def test_every_request_records_its_plan_and_names_the_engine_that_answered(mock_engine):
    direct = imagine.ask("hi", "mock")
    assert direct.text() == "hi" and direct.answered_ref == "mock:echo"
    assert direct.routing["strategy"] == "direct" and direct.routing["chosen"] == "mock:echo"
    assert direct.routing["plan"] == ["mock:echo"]


def test_an_engine_failure_is_named_after_the_engine(mock_engine):
    mock_engine.enqueue(KeyError("boom"))
    with pytest.raises(imagine.UpstreamError, match="engine mock failed: KeyError"):
        imagine.ask("hi", "mock").text()


def test_the_finish_reason_is_the_engines(mock_engine):
    mock_engine.enqueue([TextDelta("a"), imagine.Done("length")])
    response = imagine.ask("hi", "mock")
    response.text()
    assert response.finish_reason == "length"


def test_the_cli_help_table_matches_each_commands_own_help():
    """`imagine --help` lists commands from a table without importing them; the table must say what each
    command's own docstring says (its first paragraph), or the two drift apart."""
    from importlib import import_module

    import click

    from imagine.cli.app import COMMANDS

    for name, (home, line) in COMMANDS.items():
        module, attribute = home.split(":")
        command = getattr(import_module(f"imagine.cli.{module}"), attribute)
        own = command.get_short_help_str(limit=1000)  # what `--help` would show with the module loaded
        assert click.Command(name, help=line).get_short_help_str(limit=1000) == own, f"{name}: table says {line!r}, the command {own!r}"


def test_json_names_the_engine_that_answered(imagine_home, monkeypatch):
    """`ask --json` reports the engine and model that produced the answer — for a named model, an alias,
    and a routed request that fell back — never the router."""
    from click.testing import CliRunner

    from imagine import Done, UpstreamError, config, registry
    from imagine.cli import cli

    imagine_home.mkdir(parents=True, exist_ok=True)
    (imagine_home / "config.toml").write_text('[aliases]\nparrot = "mock:polly"\n')
    config.reset_settings()
    registry.reset_registry()

    def model_of(*args: str) -> str:
        result = CliRunner().invoke(cli, ["ask", "--json", *args, "hi"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["model"]

    assert model_of("-m", "mock") == "mock:echo"
    assert model_of("-m", "parrot") == "mock:polly"

    from imagine.engine import Engine

    class Flaky(Engine):
        id, locality, default_model = "flaky", "local", "f"

        async def stream(self, request):  # type: ignore[override]
            raise UpstreamError("flaky is down")
            yield Done()

    class Steady(Engine):
        id, locality, default_model = "steady", "local", "s"

        async def stream(self, request):  # type: ignore[override]
            yield TextDelta("steady answer")
            yield Done()

    routed = registry.Registry(load_plugins=False)
    routed.register(Flaky)
    routed.register(Steady)
    registry.reset_registry(routed)
    assert model_of("-p", "local") == "steady:s"
