"""The SSRF-safe fetcher: refused URLs never reach a listener, redirects are re-checked, size and time are
capped. A real HTTP server on loopback records every hit; names resolve through an injected resolver, so
nothing here touches the network (an unknown name fails the test instead of asking DNS)."""

from __future__ import annotations

import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from imagine.errors import InputError, LimitExceeded, UpstreamError, UpstreamTimeout
from imagine.media.fetch import Timeouts, fetch_url, unsafe_reason
from imagine.media.limits import Limits


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


PNG = _png()


class Listener:
    """A tiny HTTP server on 127.0.0.1 that records (path, Host header) of every request it gets."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hits: list[tuple[str, str]] = []
        self.sni: list[str | None] = []
        self.stop = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                listener.hits.append((self.path, self.headers.get("Host", "")))
                url = urlsplit(self.path)
                try:
                    listener.route(self, url.path, parse_qs(url.query))
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        if tls is not None:
            def record(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                self.sni.append(name)

            tls.sni_callback = record  # type: ignore[assignment]
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.server.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, h: "BaseHTTPRequestHandler", path: str, query: dict[str, list[str]]) -> None:
        send = h.send  # type: ignore[attr-defined]
        if path == "/img.png":
            send(200, PNG, {"Content-Type": "image/png; charset=binary"})
        elif path.startswith("/hops/"):  # /hops/N redirects N more times, then the image
            left = int(path.rsplit("/", 1)[1])
            send(302, b"", {"Location": f"/hops/{left - 1}" if left else "/img.png"})
        elif path == "/to":
            send(302, b"moved", {"Location": query["u"][0]})
        elif path == "/big":
            send(200, b"x" * 5000, {"Content-Type": "application/octet-stream"})
        elif path == "/chunked":
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for _ in range(100):
                h.wfile.write(b"100\r\n" + b"y" * 256 + b"\r\n")
                h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":  # no answer for 5 s
            self.stop.wait(5)
            send(200, PNG)
        elif path == "/drip":  # a byte every 0.1 s for 3 s: each read is quick, the whole is not
            h.send_response(200)
            h.send_header("Content-Length", "30")
            h.end_headers()
            for _ in range(30):
                if self.stop.wait(0.1):
                    return
                h.wfile.write(b"z")
                h.wfile.flush()
        else:
            send(404, b"no")

    def __enter__(self) -> "Listener":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Listener]:
    with Listener() as listener:
        yield listener


@pytest.fixture(scope="module")
def private() -> Iterator[Listener]:
    """A second loopback listener standing for an internal service: it must never be reached."""
    with Listener() as listener:
        yield listener


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, server: Listener, private: Listener) -> None:
    """The default policy (the escape hatch unset) and no hits recorded yet, for every test."""
    monkeypatch.delenv("IMAGINE_ALLOW_PRIVATE_URLS", raising=False)
    server.hits.clear()
    private.hits.clear()


def names(table: dict[str, list[str]], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A resolver over a fixed table; any other name fails the test rather than reaching DNS."""
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        assert host in table, f"unexpected DNS lookup of {host}"
        return table[host]
    return resolve


def good(server: Listener, **kwargs):  # type: ignore[no-untyped-def]
    """The positive path: media.test is the loopback listener, trusted as public for this one port."""
    table = {"media.test": ["127.0.0.1"], "internal.test": ["127.0.0.1"]}
    return dict(resolver=names(table), trusted={("127.0.0.1", server.port)}, **kwargs)


# --- refused before any connection --------------------------------------------------------------------

