"""`imagine agent` end to end in a subprocess: an OpenAI-format model on a fake server (real HTTP) calls
imagine's built-in tools, which run for real; the steps stream to stderr, the answer to stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..helpers.cli import run
from ..helpers.fake_http import FakeServer, Recorded, Reply, sse_reply
from ..helpers.media import slide

pytest.importorskip("openai", reason="needs the openai SDK (the OpenAI-compatible engine)")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> Reply:
    """The model asks for one tool."""
    tool = {"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}
    return sse_reply([_chunk({"tool_calls": [tool]}), _chunk({}, "tool_calls"), b"data: [DONE]\n\n"])


def answer_with_tool_results(request: Recorded) -> Reply:
    """The model answers by quoting the tool results it was sent."""
    results = [m["content"] for m in request.json["messages"] if m["role"] == "tool"]
    return sse_reply([_chunk({"content": "From the tools: " + " | ".join(results)}), _chunk({}, "stop"),
                      b"data: [DONE]\n\n"])


@pytest.fixture
def server():
    with FakeServer() as srv:
        yield srv


def agent(server: FakeServer, home: Path, *args: str, cwd_env: dict | None = None):
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url + "/v1", **(cwd_env or {})}
    return run("agent", "-m", "openai:gpt-4o-mini", *args, home=home, env=env)


def test_the_agent_reads_an_image_and_streams_its_steps(server, imagine_home, tmp_path):
    pytest.importorskip("rapidocr", reason="needs rapidocr (the bundled OCR)")
    sign = tmp_path / "sign.png"
    slide("Open daily", (230, 230, 230)).save(sign)
    server.reply(call("read_text", {"image": "image-1"}), answer_with_tool_results)
    proc = agent(server, imagine_home, "What does the sign say?", "-a", str(sign), "--tool", "read_text")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("From the tools: ") and "open daily" in proc.stdout.lower()
    assert "tools read_text" in proc.stderr
    assert "[1] openai:gpt-4o-mini asks for read_text" in proc.stderr
    assert 'read_text(image="image-1") -> {"text": "Open daily"}' in proc.stderr.replace("Open Daily", "Open daily")
    assert "[2] openai:gpt-4o-mini answers" in proc.stderr
    first, second = (r.json for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["read_text"]
    tool_message = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_message[0]["tool_call_id"] == "call_1" and "open daily" in tool_message[0]["content"].lower()

    run_id = proc.stderr.split("agent run ", 1)[1].split(":", 1)[0]
    rows = json.loads(run("logs", "--json", "-n", "10", home=imagine_home).stdout)
    steps = [r for r in rows if r["conversation_id"] == run_id]  # both model calls, under the run's id
    assert len(steps) == 2 and {r["model"] for r in steps} == {"gpt-4o-mini"}
    assert [r["engine"] for r in rows if r not in steps] == ["rapidocr"]  # the tool's own call, logged apart


def test_a_side_effecting_tool_is_refused_without_yes(server, imagine_home, tmp_path):
    out = tmp_path / "out"
    server.reply(call("speak", {"text": "hello"}), answer_with_tool_results)
    proc = agent(server, imagine_home, "Say hello out loud", "--tool", "speak", "-O", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "speak(text=\"hello\") x refused" in proc.stderr
    assert "has side effects" in proc.stdout and "run again with --yes" in proc.stdout  # the model was told
    assert not out.exists()  # nothing was spoken or written


def test_with_yes_the_spoken_clip_is_written(server, imagine_home, tmp_path):
    from ..helpers.speech import have_espeak

    if not have_espeak():
        pytest.importorskip("piper", reason="needs piper-tts or espeak-ng to speak")
    out = tmp_path / "out"
    server.reply(call("speak", {"text": "hello"}), answer_with_tool_results)
    proc = agent(server, imagine_home, "Say hello out loud", "--tool", "speak", "--yes", "-O", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    (written,) = payload["files"]
    assert written.endswith("-audio-1.wav") and Path(written).read_bytes()[:4] == b"RIFF"
    tool_step = payload["steps"][1]
    assert tool_step["name"] == "speak" and tool_step["result"]["audio"] == "audio-1" and not tool_step["error"]
    assert payload["stopped"] == "answer" and payload["answer"].startswith("From the tools: ")


def test_the_step_limit_is_an_error_that_says_so(server, imagine_home):
    server.reply(call("read_file", {"path": "x.txt"}))
    proc = agent(server, imagine_home, "Read x", "--tool", "read_file", "--max-steps", "1")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stopped after 1 model call without an answer (the last one asked for "
                           "read_file, not run)")
    assert proc.stdout == "" and len(server.requests) == 1


def test_one_line_errors(imagine_home, tmp_path):
    proc = run("agent", "hi", "-m", "mock", "--tool", "summon", home=imagine_home)
    assert proc.returncode != 0 and proc.stderr.startswith("error: no built-in tool named 'summon'")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run("agent", "hi", "-m", "mock", "--tool-model", "see", home=imagine_home)
    assert proc.returncode != 0 and "TOOL=MODEL" in proc.stderr


def test_the_agent_calls_a_tool_of_an_mcp_server(server, imagine_home):
    pytest.importorskip("mcp", reason="needs the agents extra: pip install -e '.[agents]'")
    import shlex
    import sys

    sdk_server = shlex.join([sys.executable, str(Path(__file__).parents[1] / "helpers" / "mcp_sdk_server.py")])
    server.reply(call("add", {"a": 20, "b": 22}), answer_with_tool_results)
    proc = agent(server, imagine_home, "What is 20 plus 22?", "--tool", "read_text", "--mcp", sdk_server)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "From the tools: 42"  # computed by the SDK-written server
    first = server.requests[0].json
    assert {t["function"]["name"] for t in first["tools"]} >= {"read_text", "add", "square"}


def test_ask_with_mcp_answers_through_the_servers_tools(server, imagine_home):
    pytest.importorskip("mcp", reason="needs the agents extra: pip install -e '.[agents]'")
    import shlex
    import sys

    sdk_server = shlex.join([sys.executable, str(Path(__file__).parents[1] / "helpers" / "mcp_sdk_server.py")])
    server.reply(call("add", {"a": 1200, "b": 34}), answer_with_tool_results)
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.url + "/v1"}
    proc = run("ask", "-m", "openai:gpt-4o-mini", "--mcp", sdk_server, "What is 1200 plus 34?",
               home=imagine_home, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "From the tools: 1234"  # the SDK-written server computed it
    assert "asks for add" in proc.stderr
    offered = {t["function"]["name"] for t in server.requests[0].json["tools"]}
    assert "add" in offered and "read_text" not in offered  # only the server's tools, no built-ins
    # flags that mean a plain answer are refused with one line naming them
    proc = run("ask", "-m", "mock", "--mcp", sdk_server, "--schema", '{"type": "object"}', "hi", home=imagine_home)
    assert proc.returncode != 0 and "--mcp runs an agent, which does not take --schema" in proc.stderr
