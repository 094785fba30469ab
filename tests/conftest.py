"""Every test gets its own IMAGINE_HOME and fresh process-wide singletons; nothing touches the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("IMAGINE_MODEL", None)

# skip_guard: a skip that an install failure explains fails the session (IMAGINE_ALLOW_SKIPS=1 to allow);
# pytester: the guard's own test runs pytest inside pytest.
pytest_plugins = ["pytester", "tests.helpers.skip_guard"]


@pytest.fixture(autouse=True, scope="module")
def torch_one_thread() -> Iterator[None]:
    """Test models are tiny: one torch thread beats OpenMP's hand-offs, which crawl on a busy 2-core box.
    (torch is imported only when a test module brought in torch, transformers or diffusers.)"""
    if not any(name in sys.modules for name in ("torch", "transformers", "diffusers")):
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def imagine_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from imagine import config, registry, tasks

    home = tmp_path / "imagine-home"
    monkeypatch.setenv("IMAGINE_HOME", str(home))
    for var in ("IMAGINE_MODEL", "IMAGINE_LOG", "IMAGINE_MAX_BYTES", "IMAGINE_MAX_PIXELS",
                "IMAGINE_MAX_AUDIO_SECONDS", "IMAGINE_MAX_VIDEO_FRAMES", "IMAGINE_MAX_PROMPT_BYTES",
                "IMAGINE_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    config.reset_settings()
    registry.reset_registry()
    tasks.reset_store()
    yield home
    tasks.reset_store()
    if registry._registry is not None:  # close the engines' connection pools now, not whenever GC runs
        from imagine._bridge import run_sync

        run_sync(registry._registry.aclose())
    registry.reset_registry()
    config.reset_settings()


@pytest.fixture
def mock_engine():
    """The registry's MockEngine instance: `.enqueue(...)` the next answer, read `.requests`."""
    from imagine import get_registry

    return get_registry().engine("mock")
