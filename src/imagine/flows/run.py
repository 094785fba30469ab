"""The local runner: items through the step DAG on asyncio, cached, resumable, watched.

The runner owns what one run needs (the Client, the run state, one concurrency lane per engine) and hands
the items to an `Executor`. `LocalExecutor` runs them as asyncio tasks in this process; another executor
(Ray, a later phase) only has to call `Runner.run_item` for each item and hand back its record, because
everything an item needs — cache, state, outputs — is reached through the runner, keyed by content.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, Sequence

from ..errors import ImagineError, InputError, OptionsError
from ..parts import Data, Part, Segments, Text, Vector
from .graph import TASKS, engine_of
from .inputs import Item, input_value, items_of
from .spec import FlowError, InputSpec, StepSpec
from .steps import (Context, Missing, StepOutcome, cache_key, call_task, check_when, load_cached,
                    output_value, resolve, save_cached, step_args, text_of)

if TYPE_CHECKING:
    from ..client import Client
    from .flow import Flow
    from .state import RunState

__all__ = ["Executor", "ItemWork", "LocalExecutor", "Progress", "Runner", "summary"]

Progress = Callable[[str, str, str], None]  # (step or "item", item key, status); ("total", "", count) first


class Executor(Protocol):
    """Runs `work` over the items and calls `done` with each record as it finishes."""

    async def map(self, items: Sequence[Item], work: Callable[[Item], Awaitable[dict[str, Any]]],
                  done: Callable[[dict[str, Any]], None]) -> None: ...


class LocalExecutor:
    """Items as asyncio tasks in this process; engines' lanes (in the runner) bound the real work, this
    only bounds how many items are open at once."""

    def __init__(self, max_items: int = 32) -> None:
        self.max_items = max_items

    async def map(self, items: Sequence[Item], work: Callable[[Item], Awaitable[dict[str, Any]]],
                  done: Callable[[dict[str, Any]], None]) -> None:
        gate = asyncio.Semaphore(self.max_items)

        async def one(item: Item) -> None:
            async with gate:
                done(await work(item))

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class ItemWork:
    """`runner.run_item(item, inputs)` as a callable that still says which runner and inputs it uses."""

    runner: "Runner"
    inputs: dict[str, Any]

    def __call__(self, item: Item | None) -> Awaitable[dict[str, Any]]:
        return self.runner.run_item(item, self.inputs)


class StepFailed(Exception):
    def __init__(self, step: str, message: str, policy: str) -> None:
        super().__init__(message)
        self.step, self.policy = step, policy


def summary(value: Any) -> Any:
    """How a value appears in the manifest: text and data inline, media by hash."""
    if isinstance(value, Text):
        return value.text
    if isinstance(value, Data):
        return value.value
    if isinstance(value, Vector):
        return {"kind": "vector", "dim": len(value.values), "sha256": value.sha256}
    if isinstance(value, Segments):
        return {"kind": "segments", "items": [{"start": s.start, "end": s.end, "text": s.text} for s in value.items]}
    if isinstance(value, Part):
        return {"kind": value.modality.value, "mime": value.mime, "sha256": value.sha256}
    return value


@dataclass
class Runner:
    flow: "Flow"
    client: "Client"
    state: "RunState"
    run_id: str
    out_dir: Path
    progress: Progress | None = None
    lanes: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    collected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    # -- lanes ------------------------------------------------------------------------------------
    def _lane(self, flow: "Flow", step: StepSpec) -> asyncio.Semaphore:
        engine_id = engine_of(step, self.client.registry) if TASKS[step.task or ""].engine else None
        name = engine_id or ("auto" if TASKS[step.task or ""].engine else "cpu")
        if name not in self.lanes:
            limits = {**self.flow.spec.concurrency, **flow.spec.concurrency}
            limit = limits.get(name) or limits.get("default")
            if limit is None:
                locality = "cloud"
                if engine_id:
                    locality = getattr(self.client.registry.engine_class(engine_id), "locality", "local")
                limit = 8 if locality == "cloud" else (4 if name == "cpu" else 1)
            self.lanes[name] = asyncio.Semaphore(max(1, int(limit)))
        return self.lanes[name]

    def _say(self, step: str, key: str, status: str) -> None:
        if self.progress is not None:
            self.progress(step, key, status)

    def work(self, inputs: dict[str, Any]) -> "ItemWork":
        """What an executor calls per item; it carries the runner, so an executor that runs items in other
        processes (Ray) can rebuild one there from the flow file, the settings and the run id."""
        return ItemWork(self, inputs)

    # -- one item -----------------------------------------------------------------------------------
    async def run_item(self, item: Item | None, inputs: dict[str, Any]) -> dict[str, Any]:
        """Every step of the flow for one item; the item's record for the state and the manifest."""
        key = item.key if item is not None else "-"
        ctx = Context(item, inputs)
        record: dict[str, Any] = {"key": key, "index": item.index if item else 0,
                                  "item": item.record() if item else {}, "status": "done", "error": None,
                                  "steps": {}, "outputs": {}, "files": {}}
        try:
            outcomes = await self.run_steps(self.flow, ctx, key)
        except StepFailed as exc:
            record.update(status="failed" if exc.policy == "fail" else "skipped", error=f"{exc.step}: {exc}")
            outcomes = getattr(exc, "outcomes", {})
        for name, outcome in outcomes.items():
            record["steps"][name] = {"status": outcome.status, "error": outcome.error, **outcome.provenance,
                                     "outputs": {k: summary(v) for k, v in outcome.values.items()}}
        if record["status"] == "done":
            try:
                self._write_outputs(ctx, record)
            except (ImagineError, OSError) as exc:
                record.update(status="failed", error=f"outputs: {exc}")
        self._say("item", key, record["status"])
        return record

    async def run_steps(self, flow: "Flow", ctx: Context, key: str) -> dict[str, StepOutcome]:
        """The DAG for one item: each step starts as soon as the steps it reads have finished."""
        outcomes: dict[str, StepOutcome] = {}
        graph = flow.graph
        finished: dict[str, asyncio.Future[None]] = {n: asyncio.get_running_loop().create_future() for n in graph.order}

        async def one(name: str) -> None:
            try:
                for dep in graph.deps[name]:
                    await finished[dep]
                outcomes[name] = await self._step(flow, name, ctx, key)
                if outcomes[name].status not in ("skipped",):
                    ctx.steps[name] = outcomes[name].values
                finished[name].set_result(None)
            except BaseException as exc:
                finished[name].set_exception(exc)
                raise

        tasks = [asyncio.ensure_future(one(n)) for n in graph.order]
        try:
            await asyncio.gather(*tasks)
        except StepFailed as exc:
            exc.outcomes = outcomes  # type: ignore[attr-defined]
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for fut in finished.values():
                if fut.done() and not fut.cancelled():
                    fut.exception()  # read: no "exception was never retrieved"
        return outcomes

    async def _step(self, flow: "Flow", name: str, ctx: Context, key: str) -> StepOutcome:
        step = flow.spec.steps[name]
        try:
            if step.when is not None and not check_when(step.when, ctx):
                self._say(name, key, "skipped")
                return StepOutcome("skipped")
            if step.flow is not None:
                outcome = await self._subflow(flow, name, step, ctx, key)
            else:
                outcome = await self._task(flow, step, ctx)
        except Missing as exc:
            self._say(name, key, "skipped")
            return StepOutcome("skipped", error=f"needs step {exc} which did not run")
        except StepFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure goes through on_error
            message = str(exc) if isinstance(exc, ImagineError) else f"{type(exc).__name__}: {exc}"
            if step.on_error == "default":
                values = {k: v if isinstance(v, Part) else Text(text_of(v))
                          for k, v in resolve(step.default or {}, ctx).items()}
                self._say(name, key, "default")
                return StepOutcome("default", values, error=message)
            self._say(name, key, "failed")
            raise StepFailed(name, message, step.on_error) from None
        if step.save:
            self._save(step, outcome, ctx)
        self._say(name, key, outcome.status)
        return outcome

    async def _task(self, flow: "Flow", step: StepSpec, ctx: Context) -> StepOutcome:
        args = step_args(step, ctx, self.client)
        key = cache_key(step, args, self.client)
        cached = load_cached(key, self.client, self.state)
        if cached is not None:
            return cached
        lane = self._lane(flow, step)
        attempt = 0
        while True:
            try:
                async with lane:
                    outcome = await call_task(step, args, self.client)
                break
            except (InputError, OptionsError):
                raise  # the same input fails the same way: no retry
            except ImagineError:
                if attempt >= step.retries:
                    raise
                await asyncio.sleep(step.backoff * (2 ** attempt))
                attempt += 1
        outcome.provenance["attempts"] = attempt + 1
        save_cached(key, outcome, self.client, self.state)
        return outcome

    async def _subflow(self, flow: "Flow", name: str, step: StepSpec, ctx: Context, key: str) -> StepOutcome:
        sub = flow.graph.subflows[name]
        bound = {k: resolve(v, ctx) for k, v in step.inputs.items()}
        for k, spec in sub.spec.inputs.items():
            if k not in bound:
                bound[k] = input_value(k, spec, sub.base)
        subctx = Context(None, bound)
        outcomes = await self.run_steps(sub, subctx, f"{key}/{name}")
        values: dict[str, Part] = {}
        for out, o in sub.spec.outputs.items():
            try:
                value = output_value(o.from_, subctx)
            except Missing:
                continue
            values[out] = value if isinstance(value, Part) else Text(text_of(value))
        cached = all(o.status == "cached" for o in outcomes.values())
        return StepOutcome("cached" if cached else "done", values,
                           {"flow": str(sub.path), "steps": {n: {"status": o.status, **o.provenance}
                                                             for n, o in outcomes.items()}})

    # -- files --------------------------------------------------------------------------------------
    def _target(self, template: str, ctx: Context) -> Path:
        name = text_of(resolve(template, ctx)).strip()
        path = (self.out_dir / name).resolve()
        if not name or not path.is_relative_to(self.out_dir.resolve()):
            raise InputError(f"output file {name!r} is not a path inside the output folder")
        return path

    def _write(self, path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, (Text, str)):
            path.write_text(text_of(value), encoding="utf-8")
        elif isinstance(value, (Data, Vector, Segments)):
            path.write_text(json.dumps(summary(value), indent=2, default=str), encoding="utf-8")
        elif isinstance(value, Part):
            path.write_bytes(value.content_bytes())
        else:
            path.write_text(json.dumps(value, default=str), encoding="utf-8")

    def _save(self, step: StepSpec, outcome: StepOutcome, ctx: Context) -> None:
        main = TASKS[step.task].main if step.task else next(iter(outcome.values), "")
        if main in outcome.values and step.save:
            self._write(self._target(step.save, ctx), outcome.values[main])

    def _write_outputs(self, ctx: Context, record: dict[str, Any]) -> None:
        for out, o in self.flow.spec.outputs.items():
            try:
                value = output_value(o.from_, ctx)
            except Missing:
                continue
            record["outputs"][out] = summary(value)
            if o.file is None:
                continue
            if o.file.endswith(".jsonl") and "${" not in o.file:  # one line per item, written at the end
                continue
            path = self._target(o.file, ctx)
            self._write(path, value)
            record["files"][out] = str(path.relative_to(self.out_dir.resolve()))

    def write_collected(self, records: list[dict[str, Any]]) -> None:
        """The .jsonl outputs, rebuilt from every finished item (so a resumed run writes each line once)."""
        for out, o in self.flow.spec.outputs.items():
            if o.file is None or not o.file.endswith(".jsonl") or "${" in o.file:
                continue
            path = self.out_dir / o.file
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as fh:
                for r in records:
                    if r["status"] == "done" and out in r["outputs"]:
                        value = r["outputs"][out]
                        fields = value if isinstance(o.from_, dict) and isinstance(value, dict) else {out: value}
                        fh.write(json.dumps({"key": r["key"], **r["item"], **fields}, default=str) + "\n")


