"""The blob store: media bodies stored once, named by the sha256 of their content (`blobs/ab/cdef...`),
and the sweep that removes the ones no log row refers to.

Writes are atomic (a temporary file renamed into place) and idempotent. A hash read back from the log is
checked before it becomes a path, so an edited database cannot point outside the store. The sweep removes
a blob or a writer's leftover `.tmp-*` file only once it is older than a grace period: a writer stores its
blobs before it inserts the row that names them, so a young unreferenced blob may be about to be named.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .errors import StoreError

__all__ = ["GC_GRACE_SECONDS", "SHA256", "BlobStore", "blob_hashes", "sweep", "valid_sha256"]

SHA256 = re.compile(r"[0-9a-f]{64}")  # a blob's name: its sha256, 64 lowercase hex digits
GC_GRACE_SECONDS = 3600.0


def valid_sha256(value: Any) -> str:
    """`value` when it is a sha256 hex digest (64 lowercase hex digits), else StoreError: a hash read
    from the database must never become a path outside the blob store."""
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        shown = repr(value)[:40]
        raise StoreError(f"the log names a blob by an invalid hash {shown} (not 64 lowercase hex digits)",
                         hint="the log was edited or damaged; that row cannot be read back")
    return value


class BlobStore:
    """Files named by the sha256 of their content; writes are atomic and idempotent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        sha256 = valid_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:]

    def put(self, data: bytes, sha256: str) -> bool:
        """Store `data` under its hash; returns False when it was already there (deduplicated)."""
        target = self.path(sha256)
        if target.exists():
            try:  # fresh again: `gc` spares blobs younger than its grace period, so a row about to name it is safe
                os.utime(target)
            except OSError:
                pass
            return False
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        except OSError as exc:
            raise StoreError(f"cannot write to the blob store {self.root}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write to the blob store {self.root}: {exc.strerror or exc}") from None
            raise
        return True

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {sha256[:12]} is missing from {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {sha256[:12]} from {self.root}: {exc.strerror or exc}") from None


def blob_hashes(value: Any, found: set[str]) -> set[str]:
    """Add every blob hash a logged input or output (decoded JSON) names to `found`."""
    if isinstance(value, dict):
        sha = value.get("sha256")
        if isinstance(sha, str) and SHA256.fullmatch(sha):
            found.add(sha)
        for item in value.values():
            blob_hashes(item, found)
    elif isinstance(value, list):
        for item in value:
            blob_hashes(item, found)
    return found


def sweep(blobs: BlobStore, referenced: set[str], referenced_since: Callable[[], set[str]], *,
          grace_s: float = GC_GRACE_SECONDS, dry_run: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Remove the blobs not in `referenced` and leftover `.tmp-*` files older than `grace_s`; before
    removing a blob, `referenced_since()` (the rows written while the sweep ran) gets the last word.
    Returns (counts and bytes removed or, with `dry_run`, that would be; the hashes removed)."""
    now = time.time()
    removed: dict[str, Any] = {"blobs": 0, "tmp": 0, "bytes": 0, "kept_young": 0}
    gone: list[str] = []
    for folder in sorted(blobs.root.iterdir()):
        if not folder.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", folder.name):
            continue
        for file in folder.iterdir():
            try:
                info = file.lstat()
            except FileNotFoundError:
                continue
            is_tmp = file.name.startswith(".tmp-")
            sha = folder.name + file.name
            if not is_tmp and (not SHA256.fullmatch(sha) or sha in referenced):
                continue
            if now - info.st_mtime < grace_s:
                removed["kept_young"] += 1
                continue
            if not is_tmp and not dry_run and sha in referenced_since():
                continue  # a row written while the sweep ran names it
            if not dry_run:
                try:
                    file.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StoreError(f"cannot remove {file}: {exc.strerror or exc}") from None
            removed["tmp" if is_tmp else "blobs"] += 1
            removed["bytes"] += info.st_size
            if not is_tmp:
                gone.append(sha)
    return removed, gone
