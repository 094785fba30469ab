"""The router over real cloud engines speaking HTTP to fake providers on loopback."""

from __future__ import annotations

import pytest

import imagine

from .helpers.fake_http import FakeServer, json_reply, reset_imagine, sse_reply


def chunk(text: str | None = None, finish: str | None = None) -> dict:
    delta = {"content": text} if text is not None else {}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk() -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


@pytest.fixture
def openai_server(monkeypatch, imagine_home):
    """The fake provider listens on loopback, which imagine would count as local; declaring the endpoint
    `locality = "cloud"` makes it stand in for the real, remote OpenAI."""
    with FakeServer() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
        imagine_home.mkdir(parents=True, exist_ok=True)
        (imagine_home / "config.toml").write_text(
            f'[endpoints.openai]\nkind = "openai"\nbase_url = "{server.url}/v1"\nkey_env = "OPENAI_API_KEY"\n'
            'locality = "cloud"\n')
        reset_imagine()
        yield server


def test_local_only_never_reaches_the_cloud(openai_server):
    response = imagine.ask("Say hi.", policy="local_only", max_tokens=8, temperature=0)
    assert response.text()
    assert openai_server.requests == []  # the fake provider got nothing
    assert response.routing["chosen"].startswith("llama-cpp:")
    dropped = {c["ref"]: c["reason"] for c in response.routing["candidates"] if not c["kept"]}
    default = imagine.get_registry().engine_class("openai").default_model
    assert dropped[f"openai:{default}"].startswith("local_only")


def test_cloud_500_falls_back_to_the_next_cloud_model(openai_server, imagine_home):
    openai_server.reply(json_reply({"error": {"message": "boom", "type": "server_error"}}, 500),
                        sse_reply([chunk("Hello"), chunk(" there", "stop"), usage_chunk(), b"data: [DONE]\n\n"]))
    response = imagine.ask("hi", "cloud", policy="cheapest")
    assert response.text() == "Hello there"
    row = imagine.get_store().get(response.id)
    attempts = row["routing"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["error", "ok"] and len(openai_server.requests) == 2
    assert attempts[0]["ref"] != attempts[1]["ref"]
    assert row["engine"] == "openai" and row["cost"] is not None and row["cost"] > 0
    assert b"sk-test-secret" not in (imagine_home / "logs.db").read_bytes()


def test_cut_stream_without_a_fallback_is_an_error_and_logged(openai_server):
    openai_server.reply(sse_reply([chunk("Partial"), chunk(" answ"), chunk("er", "stop")], cut_after=2))
    response = imagine.ask("Say hi.", "openai:gpt-4o-mini", policy="cloud", max_tokens=8, temperature=0)
    with pytest.raises(imagine.UpstreamError, match="ended before the answer was complete"):
        response.text()
    row = imagine.get_store().get(response.id)
    assert "ended before" in row["error"] and row["routing"]["attempts"][0]["outcome"] == "error"


def test_cut_stream_with_a_local_fallback(openai_server):
    openai_server.reply(sse_reply([chunk("Partial"), chunk(" answ"), chunk("er", "stop")], cut_after=2))
    response = imagine.ask("Say hi.", "auto", policy="cloud", max_tokens=8, temperature=0)
    text = response.text()
    assert "Partial" not in text and text  # restarted on another engine
    outcomes = [(a["ref"].split(":")[0], a["outcome"]) for a in response.routing["attempts"]]
    assert outcomes[0] == ("openai", "error") and outcomes[-1][1] == "ok"
