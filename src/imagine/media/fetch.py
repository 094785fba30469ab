"""The one fetcher for remote media URLs (parts, the server's `image_url`, flows), safe against SSRF.

A URL a caller hands us may point back into our own network: loopback, RFC 1918, cloud metadata
(169.254.169.254), or a public name whose DNS answer is private (or changes between a check and a
connect: DNS rebinding). So every hop goes through the same steps:

1. one parser (`urlsplit`, then `_host`): http/https only, no credentials in the URL, the host
   IDNA-normalised, numeric hosts read the way a browser does (`0x7f.1`, `0177.0.0.1`, `2130706433`);
2. the host resolved ONCE and EVERY address checked (`unsafe_reason`), embedded IPv4 in IPv6 too
   (mapped, NAT64, 6to4, Teredo);
3. the connection made to exactly those checked addresses (`_PinnedBackend`), while the request carries
   the real Host header and, for https, the real name as SNI and for certificate verification;
4. redirects (at most `MAX_REDIRECTS`) followed by hand, each hop through steps 1-3 again;
5. the body streamed and cut at `Limits.max_bytes` (Content-Length checked first), under connect, read and
   total timeouts.

Why httpcore rather than httpx or http.client: httpcore (the engine under httpx) takes a network backend,
so pinning is a ten-line subclass while TLS, SNI, certificate checks, chunked bodies and timeouts stay
the library's well-tested code; httpx's public API has no seam for the connect address, and it would
also honour proxy variables, which would connect somewhere we did not check. No proxy is used here.

Private addresses are refused unless the caller opts in: `allow_private=True`, the setting
`allow_private_urls` or IMAGINE_ALLOW_PRIVATE_URLS=1 (off by default).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable
from urllib.parse import urljoin, urlsplit

import httpcore

from ..errors import InputError, LimitExceeded, UpstreamError, UpstreamTimeout
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_TIMEOUTS", "MAX_REDIRECTS", "Fetched", "Timeouts", "afetch_url", "fetch_url", "is_url",
           "resolve", "unsafe_reason"]

MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}
_HINT = ("fetch only public http(s) URLs; to reach a private or local address on purpose, set "
         "IMAGINE_ALLOW_PRIVATE_URLS=1 (or allow_private_urls = true in config.toml)")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]


@dataclass(frozen=True)
class Timeouts:
    """Seconds: to connect (DNS included), between two reads, and for the whole fetch with its redirects."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 120.0


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class Fetched:
    """A fetched body: the bytes, the media type the server claimed (None: none), and the URL after redirects."""

    data: bytes
    mime: str | None
    final_url: str


def is_url(source: object) -> bool:
    """Whether `source` is a string this fetcher takes (an http:// or https:// URL), not a file path."""
    return isinstance(source, str) and source[:8].lower().startswith(("http://", "https://"))


# --- which addresses are refused ------------------------------------------------------------------

