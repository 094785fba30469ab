"""`Flow`: a checked flow file, and the one way to run, resume and watch it.

    flow = Flow.load("speech_check.yaml")       # every check runs here, errors name line:column
    result = flow.run(out="out/")               # or: await flow.arun(...)
    result.manifest["items"][0]["steps"]["hear"]["engine"]

A run takes a `Client` (the default one unless given): its registry runs the engines, its store keeps the
log and the blobs (the step cache lives there too), its home keeps `flows.db` (run state).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .graph import Graph
from .spec import FlowError, FlowSpec, Marks, load_spec
from .state import RunState, new_run_id

if TYPE_CHECKING:
    from ..client import Client
    from .run import Executor, Progress

__all__ = ["Flow", "RunResult"]


@dataclass
class RunResult:
    run_id: str
    status: str  # done | failed | interrupted
    out_dir: Path
    manifest: dict[str, Any]

    @property
    def items(self) -> list[dict[str, Any]]:
        return list(self.manifest["items"])

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"


class Flow:
    """A loaded, validated flow file (see the module docstring)."""

    def __init__(self, spec: FlowSpec, marks: Marks, path: Path | None, sha: str, graph: Graph) -> None:
        self.spec, self.marks, self.path, self.sha, self.graph = spec, marks, path, sha, graph
        self.base = path.parent if path is not None else None

    @classmethod
    def load(cls, path: str | Path, *, client: "Client | None" = None, _stack: tuple[Path, ...] = ()) -> "Flow":
        """Read and check the flow (and the flows it uses as steps); a FlowError names line and column."""
        path = Path(path).expanduser().resolve()
        spec, marks, sha = load_spec(path)
        graph = Graph(spec, marks)
        for name, step in spec.steps.items():
            if step.flow is None:
                continue
            sub_path = (path.parent / step.flow).resolve()
            if sub_path in (*_stack, path):
                raise marks.error(("steps", name, "flow"), f"flow {step.flow!r} uses itself (a cycle)")
            if not sub_path.is_file():
                raise marks.error(("steps", name, "flow"), f"no flow file {step.flow!r} (looked at {sub_path})")
            sub = cls.load(sub_path, client=client, _stack=(*_stack, path))
            if sub.spec.for_each is not None:
                raise marks.error(("steps", name, "flow"), f"flow {step.flow!r} has for_each; a flow used as a "
                                  "step runs once per item of this one")
            unknown = set(step.inputs) - set(sub.spec.inputs)
            if unknown:
                raise marks.error(("steps", name, "inputs", sorted(unknown)[0]),
                                  f"flow {step.flow!r} has no input {sorted(unknown)[0]!r}", key=True,
                                  hint=f"its inputs: {', '.join(sub.spec.inputs) or '(none)'}")
            graph.subflows[name] = sub
        graph.check(cls._client(client).registry)
        return cls(spec, marks, path, sha, graph)

    @staticmethod
    def _client(client: "Client | None") -> "Client":
        from ..client import default_client

        return client or default_client()

    @property
    def name(self) -> str:
        return self.spec.name or (self.path.stem if self.path else "flow")

    def output_kinds(self) -> dict[str, str]:
        """What this flow gives when used as a step: its outputs, with the modality each will have."""
        return {name: self.graph.kind_of(o.from_) for name, o in self.spec.outputs.items()}

    def show(self) -> str:
        """The DAG as text: inputs, the item loop, each step with what it reads, the outputs."""
        lines = [f"flow {self.name}" + (f" — {self.spec.description}" if self.spec.description else "")]
        for name, inp in self.spec.inputs.items():
            lines.append(f"  input {name}: {inp.kind} {getattr(inp, inp.kind)!r}")
        if self.spec.for_each:
            lines.append(f"  for each item of {self.spec.for_each}:")
        for name in self.graph.order:
            step = self.spec.steps[name]
            what = f"task {step.task}" if step.task else f"flow {step.flow}"
            model = f" [{step.model or step.policy}]" if step.model or step.policy else ""
            deps = sorted(self.graph.deps[name])
            gives = ", ".join(self.graph.gives[name])
            lines.append(f"    {name}: {what}{model} <- {', '.join(deps) or 'inputs'}  -> {gives}"
                         + (f"  (when {step.when.op})" if step.when else ""))
        for name, o in self.spec.outputs.items():
            src = (o.from_.replace("\n", "\\n") if isinstance(o.from_, str)  # one line per output
                   else "{" + ", ".join(f"{k}: {v}" for k, v in o.from_.items()) + "}")
            lines.append(f"  output {name}: {src}" + (f" -> {o.file}" if o.file else ""))
        return "\n".join(lines)

    # -- running ------------------------------------------------------------------------------------
    def run(self, inputs: dict[str, str] | None = None, out: str | Path | None = None, **kwargs: Any) -> RunResult:
        """`arun` from sync code."""
        from .._bridge import run_sync

        return run_sync(self.arun(inputs, out, **kwargs))

    async def arun(self, inputs: dict[str, str] | None = None, out: str | Path | None = None, *,
                   client: "Client | None" = None, run_id: str | None = None, watch: str | None = None,
                   poll: float = 1.0, stop: asyncio.Event | None = None, progress: "Progress | None" = None,
                   executor: "Executor | None" = None) -> RunResult:
        """Run every item (or, with `run_id`, the items that run has not finished). `watch`: keep polling
        that folder for new files until `stop` is set or the task is cancelled."""
        from .run import LocalExecutor, Runner, for_each_input, items_for

        client = self._client(client)
        state = RunState(client.settings.home / "flows.db")
        overrides = dict(inputs or {})
        try:
            if run_id is None:
                run_id = new_run_id()
                out_dir = Path(out).expanduser().resolve() if out else client.settings.home / "flows" / run_id
                state.start_run(run_id, str(self.path), self.spec.name, self.sha,
                                {**overrides, **({"--watch": watch} if watch else {})}, str(out_dir))
            else:
                row = state.run(run_id)
                if row is None:
                    raise FlowError(f"no flow run {run_id!r}", hint="see `imagine flow runs`")
                out_dir = Path(row["out_dir"])
                state.set_status(run_id, "running")
            out_dir.mkdir(parents=True, exist_ok=True)
            each, specs = for_each_input(self, overrides, watch)
            runner = Runner(self, client, state, run_id, out_dir, progress)
            executor = executor or LocalExecutor()
            records = {k: r for k, r in state.items(run_id).items() if r["status"] in ("done", "skipped")}
            failed: list[str] = []
            sizes: dict[str, int] = {}

            def done(record: dict[str, Any]) -> None:
                state.finish_item(run_id, record["key"], record["index"], record["status"], record)
                records[record["key"]] = record
                if record["status"] == "failed":
                    failed.append(f"item {record['key']}: {record['error']}")

            while True:
                items, values = items_for(self, each, specs)
                todo = [i for i in items if (i.key if i else "-") not in records]
                if watch is not None:  # a file still growing waits for the next poll
                    ready: list[Any] = []
                    for item in todo:
                        assert item is not None
                        size = Path(item.fields["path"]).stat().st_size
                        if sizes.get(item.key) == size:
                            ready.append(item)
                        sizes[item.key] = size
                    todo = ready
                if todo:
                    if progress is not None:
                        progress("total", "", str(len(todo) + len(records)))
                    await executor.map(todo, runner.work(values), done)  # type: ignore[arg-type]
                    self._finish(runner, records, run_id, "running" if watch else "done", out_dir)
                if watch is None or failed or (stop is not None and stop.is_set()):
                    break
                await asyncio.sleep(poll)
            status = "failed" if failed else "done"
            state.set_status(run_id, status, failed[0] if failed else None)
            manifest = self._finish(runner, records, run_id, status, out_dir)
            return RunResult(run_id, status, out_dir, manifest)
        except (asyncio.CancelledError, KeyboardInterrupt):
            if run_id is not None and state.run(run_id) is not None:
                state.set_status(run_id, "interrupted")
            raise
        finally:
            state.close()

    def _finish(self, runner: Any, records: dict[str, dict[str, Any]], run_id: str, status: str,
                out_dir: Path) -> dict[str, Any]:
        """Write the manifest (every item, its outputs, who made them, their log ids) and .jsonl outputs."""
        ordered = sorted(records.values(), key=lambda r: (r["index"], r["key"]))
        runner.write_collected(ordered)
        counts: dict[str, int] = {}
        for r in ordered:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        manifest = {"run_id": run_id, "flow": str(self.path), "name": self.name, "status": status,
                    "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "counts": counts,
                    "items": [{k: v for k, v in r.items() if k != "updated"} for r in ordered]}
        tmp = out_dir / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        tmp.replace(out_dir / "manifest.json")
        return manifest

    @staticmethod
    def resume(run_id: str, *, client: "Client | None" = None, **kwargs: Any) -> RunResult:
        """Finish a run that stopped (crash, Ctrl-C, SIGKILL): finished items are kept as they are."""
        from .._bridge import run_sync

        return run_sync(Flow.aresume(run_id, client=client, **kwargs))

    @staticmethod
    async def aresume(run_id: str, *, client: "Client | None" = None, **kwargs: Any) -> RunResult:
        client = Flow._client(client)
        state = RunState(client.settings.home / "flows.db")
        try:
            row = state.run(run_id)
        finally:
            state.close()
        if row is None:
            raise FlowError(f"no flow run {run_id!r}", hint="see `imagine flow runs`")
        flow = Flow.load(row["flow"], client=client)
        inputs = dict(row["inputs"])
        watch = inputs.pop("--watch", None)
        return await flow.arun(inputs, client=client, run_id=run_id, watch=watch, **kwargs)
