"""Option types several engines share, so the same option reads the same way everywhere."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

__all__ = ["StopStrings"]


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# `stop`: strings that end the answer; one string (`-o stop=END`) is taken as a list of one.
StopStrings = Annotated[list[str] | None, BeforeValidator(_listed)]
