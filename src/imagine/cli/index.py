"""`imagine index ...`, `imagine search` and `imagine memory ...`: build, search and forget."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["index", "memory", "print_answer", "search"]


def _client() -> Any:
    from ..client import default_client

    return default_client()


def _hit_payload(n: int, hit: Any) -> dict[str, Any]:
    chunk = hit.chunk
    return {"rank": n, "score": round(hit.score, 4), "similarity": None if hit.similarity is None else round(hit.similarity, 4),
            "citation": chunk.citation(), "source": chunk.source, "kind": chunk.kind, "page": chunk.page,
            "span": chunk.span, "box": chunk.box, "start": chunk.start, "end": chunk.end, "scene": chunk.scene,
            "text": chunk.text}


def _snippet(text: str, width: int = 100) -> str:
    from ..index.chunking import snippet

    return snippet(text, width)


@click.group()
def index() -> None:
    """Multimodal indexes over your files: add, list, show, rm, drop (search with `imagine search`)."""


@index.command("add")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@click.option("--embed-model", help="Text embedder for a new index (default: minilm, bundled).")
@click.option("--image-model", help="Image embedder for a new index, e.g. clip:FOLDER (default: none; images are "
                                    "found by their OCR text).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def add(name: str, paths: tuple[str, ...], embed_model: str | None, image_model: str | None, as_json: bool) -> None:
    """Add files, folders or globs to index NAME (created if new). Unchanged files are skipped; changed files
    replace their old chunks; files that cannot be read are reported and skipped."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..index import Index

    ix = Index(name, _client(), create=True, embedder=embed_model, image_embedder=image_model)
    if (embed_model and embed_model != ix.config.embedder) or (image_model and image_model != ix.config.image_embedder):
        from ..errors import InputError

        raise InputError(f"index {name!r} was made with embedder {ix.config.embedder}"
                         f"{' and image embedder ' + ix.config.image_embedder if ix.config.image_embedder else ''}",
                         hint="drop the --embed-model/--image-model options, or use a new index name")
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json or not console.is_terminal) as bars:
        task = bars.add_task("indexing", total=None)

        def step(done: int, total: int, label: str) -> None:
            bars.update(task, completed=done, total=total, description=label[-28:])

        report = ix.add(list(paths), progress=step)
    if as_json:
        click.echo(json.dumps({"index": name, "added": [{"file": f, "chunks": n} for f, n in report.added],
                               "unchanged": report.unchanged, "failed": [{"file": f, "error": e} for f, e in report.failed],
                               "chunks": report.chunks}, indent=2))
    else:
        for file, chunks in report.added:
            click.echo(f"added {file} ({chunks} chunk{'s' if chunks != 1 else ''})")
        for file, error in report.failed:
            click.echo(f"skipped {file}: {error}", err=True)
        click.echo(f"index {name}: {len(report.added)} added ({report.chunks} chunks), {len(report.unchanged)} "
                   f"unchanged, {len(report.failed)} failed", err=True)
    ix.close()
    if report.failed and not report.added and not report.unchanged:
        sys.exit(1)


@index.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """The indexes in this imagine home, with their file and chunk counts."""
    from ..index import Index, index_names

    client = _client()
    rows = []
    for name in index_names(client):
        ix = Index(name, client)
        rows.append(ix.info())
        ix.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no indexes yet: imagine index add NAME FILES...")
    for row in rows:
        click.echo(f"{row['name']:<20} {row['files']:>6} files {row['chunks']:>8} chunks  {row['backend']}, "
                   f"{row['embedder']}{', ' + row['image_embedder'] if row['image_embedder'] else ''}")


@index.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show(name: str, as_json: bool) -> None:
    """The files in index NAME: kind, chunks, content hash."""
    from ..index import Index

    ix = Index(name, _client())
    sources = sorted(ix.sources().values(), key=lambda r: r.source)
    if as_json:
        click.echo(json.dumps({**ix.info(), "sources": [r.__dict__ for r in sources]}, indent=2))
    else:
        for record in sources:
            click.echo(f"{record.kind:<6} {record.chunks:>5} chunks  {record.hash[:12]}  {record.source}")
    ix.close()


