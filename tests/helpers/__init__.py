"""Shared test helpers: test modules import from here, never from one another.

cli.py        `run` the real CLI in a subprocess, `assert_one_line_error`
fake_http.py  a real HTTP server on loopback for the cloud SDKs
media.py      reproducible PNG/WAV bytes, slides and MP4 video
native.py     tiny native-engine checkpoints (needs torch)
speech.py     espeak-ng speech, noise, WER scoring
skip_guard.py the pytest plugin that fails the session when an installed extra is skipped
"""
