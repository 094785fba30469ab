"""What the Hugging Face engines share (engines/_hf.py): model-source checks before any heavy import,
the safetensors-only rule, device and dtype choice, and the LRU of loaded models with a memory budget."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the hf extra: pip install -e '.[hf]'")

from imagine.engines._support.cache import ModelCache  # noqa: E402
from imagine.engines.hf._hf import inspect_model, pick_device, pick_dtype  # noqa: E402
from imagine.errors import InputError  # noqa: E402


def module(n_floats: int) -> torch.nn.Module:
    return torch.nn.Linear(n_floats, 1, bias=False)                  # n_floats * 4 bytes of parameters


def test_cache_keeps_recent_models_within_the_budget() -> None:
    cache = ModelCache(budget_bytes=1000)
    loads: list[str] = []

    def loader(name: str, n: int):
        return lambda: loads.append(name) or module(n)

    a = cache.get("a", loader("a", 100))                              # 400 bytes
    assert cache.get("a", loader("a", 100)) is a and loads == ["a"]   # loaded once
    cache.get("b", loader("b", 100))                                  # 800 bytes in all
    cache.get("a", loader("a", 100))                                  # a is now the most recent
    cache.get("c", loader("c", 100))                                  # 1200 > 1000: the least recent (b) goes
    assert cache.keys() == ["a", "c"] and loads == ["a", "b", "c"]
    cache.get("huge", loader("huge", 1000))                           # over budget alone: kept, others go
    assert cache.keys() == ["huge"]


def test_cache_loads_a_model_once_under_concurrent_requests() -> None:
    cache = ModelCache()
    calls = []

    def slow() -> torch.nn.Module:
        calls.append(1)
        time.sleep(0.2)
        return module(4)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("m", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_sources_are_checked_before_loading(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        inspect_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a Hugging Face model"):
        inspect_model(str(tmp_path / "empty"))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(InputError, match="allow_pickle"):
        inspect_model(str(pickled))
    source = inspect_model(str(pickled), allow_pickle=True)
    assert source.local and source.kind == "model" and source.model_type == "llama"
    (pickled / "model.safetensors").write_bytes(b"")
    assert inspect_model(str(pickled)).kind == "model"                # safetensors present: fine
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert inspect_model(str(pipe)).kind == "pipeline"
    hub = inspect_model("OWNER/NAME")
    assert not hub.local and hub.ref == "OWNER/NAME"
    with pytest.raises(InputError, match="neither a local folder nor a hub id"):
        inspect_model("not a/valid/id")


def test_device_and_dtype() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_dtype("auto", "cpu") == torch.float32                 # half precision is slow on CPUs
    assert pick_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype"):
        pick_dtype("float8", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            pick_device("cuda")
