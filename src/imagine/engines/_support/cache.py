"""Loaded models, one cache for every engine in the process.

Loading a model is the slow part of a local request (seconds to minutes), so each engine keeps what it
loaded for the next request. They all keep it here, not in their own dicts, for two reasons: one memory
budget covers everything loaded (a GGUF, a Whisper model and a diffusers pipeline compete for the same
RAM), and concurrency is handled once: two requests for a model that is not loaded yet load it once,
while requests for other models neither wait for that load nor block each other.

The budget bounds what is *kept*, not what can run: the newest model always stays, even over budget on
its own, and least recently used models go first. IMAGINE_MODEL_MEMORY_GB sets it (default 8;
IMAGINE_HF_MEMORY_GB, its older name, is still read). An evicted model stays alive while a request
still holds it; the next request loads it again.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, TypeVar

__all__ = ["ModelCache", "file_bytes", "model_bytes", "model_cache"]

T = TypeVar("T")
Size = int | Callable[[Any], int] | None


def model_bytes(obj: Any) -> int:
    """Memory a loaded object holds, as far as it can be told without knowing its library: the parameter
    bytes of a torch module, or of every module in a `components` dict (diffusers pipelines and the
    engines' own wrappers expose one); else `nbytes` when the object reports it; else 0 (unknown)."""
    if hasattr(obj, "parameters"):
        modules = [obj]
    else:
        modules = [c for c in getattr(obj, "components", {}).values() if hasattr(c, "parameters")]
    if modules:
        return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    nbytes = getattr(obj, "nbytes", None)
    return int(nbytes) if isinstance(nbytes, int) else 0


def file_bytes(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder: the size of weights a runtime reads or maps from
    disk (GGUF, ONNX, CTranslate2), which is what they take in memory once loaded."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


class ModelCache:
    """Loaded models by key: least recently used first out, within a memory budget.

    Keys are any hashable; engines start theirs with the engine id so they never collide. Loading runs
    under a per-key lock, outside the cache's own lock, so a slow load blocks only requests for that key.
    A load that raises caches nothing."""

    def __init__(self, budget_bytes: int = 8 << 30) -> None:
        self.budget = budget_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, load: Callable[[], T], size: Size = None) -> T:
        """The object under `key`, made by `load()` the first time. `size` is its bytes, or a function of
        the loaded object giving them; by default `model_bytes` measures it."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]  # type: ignore[no-any-return]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key][0]  # type: ignore[no-any-return]
            obj = load()
            nbytes = size(obj) if callable(size) else model_bytes(obj) if size is None else size
            with self._lock:
                self._items[key] = (obj, nbytes)
                while len(self._items) > 1 and sum(s for _, s in self._items.values()) > self.budget:
                    self._items.popitem(last=False)
            return obj

    def discard(self, match: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key `match`es (e.g. an older version of a file that changed on disk);
        returns how many went."""
        with self._lock:
            stale = [k for k in self._items if match(k)]
            for key in stale:
                del self._items[key]
            return len(stale)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    """The process-wide cache every engine keeps its loaded models in. It is emptied at exit, while the
    libraries that made the models are still whole (freed later, at interpreter teardown, llama.cpp's
    finalisers find their own module half gone and print tracebacks)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            raw = os.environ.get("IMAGINE_MODEL_MEMORY_GB") or os.environ.get("IMAGINE_HF_MEMORY_GB") or "8"
            _cache = ModelCache(int(float(raw) * (1 << 30)))
            atexit.register(_cache.clear)
        return _cache
