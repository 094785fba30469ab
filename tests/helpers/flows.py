"""Flow files the flows tests share: the 20-item mock flow, and writing a YAML file from a test."""

from __future__ import annotations

import textwrap
from pathlib import Path

TWENTY = """
name: twenty
inputs:
  rows: {list: [%s]}
for_each: rows
concurrency: {mock: %d}
steps:
  first:
    task: ask
    model: mock
    input: "item ${item}"
    options: {delay: %s}
  second:
    task: ask
    model: mock
    prompt: "again ${first.text}"
    options: {delay: %s}
    when: {left: "${first.text}", op: not_contains, right: "item 3"}
outputs:
  answer: {from: "${second.text}", file: "answers/${item.name}.txt"}
  first: {from: "${first.text}", file: "first.jsonl"}
"""


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def twenty(tmp_path: Path, delay: float = 0, lanes: int = 4) -> Path:
    return write(tmp_path, TWENTY % (", ".join(str(i) for i in range(20)), lanes, delay, delay))