def for_each_input(flow: "Flow", overrides: dict[str, str], watch: str | None) -> tuple[str | None, dict[str, InputSpec]]:
    """The flow's inputs with `--input` overrides (and `--watch DIR` for the for_each input) applied."""
    specs = dict(flow.spec.inputs)
    for name, value in overrides.items():
        if name not in specs:
            raise FlowError(f"--input {name}: the flow has no input named {name!r} "
                            f"(inputs: {', '.join(specs) or 'none'})")
        specs[name] = InputSpec.from_path(os.path.abspath(os.path.expanduser(value)))  # from the caller's cwd
    each = flow.spec.for_each.removeprefix("inputs.") if flow.spec.for_each else None
    if watch is not None:
        if each is None:
            raise FlowError("--watch needs a flow with `for_each:` over a folder or glob input")
        old = specs[each]
        specs[each] = InputSpec(folder=os.path.abspath(watch), pattern=old.pattern if old.kind == "folder" else "*")
    return each, specs


def items_for(flow: "Flow", each: str | None, specs: dict[str, InputSpec]) -> tuple[list[Item | None], dict[str, Any]]:
    base = Path.cwd() if flow.base is None else flow.base
    inputs = {n: (input_value(n, s, base) if s.kind == "file" else None) for n, s in specs.items()}
    if each is None:
        return [None], {n: v if v is not None else input_value(n, specs[n], base) for n, v in inputs.items()}
    items: list[Item | None] = list(items_of(each, specs[each], base))
    for n, s in specs.items():
        if inputs[n] is None and n != each:
            inputs[n] = input_value(n, s, base)
    return items, inputs
