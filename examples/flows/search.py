"""Search the index the screenshots flow wrote: embed the query with the same model, rank rows by cosine.

    python examples/flows/search.py screenshots-out/index.jsonl "the server would not let me connect"

Why so little: the flow already stored each image's text and vector in one JSONL row, so a search is one
embedding and a dot product — no vector database needed for a folder of screenshots.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def load(index: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]


def search(rows: list[dict[str, Any]], query: str, top: int = 3,
           model: str = "minilm") -> list[tuple[float, dict[str, Any]]]:
    """The `top` rows nearest the query, best first, with their cosine similarity."""
    import imagine

    rows = [r for r in rows if r.get("vector")]
    if not rows:
        return []
    vector = next(p for p in imagine.embed(query, model, log=False).parts if isinstance(p, imagine.Vector))
    q = np.asarray(vector.values, dtype=np.float32)
    m = np.asarray([r["vector"] for r in rows], dtype=np.float32)
    scores = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q) + 1e-12)
    order = np.argsort(-scores)[:top]
    return [(float(scores[i]), rows[i]) for i in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path, help="index.jsonl written by screenshots.yaml")
    parser.add_argument("query")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    for score, row in search(load(args.index), args.query, args.top):
        path = Path(row["path"])
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        print(f"{score:.3f}  {shown}  {row['text']!r}")


if __name__ == "__main__":
    main()