_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/96", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "fc00::/7",
    "fe80::/10", "fec0::/10", "ff00::/8")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def unsafe_reason(address: IPAddress) -> str | None:
    """Why connecting to `address` is refused ("a loopback address", ...), or None for a public address.
    An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4, Teredo) is judged by that too."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address in _NAT64:  # judged by its IPv4 alone: 64:ff9b::/96 sits in the reserved ::/8
            inner4 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            why4 = unsafe_reason(inner4)
            return f"{why4} ({inner4}) inside an IPv6 address" if why4 else None
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        for inner in embedded:
            why = unsafe_reason(inner)
            if why:
                return f"{why} ({inner}) inside an IPv6 address"
    for flag, why in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                      ("is_multicast", "a multicast address"), ("is_unspecified", "an unspecified address"),
                      ("is_reserved", "a reserved address"), ("is_private", "a private address")):
        if getattr(address, flag):
            return why
    if any(address in net for net in _BLOCKED if net.version == address.version):
        return "a private or reserved address"
    if not address.is_global:
        return "not a public address"
    return None


# --- parsing one URL ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str           # ASCII: an IDNA name or an IP address's text
    ip: IPAddress | None  # set when the host is an address literal
    port: int
    target: str         # path and query, as sent on the request line

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _show(url: str) -> str:
    """The URL for a one-line message: credentials dropped, control characters escaped, long ones cut."""
    shown = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1…@", url.split("#", 1)[0])
    shown = "".join(c if c.isprintable() and not c.isspace() or c == " " else f"\\x{ord(c):02x}" for c in shown)
    return shown if len(shown) <= 200 else shown[:200] + "…"


def _refuse(url: str, why: str) -> InputError:
    return InputError(f"refused to fetch {_show(url)}: {why}", hint=_HINT)


def _number(label: str) -> int | None:
    """One part of a numeric IPv4 host, read as browsers do: 0x.. hex, 0.. octal, else decimal."""
    try:
        if label[:2].lower() == "0x":
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label[1:], 8)
        return int(label, 10)
    except ValueError:
        return None


def _ipv4(host: str, url: str) -> ipaddress.IPv4Address | None:
    """The WHATWG IPv4 parser: a host whose last label is a number is an address (`127.1`, `0x7f.1`,
    `2130706433`, `0`), or invalid; anything else is a DNS name (None)."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", labels[-1]):
        return None
    numbers = [_number(label) if label else None for label in labels]
    if len(labels) > 4 or any(n is None for n in numbers):
        raise _refuse(url, f"{host!r} is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise _refuse(url, f"{host!r} is not a valid IPv4 address")
    value = values[-1]
    for i, n in enumerate(values[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _parse(url: str) -> _Target:
    """Split and normalise one URL, refusing what is not a plain http(s) URL to a well-formed host."""
    if any(c.isspace() or not c.isprintable() for c in url) or "\\" in url:
        raise _refuse(url, "the URL holds whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(url, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        given = f"{scheme}:" if scheme else "a URL without a scheme"
        raise _refuse(url, f"only http and https URLs are fetched, not {given}")
    if "@" in parts.netloc or parts.username is not None:
        raise _refuse(url, "URLs with a user name or password are not fetched")
    raw = parts.hostname or ""
    if not raw:
        raise _refuse(url, "the URL has no host")
    if port == 0:
        raise _refuse(url, "port 0 is not a port")
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = re.sub(r"[^\x21-\x7e]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), target)
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        if "%" in raw:
            raise _refuse(url, "IPv6 zone identifiers are not fetched")
        try:
            ip6 = ipaddress.IPv6Address(raw)
        except ValueError:
            raise _refuse(url, f"{raw!r} is not a valid IPv6 address") from None
        return _Target(scheme, str(ip6), ip6, port, target)
    try:
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise _refuse(url, f"{_show(raw)!r} is not a valid host name") from None
    ip4 = _ipv4(host, url)
    if ip4 is not None:
        return _Target(scheme, str(ip4), ip4, port, target)
    host = host.rstrip(".") if host.endswith(".") and not host.endswith("..") else host
    if len(host) > 253 or not all(re.fullmatch(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", label)
                                   for label in host.split(".")):
        raise _refuse(url, f"{host!r} is not a valid host name")
    return _Target(scheme, host, None, port, target)


# --- resolving once -------------------------------------------------------------------------------

def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver, TCP). The one DNS lookup of a hop."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _resolve_in_time(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """Run the resolver in a thread so a hung DNS lookup is bounded by the connect timeout."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["addresses"] = list(resolver(host, port))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise UpstreamTimeout(f"resolving {host} took longer than {timeout:g} s", hint="try again later")
    if "error" in box:
        error = box["error"]
        if isinstance(error, (OSError, UnicodeError)):
            raise UpstreamError(f"cannot resolve {host}: {getattr(error, 'strerror', None) or error}",
                                hint="check the host name and your network") from None
        raise error
    return list(box["addresses"])


def _addresses(hop: _Target, url: str, resolver: Resolver, timeout: float, check: bool,
               trusted: Collection[tuple[str, int]]) -> list[str]:
    """The checked addresses to connect to for one hop: the literal itself, or every address the name
    resolves to; any unsafe one refuses the hop (a name with one private answer may get it next time)."""
    if hop.ip is not None:
        found = [hop.ip]
    else:
        if hop.host == "localhost" or hop.host.endswith(".localhost"):
            if check:
                raise _refuse(url, f"{hop.host} is this machine (a loopback name)")
        texts = _resolve_in_time(resolver, hop.host, hop.port, timeout)
        try:
            found = [ipaddress.ip_address(text.split("%", 1)[0]) for text in texts]
        except ValueError:
            raise UpstreamError(f"resolving {hop.host} gave something that is not an address") from None
        if not found:
            raise UpstreamError(f"{hop.host} resolves to no address", hint="check the host name")
    if check:
        for address in found:
            if (str(address), hop.port) in trusted:
                continue
            why = unsafe_reason(address)
            if why:
                named = "" if hop.ip is not None else f"{hop.host} resolves to {address}, "
                raise _refuse(url, f"{named}{why}")
    return [str(address) for address in found]


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the addresses checked for this hop, whatever host name the request carries, so no
    second DNS lookup can swap in another address. TLS still uses the name (httpcore passes the URL's
    host as server_hostname), so SNI and the certificate check are those of the real host."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self._addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


# --- fetching -------------------------------------------------------------------------------------

def _env_allows() -> bool:
    return os.environ.get("IMAGINE_ALLOW_PRIVATE_URLS", "").strip().lower() in ("1", "true", "yes", "on")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _too_big(url: str, size: int | None, limits: Limits) -> LimitExceeded:
    amount = "" if size is None else f" ({size:,} bytes)"
    return LimitExceeded(f"{_show(url)} is over the input limit of {limits.max_bytes:,} bytes{amount}",
                         hint="raise the limit with IMAGINE_MAX_BYTES or max_bytes under [limits] in config.toml")


def fetch_url(url: str, *, limits: Limits = DEFAULT_LIMITS, timeout: Timeouts = DEFAULT_TIMEOUTS,
              allow_private: bool | None = None, resolver: Resolver | None = None,
              trusted: Collection[tuple[str, int]] = (), ssl_context: ssl.SSLContext | None = None) -> Fetched:
    """GET a public http(s) URL into memory, safe against SSRF (see the module docstring).

    `allow_private`: None follows IMAGINE_ALLOW_PRIVATE_URLS; True reaches private addresses too.
    `resolver` replaces the system resolver (tests, a caller's own DNS); `trusted` names exact
    (address, port) pairs taken as public, so a test's loopback server or one known local service can be
    reached without opening every private address; `ssl_context` replaces the default trust (certifi's
    roots, as httpx uses), e.g. for a company CA. Errors: InputError (refused URL), LimitExceeded
    (too big), UpstreamError / UpstreamTimeout (network, HTTP status)."""
    check = not (_env_allows() if allow_private is None else allow_private)
    resolver = resolver or resolve
    deadline = time.monotonic() + timeout.total
    current = url
    for hop_number in range(MAX_REDIRECTS + 1):
        hop = _parse(current)
        left = deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout(f"fetching {_show(url)} took longer than {timeout.total:g} s")
        addresses = _addresses(hop, current, resolver, min(timeout.connect, left), check, trusted)
        status, headers, data = _get(hop, current, addresses, limits, timeout, deadline, ssl_context)
        location = _header(headers, b"location") if status in _REDIRECTS else None
        if location is None:
            if not 200 <= status < 300:
                raise UpstreamError(f"fetching {_show(current)} failed: the server answered HTTP {status}",
                                    hint="check the URL")
            content_type = _header(headers, b"content-type")
            mime = (content_type.split(";", 1)[0].strip().lower() or None) if content_type else None
            return Fetched(data=data, mime=mime, final_url=current)
        current = urljoin(current, location)
    raise _refuse(url, f"more than {MAX_REDIRECTS} redirects")


def _get(hop: _Target, url: str, addresses: list[str], limits: Limits, timeout: Timeouts, deadline: float,
         ssl_context: ssl.SSLContext | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One GET to the pinned addresses: (status, headers, body); a redirect's body is not read."""
    if ssl_context is None:
        import httpx  # for its SSL context (certifi's roots), the same trust the cloud engines use

        ssl_context = httpx.create_ssl_context()

    left = max(deadline - time.monotonic(), 0.001)
    request_url = httpcore.URL(scheme=hop.scheme.encode(), host=hop.host.encode("ascii"), port=hop.port,
                               target=hop.target.encode("ascii"))
    headers = [(b"Host", hop.authority.encode("ascii")), (b"User-Agent", b"imagine"), (b"Accept", b"*/*"),
               (b"Accept-Encoding", b"identity"), (b"Connection", b"close")]
    timeouts = {"connect": min(timeout.connect, left), "read": min(timeout.read, left),
                "write": min(timeout.read, left), "pool": min(timeout.connect, left)}
    pool = httpcore.ConnectionPool(ssl_context=ssl_context, max_connections=1, retries=0,
                                   network_backend=_PinnedBackend(addresses))
    try:
        with pool, pool.stream("GET", request_url, headers=headers, extensions={"timeout": timeouts}) as response:
            status = response.status
            if status in _REDIRECTS:
                return status, list(response.headers), b""
            length = _header(response.headers, b"content-length")
            if length is not None and length.isdigit() and int(length) > limits.max_bytes:
                raise _too_big(url, int(length), limits)
            body = bytearray()
            for chunk in response.iter_stream():
                body += chunk
                if len(body) > limits.max_bytes:
                    raise _too_big(url, None, limits)
                if time.monotonic() > deadline:
                    raise UpstreamTimeout(f"fetching {_show(url)} took longer than {timeout.total:g} s")
            return status, list(response.headers), bytes(body)
    except httpcore.TimeoutException as exc:
        raise UpstreamTimeout(f"fetching {_show(url)} timed out ({type(exc).__name__})",
                              hint="try again later, or check the URL") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UpstreamError(f"fetching {_show(url)} failed: {detail}", hint="check the URL and your network") from None


async def afetch_url(url: str, **kwargs: Any) -> Fetched:
    """`fetch_url` from async code (the server): the blocking fetch runs in a worker thread."""
    return await asyncio.to_thread(fetch_url, url, **kwargs)
