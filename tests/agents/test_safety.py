"""What a run may do: confirmation of side effects, local_only, the allowed folders, the tools' marks."""

from __future__ import annotations

import os

import pytest

import imagine
from imagine import Done, InputError, ToolCall
from imagine.agents.builtin import DEFAULT_TOOLS, Workspace
from imagine.agents.loop import ToolStep
from imagine.tools import as_tool


def script(model, name: str, args: dict, answer: str = "ok") -> None:
    model.enqueue([ToolCall("c1", name, args), Done("tool_calls")])
    model.enqueue(answer)


def only_tool_step(run) -> ToolStep:
    run.complete()
    (step,) = [s for s in run.steps if isinstance(s, ToolStep)]
    return step


def test_a_side_effecting_tool_is_refused_without_confirmation(model):
    written: list[str] = []

    def save_note(text: str) -> str:
        """Write a note to disk."""
        written.append(text)
        return "saved"

    tool = as_tool(save_note, side_effects=True)
    script(model, "save_note", {"text": "hi"}, "I could not save it.")
    step = only_tool_step(imagine.agent("save hi", tools=[tool], model="mock"))
    assert written == [] and step.result.is_error
    assert "side effects" in step.result.text and "confirm=True" in step.result.text
    assert model.requests[1].messages[-1].tool_results[0].is_error  # the model was told

    script(model, "save_note", {"text": "hi"})
    asked: list[tuple[str, dict]] = []

    def no(tool, arguments):
        asked.append((tool.name, arguments))
        return False

    step = only_tool_step(imagine.agent("save hi", tools=[tool], model="mock", confirm=no))
    assert asked == [("save_note", {"text": "hi"})] and written == [] and "declined" in step.result.text

    script(model, "save_note", {"text": "hi"})
    step = only_tool_step(imagine.agent("save hi", tools=[tool], model="mock", confirm=lambda t, a: True))
    assert step.ok and written == ["hi"]
    script(model, "save_note", {"text": "again"})
    assert only_tool_step(imagine.agent("save", tools=[tool], model="mock", confirm=True)).ok
    assert written == ["hi", "again"]


def test_local_only_refuses_a_tool_that_sends_data(model):
    sent: list[str] = []

    def upload(text: str) -> str:
        """Send a text to a web service."""
        sent.append(text)
        return "sent"

    tool = as_tool(upload, sends_data=True)
    script(model, "upload", {"text": "secret"}, "Not sent.")
    step = only_tool_step(imagine.agent("upload it", tools=[tool], model="mock", policy="local_only",
                                        confirm=True))
    assert sent == [] and step.result.is_error and "sends data off the device" in step.result.text
    assert "local_only" in step.result.text
    script(model, "fetch", {"url": "https://example.com/"}, "Not fetched.")
    step = only_tool_step(imagine.agent("fetch it", tools=["fetch"], model="mock", policy="local_only"))
    assert step.result.is_error and "'fetch' sends data off the device" in step.result.text

    client = imagine.Client(registry=imagine.get_registry(), policy="local_only")  # its policy counts too
    script(model, "upload", {"text": "secret"})
    assert only_tool_step(imagine.agent("up", tools=[tool], model="mock", client=client)).result.is_error
    script(model, "upload", {"text": "fine"})
    assert only_tool_step(imagine.agent("up", tools=[tool], model="mock", confirm=True)).ok and sent == ["fine"]


def test_builtin_tools_carry_their_marks():
    ws = Workspace(imagine.default_client())
    marks = {name: (ws.tool(name).side_effects, ws.tool(name).sends_data) for name in
             ("speak", "draw", "fetch", "read_text", "transcribe", "read_file")}
    assert marks == {"speak": (True, False), "draw": (True, False), "fetch": (False, True),
                     "read_text": (False, False), "transcribe": (False, False), "read_file": (False, False)}
    assert set(DEFAULT_TOOLS) == {"transcribe", "read_text", "see", "watch", "frame", "embed", "search", "read_file"}
    cloud = Workspace(imagine.default_client(), models={"see": "openai:gpt-4o-mini"})
    see = cloud.tool("see")
    assert see.sends_data and see.side_effects  # a cloud-bound tool sends data and spends money
    assert ws.tool("read_text").parameters["required"] == ["image"]
    with pytest.raises(InputError, match="no built-in tool named 'paint'"):
        Workspace(imagine.default_client(), models={"paint": "x"})


@pytest.fixture
def folders(tmp_path):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "notes.txt").write_text("the code is 7713\n")
    (outside / "secret.txt").write_text("do not read\n")
    (allowed / "sub").mkdir()
    return allowed, outside


def test_read_file_stays_inside_the_allowed_folder(folders):
    allowed, outside = folders
    ws = Workspace(imagine.default_client(), allow_dirs=[allowed])
    assert ws._read_file("notes.txt")["text"] == "the code is 7713\n"
    assert ws._read_file(str(allowed / "notes.txt"))["text"].startswith("the code")
    assert ws._read_file(".")["files"] == ["notes.txt", "sub/"]
    for bad in ("../outside/secret.txt", str(outside / "secret.txt"), "sub/../../outside/secret.txt"):
        with pytest.raises(InputError, match="outside the allowed folders"):
            ws._read_file(bad)
    os.symlink(outside / "secret.txt", allowed / "link.txt")  # a link inside that points out
    with pytest.raises(InputError, match="outside the allowed folders"):
        ws._read_file("link.txt")
    os.symlink(outside, allowed / "way-out")
    with pytest.raises(InputError, match="outside the allowed folders"):
        ws._read_file("way-out/secret.txt")
    with pytest.raises(InputError, match="does not exist"):
        ws._read_file("missing.txt")
    with pytest.raises(InputError, match="no folder is allowed"):
        Workspace(imagine.default_client())._read_file(str(allowed / "notes.txt"))
    with pytest.raises(InputError, match="is a URL"):
        ws.resolve("http://169.254.169.254/latest", (imagine.Image,), "image")


def test_the_model_is_told_when_a_path_is_outside(model, folders):
    allowed, outside = folders
    script(model, "read_file", {"path": str(outside / "secret.txt")}, "I may not read that.")
    run = imagine.agent("read the secret", tools=["read_file"], model="mock", allow_dirs=[allowed])
    step = only_tool_step(run)
    assert step.result.is_error and "outside the allowed folders" in step.result.text
    assert "do not read" not in str([m.to_record() for m in model.requests[1].messages])
    script(model, "read_file", {"path": "notes.txt"}, "done")
    run = imagine.agent("read the notes", tools=["read_file"], model="mock", allow_dirs=[allowed])
    assert only_tool_step(run).result.content["text"] == "the code is 7713\n"
    assert str(allowed) in model.requests[-2].messages[1].text  # the model was told which folder it may read
