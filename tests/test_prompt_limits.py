"""Issue 13, "big prompts": prompt text is capped (`max_prompt_bytes`, IMAGINE_MAX_PROMPT_BYTES) before
anything reads all of it, runs a model or logs it, and the check is the same on every path: stdin, the
command line, the Python API, attached text files, a conversation's history.

The attack that started it: 100 MB piped to `imagine ask` took 67 s and 3.5 GB (6.7 GB with the mock
engine) before a context error, then logged a 105 MB row."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import imagine
from imagine import InputError, LimitExceeded
from imagine.client import get_store
from imagine.config import load_settings
from imagine.errors import ConfigError
from imagine.media.limits import DEFAULT_LIMITS, Limits, check_context, check_prompt, prompt_bytes

from .helpers.cli import assert_one_line_error, run


def logged_rows(home) -> int:
    db = home / "logs.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM responses").fetchone()[0]


# -- the setting --------------------------------------------------------------------------------------


def test_the_limit_defaults_to_8_mib_and_comes_from_env_or_config(imagine_home, monkeypatch):
    assert DEFAULT_LIMITS.max_prompt_bytes == 8 * 1024 * 1024
    assert load_settings().part_limits().max_prompt_bytes == 8 * 1024 * 1024
    imagine_home.mkdir(parents=True, exist_ok=True)
    (imagine_home / "config.toml").write_text("[limits]\nmax_prompt_bytes = 1000\n")
    assert load_settings().part_limits().max_prompt_bytes == 1000
    monkeypatch.setenv("IMAGINE_MAX_PROMPT_BYTES", "50")
    assert load_settings().part_limits().max_prompt_bytes == 50
    monkeypatch.setenv("IMAGINE_MAX_PROMPT_BYTES", "0")
    with pytest.raises(ConfigError, match="max_prompt_bytes.*IMAGINE_MAX_PROMPT_BYTES"):
        load_settings()


def test_prompt_bytes_counts_utf8_and_every_text_part():
    messages = [imagine.Message.system("ab"), imagine.Message.user("é€", "x"),
                imagine.Message.tool_result("c1", "out")]
    assert prompt_bytes(messages) == 2 + 5 + 1 + 3
    assert check_prompt(messages, Limits(max_prompt_bytes=11)) == 11
    with pytest.raises(LimitExceeded) as caught:
        check_prompt(messages, Limits(max_prompt_bytes=10))
    assert "11 bytes, over the prompt limit of 10 bytes" in str(caught.value)
    assert "IMAGINE_MAX_PROMPT_BYTES" in (caught.value.hint or "") and "[limits]" in (caught.value.hint or "")


def test_the_context_estimate_is_a_lower_bound_and_says_the_ways_out():
    check_context(8 * 4096, 4096, "x:y")  # exactly fits the lower bound: left to the engine
    check_context(10**9, None, "x:y")  # no known window: nothing to say
    with pytest.raises(InputError) as caught:
        check_context(8 * 4096 + 8, 4096, "llama-cpp:m", "n_ctx")
    assert "at least ~4,097 tokens (32,776 bytes), over the 4,096-token context window of llama-cpp:m" \
        in str(caught.value)
    assert "-o n_ctx=N" in (caught.value.hint or "")


# -- the Python API: one check on the one request path ---------------------------------------------------


def test_api_prompt_over_the_limit_is_refused_before_the_engine_and_the_log(imagine_home, monkeypatch,
                                                                            mock_engine):
    monkeypatch.setenv("IMAGINE_MAX_PROMPT_BYTES", "100")
    imagine.config.reset_settings()
    assert imagine.ask("x" * 100, model="mock").text() == "x" * 100  # at the limit: fine
    with pytest.raises(LimitExceeded, match="the prompt text is 101 bytes, over the prompt limit of 100 bytes"):
        imagine.ask("x" * 101, model="mock")
    with pytest.raises(LimitExceeded):  # the system prompt and the words together
        imagine.ask("y" * 60, model="mock", system="z" * 60)
    assert len(mock_engine.requests) == 1 and len(get_store().recent()) == 1


def test_an_attached_text_file_counts_too(imagine_home, monkeypatch, tmp_path, mock_engine):
    notes = tmp_path / "notes.txt"
    notes.write_text("word " * 100)
    monkeypatch.setenv("IMAGINE_MAX_PROMPT_BYTES", "400")
    imagine.config.reset_settings()
    with pytest.raises(LimitExceeded, match="over the prompt limit of 400 bytes"):
        imagine.ask("summarise", model="mock", attach=[notes])
    assert mock_engine.requests == []


def test_a_conversation_that_grew_past_the_limit_is_refused_and_kept(imagine_home, monkeypatch, mock_engine):
    first = imagine.ask("a" * 300, model="mock")
    assert first.text() == "a" * 300
    monkeypatch.setenv("IMAGINE_MAX_PROMPT_BYTES", "500")
    imagine.config.reset_settings()
    with pytest.raises(LimitExceeded):
        imagine.ask("b" * 300, model="mock", conversation=True)  # history + new turn: 600 bytes
    assert len(get_store().conversation(first.conversation_id)) == 2  # nothing computed before is lost


def test_the_mock_echo_of_a_long_prompt_stays_flat(imagine_home, mock_engine):
    """The mock's echo split 100 MB into a list of millions of words (6.7 GB): now the words are made one
    at a time, and a long echo streams in deltas of a few KiB."""
    from imagine.events import TextDelta

    text = "lorem ipsum dolor " * 100_000  # 1.8 MB
    response = imagine.ask(text, model="mock", log=False)
    assert response.text() == text
    assert sum(isinstance(e, TextDelta) for e in response.events_seen) < 1000
    assert response.usage.input_tokens == 300_000
    assert [e.text for e in imagine.ask("a  b c", model="mock").complete().events_seen if isinstance(e, TextDelta)] \
        == ["a ", " ", "b ", "c"]


# -- the CLI: stdin is read up to the limit and no further ------------------------------------------------


def test_piped_stdin_over_the_limit_is_one_line_and_nothing_is_logged(imagine_home):
    env = {"IMAGINE_MAX_PROMPT_BYTES": "1000"}
    proc = run("ask", "-m", "mock", home=imagine_home, stdin="x" * 1001, env=env)
    assert proc.returncode == 2
    assert_one_line_error(proc, "stdin is over the prompt limit of 1,000 bytes", "IMAGINE_MAX_PROMPT_BYTES")
    assert logged_rows(imagine_home) == 0
    ok = run("ask", "-m", "mock", home=imagine_home, stdin="x" * 1000, env=env)
    assert ok.returncode == 0 and ok.stdout.strip() == "x" * 1000
    words = run("ask", "-m", "mock", "tail", home=imagine_home, stdin="x" * 999, env=env)  # stdin + words
    assert_one_line_error(words, "the prompt text is 1,005 bytes, over the prompt limit of 1,000 bytes")


@pytest.mark.parametrize("model", ["mock", "llama-cpp"])
def test_100_mb_on_stdin_is_refused_fast_in_flat_memory(imagine_home, tmp_path, model):
    """The attack itself: 100 MB piped to `imagine ask`. Only the limit (+1 byte) is read; the child's
    peak RSS is measured by a wrapper process so that no other test's children count."""
    big = tmp_path / "big.txt"
    with big.open("wb") as fh:
        chunk = b"all work and no play makes jack a dull boy\n" * 24_000  # ~1 MB
        for _ in range(100):
            fh.write(chunk)
    wrapper = textwrap.dedent(f"""
        import os, resource, subprocess, sys, time
        env = {{**os.environ, "IMAGINE_HOME": {str(imagine_home)!r}, "HF_HUB_OFFLINE": "1"}}
        t0 = time.perf_counter()
        with open({str(big)!r}, "rb") as stdin:
            proc = subprocess.run([sys.executable, "-m", "imagine", "ask", "-m", {model!r}], stdin=stdin,
                                  capture_output=True, env=env, timeout=120)
        print(proc.returncode, round(time.perf_counter() - t0, 2),
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
        sys.stderr.write(proc.stderr.decode())
        sys.exit(proc.returncode)
    """)
    wrapped = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=180)
    code, seconds, peak_mb = wrapped.stdout.split()
    assert int(code) == wrapped.returncode == 2
    assert_one_line_error(wrapped, "stdin is over the prompt limit of 8,388,608 bytes", "IMAGINE_MAX_PROMPT_BYTES")
    assert int(peak_mb) < 500, f"peak RSS {peak_mb} MB"
    assert float(seconds) < 30, f"took {seconds} s"
    assert logged_rows(imagine_home) == 0


def test_a_long_unicode_prompt_is_measured_in_bytes_without_a_copy(imagine_home):
    started = time.perf_counter()
    with pytest.raises(LimitExceeded):
        imagine.ask("é" * (4 * 1024 * 1024 + 1), model="mock")  # 8 MiB + 2 bytes of two-byte characters
    assert time.perf_counter() - started < 5
