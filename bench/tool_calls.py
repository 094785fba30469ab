"""Tool-call success of the bundled SmolLM2-135M, with and without the grammar, in one run.

The same prompts and the same prompt text (the tools described in the system turn, the `<tool_call>` syntax
asked for) go to llama.cpp three ways:

- free: no grammar; the answer is parsed for `<tool_call>` blocks (what prompting alone gets);
- grammar: `tool_choice=required`, the engine's grammar-constrained call (the call is forced, its syntax and
  arguments follow the tool's schema);
- auto: the engine's default, where the model chooses with its first token between a call and an answer;
- meaning: what `imagine agent` does on llama.cpp (agents/choose.py): the prompt is embedded with MiniLM
  beside the tool's name and description, and a cosine of at least THRESHOLD forces that tool (else auto).

A success is one `get_weather` call whose arguments validate against the schema and name the city asked
about. The same modes also run on UNRELATED prompts (some close in topic: rain poems, climate, a city's
history), where any call is a false one. The cosine of every prompt to the tool is printed, so the
threshold's margin shows. Greedy decoding, so the figures are the same on every run (the embeddings may
move in the third decimal with the CPU's bf16 support).

    .venv/bin/python bench/tool_calls.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from imagine.agents.choose import THRESHOLD, closest_tool
from imagine.client import default_client
from imagine.engine import Request
from imagine.engines.minilm import cosine_similarity
from imagine.engines._support.tool_calls import ToolChoice, parse_tool_calls
from imagine.engines.llama_cpp import LlamaCppEngine
from imagine.errors import InputError
from imagine.events import ToolCall
from imagine.parts import Message, Text, Vector
from imagine.tools import as_tool, check_arguments


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


TOOL = as_tool(get_weather)
PROMPTS = [  # (prompt, the city it asks about)
    ("What's the weather in Paris?", "Paris"), ("Is it raining in London right now?", "London"),
    ("How hot is it in Tokyo today?", "Tokyo"), ("Tell me the weather for Berlin.", "Berlin"),
    ("What is the temperature in New York?", "New York"), ("Weather in Madrid please", "Madrid"),
    ("Do I need an umbrella in Seattle today?", "Seattle"), ("How cold is it in Moscow?", "Moscow"),
    ("What's the forecast for Rome?", "Rome"), ("Is it sunny in Sydney?", "Sydney"),
    ("Will it snow in Oslo tomorrow?", "Oslo"), ("Check the weather in Cairo for me.", "Cairo"),
    ("Is it windy in Chicago?", "Chicago"), ("What's it like outside in Lisbon?", "Lisbon"),
    ("Weather report for Toronto, please.", "Toronto"), ("How warm is Athens today?", "Athens"),
]


UNRELATED = [
    "What is the capital of France?", "Write a haiku about autumn.", "How do I sort a list in Python?",
    "Who wrote Hamlet?", "Translate 'good morning' to Spanish.", "What is 12 times 7?", "Tell me a joke.",
    "Explain photosynthesis briefly.", "What's a good name for a cat?", "How many legs does a spider have?",
    "Summarize the plot of Cinderella.", "What year did World War II end?", "Give me a synonym for happy.",
    "What does HTTP stand for?", "Recommend a book about history.", "How do I boil an egg?",
    "Write a poem about the rain.", "Why is the sky blue?", "What is climate change?",
    "Tell me about the history of London.",
]


def succeeded(calls: list[ToolCall], city: str) -> bool:
    """One get_weather call with valid arguments that name the city asked about."""
    if len(calls) != 1 or calls[0].name != "get_weather":
        return False
    try:
        args = check_arguments(TOOL, calls[0].arguments)
    except InputError:
        return False
    return city.lower() in str(args["city"]).lower()


def request(engine: LlamaCppEngine, prompt: str, **options: Any) -> Request:
    return Request(messages=(Message("user", [Text(prompt)]),), model="smollm2", tools=(TOOL.spec(),),
                   options=engine.parse_options({"temperature": 0, "seed": 0, "max_tokens": 80, **options}))


def free(engine: LlamaCppEngine, prompt: str) -> list[ToolCall]:
    """The same prompt text, generated without a grammar, then parsed."""
    req = request(engine, prompt)
    llm, _ = engine.load("smollm2")
    out = llm.create_chat_completion(messages=engine._chat_messages(req, ToolChoice("auto")), temperature=0,
                                     seed=0, max_tokens=80, repeat_penalty=1.0)
    return parse_tool_calls(out["choices"][0]["message"]["content"] or "")[1]


async def engine_calls(engine: LlamaCppEngine, prompt: str, **options: Any) -> list[ToolCall]:
    return [e async for e in engine.stream(request(engine, prompt, **options)) if isinstance(e, ToolCall)]


def by_meaning(engine: LlamaCppEngine, prompt: str) -> list[ToolCall]:
    """The agent's choice on llama.cpp: the tool forced when close enough in meaning, else the model's."""
    choice = asyncio.run(closest_tool(prompt, [TOOL], default_client()))
    options = {"tool_choice": choice.tool} if choice else {}
    return asyncio.run(engine_calls(engine, prompt, **options))


def similarities(prompts: list[str]) -> list[float]:
    from imagine import embed
    from imagine.agents.choose import _describe

    vectors = [p.values for p in embed([_describe(TOOL), *prompts], log=False).parts if isinstance(p, Vector)]
    return [round(cosine_similarity(vectors[0], v), 2) for v in vectors[1:]]


def main() -> None:
    engine = LlamaCppEngine()
    engine.load("smollm2")
    ways = {"free": lambda p: free(engine, p),
            "grammar": lambda p: asyncio.run(engine_calls(engine, p, tool_choice="required")),
            "auto": lambda p: asyncio.run(engine_calls(engine, p)),
            "meaning": lambda p: by_meaning(engine, p)}
    rates: dict[str, float] = {}
    for way, run in ways.items():
        t0 = time.perf_counter()
        wins = sum(succeeded(run(prompt), city) for prompt, city in PROMPTS)
        rates[way] = wins / len(PROMPTS)
        false = "" if way in ("grammar",) else \
            f"; false calls on {len(UNRELATED)} unrelated prompts: {sum(bool(run(p)) for p in UNRELATED)}"
        print(f"{way:8s} {wins:2d}/{len(PROMPTS)} = {rates[way]:.0%} successful calls "
              f"({(time.perf_counter() - t0) / len(PROMPTS) * 1000:.0f} ms a prompt{false})")
    weather, unrelated = similarities([p for p, _ in PROMPTS]), similarities(UNRELATED)
    print(f"cosine to the tool (threshold {THRESHOLD}): weather prompts {min(weather)}-{max(weather)} "
          f"{sorted(weather)}; unrelated {min(unrelated)}-{max(unrelated)} {sorted(unrelated)}")
    ratio = rates["grammar"] / rates["free"] if rates["free"] else float("inf")
    print(f"grammar / free: {ratio:.1f}x" if rates["free"] else
          f"grammar / free: {rates['grammar']:.0%} against 0% (prompting alone never made a valid call)")


if __name__ == "__main__":
    main()
