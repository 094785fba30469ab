"""Structured output by prompting, for engines that cannot constrain generation to a schema.

The schema goes into the instructions (`SCHEMA_NOTE`), the answer is checked as JSON against it
(`check_json`), and a failing answer gets exactly one repair turn showing what is wrong (`REPAIR_NOTE`).
Used by the transformers engine, and by the openai engine as the last resort for servers that take
neither `response_format` json_schema nor json_object.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REPAIR_NOTE", "SCHEMA_NOTE", "check_json", "schema_note"]

SCHEMA_NOTE = "Answer with only a JSON value that matches this JSON schema, and no other text:\n{schema}"
REPAIR_NOTE = "That answer is not valid: {problem}. Reply again with only the corrected JSON, matching the schema."


def schema_note(schema: dict[str, Any]) -> str:
    """The instruction that asks for JSON matching `schema` (compact, to spare context)."""
    return SCHEMA_NOTE.format(schema=json.dumps(schema, separators=(",", ":")))


def check_json(text: str, schema: dict[str, Any]) -> tuple[str, str | None]:
    """(the JSON text, None) when `text` is JSON valid against `schema`, else (text, what is wrong).
    A Markdown code fence around the JSON is dropped: models add one even when told not to."""
    import jsonschema

    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return body, f"it is not valid JSON ({exc.msg} at char {exc.pos})"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return body, f"it does not match the schema at {where}: {exc.message}"
    return body, None
