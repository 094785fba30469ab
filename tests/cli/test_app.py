"""The CLI through real subprocesses: exit codes, one-line errors, stdin, JSON, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..helpers.cli import assert_one_line_error, run
from ..helpers.media import png_bytes


def test_ask_streams_and_logs(imagine_home):
    proc = run("ask", "-m", "mock", "hello", "there", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello there\n"
    logs = run("logs", "--json", home=imagine_home)
    rows = json.loads(logs.stdout)
    assert rows[0]["output_text"] == "hello there" and rows[0]["engine"] == "mock"
    show = run("logs", "show", rows[0]["id"][:16], home=imagine_home)
    assert show.returncode == 0 and "mock:echo" in show.stdout and "hello there" in show.stdout


def test_ask_reads_stdin(imagine_home):
    proc = run("ask", "-m", "mock", "summarise", home=imagine_home, stdin="piped text")
    assert proc.stdout == "piped text\n\nsummarise\n"


def test_ask_json_and_out(imagine_home, tmp_path):
    out = tmp_path / "answers"
    out.mkdir()
    proc = run("ask", "-m", "mock", "--json", "-O", str(out), "one two", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["text"] == "one two" and payload["model"] == "mock:echo"
    assert payload["usage"]["output_tokens"] == 2
    written = list(out.glob("*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["id"] == payload["id"]


def test_continue_conversation(imagine_home):
    run("ask", "-m", "mock", "first", home=imagine_home)
    proc = run("ask", "-m", "mock", "-c", "second", "--json", home=imagine_home)
    rows = json.loads(run("logs", "--json", home=imagine_home).stdout)
    assert rows[0]["conversation_id"] == rows[1]["conversation_id"]


def test_attach_image(imagine_home, tmp_path):
    img = tmp_path / "red.png"
    img.write_bytes(png_bytes())
    proc = run("ask", "-m", "mock", "-a", str(img), "describe", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(run("logs", "--json", home=imagine_home).stdout)[0]
    assert [p["kind"] for p in row["input"][0]["parts"]] == ["text", "image"]


def test_bad_input_gets_one_clear_line(imagine_home, tmp_path):
    assert_one_line_error(run("ask", "-m", "lama-cpp", "hi", home=imagine_home), "unknown model", "llama-cpp")
    assert_one_line_error(run("ask", "-m", "mock", "-o", "temprature=0", "hi", home=imagine_home),
                          "unknown option 'temprature'")
    assert_one_line_error(run("ask", "-m", "mock", "-o", "max_tokens=many", "hi", home=imagine_home),
                          "'max_tokens'")
    assert_one_line_error(run("ask", "-m", "mock", "", home=imagine_home), "prompt is empty")
    assert_one_line_error(run("ask", "-m", "mock", "-a", str(tmp_path / "nope.png"), "x", home=imagine_home),
                          "file not found")
    junk = tmp_path / "junk.png"
    junk.write_bytes(png_bytes()[:50])
    assert_one_line_error(run("ask", "-m", "mock", "-a", str(junk), "x", home=imagine_home), "could not be decoded")
    assert_one_line_error(run("logs", "show", "doesnotexist", home=imagine_home), "no logged response")
    assert_one_line_error(run("ask", "-m", "mock", "--schema", "{not json", "x", home=imagine_home), "--schema")
    proc = run("ask", "-m", "mock", "-o", "novalue", "x", home=imagine_home)
    assert proc.returncode == 2 and "key=value" in proc.stderr


def test_debug_shows_traceback(imagine_home):
    proc = run("--debug", "ask", "-m", "nope-engine", "hi", home=imagine_home)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_models_table_and_json(imagine_home):
    proc = run("models", home=imagine_home)
    assert proc.returncode == 0 and "llama-cpp" in proc.stdout and "mock" in proc.stdout
    infos = {i["id"]: i for i in json.loads(run("models", "--json", home=imagine_home).stdout)}
    assert infos["llama-cpp"]["locality"] == "local" and "text" in infos["llama-cpp"]["inputs"]


def test_version(imagine_home):
    proc = run("--version", home=imagine_home)
    assert proc.returncode == 0 and "imagine" in proc.stdout


def test_help_imports_nothing_heavy(imagine_home):
    code = ("import sys\nfrom imagine.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'llama_cpp', 'transformers', 'gradio', 'numpy', 'rich', 'jsonschema', 'pydantic')"
            " if m in sys.modules]\nprint('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_ctrl_c_exits_130_and_logs_the_partial_answer(imagine_home):
    import signal
    import time

    env = {**os.environ, "IMAGINE_HOME": str(imagine_home)}
    proc = subprocess.Popen([sys.executable, "-m", "imagine", "ask", "-m", "mock", "-o", "delay=0.3",
                             "one two three four five six seven eight nine ten"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            # a background test run (`cmd &`) passes SIGINT on ignored; a terminal never does
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.read(4)  # blocks until the first delta ("one ") has streamed
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    out = first + rest
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err
    rows = json.loads(run("logs", "--json", home=imagine_home).stdout)
    assert rows[0]["finish_reason"] == "cancelled"
    assert rows[0]["output_text"] and out.startswith(rows[0]["output_text"])
