"""Flows: declarative multimodal recipes (YAML) run over many items, cached, resumable, watched.

A surface above `client.py`: a flow takes a `Client` and runs every step through its tasks, so each
engine call is planned, routed and logged like any other. `Flow.load(path)` checks the whole file
(line and column in every error); `flow.run(...)` / `await flow.arun(...)` run it; `Flow.resume(run_id)`
finishes a run that stopped.
"""

from __future__ import annotations

from .flow import Flow, RunResult
from .spec import FlowError

__all__ = ["Flow", "FlowError", "RunResult"]
