"""Remote `image_url`s through the server: every private or odd URL is a 400 in OpenAI's error shape
naming the field, and a loopback listener the test runs records zero hits. With the documented opt-in
(`allow_private_urls`) a second server does fetch from that listener, so the positive path is the real
fetcher end to end. The fetcher itself is tested in depth in tests/media/test_fetch.py."""

from __future__ import annotations

from typing import Iterator

import re

import pytest

from ..helpers.fake_http import FakeServer, Reply
from ..helpers.media import png_bytes
from ..helpers.server import Served, served

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def listener() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("serve-fetch")) as running:
        yield running


def _refused_urls(listener_port: int, server_port: int) -> list[str]:
    p = listener_port
    return [
        f"http://127.0.0.1:{p}/a.png",
        f"http://127.0.0.1:{server_port}/v1/models",  # the server's own port
        f"http://localhost:{p}/a.png",
        f"http://LOCALHOST.:{p}/a.png",
        f"http://127.1:{p}/a.png",  # short form
        f"http://2130706433:{p}/a.png",  # decimal
        f"http://0x7f000001:{p}/a.png",  # hex
        f"http://0x7f.0.0.1:{p}/a.png",
        f"http://0177.0.0.1:{p}/a.png",  # octal
        f"http://0.0.0.0:{p}/a.png",
        f"http://[::1]:{p}/a.png",
        f"http://[::ffff:127.0.0.1]:{p}/a.png",  # IPv4-mapped IPv6
        f"http://[::ffff:7f00:1]:{p}/a.png",
        f"http://[64:ff9b::7f00:1]:{p}/a.png",  # NAT64
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://172.16.0.1/a.png",
        "http://100.64.0.1/a.png",  # CGNAT
        f"http://user:pw@127.0.0.1:{p}/a.png",  # credentials
        "http://224.0.0.1/a.png",  # multicast
    ]


def _ask(server: Served, url: str, index: int = 1) -> object:
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]
    return server.openai().chat.completions.create(model="mock", messages=messages)


def test_private_and_odd_urls_are_refused_naming_the_field_with_no_hit(server, listener):
    server_port = int(server.url.rsplit(":", 1)[1])
    listener_port = int(listener.url.rsplit(":", 1)[1])
    before = len(listener.requests)
    urls = _refused_urls(listener_port, server_port)
    for url in urls:
        with pytest.raises(openai.BadRequestError) as err:
            _ask(server, url)
        body = err.value.body
        assert err.value.status_code == 400, url
        assert body["param"] == "messages[1].content[1].image_url.url", url
        assert body["type"] == "invalid_request_error" and "refused to fetch" in body["message"], (url, body)
    assert len(listener.requests) == before  # not one request reached the listener
    assert len(urls) >= 20


@pytest.mark.parametrize("url, words", [("file:///etc/passwd", "must be a data: URL or an http(s) URL"),
                                        ("ftp://127.0.0.1/a.png", "must be a data: URL or an http(s) URL"),
                                        ("gopher://127.0.0.1:70/_x", "must be a data: URL or an http(s) URL")])
def test_other_schemes_are_refused(server, url, words):
    with pytest.raises(openai.BadRequestError, match=re.escape(words)) as err:
        _ask(server, url)
    assert err.value.body["param"] == "messages[1].content[1].image_url.url"


def test_the_opt_in_setting_reaches_a_local_listener(tmp_path, listener):
    """allow_private_urls (config.toml / IMAGINE_ALLOW_PRIVATE_URLS=1) is the user's documented opt-in; with
    it the same URL is fetched by the real fetcher and the image reaches the engine. No test-only switch."""
    listener.reply(Reply(200, {"content-type": "image/png"}, png_bytes()))
    before = len(listener.requests)
    with served(tmp_path, config={"allow_private_urls": True}) as opted_in:
        completion = _ask(opted_in, listener.url + "/cat.png")
        assert completion.choices[0].message.content == "what is this"  # type: ignore[attr-defined]
        parts = opted_in.mock().requests[-1].messages[-1].parts
        assert parts[1].data == png_bytes()
    assert [r.path for r in listener.requests[before:]] == ["/cat.png"]
