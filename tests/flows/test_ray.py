"""The Ray executor against the local one: the same manifest and files over 20 items, one shared cache.

Engine calls happen in Ray worker processes, where the test's MockEngine instance cannot see them, so calls
are counted as rows of the log (every call is logged; a cached step is not a call). One local Ray (2 CPUs)
serves the whole module: starting it is most of the cost.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest

from imagine.flows import Flow

from ..helpers.cli import run
from ..helpers.flows import twenty, write

ray = pytest.importorskip("ray")

from imagine.flows.ray import RayExecutor, item_resources  # noqa: E402


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    executor = RayExecutor(num_cpus=2)
    executor.start()
    yield executor
    executor.close()


def calls(home: Path) -> int:
    """Engine calls so far: rows in the home's log."""
    with sqlite3.connect(home / "logs.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def essentials(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """What must match between executors: items, statuses, outputs, files, who made each step's value and
    its log row. Not timestamps; a step served from the cache counts as the step that made it."""
    out = []
    for item in manifest["items"]:
        steps = {name: {"status": "done" if s["status"] == "cached" else s["status"],
                        "outputs": s.get("outputs"), "engine": s.get("engine"), "log_id": s.get("log_id")}
                 for name, s in item["steps"].items()}
        out.append({k: item[k] for k in ("key", "index", "item", "status", "error", "outputs", "files")}
                   | {"steps": steps})
    return out


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_ray_then_local_same_manifest_and_the_local_run_is_all_cached(tmp_path, imagine_home, ray_executor):
    on_ray = Flow.load(twenty(tmp_path)).run(out=tmp_path / "ray", executor=ray_executor)
    assert on_ray.status == "done" and on_ray.manifest["counts"] == {"done": 20}
    assert calls(imagine_home) == 39  # item 3's second step is skipped by `when`
    assert {s["status"] for i in on_ray.items for s in i["steps"].values()} == {"done", "skipped"}
    assert (tmp_path / "ray" / "answers" / "0005.txt").read_text() == "again item 5"

    local = Flow.load(twenty(tmp_path)).run(out=tmp_path / "local")
    assert calls(imagine_home) == 39, "the local run is served from the cache the Ray workers filled"
    assert {s["status"] for i in local.items for s in i["steps"].values()} == {"cached", "skipped"}
    assert essentials(local.manifest) == essentials(on_ray.manifest)
    assert files(tmp_path / "local") == files(tmp_path / "ray")
    assert len((tmp_path / "ray" / "first.jsonl").read_text().splitlines()) == 20


def test_local_then_ray_is_served_from_the_cache(tmp_path, imagine_home, ray_executor):
    local = Flow.load(twenty(tmp_path)).run(out=tmp_path / "local")
    assert calls(imagine_home) == 39
    on_ray = Flow.load(twenty(tmp_path)).run(out=tmp_path / "ray", executor=ray_executor)
    assert calls(imagine_home) == 39, "no engine call in any Ray worker"
    assert {s["status"] for i in on_ray.items for s in i["steps"].values()} == {"cached", "skipped"}
    assert essentials(on_ray.manifest) == essentials(local.manifest)
    assert files(tmp_path / "ray") == files(tmp_path / "local")


def test_a_failing_item_is_skipped_on_ray_too(tmp_path, imagine_home, ray_executor):
    (tmp_path / "rows.csv").write_text("name,prompt\na,hello\nb,\nc,world\n")
    flow = Flow.load(write(tmp_path, """
        inputs:
          rows: {csv: rows.csv}
        for_each: rows
        steps:
          answer: {task: ask, model: mock, input: "${item.prompt}", on_error: skip, num_gpus: 0}
          louder: {task: ask, model: mock, input: "${answer.text}!"}
        outputs:
          out: {from: "${louder.text}"}
        """))
    result = flow.run(out=tmp_path / "out", executor=ray_executor)
    by_name = {i["item"]["name"]: i for i in result.items}
    assert result.status == "done" and result.manifest["counts"] == {"done": 2, "skipped": 1}
    assert by_name["b"]["status"] == "skipped" and "the prompt is empty" in by_name["b"]["error"]
    assert by_name["c"]["outputs"]["out"] == "world!"


def test_cli_on_an_existing_cluster(tmp_path, imagine_home, ray_executor):
    address = ray.get_runtime_context().gcs_address
    path = twenty(tmp_path)
    proc = run("flow", "run", str(path), "-O", str(tmp_path / "out"), "--executor", "ray", "--ray-address",
               address, "--json", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    said = json.loads(proc.stdout.strip().splitlines()[-1])
    assert said["status"] == "done" and said["counts"] == {"done": 20}
    assert calls(imagine_home) == 39
    assert (tmp_path / "out" / "answers" / "0019.txt").read_text() == "again item 19"


def test_an_item_reserves_its_hungriest_steps_gpus(tmp_path, mock_engine):
    flow = Flow.load(write(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: hi}
          b: {task: ask, model: mock, input: "${a.text}", num_gpus: 0.5}
        """))
    assert item_resources(flow) == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert flow.spec.steps["b"].digest() != flow.spec.steps["a"].digest()
    same = Flow.load(write(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: hi}
          b: {task: ask, model: mock, input: "${a.text}"}
        """, "g.yaml"))
    assert same.spec.steps["b"].digest() == flow.spec.steps["b"].digest(), "num_gpus does not change the cache key"


def test_a_flow_used_as_a_step_runs_on_ray(tmp_path, imagine_home, ray_executor):
    """Workers load the sub-flow file themselves (relative to the parent's folder) and run it per item."""
    write(tmp_path, """
        inputs:
          words: {file: words.txt}
        steps:
          loud: {task: ask, model: mock, input: "shout ${inputs.words}"}
          again: {task: ask, model: mock, input: "${loud.text}!", num_gpus: 0}
        outputs:
          result: {from: "${again.text}"}
          both: {from: {loud: "${loud.text}", again: "${again.text}"}}
        """, "shout.yaml")
    path = write(tmp_path, """
        inputs:
          rows: {list: [red, green, blue, gold]}
        for_each: rows
        steps:
          sub: {flow: shout.yaml, inputs: {words: "${item}"}}
          after: {task: ask, model: mock, input: "${sub.result} done"}
        outputs:
          out: {from: "${after.text}", file: "out/${item.name}.txt"}
          row: {from: {result: "${sub.result}", both: "${sub.both}"}, file: rows.jsonl}
        """)
    on_ray = Flow.load(path).run(out=tmp_path / "ray", executor=ray_executor)
    assert on_ray.status == "done" and on_ray.manifest["counts"] == {"done": 4}, on_ray.items
    assert calls(imagine_home) == 12, "three engine calls per item, all in the workers"
    inner = on_ray.items[2]["steps"]["sub"]
    assert inner["flow"] == str(tmp_path / "shout.yaml")
    assert {n: s["engine"] for n, s in inner["steps"].items()} == {"loud": "mock:echo", "again": "mock:echo"}
    assert all(s["log_id"] for s in inner["steps"].values())
    assert (tmp_path / "ray" / "out" / "0002.txt").read_text() == "shout blue! done"
    rows = [json.loads(line) for line in (tmp_path / "ray" / "rows.jsonl").read_text().splitlines()]
    assert rows[1]["result"] == "shout green!" and rows[1]["both"] == {"loud": "shout green", "again": "shout green!"}

    local = Flow.load(path).run(out=tmp_path / "local")
    assert calls(imagine_home) == 12, "the sub-flow's steps are served from the cache the workers filled"
    assert local.items[2]["steps"]["sub"]["status"] == "cached"
    assert essentials(local.manifest) == essentials(on_ray.manifest)
    assert files(tmp_path / "local") == files(tmp_path / "ray")
