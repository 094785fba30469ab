"""Index benchmark (issue 16): imagine's embedded store vs FAISS HNSW vs exact search on the same vectors
and queries, in one run; then end-to-end text ingest with MiniLM.

1. Vector search. `--n` (100k) x 384 unit vectors around `--centers` (200) random centers plus Gaussian
   noise (seeded), a `kind` column that is "text" for ~50 % of rows (the filter), and `--queries` (200)
   queries drawn near the centers. Every system answers the same filtered top-10 query one at a time:
   a. imagine's `LanceStore` end to end: Chunks added in batches of `--batch` (10k) into a temp folder,
      then `search_vector(q, 10, where={"kind": "text"})`. The first query reads the vectors back from
      LanceDB and builds the in-memory index (`ann.VectorIndex`): that is its "first query" time, printed
      apart from the add time. Each later query also fetches the 10 rows from LanceDB.
   b. imagine's `VectorIndex` alone on the same arrays (no LanceDB): where a store query's time goes.
   c. FAISS `IndexHNSWFlat` (M=32, efConstruction 200, inner product on unit vectors), filtered through
      `SearchParametersHNSW(sel=IDSelectorBitmap)`; efSearch is the smallest of a sweep that gives
      recall@10 >= 0.95 (the sweep is printed).
   d. exact numpy search with the filter (a full scan, masked): the ground truth for recall@10.
   Per system: build time, p50/p99 query ms, recall@10, disk bytes (the Lance folder; FAISS via
   write_index), RSS growth while building (psutil), and the ratios to FAISS and exact.
   Goal: imagine's store p50 <= 2 ms at recall@10 >= 0.95 with the filter.
2. Ingest. `--ingest` (2000) text chunks of 60-80 words from tinyshakespeare, embedded with imagine's
   MiniLM (`imagine.embed`, in calls of the Index's EMBED_BATCH as `Index.add` does) and added to a new
   LanceStore: chunks/s end to end, embed and store time apart, tokens/s. Twice: the default runtime
   (torch, bfloat16 where the CPU has it) and the numpy reference, for the ratio. Then the whole
   `Index.add` path over the same text written as files of 50 chunks (its own chunker decides the
   pieces). Goal: >= 200 chunks/s on 2 cores.

The machine's cores are shared, so figures are noisy; the ratios within one run are the stable part.

    .venv/bin/python bench/index.py [--n 100000] [--queries 200] [--ingest 2000] [--skip-faiss]
    .venv/bin/python bench/index.py --n 20000 --queries 50 --ingest 200     # a quick run
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("IMAGINE_HOME", tempfile.mkdtemp(prefix="imagine-bench-"))

import numpy as np  # noqa: E402

from imagine.index.ann import VectorIndex  # noqa: E402
from imagine.index.lance import LanceStore  # noqa: E402
from imagine.index.store import Chunk  # noqa: E402

DIM = 384
K = 10
WHERE = {"kind": "text"}
P50_GOAL_MS = 2.0
RECALL_GOAL = 0.95
INGEST_GOAL = 200.0
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

try:
    import psutil

    def rss() -> int:
        return int(psutil.Process(os.getpid()).memory_info().rss)  # this pid: the forked children call it too

    RSS_HOW = "psutil RSS (current, after gc)"
except ImportError:  # pragma: no cover - psutil is in the dev extras
    import resource

    def rss() -> int:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB

    RSS_HOW = "getrusage max RSS (peak: later deltas read 0 unless a new peak is reached)"


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def data(n: int, centers: int, queries: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors (n, DIM) unit float32, kinds (n,) of "text"/"image", queries (queries, DIM) unit)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, DIM)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    owner = rng.integers(0, centers, n)
    vectors = middle[owner] + rng.standard_normal((n, DIM)).astype(np.float32) * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kinds = np.where(rng.random(n) < 0.5, "text", "image")
    near = middle[rng.integers(0, centers, queries)] + rng.standard_normal((queries, DIM)).astype(np.float32) * noise
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    return vectors.astype(np.float32), kinds, near.astype(np.float32)


def exact_topk(vectors: np.ndarray, mask: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """Exact filtered top-k: score every row, drop the filtered-out ones, partial sort."""
    scores = vectors @ q
    scores[~mask] = -np.inf
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


def recall(found: list[list[int]], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def timed_queries(queries: np.ndarray, search: Callable[[np.ndarray], list[int]]) -> tuple[list[float], list[list[int]]]:
    """Per-query wall times in ms and the rows each query found, one query at a time."""
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        rows = search(q)
        times.append((time.perf_counter() - t0) * 1000)
        found.append(rows)
    return times, found


def isolated(work: Callable[[], Any]) -> Any:
    """Run `work` in a forked child (it inherits the data) and return its result: each system's RSS growth
    is then its own, not memory that an earlier system freed or the allocator kept."""
    import pickle

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        code = 0
        try:
            payload = pickle.dumps(("ok", work()))
        except BaseException:  # noqa: BLE001 - sent back and raised in the parent
            import traceback

            payload, code = pickle.dumps(("error", traceback.format_exc())), 1
        with os.fdopen(write, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        blob = inp.read()
    os.waitpid(pid, 0)
    status, result = pickle.loads(blob)
    if status != "ok":
        raise RuntimeError(f"a benchmarked system failed in its child process:\n{result}")
    return result


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class Row:
    def __init__(self, name: str, build_s: float, times: list[float], rec: float, disk: int | None, grew: int,
                 note: str = "") -> None:
        self.name, self.build_s, self.rec, self.disk, self.grew, self.note = name, build_s, rec, disk, grew, note
        self.p50 = float(np.percentile(times, 50))
        self.p99 = float(np.percentile(times, 99))

    def line(self) -> str:
        disk = mb(self.disk) if self.disk is not None else "-"
        return (f"  {self.name:<24} build {self.build_s:7.2f} s   p50 {self.p50:7.3f} ms   p99 {self.p99:7.3f} ms   "
                f"recall@10 {self.rec:.3f}   disk {disk:>9}   RSS +{mb(self.grew):>9}   {self.note}")


def bench_vectors(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    vectors, kinds, queries = data(args.n, args.centers, args.queries, args.noise, args.seed)
    mask = kinds == "text"
    print(f"data: {args.n:,} x {DIM} unit vectors around {args.centers} centers (noise {args.noise}/dim), "
          f"{mask.mean() * 100:.1f} % kind=text, {len(queries)} queries near the centers "
          f"({time.perf_counter() - t0:.1f} s to make); top-{K} with where={WHERE}")
    print(f"RSS: {RSS_HOW}, each system built in its own forked child; base RSS {mb(rss())}")
    truth = [exact_topk(vectors, mask, q) for q in queries]
    rows: dict[str, Row] = {}
    rows["exact"] = isolated(lambda: run_exact(vectors, mask, queries, truth))
    rows["ann"] = isolated(lambda: run_vector_index(vectors, kinds, mask, queries, truth))
    rows["lance"] = isolated(lambda: run_lance(args, vectors, kinds, mask, queries, truth))
    if not args.skip_faiss:
        rows["faiss"] = isolated(lambda: run_faiss(vectors, mask, queries, truth))

    print()
    for row in rows.values():
        print(row.line())
    lance, exact, ann = rows["lance"], rows["exact"], rows["ann"]
    print()
    print(f"ratios (p50): store / exact {lance.p50 / exact.p50:.3f}   VectorIndex / exact {ann.p50 / exact.p50:.3f}   "
          f"store / VectorIndex {lance.p50 / ann.p50:.1f} (the LanceDB row fetch: ~{lance.p50 - ann.p50:.3f} ms "
          f"of the store's {lance.p50:.3f} ms)")
    if "faiss" in rows:
        f = rows["faiss"]
        assert lance.disk is not None and f.disk is not None
        print(f"ratios vs FAISS HNSW: store p50 / faiss p50 {lance.p50 / f.p50:.2f}   VectorIndex p50 / faiss p50 "
              f"{ann.p50 / f.p50:.2f}   build (store add + first query) / faiss build {lance.build_s / f.build_s:.2f}   "
              f"disk {lance.disk / f.disk:.2f}   RSS growth {lance.grew / max(f.grew, 1):.2f}")
    ok = lance.p50 <= P50_GOAL_MS and lance.rec >= RECALL_GOAL
    print(f"goal: store p50 <= {P50_GOAL_MS} ms at recall@10 >= {RECALL_GOAL} with the filter: "
          f"{'PASS' if ok else 'MISS'} (p50 {lance.p50:.3f} ms, recall@10 {lance.rec:.3f})")
    ok = ann.p50 <= P50_GOAL_MS and ann.rec >= RECALL_GOAL
    print(f"      the same for VectorIndex alone (no row fetch): {'PASS' if ok else 'MISS'} "
          f"(p50 {ann.p50:.3f} ms, recall@10 {ann.rec:.3f})")


def settled_rss() -> int:
    gc.collect()
    return rss()


def run_exact(vectors: np.ndarray, mask: np.ndarray, queries: np.ndarray, truth: list[np.ndarray]) -> Row:
    times, found = timed_queries(queries, lambda q: exact_topk(vectors, mask, q).tolist())
    return Row("exact (numpy, filtered)", 0.0, times, recall(found, truth), None, 0,
               "full scan of the float32 matrix + mask + argpartition")


def run_vector_index(vectors: np.ndarray, kinds: np.ndarray, mask: np.ndarray, queries: np.ndarray,
                     truth: list[np.ndarray]) -> Row:
    where = {"kind": ["text"]}  # VectorIndex takes lists of values (LanceStore converts with check_filter)
    before = settled_rss()
    t0 = time.perf_counter()
    index = VectorIndex(vectors, {"kind": kinds.tolist()})
    built = time.perf_counter() - t0
    grew = settled_rss() - before
    times, found = timed_queries(queries, lambda q: [r for r, _ in index.search(q, K, where)])
    clusters = 0 if index.centroids is None else len(index.centroids)
    bad = sum(1 for f in found for r in f if not mask[r])
    note = f"IVF {clusters} clusters, nprobe {index.nprobe}" if clusters else "exact (small)"
    return Row("imagine VectorIndex", built, times, recall(found, truth), None, grew,
               note + (f"; !! {bad} rows fail the filter" if bad else ""))


def run_lance(args: argparse.Namespace, vectors: np.ndarray, kinds: np.ndarray, mask: np.ndarray,
              queries: np.ndarray, truth: list[np.ndarray]) -> Row:
    root = Path(tempfile.mkdtemp(prefix="imagine-bench-index-"))
    try:
        before = settled_rss()
        store = LanceStore(root / "store")
        t0 = time.perf_counter()
        for start in range(0, args.n, args.batch):
            stop = min(args.n, start + args.batch)
            store.add([Chunk(id=f"v{i}", source=f"/bench/file{i // 100}.txt", kind=str(kinds[i]), text=f"chunk {i}",
                             vector=vectors[i]) for i in range(start, stop)])
        added = time.perf_counter() - t0
        disk = folder_bytes(root / "store")
        t0 = time.perf_counter()
        store.search_vector(queries[0], K, where=WHERE)
        first = time.perf_counter() - t0
        grew = settled_rss() - before
        times, found = timed_queries(queries, lambda q: [int(h.chunk.id[1:]) for h in
                                                         store.search_vector(q, K, where=WHERE)])
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bad = sum(1 for f in found for r in f if not mask[r])
    return Row("imagine LanceStore", added + first, times, recall(found, truth), disk, grew,
               f"add {added:.2f} s ({args.n / added:,.0f} rows/s, batches of {args.batch:,}) + first query "
               f"{first:.2f} s (read vectors, build index)" + (f"; !! {bad} rows fail the filter" if bad else ""))


def run_faiss(vectors: np.ndarray, mask: np.ndarray, queries: np.ndarray, truth: list[np.ndarray]) -> Row:
    import faiss

    before = settled_rss()
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.add(vectors)
    built = time.perf_counter() - t0
    grew = settled_rss() - before
    bitmap = np.packbits(mask.astype(np.uint8), bitorder="little")  # kept alive while the selector is used
    selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
    sweep = []
    for ef in (16, 32, 48, 64, 96, 128, 192, 256, 384, 512):
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)  # type: ignore[attr-defined]
        times, found = timed_queries(queries, lambda q: [int(r) for r in index.search(q[None], K, params=params)[1][0]
                                                         if r >= 0])
        rec = recall(found, truth)
        sweep.append(f"ef {ef}: {rec:.3f} @ {np.percentile(times, 50):.3f} ms")
        if rec >= RECALL_GOAL:
            break
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "hnsw.faiss")
        faiss.write_index(index, path)
        disk = os.path.getsize(path)
    bad = sum(1 for f in found for r in f if not mask[r])
    note = (f"M=32 efC=200 efSearch={ef} (sweep, recall@10 @ p50: {'; '.join(sweep)}), "
            f"{faiss.omp_get_max_threads()} OpenMP threads")
    return Row("FAISS HNSWFlat", built, times, rec, disk, grew, note + (f"; !! {bad} rows fail the filter" if bad else ""))


def chunks_of(text: str, count: int, seed: int) -> list[str]:
    """`count` chunks of 60-80 consecutive words (wrapping round the text if it runs out)."""
    words = text.split()
    rng = np.random.default_rng(seed)
    out: list[str] = []
    at = 0
    while len(out) < count:
        size = int(rng.integers(60, 81))
        if at + size > len(words):
            at = 0
        out.append(" ".join(words[at:at + size]))
        at += size
    return out


def ingest_once(texts: list[str], runtime: dict[str, str], root: Path) -> tuple[float, float, int, str]:
    """Embed `texts` in calls of EMBED_BATCH (as `Index.add` does) and add them to a new LanceStore:
    (embed seconds, store seconds, tokens, the encoder's backend)."""
    from imagine import embed
    from imagine.engines.minilm import MiniLMEngine
    from imagine.index.index import EMBED_BATCH
    from imagine.parts import Vector

    engine = MiniLMEngine()
    backend = engine.load("all-MiniLM-L6-v2", engine.parse_options(runtime)).backend
    embed("warm up", log=False, **runtime).complete()  # loads this runtime once (the model cache keeps it)
    start = time.perf_counter()
    vectors: list[tuple[float, ...]] = []
    tokens = 0
    for at in range(0, len(texts), EMBED_BATCH):
        response = embed(texts[at:at + EMBED_BATCH], log=False, **runtime)
        vectors += [p.values for p in response.parts if isinstance(p, Vector)]
        tokens += response.usage.input_tokens or 0
    embedded = time.perf_counter() - start
    assert len(vectors) == len(texts), (len(vectors), len(texts))
    t0 = time.perf_counter()
    store = LanceStore(root)
    store.add([Chunk(id=f"s{i}", source="/bench/tinyshakespeare.txt", kind="text", text=t, vector=v)
               for i, (t, v) in enumerate(zip(texts, vectors))])
    stored = time.perf_counter() - t0
    store.close()
    return embedded, stored, tokens, backend


def index_add_once(texts: list[str], root: Path) -> tuple[float, int]:
    """The whole `Index.add` path on files: read, hash, chunk, embed (default runtime), store, optimize."""
    from imagine import Client
    from imagine.index.index import Index

    folder = root / "files"
    folder.mkdir(parents=True)
    per_file = 50
    for n, at in enumerate(range(0, len(texts), per_file)):
        (folder / f"part{n:03d}.txt").write_text("\n\n".join(texts[at:at + per_file]))
    index = Index("bench-ingest", Client(home=root / "home"), create=True)
    start = time.perf_counter()
    report = index.add([folder])
    took = time.perf_counter() - start
    index.close()
    return took, report.embedded


def bench_ingest(args: argparse.Namespace) -> None:
    import lancedb  # noqa: F401  (imported before timing, like the model load: a once-per-process cost)

    texts = chunks_of(SHAKESPEARE.read_text(), args.ingest, args.seed)
    words = sum(len(t.split()) for t in texts) / len(texts)
    root = Path(tempfile.mkdtemp(prefix="imagine-bench-ingest-"))
    from imagine.index.index import EMBED_BATCH

    print(f"ingest: {len(texts):,} chunks of ~{words:.0f} words from {SHAKESPEARE.name}, MiniLM in calls of {EMBED_BATCH}, "
          f"{os.cpu_count()} CPUs; model load not counted")
    rates: dict[str, float] = {}
    try:
        for label, runtime in (("default", {}), ("numpy", {"backend": "numpy"})):
            embedded, stored, tokens, backend = ingest_once(texts, runtime, root / label)
            total = embedded + stored
            rates[label] = len(texts) / total
            print(f"  {label:8} ({backend:16}) embed {embedded:6.2f} s ({len(texts) / embedded:5,.0f} chunks/s, "
                  f"{tokens / embedded:6,.0f} tokens/s, {tokens / len(texts):.0f} a chunk)   store.add {stored:.2f} s   "
                  f"end to end {len(texts) / total:5,.0f} chunks/s")
        took, chunks = index_add_once(texts, root / "index")
        rates["index.add"] = chunks / took
        print(f"  Index.add on {len(texts) // 50} text files (read, hash, chunk, embed, store, optimize): "
              f"{chunks:,} chunks in {took:.2f} s -> {chunks / took:,.0f} chunks/s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rate = rates["default"]
    print(f"ratio default / numpy: {rates['default'] / rates['numpy']:.2f}x")
    print(f"goal: ingest >= {INGEST_GOAL:.0f} chunks/s end to end: {'PASS' if rate >= INGEST_GOAL else 'MISS'} "
          f"(embed + store {rate:,.0f} chunks/s; Index.add {rates['index.add']:,.0f} chunks/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    parser.add_argument("--centers", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.05, help="Gaussian noise per dimension around a center")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10_000, help="chunks per LanceStore.add call")
    parser.add_argument("--ingest", type=int, default=2000, help="text chunks for the ingest bench (0: skip)")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"home {os.environ['IMAGINE_HOME']}, {os.cpu_count()} CPUs")
    bench_vectors(args)
    if args.ingest:
        print()
        bench_ingest(args)


if __name__ == "__main__":
    main()
