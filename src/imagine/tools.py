"""Tools in any of the shapes people write them, as the one shape engines read.

A tool may be given as a Python function (its signature and docstring become the JSON schema), a pydantic
model class (its schema; the class docstring is the description), a `Tool`, or a dict in imagine's shape
`{"name", "description", "parameters"}`, OpenAI's `{"type": "function", "function": {...}}` or Anthropic's
`{"name", "description", "input_schema"}`. `spec_of` turns each into the dict shape; `Tool` keeps the
callable beside it so an agent can run what the model asked for, after `check_arguments` has validated
the model's arguments against the schema.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .errors import InputError

__all__ = ["Tool", "as_tool", "check_arguments", "spec_of"]


@dataclass(frozen=True)
class Tool:
    """A tool the model may call: its spec, the function that runs it, and what calling it may do.

    `side_effects`: it changes something (writes a file, spends money), so an agent asks before running it.
    `sends_data`: it sends data off the device (a cloud call, a URL fetch), so `local_only` forbids it."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] | None = field(default=None, compare=False)
    side_effects: bool = False
    sends_data: bool = False
    timeout: float = 120.0
    model: type[BaseModel] | None = field(default=None, compare=False)  # validates arguments when known

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def _description(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _function_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of the function's parameters (no *args/**kwargs: a model could not fill them)."""
    try:
        hints = get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: fall back to the raw annotations
        hints = dict(getattr(fn, "__annotations__", {}))
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InputError(f"tool {name!r} takes *{param.name}: a model can only pass named arguments",
                             hint="give the function explicit parameters")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    return create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


def as_tool(obj: Any, *, side_effects: bool | None = None, sends_data: bool | None = None) -> Tool:
    """Any accepted tool shape as a `Tool` (a dict or a pydantic class has no function to run)."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        schema = obj.model_json_schema()
        schema.pop("title", None)
        return Tool(obj.__name__, _description(obj), schema, model=obj)
    if callable(obj) and not isinstance(obj, dict):
        name = str(getattr(obj, "__name__", "") or "")
        if not name or name == "<lambda>":
            raise InputError("a tool function needs a name (a def, not a lambda)")
        model = _function_model(obj, name)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        marks = getattr(obj, "__imagine_tool__", {})
        return Tool(name, _description(obj), schema, fn=obj, model=model,
                    side_effects=marks.get("side_effects", False) if side_effects is None else side_effects,
                    sends_data=marks.get("sends_data", False) if sends_data is None else sends_data)
    from .engine import normalize_tools

    (spec,) = normalize_tools([obj])
    return Tool(spec["name"], spec["description"], spec["parameters"])


def spec_of(obj: Any) -> dict[str, Any] | Any:
    """The dict shape for a function, pydantic class or Tool; a dict is passed through for
    `normalize_tools` to check (so its errors keep naming the caller's own fields)."""
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, Tool) or callable(obj):
        return as_tool(obj).spec()
    return obj


def check_arguments(tool: Tool, arguments: Any) -> dict[str, Any]:
    """The model's arguments, validated against the tool's schema; an InputError says which field is wrong,
    so an agent can hand the message back to the model to try again."""
    if not isinstance(arguments, dict):
        raise InputError(f"tool {tool.name!r} needs a JSON object of arguments, got {type(arguments).__name__}")
    if tool.model is not None:
        try:
            tool.model.model_validate(arguments)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            raise InputError(f"tool {tool.name!r}: {where}: {err['msg']}") from None
        return dict(arguments)
    import jsonschema

    try:
        jsonschema.validate(arguments, tool.parameters)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "arguments"
        raise InputError(f"tool {tool.name!r}: {where}: {exc.message}") from None
    except jsonschema.SchemaError as exc:
        raise InputError(f"tool {tool.name!r} has an invalid schema: {exc.message}") from None
    return dict(arguments)