SSRF = [
    "http://127.0.0.1:{p}/", "http://localhost:{p}/", "http://LOCALHOST:{p}/", "http://localhost.:{p}/",
    "http://sub.localhost:{p}/", "http://2130706433:{p}/", "http://0177.0.0.1:{p}/", "http://0x7f.1:{p}/",
    "http://0x7f000001:{p}/", "http://127.1:{p}/", "http://0:{p}/", "http://0.0.0.0:{p}/",
    "http://127.0.0.1.:{p}/", "http://evil.com@127.0.0.1:{p}/", "http://user:pw@127.0.0.1:{p}/",
    "http://evil.com\\@127.0.0.1:{p}/", "http://ⓛocalhost:{p}/", "http://１２７。０。０。１:{p}/",
    "http://[::1]:{p}/", "http://[::]:{p}/", "http://[::ffff:127.0.0.1]:{p}/", "http://[::ffff:7f00:1]:{p}/",
    "http://[64:ff9b::7f00:1]:{p}/", "http://[64:ff9b::a00:1]:{p}/", "http://[2002:7f00:1::]:{p}/",
    "http://[2002:a9fe:a9fe::1]:{p}/", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{p}/",
    "http://[::127.0.0.1]:{p}/", "http://[fe80::1%25lo]:{p}/", "http://[fe80::1]:{p}/", "http://[fc00::1]:{p}/",
    "http://[fd12:3456::1]:{p}/", "http://[ff02::1]:{p}/",
    "http://169.254.169.254/latest/meta-data/", "http://169.254.169.254:{p}/", "http://10.0.0.1:{p}/",
    "http://172.16.5.4:{p}/", "http://192.168.1.1:{p}/", "http://100.64.0.1:{p}/", "http://224.0.0.1:{p}/",
    "http://240.0.0.1:{p}/", "http://255.255.255.255:{p}/", "http://256.0.0.1:{p}/", "http://1.2.3.4.5:{p}/",
    "http://internal.test:{p}/", "http://rebind.test:{p}/", "http://v6only.test:{p}/",
    "HTTP://127.0.0.1:{p}/", "https://127.0.0.1:{p}/", "http://127.0.0.1:0/",
    "file:///etc/passwd", "ftp://127.0.0.1:{p}/", "gopher://127.0.0.1:{p}/_x", "data:image/png;base64,AAAA",
    "dict://127.0.0.1:{p}/", "//127.0.0.1:{p}/", "127.0.0.1:{p}/img.png", "http:///img.png",
    "http://127.0.0.1:{p}/\r\nX: y", "http://exa mple.com/",
]
TABLE = {"internal.test": ["10.1.2.3"], "rebind.test": ["93.184.216.34", "127.0.0.1"],
         "v6only.test": ["::ffff:169.254.169.254"]}


@pytest.mark.parametrize("url", SSRF)
def test_refused_never_reaches_the_listener(server: Listener, url: str) -> None:
    with pytest.raises(InputError) as err:
        fetch_url(url.format(p=server.port), resolver=names(TABLE))
    message = str(err.value)
    assert message.startswith("refused to fetch ") and "\n" not in message and "IMAGINE_ALLOW_PRIVATE_URLS" in message
    assert "pw" not in message  # credentials never echoed
    assert server.hits == []


def test_at_least_25_kinds() -> None:
    assert len(SSRF) >= 25


@pytest.mark.parametrize("text", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "100.127.255.255", "::1",
                                  "::ffff:10.0.0.1", "64:ff9b::c0a8:101", "2002:c0a8:101::", "fc00::1", "ff02::1"])
