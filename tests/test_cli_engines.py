"""`imagine engines add/remove`, and privacy that sticks to a conversation."""

from __future__ import annotations

import json

import imagine
from imagine import config, registry

from .test_cli import assert_one_line_error, run


def test_engines_add_list_remove(imagine_home):
    proc = run("engines", "add", "groq", "--base-url", "https://api.groq.com/openai/v1", "--key-env", "GROQ_API_KEY",
               "--model", "llama-3.1-8b-instant", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    infos = {i["id"]: i for i in json.loads(run("models", "--json", home=imagine_home).stdout)}
    assert infos["groq"]["locality"] == "cloud" and "GROQ_API_KEY" in infos["groq"]["unavailable"]
    assert infos["groq"]["inputs"] == ["text"]
    assert_one_line_error(run("engines", "add", "groq", "--base-url", "https://x", home=imagine_home), "already exists")
    assert_one_line_error(run("engines", "add", "Bad Name", home=imagine_home), "must be lowercase")
    assert_one_line_error(run("ask", "-m", "groq:llama-3.1-8b-instant", "hi", home=imagine_home), "GROQ_API_KEY")
    assert run("engines", "remove", "groq", home=imagine_home).returncode == 0
    assert "groq" not in {i["id"] for i in json.loads(run("models", "--json", home=imagine_home).stdout)}


def test_local_endpoint_is_local(imagine_home):
    run("engines", "add", "ollama", "--base-url", "http://127.0.0.1:11434/v1", "--model", "qwen2.5:7b",
        home=imagine_home)
    infos = {i["id"]: i for i in json.loads(run("models", "--json", home=imagine_home).stdout)}
    assert infos["ollama"]["locality"] == "local" and infos["ollama"]["unavailable"] is None


def test_local_only_sticks_to_the_conversation(mock_engine, imagine_home):
    first = imagine.ask("secret notes", "mock", policy="local_only")
    first.text()
    assert first.routing["policy"]["local_only"] is True
    second = imagine.ask("and more", "mock", conversation=True)
    second.text()
    assert second.routing is not None and second.routing["policy"]["local_only"] is True
