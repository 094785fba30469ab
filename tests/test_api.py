"""The curated public API: exactly `imagine.__all__`, sorted, every name importable and documented."""

from __future__ import annotations

import imagine

EXPECTED = {
    "Audio", "BudgetExceeded", "RateLimited", "Refused", "UpstreamTimeout", "ConfigError", "Data", "Done", "Engine", "EngineNotFound", "EngineUnavailable", "Error", "Event",
    "Image", "ImagineError", "InputError", "LimitExceeded", "Message", "Modality", "OptionsError", "Part",
    "PartOut", "Progress", "Registry", "Request", "Response", "SchemaError", "Segment", "Segments", "Settings",
    "Store", "StoreError", "Text", "TextDelta", "ToolCall", "UpstreamError", "Usage", "Vector", "Video",
    "__version__", "aask", "ask", "get_registry", "get_settings", "get_store", "load_part", "load_settings",
    # the Client and the multimodal half of the API
    "Client", "default_client", "PartDelta", "Restart", "transcribe", "speak", "detect_speech", "read_text", "embed", "see", "draw", "edit", "watch",
    # tool calls and results kept in the conversation
    "ToolUse", "ToolResult",
    # declarative flows (imagine.flows)
    "Flow",
    # the agent loop (imagine.agents)
    "agent", "AgentRun",
}


def test_all_is_exactly_the_curated_set_and_sorted():
    assert set(imagine.__all__) == EXPECTED, "changing the public API? update EXPECTED deliberately"
    assert list(imagine.__all__) == sorted(imagine.__all__)


def test_every_public_name_exists_and_is_documented():
    for name in imagine.__all__:
        obj = getattr(imagine, name)
        if callable(obj) and name != "Event":
            assert (obj.__doc__ or "").strip(), f"{name} needs a docstring"


def test_errors_form_one_tree():
    for name in EXPECTED:
        obj = getattr(imagine, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, imagine.ImagineError)
    assert issubclass(imagine.LimitExceeded, imagine.InputError)


def test_lazy_names_resolve_to_their_modules():
    from imagine import parts, tasks

    assert imagine.Image is parts.Image and imagine.ask is tasks.ask
    assert "ask" in dir(imagine)
    import pytest

    with pytest.raises(AttributeError):
        imagine.not_a_name  # noqa: B018


def test_every_task_is_public_and_lazy():
    """`imagine.transcribe` works, and `import imagine` alone loads no task, engine or heavy library."""
    import subprocess
    import sys

    code = ("import sys, imagine\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('imagine.') or m in ('numpy', 'torch', 'pydantic'))\n"
            "print(loaded)\n"
            "print(imagine.transcribe.__module__, imagine.speak.__name__, imagine.Client.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]", out[0]
    assert out[1] == "imagine.tasks speak Client"
