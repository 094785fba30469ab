"""`imagine engines add/remove`, and privacy that sticks to a conversation."""

from __future__ import annotations

import json

import imagine
from imagine import config, registry

from ..helpers.cli import assert_one_line_error, run


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


def test_local_endpoint_is_local_and_says_why(imagine_home):
    """A loopback URL counts as local, but that is a guess (a proxy on 127.0.0.1 may forward to a cloud):
    `engines add` writes the locality down and says why; `models` and `route --explain` show it."""
    added = run("engines", "add", "ollama", "--base-url", "http://127.0.0.1:11434/v1", "--model", "qwen2.5:7b",
                home=imagine_home)
    assert "locality: local (its URL is on this machine" in added.stdout and "--cloud" in added.stdout
    assert 'locality = "local"' in (imagine_home / "config.toml").read_text()
    infos = {i["id"]: i for i in json.loads(run("models", "--json", home=imagine_home).stdout)}
    assert infos["ollama"]["locality"] == "local" and infos["ollama"]["unavailable"] is None
    assert "set in" not in infos["ollama"]["locality_reason"]  # written by `engines add`: no longer a guess
    assert "locality = 'local' in [endpoints.ollama]" in infos["ollama"]["locality_reason"]

    proxy = run("engines", "add", "proxy", "--base-url", "http://localhost:4000/v1", "--cloud", home=imagine_home)
    assert "locality: cloud (--cloud)" in proxy.stdout
    detail = run("models", "proxy", home=imagine_home).stdout
    assert "where:          cloud (locality = 'cloud' in [endpoints.proxy]" in detail
    explained = run("route", "-m", "proxy:gpt-x", "--explain", "hello", home=imagine_home).stdout
    assert "proxy:gpt-x" in explained


def test_a_guessed_locality_is_shown_as_a_guess(imagine_home):
    imagine_home.mkdir(parents=True, exist_ok=True)
    (imagine_home / "config.toml").write_text('[endpoints.tunnel]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n')
    table = run("models", home=imagine_home, env={"COLUMNS": "80"}).stdout
    row = next(line for line in table.splitlines() if "tunnel" in line)
    assert "local*" in row and "local because its URL is on this machine" in table
    assert max(len(line) for line in table.splitlines()) <= 80
    detail = run("models", "tunnel", home=imagine_home).stdout
    assert "where:          local (assumed: http://127.0.0.1:9/v1 is on this machine" in detail
    explained = run("route", "-m", "tunnel:m", "--explain", "hello", home=imagine_home).stdout
    assert "tunnel counts as local: assumed" in explained


def test_models_table_rows_fit_80_columns(imagine_home):
    """Each engine takes one or two lines in an 80-column terminal; the whole story is in `models ENGINE`."""
    table = run("models", home=imagine_home, env={"COLUMNS": "80"}).stdout
    rows = [line for line in table.splitlines() if line.startswith("│")]
    starts = [i for i, line in enumerate(rows) if line[2] != " "]
    assert all(b - a <= 2 for a, b in zip(starts, starts[1:] + [len(rows)]))
    assert any("needs ANTHROPIC_API_KEY" in line for line in rows)
    detail = run("models", "anthropic", home=imagine_home).stdout
    assert "ANTHROPIC_API_KEY (or api_key in [endpoints.anthropic]" in detail and "options (-o key=value):" in detail
    assert_one_line_error(run("models", "antropic", home=imagine_home), "did you mean anthropic")


def test_local_only_sticks_to_the_conversation(mock_engine, imagine_home):
    first = imagine.ask("secret notes", "mock", policy="local_only")
    first.text()
    assert first.routing["policy"]["local_only"] is True
    second = imagine.ask("and more", "mock", conversation=True)
    second.text()
    assert second.routing is not None and second.routing["policy"]["local_only"] is True
