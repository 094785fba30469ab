"""Issue 13, "bad bytes and odd values": every attack stays here as a test.

The rules: undecodable text (an argument, stdin, a chat line) is refused naming the byte and its offset;
no option or config value may be nan or infinite; an embed argument that names a file must be one
that exists and has content; config.toml problems are one ConfigError line (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..helpers.cli import assert_one_line_error, run

BAD = "\udcff"  # what Python makes of the byte 0xff on the command line (os.fsencode gives it back)


def run_bytes(*args: str, home, stdin: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGINE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "imagine", *args], input=stdin, capture_output=True, env=env,
                          timeout=300)


def assert_bad_utf8(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, "not valid UTF-8", *fragments)


# -- non-UTF-8 prompts --------------------------------------------------------------------------------


def test_ask_refuses_an_undecodable_argument(imagine_home):
    assert_bad_utf8(run("ask", "-m", "mock", "ok" + BAD, home=imagine_home), "byte 0xff at offset 2")


def test_ask_refuses_a_png_piped_as_the_prompt(imagine_home):
    from ..helpers.media import png_bytes

    proc = run_bytes("ask", "-m", "mock", "describe", home=imagine_home, stdin=png_bytes())
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    line = proc.stderr.decode().strip()
    assert line.startswith("error: stdin is not valid UTF-8") and "byte 0x89 at offset 0" in line and "-a" in line


def test_speak_refuses_an_undecodable_argument(imagine_home):
    assert_bad_utf8(run("speak", "-m", "mock", BAD, home=imagine_home), "byte 0xff at offset 0")


def test_speak_refuses_undecodable_stdin(imagine_home):
    proc = run_bytes("speak", "-m", "mock", home=imagine_home, stdin=b"hi \xfe")
    assert proc.returncode == 2 and "byte 0xfe at offset 3" in proc.stderr.decode()


def test_embed_refuses_an_undecodable_argument(imagine_home):
    assert_bad_utf8(run("embed", "-m", "minilm", BAD, home=imagine_home), "byte 0xff")


def test_route_refuses_an_undecodable_argument(imagine_home):
    assert_bad_utf8(run("route", "-m", "mock", BAD, home=imagine_home))


def test_chat_reports_an_undecodable_line_and_goes_on(imagine_home):
    proc = run_bytes("chat", "-m", "mock", home=imagine_home, stdin=b"\xff\xfe\nstill here\n")
    out = proc.stdout.decode()
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    assert "not valid UTF-8" in out and "byte 0xff at offset 0" in out
    assert "still here" in out.split("not valid UTF-8", 1)[1]  # the session went on to the next line


def test_library_text_follows_the_same_rule():
    from imagine.errors import InputError
    from imagine.parts import Text, utf8_text

    with pytest.raises(InputError, match="byte 0xff at offset 1"):
        Text("a" + BAD)
    with pytest.raises(InputError, match="lone surrogate U\\+D800 at character 0"):
        utf8_text("\ud800")
    with pytest.raises(InputError, match="byte 0xc3 at offset 2"):
        utf8_text(b"ab\xc3")
    assert utf8_text("héllo") == "héllo" and utf8_text("héllo".encode()) == "héllo"


# -- non-finite numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_max_cost_must_be_finite(imagine_home, value):
    assert_one_line_error(run("ask", "-m", "mock", "--max-cost", value, "hi", home=imagine_home),
                          "--max-cost", "finite")
    assert_one_line_error(run("route", "--max-cost", value, "hi", home=imagine_home), "--max-cost", "finite")


def test_watch_numbers_must_be_finite(imagine_home, tmp_path):
    video = str(tmp_path / "v.mp4")
    for flag in ("--every", "--scene-threshold"):
        proc = run("watch", flag, "nan", video, home=imagine_home)
        assert proc.returncode == 2
        assert_one_line_error(proc, flag, "finite")
    assert_one_line_error(run("watch", "--scene-threshold", "2", video, home=imagine_home), "--scene-threshold")
    assert_one_line_error(run("watch", "--every", "0", video, home=imagine_home), "--every")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_gc_grace_must_be_finite(imagine_home, value):
    proc = run("logs", "gc", "--grace", value, home=imagine_home)  # nan compared false: every blob was "old"
    assert proc.returncode == 2
    assert_one_line_error(proc, "--grace", "finite")


def test_lab_numbers_must_be_finite(imagine_home):
    proc = run("lab", "sample", "x", "--temperature", "nan", home=imagine_home)
    assert proc.returncode == 2
    assert_one_line_error(proc, "--temperature", "finite")


@pytest.mark.parametrize("value", ["nan", "NaN", "Infinity", "-inf", "[1, NaN]"])
def test_engine_options_must_be_finite(imagine_home, value):
    proc = run("ask", "-m", "mock", "-o", f"temperature={value}", "hi", home=imagine_home)
    assert proc.returncode == 2
    assert_one_line_error(proc, "'temperature'", "finite")


def test_library_options_and_policy_must_be_finite():
    import imagine
    from imagine.errors import InputError, OptionsError
    from imagine.router import Policy

    with pytest.raises(OptionsError, match="'temperature' must be a finite number"):
        imagine.ask("hi", "mock", temperature=float("nan"))
    with pytest.raises(OptionsError, match="'delay'"):
        imagine.ask("hi", "mock", delay="nan")  # text that parses to a float nan
    with pytest.raises(InputError, match="max_cost must be a finite number"):
        Policy.parse("local", max_cost=float("nan"))
    with pytest.raises(InputError, match="max_retry_wait"):
        Policy(max_retry_wait=float("inf"))


# -- files that are not there, folders, empty files, empty -O ----------------------------------------


def test_embed_a_missing_file_is_an_error(imagine_home, tmp_path):
    assert_one_line_error(run("embed", "-m", "minilm", "missing.txt", home=imagine_home),
                          "file not found", "missing.txt")
    assert_one_line_error(run("embed", "-m", "minilm", str(tmp_path / "nope" / "notes"), home=imagine_home),
                          "file not found")


def test_embed_a_directory_is_an_error(imagine_home, tmp_path):
    folder = tmp_path / "a-directory.png"
    folder.mkdir()
    assert_one_line_error(run("embed", "-m", "minilm", str(folder), home=imagine_home), "is a folder")


def test_embed_an_empty_file_is_an_error(imagine_home, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert_one_line_error(run("embed", "-m", "minilm", str(empty), home=imagine_home), "is empty")


def test_embed_still_takes_plain_texts():
    from imagine.cli.media import _names_a_file

    assert not _names_a_file("hello world") and not _names_a_file("a cat.png on a mat")
    assert not _names_a_file("hello") and not _names_a_file("3.5") and not _names_a_file("https://x.org/a.png")
    assert _names_a_file("notes.md") and _names_a_file("photos/cat") and _names_a_file("cat.PNG")


def test_an_empty_png_attached_to_ask_is_an_error(imagine_home, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    proc = run("ask", "-m", "mock", "-a", str(empty), "describe", home=imagine_home)
    assert proc.returncode == 2
    assert_one_line_error(proc, "empty.png is empty")


@pytest.mark.parametrize("command", [("ask", "-m", "mock", "hi"), ("speak", "-m", "mock", "hi"),
                                     ("transcribe", "x.wav"), ("watch", "x.mp4"), ("draw", "a fox")])
def test_an_empty_out_path_is_an_error(imagine_home, command):
    proc = run(*command[:1], "-O", "", *command[1:], home=imagine_home)
    assert proc.returncode == 2
    assert_one_line_error(proc, "--out", "path is empty")


# -- config.toml -------------------------------------------------------------------------------------


def _with_config(home, data: bytes) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_bytes(data)


@pytest.mark.parametrize("data, fragment", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "is not UTF-8 text (byte 0x89 at offset 0)"),
    ('model = "mock"\n'.encode("utf-16"), "is not UTF-8 text"),
    (b"a = " + b"[" * 10000 + b"]" * 10000 + b"\n", "nested too deeply"),
    (b'home = "/etc"\n', "sets 'home'"),
    (b"max_cost_per_day = nan\n", "finite"),
    (b"[limits]\nmax_audio_seconds = inf\n", "finite"),
    (b"[engines.mock]\ndelay = nan\n", "finite"),
    (b"[endpoints.x]\ntimeout = inf\n", "finite"),
    (b"model = [\n", "not valid TOML"),
], ids=["binary", "utf-16", "10k-deep", "home", "nan-budget", "inf-limit", "nan-engine", "inf-timeout", "toml"])
def test_a_bad_config_is_one_line_and_exit_2(imagine_home, data, fragment):
    _with_config(imagine_home, data)
    for command in (("ask", "-m", "mock", "hi"), ("logs",)):
        proc = run(*command, home=imagine_home)
        assert proc.returncode == 2, proc.stderr
        assert_one_line_error(proc, "config.toml", fragment)


def test_env_numbers_must_be_finite(imagine_home):
    proc = run("ask", "-m", "mock", "hi", home=imagine_home, env={"IMAGINE_MAX_AUDIO_SECONDS": "nan"})
    assert proc.returncode == 2
    assert_one_line_error(proc, "IMAGINE_MAX_AUDIO_SECONDS", "finite")


# -- watch checks its model first ---------------------------------------------------------------------


def test_watch_summarize_checks_the_model_before_the_timeline(imagine_home, tmp_path):
    proc = run("watch", "--summarize", "-m", "nosuch", str(tmp_path / "missing.mp4"), home=imagine_home)
    assert proc.returncode == 2
    assert_one_line_error(proc, "nosuch")  # not "file not found": the timeline never started