def test_unsafe_addresses(text: str) -> None:
    assert unsafe_reason(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses(text: str) -> None:
    assert unsafe_reason(ipaddress.ip_address(text)) is None


def test_private_off_by_default_and_the_escape_hatch(server: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagine.config import load_settings

    assert load_settings().allow_private_urls is False
    url = f"http://127.0.0.1:{server.port}/img.png"
    for off in ("", "0", "no"):
        monkeypatch.setenv("IMAGINE_ALLOW_PRIVATE_URLS", off)
        with pytest.raises(InputError):
            fetch_url(url)
    assert server.hits == []
    monkeypatch.setenv("IMAGINE_ALLOW_PRIVATE_URLS", "1")
    assert load_settings().allow_private_urls is True
    assert fetch_url(url).data == PNG
    monkeypatch.delenv("IMAGINE_ALLOW_PRIVATE_URLS")
    assert fetch_url(url, allow_private=True).data == PNG
    with pytest.raises(InputError):
        fetch_url(url, allow_private=False)


# --- the positive path and its caps -------------------------------------------------------------------

def test_fetches_through_the_resolved_address_with_the_real_host(server: Listener) -> None:
    calls: list[str] = []
    resolver = names({"media.test": ["127.0.0.1"]}, calls)
    fetched = fetch_url(f"http://media.test:{server.port}/img.png", resolver=resolver,
                        trusted={("127.0.0.1", server.port)})
    assert fetched.data == PNG and fetched.mime == "image/png"
    assert fetched.final_url == f"http://media.test:{server.port}/img.png"
    assert server.hits[-1] == ("/img.png", f"media.test:{server.port}")  # connected to the IP, Host is the name
    assert calls == ["media.test"]  # resolved once: nothing can rebind between check and connect


def test_trust_is_one_address_and_port(server: Listener, private: Listener) -> None:
    with pytest.raises(InputError, match="resolves to 127.0.0.1, a loopback address"):
        fetch_url(f"http://internal.test:{private.port}/img.png", **good(server))
    assert private.hits == []


def test_redirects_up_to_three(server: Listener) -> None:
    fetched = fetch_url(f"http://media.test:{server.port}/hops/2", **good(server))
    assert fetched.data == PNG and fetched.final_url.endswith("/img.png")
    server.hits.clear()
    with pytest.raises(InputError, match="more than 3 redirects"):
        fetch_url(f"http://media.test:{server.port}/hops/3", **good(server))
    assert len(server.hits) == 4  # the first request and three redirects; the fourth is not followed


@pytest.mark.parametrize("target", ["http://127.0.0.1:{q}/secret", "http://internal.test:{q}/secret",
                                    "http://0x7f.1:{q}/", "http://[::ffff:127.0.0.1]:{q}/",
                                    "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd",
                                    "http://a@127.0.0.1:{q}/"])
def test_redirect_to_private_refused(server: Listener, private: Listener, target: str) -> None:
    to = target.format(q=private.port)
    with pytest.raises(InputError, match="refused to fetch"):
        fetch_url(f"http://media.test:{server.port}/to?u={to}", **good(server))
    assert private.hits == []


def test_size_caps(server: Listener) -> None:
    small = Limits(max_bytes=1000)
    with pytest.raises(LimitExceeded, match="5,000 bytes"):  # told by Content-Length, refused before reading
        fetch_url(f"http://media.test:{server.port}/big", limits=small, **good(server))
    with pytest.raises(LimitExceeded, match="over the input limit of 1,000 bytes"):  # chunked: cut while reading
        fetch_url(f"http://media.test:{server.port}/chunked", limits=small, **good(server))
    assert len(fetch_url(f"http://media.test:{server.port}/chunked", **good(server)).data) == 25_600


def test_time_caps(server: Listener) -> None:
    with pytest.raises(UpstreamTimeout):  # no answer within the read timeout
        fetch_url(f"http://media.test:{server.port}/slow", timeout=Timeouts(connect=2, read=0.3, total=10),
                  **good(server))
    with pytest.raises(UpstreamTimeout):  # every read is quick, the whole is not
        fetch_url(f"http://media.test:{server.port}/drip", timeout=Timeouts(connect=2, read=2, total=0.5),
                  **good(server))


def test_upstream_failures(server: Listener) -> None:
    with pytest.raises(UpstreamError, match="HTTP 404") as err:
        fetch_url(f"http://media.test:{server.port}/missing", **good(server))
    assert not isinstance(err.value, InputError)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(UpstreamError, match="failed"):
        fetch_url(f"http://127.0.0.1:{port}/", trusted={("127.0.0.1", port)})

    def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UpstreamError, match="cannot resolve nowhere.test"):
        fetch_url("http://nowhere.test/", resolver=broken)


def test_load_part_fetches_urls(server: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagine.parts import Image, load_part

    url = f"http://127.0.0.1:{server.port}/img.png"
    with pytest.raises(InputError, match="a loopback address"):
        load_part(url)
    assert server.hits == []
    monkeypatch.setenv("IMAGINE_ALLOW_PRIVATE_URLS", "1")
    part = load_part(url)
    assert isinstance(part, Image) and part.data == PNG and part.name == "img.png"
    with pytest.raises(LimitExceeded):
        load_part(f"http://127.0.0.1:{server.port}/big", limits=Limits(max_bytes=1000))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for media.test (made with the openssl program)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl program to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=media.test",
                    "-addext", "subjectAltName=DNS:media.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https_connects_to_the_checked_address_with_the_real_name(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    with Listener(tls=served) as tls:
        table = {"media.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
        fetched = fetch_url(f"https://media.test:{tls.port}/img.png", resolver=names(table), ssl_context=trust,
                            trusted={("127.0.0.1", tls.port)})
        assert fetched.data == PNG
        assert tls.sni == ["media.test"]  # SNI and the certificate check use the name, the socket the IP
        assert tls.hits == [("/img.png", f"media.test:{tls.port}")]
        with pytest.raises(UpstreamError):  # the certificate is checked against the name asked for
            fetch_url(f"https://other.test:{tls.port}/img.png", resolver=names(table), ssl_context=trust,
                      trusted={("127.0.0.1", tls.port)})
        with pytest.raises(InputError):  # and https is refused to a private address all the same
            fetch_url(f"https://127.0.0.1:{tls.port}/img.png", ssl_context=trust)
        assert len(tls.hits) == 1
