"""Every load-time error names the YAML line and column of what is wrong (and the field)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imagine.flows import Flow, FlowError


def load(tmp_path: Path, text: str) -> Flow:
    path = tmp_path / "f.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return Flow.load(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(FlowError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_unknown_task(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a:
            task: transcibe
            input: x.wav
        """)
    assert "f.yaml:3:11: steps.a.task: unknown task 'transcibe'" in msg


def test_missing_reference_to_a_step(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a:
            task: ask
            model: mock
            input: "hello ${nope.text}"
        """)
    assert "f.yaml:5:12: steps.a.input: reference to unknown step 'nope'" in msg


def test_missing_field_of_a_step(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          say: {task: speak, model: espeak, input: hi}
          hear: {task: transcribe, input: "${say.text}"}
        """)
    assert "f.yaml:3:35: steps.hear.input: step 'say' has no field 'text'" in msg and "audio" in msg


def test_missing_input(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: "${inputs.docs}"}
        """)
    assert "f.yaml:2:38: steps.a.input: no input named 'docs'" in msg


def test_cycle(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: "${b.text}"}
          b: {task: ask, model: mock, input: "${a.text}"}
        """)
    assert "f.yaml:2:3: steps.a: cycle: a -> b -> a" in msg


def test_wrong_modality_audio_step_fed_text(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: hi}
          b:
            task: transcribe
            input: "${a.text}"
        """)
    assert "f.yaml:5:12: steps.b.input: task transcribe takes audio or video, but '${a.text}' is text" in msg


def test_media_written_into_text(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          say: {task: speak, model: espeak, input: hi}
          b:
            task: ask
            model: mock
            input: "what is ${say.audio}"
        """)
    assert "f.yaml:6:12: steps.b.input: expects text" in msg or "f.yaml:6:12: steps.b.input: task ask" in msg


def test_unknown_option_for_the_engine(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a:
            task: ask
            model: mock
            input: hi
            options:
              delay: 0
              temprature: 0.5
        """)
    assert "f.yaml:8:7: steps.a.options.temprature: unknown option 'temprature' for engine mock" in msg


def test_bad_option_value(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a:
            task: ask
            model: mock
            input: hi
            options: {delay: -1}
        """)
    assert "f.yaml:6:22: steps.a.options.delay:" in msg


def test_unknown_field_and_yaml_syntax(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          a:
            task: ask
            inptu: hi
        """)
    assert "f.yaml:4:5: steps.a.inptu: unknown field 'inptu'" in msg
    msg = error_of(tmp_path, "steps:\n  a: {task: ask\n")
    assert "f.yaml:3:1: flow: not valid YAML" in msg


def test_for_each_needs_a_collection_and_item_needs_for_each(tmp_path):
    msg = error_of(tmp_path, """
        inputs:
          one: {file: a.txt}
        for_each: one
        steps:
          a: {task: ask, model: mock, input: "${item}"}
        """)
    assert "f.yaml:3:11: for_each: input 'one' is one file, not a collection" in msg
    msg = error_of(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: "${item.path}"}
        """)
    assert "f.yaml:2:38: steps.a.input: ${item...} needs `for_each:`" in msg


def test_valid_flow_shows_its_dag(tmp_path):
    flow = load(tmp_path, """
        inputs:
          docs: {list: [a, b]}
        for_each: docs
        steps:
          b: {task: ask, model: mock, input: "${a.text}!"}
          a: {task: ask, model: mock, input: "${item}"}
        """)
    assert flow.graph.order == ["a", "b"]
    assert "b: task ask [mock] <- a" in flow.show()


def test_cli_validate_is_one_line_and_exit_2(tmp_path):
    from click.testing import CliRunner

    from imagine.cli.app import cli

    (tmp_path / "f.yaml").write_text("steps:\n  a: {task: nope, input: x}\n")
    result = CliRunner().invoke(cli, ["flow", "validate", str(tmp_path / "f.yaml")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "f.yaml:2:13: steps.a.task: unknown task 'nope'" in result.output


def test_a_record_output_takes_only_what_reads_as_json(tmp_path):
    msg = error_of(tmp_path, """
        steps:
          say: {task: speak, model: espeak, input: hi}
        outputs:
          row: {from: {said: hi, audio: "${say.audio}"}, file: rows.jsonl}
        """)
    assert "f.yaml:4:33: outputs.row.from.audio: expects text, but a reference in '${say.audio}' is audio" in msg
