"""Tokens/s through `imagine.ask` vs raw `llama_cpp.Llama`, same model, prompt and token count, one run.

Both sides use the same loaded Llama object (so threads, context and caches match) and greedy decoding,
so they generate the identical token sequence; runs alternate so machine noise hits both alike.
Goal: ratio (imagine / raw) >= 0.95.

    .venv/bin/python bench/local_llm.py [--tokens 128] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import imagine  # noqa: E402
from imagine import get_registry  # noqa: E402

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def raw_run(llm, tokens: int) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    pieces = []
    prompt_tokens = None
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": PROMPT}], stream=True,
                                            temperature=0, seed=1, max_tokens=tokens):
        if prompt_tokens is None:
            prompt_tokens = llm.n_tokens
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            pieces.append(text)
    elapsed = time.perf_counter() - t0
    generated = llm.n_tokens - (prompt_tokens or 0) + 1
    return elapsed, generated, "".join(pieces)


def imagine_run(tokens: int) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    response = imagine.ask(PROMPT, "llama-cpp", temperature=0, seed=1, max_tokens=tokens, repeat_penalty=1.0,
                           log=False)  # the same sampling settings as the raw call
    pieces = list(response)
    elapsed = time.perf_counter() - t0
    return elapsed, response.usage.output_tokens, "".join(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    engine = get_registry().engine("llama-cpp")
    llm, _ = engine.load("smollm2")
    imagine_run(8)
    raw_run(llm, 8)  # warm both paths

    raw_rates, imagine_rates = [], []
    for i in range(args.runs):
        for name in (("raw", "imagine") if i % 2 == 0 else ("imagine", "raw")):
            elapsed, n, text = raw_run(llm, args.tokens) if name == "raw" else imagine_run(args.tokens)
            (raw_rates if name == "raw" else imagine_rates).append(n / elapsed)
            if name == "raw":
                raw_text = text
            else:
                imagine_text = text
    same = "identical" if raw_text == imagine_text else "DIFFERENT"
    raw, ours = statistics.median(raw_rates), statistics.median(imagine_rates)
    print(f"model: {engine.model_path('smollm2').name}, {args.tokens} tokens x {args.runs} runs, "
          f"{llm.n_threads if hasattr(llm, 'n_threads') else '?'} threads, output {same}")
    print(f"raw llama_cpp.Llama : {raw:7.1f} tokens/s (median; runs {', '.join(f'{r:.0f}' for r in raw_rates)})")
    print(f"imagine.ask         : {ours:7.1f} tokens/s (median; runs {', '.join(f'{r:.0f}' for r in imagine_rates)})")
    print(f"ratio imagine/raw   : {ours / raw:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
