"""Chat completions end to end: a real uvicorn server driven by the official openai SDK (sync, async,
streaming), on the mock engine (deterministic echo) and the bundled SmolLM2 through llama.cpp."""

from __future__ import annotations

import base64
import json

import pytest

from imagine.parts import Audio, Image

from ..helpers.media import png_bytes, wav_bytes

openai = pytest.importorskip("openai")

USER = [{"role": "user", "content": "hello there world"}]


def test_sync_chat_answers_logs_and_names_its_log_row(server):
    raw = server.openai().chat.completions.with_raw_response.create(model="mock", messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello there world"
    assert completion.choices[0].finish_reason == "stop" and completion.model == "mock:echo"
    assert completion.usage.completion_tokens == 3 and completion.usage.total_tokens == 6
    log_id = raw.headers["x-imagine-log-id"]
    row = server.client.store.get(log_id)
    assert row["id"] == log_id and completion.id == "chatcmpl-" + log_id


def test_streaming_chat_with_usage(server):
    chunks = list(server.openai().chat.completions.create(
        model="mock", messages=USER, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there world"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


async def test_async_chat_and_stream(server):
    client = server.async_openai()
    completion = await client.chat.completions.create(model="mock", messages=USER, seed=3)
    assert completion.choices[0].message.content == "hello there world"
    stream = await client.chat.completions.create(model="mock", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "hello there world"
    await client.close()


def test_n_choices_and_the_cap(server):
    completion = server.openai().chat.completions.create(model="mock", messages=USER, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert {c.message.content for c in completion.choices} == {"hello there world"}
    with pytest.raises(openai.BadRequestError) as err:
        server.openai().chat.completions.create(model="mock", messages=USER, n=99)
    assert err.value.body["param"] == "n"


def test_system_history_and_options_reach_the_engine(server):
    mock = server.mock()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}]
    # temperature and top_p are not mock options: dropped for this engine; max_tokens and seed are
    server.openai().chat.completions.create(model="mock", messages=messages, temperature=0.2, top_p=0.5,
                                            max_tokens=5, seed=7)
    request = mock.requests[-1]
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "user"]
    assert request.options.max_tokens == 5 and request.options.seed == 7


def test_a_wrong_engine_option_is_a_400_naming_it(server):
    with pytest.raises(openai.BadRequestError, match="unknown option 'bogus'"):
        server.openai().chat.completions.create(model="mock", messages=USER, extra_body={"options": {"bogus": 1}})


def test_image_data_url_reaches_an_engine_that_takes_images(server):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}]
    completion = server.openai().chat.completions.create(model="mock", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == "what is this"
    parts = server.mock().requests[-1].messages[-1].parts
    assert isinstance(parts[1], Image) and parts[1].data == png_bytes()


def test_image_to_a_text_only_engine_is_a_clear_400(server):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(openai.BadRequestError, match="does not take image input"):
        server.openai().chat.completions.create(model="llama-cpp", messages=[{"role": "user", "content": content}])


def test_bad_image_urls_name_the_field(server):
    for url, words in [("data:image/png;base64,@@@", "not valid base64"),
                       ("data:text/plain;base64,aGk=", "not an image"),
                       ("file:///etc/passwd", "must be a data: URL")]:
        content = [{"type": "image_url", "image_url": {"url": url}}]
        with pytest.raises(openai.BadRequestError, match=words) as err:
            server.openai().chat.completions.create(model="mock", messages=[{"role": "user", "content": content}])
        assert err.value.body["param"] == "messages[0].content[0].image_url.url"


def test_input_audio_becomes_an_audio_part(server):
    data = base64.b64encode(wav_bytes()).decode()
    content = [{"type": "text", "text": "transcribe"},
               {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]
    server.openai().chat.completions.create(model="mock", messages=[{"role": "user", "content": content}])
    assert isinstance(server.mock().requests[-1].messages[-1].parts[1], Audio)


def test_json_object_and_json_schema_on_the_mock(server):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    server.mock().enqueue('{"a": 1}')
    completion = server.openai().chat.completions.create(
        model="mock", messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert json.loads(completion.choices[0].message.content) == {"a": 1}
    assert server.mock().requests[-1].schema == schema
    server.mock().enqueue('{"b": 2}')
    completion = server.openai().chat.completions.create(model="mock", messages=USER,
                                                         response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content) == {"b": 2}


def test_tools_on_an_engine_without_them_is_a_400(server):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(openai.BadRequestError, match="cannot call tools"):
        server.openai().chat.completions.create(model="mock", messages=USER, tools=tools)


@pytest.mark.llm
def test_bundled_llama_chat_and_json_schema(server):
    client = server.openai()
    completion = client.chat.completions.create(model="llama-cpp", messages=[{"role": "user", "content": "Say hi"}],
                                                max_tokens=8, temperature=0, seed=1)
    assert completion.choices[0].message.content and completion.model == "llama-cpp:smollm2"
    assert completion.usage.prompt_tokens > 0 and 0 < completion.usage.completion_tokens <= 8
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Ada is 36. Give her name and age as JSON."}],
        max_tokens=40, temperature=0, response_format={"type": "json_schema", "json_schema": {
            "name": "person", "schema": schema, "strict": True}})
    value = json.loads(completion.choices[0].message.content)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)


@pytest.mark.llm
def test_a_later_turn_reports_the_prompt_tokens_it_did_not_read_again(server):
    """llama.cpp keeps the conversation's KV prefix; usage says how much of the prompt it reused, where
    OpenAI does (prompt_tokens_details / input_tokens_details .cached_tokens)."""
    client = server.openai()
    history = [{"role": "system", "content": "You are a terse assistant. " * 8},
               {"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model="llama-cpp", messages=history, max_tokens=6, temperature=0, seed=1)
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "And another one?"}]
    second = client.chat.completions.create(model="llama-cpp", messages=history, max_tokens=6, temperature=0, seed=1)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < second.usage.prompt_tokens
    again = client.responses.create(model="llama-cpp", input=history, max_output_tokens=6, temperature=0)
    assert again.usage.input_tokens_details.cached_tokens > 0
