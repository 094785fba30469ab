"""Grammar-constrained tool calls for llama.cpp: a model that was never taught to call tools still writes
calls that parse and fit the tool's schema.

Two grammars (GBNF, llama.cpp's grammar language), both in the `<tool_call>` syntax of tool_calls.py:

- `DECISION`: the first token of the answer is either the start of `<tool_call>` or anything that is not
  `<`. Sampled alone (one token, greedy), it is the model's own choice between calling a tool and answering
  (tool_choice "auto"); the answer is then generated without a grammar, which keeps it as fast as any other.
- `call_grammar(tools)`: one to four calls, each `{"name": <one of the tools>, "arguments": <that tool's
  parameters>}`. The arguments rule is llama-cpp-python's JSON-schema converter run on the tool's own
  schema, so required fields, types and enums hold by construction; a schema the converter cannot read falls
  back to "any JSON object" (the arguments are validated again above the engine either way).

Why two steps rather than `root ::= call | answer`: a grammar over free text checks every vocabulary token at
every step (about ten times slower on the bundled model), and the one token of decision is all that needs
constraining.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Sequence

__all__ = ["DECISION", "MAX_CALLS", "NoCallStart", "call_grammar", "compiled", "decides_to_call", "repeats_call"]

MAX_CALLS = 4  # calls in one answer; a small model may otherwise repeat its call until max_tokens

_BLOCK = re.compile(r"<tool_call>\n(.*?)(?:\n</tool_call>|$)", re.S)  # the last may be unfinished

DECISION = 'root ::= "<tool_call>" | [^<] [^\\x00]*\n'


def decides_to_call(first: str) -> bool:
    """Whether the first token sampled under `DECISION` starts a tool call."""
    return first.startswith("<")


def repeats_call(text: str) -> bool:
    """Whether the calls written so far end with one already made: a small model, free to add calls,
    writes the same one again and again, so generation stops at the first repeat."""
    blocks = [b.strip() for b in _BLOCK.findall(text)]
    return len(blocks) > 1 and blocks[-1] in blocks[:-1]


class NoCallStart:
    """A llama.cpp logits processor that keeps an answer from opening with `<` (a `<tool_call>` written as
    text), on its first token only: used when the answer must be text although the model leans to a call."""

    def __init__(self, llm: Any) -> None:
        banned = getattr(llm, "_imagine_call_starts", None)
        if banned is None:  # the few tokens that start with "<" (about 80 ms over a 50k vocabulary, once)
            banned = [i for i in range(llm.n_vocab()) if llm.detokenize([i]).lstrip().startswith(b"<")]
            llm._imagine_call_starts = banned
        self.banned = banned
        self.first = True

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.first:
            self.first = False
            scores[self.banned] = -float("inf")
        return scores


def _call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    parameters = tool.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "object", "properties": {"name": {"const": tool["name"]}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": False}


def _rules_for(tools: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """(GBNF rules, the rule name of each tool's call), from one converter so shared rules appear once."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                                raw_pattern=False)
    names = []
    for index, tool in enumerate(tools):
        rule = f"tool{index}"
        try:
            schema = converter.resolve_refs(json.loads(json.dumps(_call_schema(tool))), rule)
            names.append(converter.visit(schema, rule))
        except Exception:  # a schema feature the converter lacks: any object as arguments
            loose = {**tool, "parameters": {"type": "object"}}
            names.append(converter.visit(_call_schema(loose), rule))
    return converter.format_grammar(), names


def call_grammar(tools: Sequence[dict[str, Any]], only: Sequence[str] | None = None) -> str:
    """GBNF for one to MAX_CALLS `<tool_call>` blocks calling `tools` (or only those named in `only`)."""
    chosen = [t for t in tools if only is None or t["name"] in only]
    if not chosen:
        raise ValueError("no tool to call")
    rules, names = _rules_for(chosen)
    extra = " ".join(['("\\n" call)?'] * (MAX_CALLS - 1))
    return (f"{rules.rstrip()}\n"
            f'call ::= "<tool_call>\\n" ({" | ".join(names)}) "\\n</tool_call>"\n'
            f"root ::= call {extra}\n")


@functools.lru_cache(maxsize=64)
def compiled(grammar: str) -> Any:
    """The `LlamaGrammar` for a GBNF text, parsed once per process (tools rarely change between turns)."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(grammar, verbose=False)
