"""What the chunk-store tests (tests/index) share: which backends can run here, and the factory type."""

from __future__ import annotations

import importlib.util
from typing import Callable

from imagine.index.store import ChunkStore

BACKENDS = ("lance", "postgres")
NEEDS = {"lance": ("lancedb",), "postgres": ("pgserver", "psycopg", "pgvector")}
EXTRA = {"lance": "index", "postgres": "postgres,test"}

# Opens (again) one test's index: each call is a new store object over the same data.
StoreFactory = Callable[[], ChunkStore]


def missing(backend: str) -> str | None:
    """Why `backend` cannot be tested here (a package that is not importable), or None."""
    for module in NEEDS[backend]:
        if importlib.util.find_spec(module) is None:
            return f"the {backend} store tests need {module}: pip install -e '.[{EXTRA[backend]}]'"
    return None
