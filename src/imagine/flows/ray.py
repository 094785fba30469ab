"""The Ray executor (`imagine[ray]`, `--executor ray`): each item of a run is one Ray task.

Why it can be this small: everything an item needs is reached by content or by name — the flow file, the
client's settings (its home: the log, the blob store, flows.db with the step cache), the run id, the output
folder — so a worker process rebuilds its own `Client` and `Runner` from those and calls the same
`Runner.run_item` the local executor calls. Outputs, the manifest (written by the driver from the records
the tasks return) and the cache are therefore the ones the local executor makes, and a run on one executor
is served from the cache on the other. The workers must see the same file system as the driver (a local
Ray, or a cluster with the home and the output folder on a shared disk).

Ray is imported only here, when the executor is built, so `import imagine` and the CLI stay fast.
A Ray started here listens on loopback only, with no dashboard and no usage reporting.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from ..errors import ImagineError
from .inputs import Item

if TYPE_CHECKING:
    from ..client import Client
    from ..config import Settings
    from .flow import Flow
    from .run import Runner
    from .state import RunState

__all__ = ["RayExecutor", "item_resources", "run_item_in_worker"]

# Per worker process: one Client and RunState per settings, one loaded Flow per (settings, file, version).
# Ray reuses its workers, so the registry, its loaded models and the SQLite connections are built once per
# worker, not per item, nor per run of another flow file.
_CLIENTS: dict[str, tuple["Client", "RunState"]] = {}
_FLOWS: dict[tuple[str, str, str], "Flow"] = {}


def _import_ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    try:
        import ray
    except ImportError:
        raise ImagineError("the Ray executor needs Ray", hint="pip install 'imagine[ray]'") from None
    return ray


def item_resources(flow: "Flow", num_cpus: float = 1.0) -> dict[str, float]:
    """What one item's task reserves: `num_cpus`, and the largest `num_gpus` any of its steps asks for
    (sub-flows included) — the item's steps run in one task, so it holds what its hungriest step needs."""
    gpus = 0.0
    stack = [flow]
    while stack:
        f = stack.pop()
        gpus = max([gpus, *(float(s.num_gpus) for s in f.spec.steps.values())])
        stack.extend(f.graph.subflows.values())
    return {"num_cpus": num_cpus, "num_gpus": gpus}


def _worker(settings: "Settings", flow_path: str, flow_sha: str) -> tuple["Client", "Flow", "RunState"]:
    from ..client import Client
    from .flow import Flow
    from .spec import FlowError
    from .state import RunState

    known = settings.model_dump_json()
    if known not in _CLIENTS:
        _CLIENTS[known] = (Client(settings=settings), RunState(settings.home / "flows.db"))
    client, state = _CLIENTS[known]
    key = (known, flow_path, flow_sha)
    if key not in _FLOWS:
        flow = Flow.load(flow_path, client=client)
        if flow.sha != flow_sha:
            raise FlowError(f"{flow_path} changed while the run was going; run it again")
        _FLOWS[key] = flow
    return client, _FLOWS[key], state


def run_item_in_worker(settings: "Settings", flow_path: str, flow_sha: str, run_id: str, out_dir: str,
                       item: Item | None, inputs: dict[str, Any]) -> dict[str, Any]:
    """The body of a Ray task (plain Python, so it can be called and tested without Ray): one item on this
    process's own Client, exactly as `LocalExecutor` runs it; returns the item's record."""
    from .._bridge import run_sync
    from .run import Runner

    client, flow, state = _worker(settings, flow_path, flow_sha)
    runner = Runner(flow, client, state, run_id, Path(out_dir))
    return run_sync(runner.run_item(item, inputs))


def _failed(item: Item | None, message: str) -> dict[str, Any]:
    """The record of an item whose task died (a worker crash, an unpicklable value): failed, not lost."""
    return {"key": item.key if item else "-", "index": item.index if item else 0,
            "item": item.record() if item else {}, "status": "failed", "error": message,
            "steps": {}, "outputs": {}, "files": {}}


class RayExecutor:
    """Items as Ray tasks: on a Ray started in this process (`num_cpus` workers, loopback only) or, with
    `address`, on an existing cluster. `num_cpus` per item (`cpus_per_item`) and the flow's `num_gpus` are
    the task's resources; at most `max_in_flight` items are submitted at once (a big folder does not put
    every task in Ray's queue up front). A Ray that was already running (a test, a notebook) is reused and
    left running; one started here stops on `close()`."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_item: float = 1.0,
                 max_in_flight: int = 256) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_item, self.max_in_flight = cpus_per_item, max_in_flight
        self._ray: Any = None
        self._owned = False
        self._remote: Any = None

    def start(self) -> Any:
        """Connect to (or start) Ray once; the first run pays for it, later maps reuse it."""
        if self._ray is not None:
            return self._ray
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
            self._owned = True
        self._remote = ray.remote(max_retries=0)(run_item_in_worker)
        self._ray = ray
        return ray

    def close(self) -> None:
        if self._ray is not None and self._owned:
            self._ray.shutdown()
        self._ray, self._owned, self._remote = None, False, None

    async def map(self, items: Sequence[Item | None], work: Callable[[Item], Awaitable[dict[str, Any]]],
                  done: Callable[[dict[str, Any]], None]) -> None:
        from .run import ItemWork

        if not isinstance(work, ItemWork):
            raise TypeError("RayExecutor runs a flow's items (Flow.arun passes an ItemWork)")
        runner: Runner = work.runner
        if runner.flow.path is None:
            raise ImagineError("the Ray executor needs a flow loaded from a file (its workers load it again)")
        ray = await asyncio.to_thread(self.start)
        args = (runner.client.settings, str(runner.flow.path), runner.flow.sha, runner.run_id,
                str(runner.out_dir))
        task = self._remote.options(**item_resources(runner.flow, self.cpus_per_item))
        inputs_ref = ray.put(work.inputs)  # shared by every task, sent once
        gate = asyncio.Semaphore(self.max_in_flight)
        pending: set[Any] = set()

        async def one(item: Item | None) -> None:
            async with gate:
                ref = task.remote(*args, item, inputs_ref)
                pending.add(ref)
                try:
                    record = await asyncio.wrap_future(ref.future())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a dead task is a failed item, the rest go on
                    last = (str(exc).strip().splitlines() or [""])[-1]
                    record = _failed(item, f"ray: {type(exc).__name__}: {last}")
                pending.discard(ref)
                for step, info in record.get("steps", {}).items():
                    runner._say(step, record["key"], info.get("status", ""))
                runner._say("item", record["key"], record["status"])
                done(record)

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for ref in pending:  # interrupted: stop what is still running (finished items are already recorded)
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - best effort; a finished task cannot be cancelled
                    pass