@index.command("rm")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
def rm(name: str, paths: tuple[str, ...]) -> None:
    """Remove files from index NAME (their chunks go with them)."""
    from ..index import Index

    ix = Index(name, _client())
    removed = ix.remove(list(paths))
    click.echo(f"removed {len(paths)} file{'s' if len(paths) != 1 else ''} ({removed} chunks) from {name}")
    ix.close()


@index.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
def drop(name: str, yes: bool) -> None:
    """Delete index NAME entirely (your files are not touched)."""
    from ..index import Index

    ix = Index(name, _client())
    if not yes:
        click.confirm(f"delete index {name!r} ({ix.store.count()} chunks)?", abort=True)
    ix.drop()
    click.echo(f"dropped {name}")


@click.command()
@click.argument("name")
@click.argument("query", nargs=-1)
@click.option("-a", "--attach", type=click.Path(), help="Search by this image (its picture and its text).")
@click.option("-k", "--top", "k", default=5, show_default=True, type=click.IntRange(1, 100))
@click.option("--kind", multiple=True, help="Only chunks of this kind: text, pdf, image, audio, video (repeatable).")
@click.option("--mode", type=click.Choice(["hybrid", "vector", "text"]), default="hybrid", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def search(name: str, query: tuple[str, ...], attach: str | None, k: int, kind: tuple[str, ...], mode: str,
           as_json: bool) -> None:
    """Search index NAME for QUERY (or -a IMAGE); prints ranked hits with where each came from."""
    from ..errors import InputError
    from ..index import Index

    ix = Index(name, _client())
    text = " ".join(query).strip()
    if attach and text:
        raise InputError("give either words or -a IMAGE, not both")
    where = {"kind": list(kind)} if kind else None
    hits = ix.search(Path(attach) if attach else text, k, where=where, mode=mode)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps([_hit_payload(n, h) for n, h in enumerate(hits, start=1)], indent=2))
    elif not hits:
        click.echo("no hits")
    for n, hit in enumerate(hits if not as_json else [], start=1):
        close = f"  (similarity {hit.similarity:.2f})" if hit.similarity is not None else ""
        click.echo(f"{n}. {hit.chunk.citation()}{close}\n   {_snippet(hit.chunk.text)}")
    ix.close()


def print_answer(result: Any, as_json: bool) -> None:
    """An index answer: streamed text, then the numbered sources it could cite."""
    if as_json:
        click.echo(json.dumps(result.payload(), indent=2))
        return
    if result.response is None:
        click.echo(result.text())
        return
    for delta in result.response:
        click.echo(delta, nl=False)
        sys.stdout.flush()
    click.echo("\n\nSources:")
    click.echo(result.sources_text())


@click.group()
def memory() -> None:
    """What `ask --memory` and `chat --memory` remember: list, forget."""


@memory.command("list")
@click.option("--json", "as_json", is_flag=True)
def memory_list(as_json: bool) -> None:
    """Remembered turns, oldest first, with the id `forget` takes."""
    from ..index.memory import Memory

    items = Memory(_client()).list()
    if as_json:
        click.echo(json.dumps([{"id": c.source.removeprefix("memory:"), **dict(c.meta)} for c in items], indent=2))
        return
    if not items:
        click.echo("nothing remembered (use ask --memory or chat --memory)")
    for chunk in items:
        click.echo(f"{chunk.source.removeprefix('memory:')}  {chunk.meta.get('when', '')}  "
                   f"{_snippet(str(chunk.meta.get('summary') or chunk.text), 90)}")


@memory.command("forget")
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Forget everything.")
def memory_forget(ids: tuple[str, ...], everything: bool) -> None:
    """Forget the memories with these IDS (see `memory list`), or --all."""
    from ..errors import InputError
    from ..index.memory import Memory

    if not ids and not everything:
        raise InputError("name the memories to forget, or --all", hint="imagine memory list")
    count = Memory(_client()).forget(list(ids), everything=everything)
    click.echo(f"forgot {count} memor{'y' if count == 1 else 'ies'}")
