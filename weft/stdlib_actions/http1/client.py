"""std.http's client: one request, its redirects followed, its body decoded, over one event loop's Pool.

`Client.request` does what std.http.request did with httpx: a JSON body sent
compact (UTF-8, `Content-Type: application/json`), `Accept-Encoding: gzip,
deflate` and the answer decoded, redirects followed (at most MAX_REDIRECTS;
303, and 301 and 302 after a POST, become a GET without the body; the
`Authorization` header is not sent to another origin), and proxies taken
from the environment when the client is made (HTTP_PROXY, HTTPS_PROXY,
ALL_PROXY, NO_PROXY; an http:// URL is asked of the proxy whole, an https://
one goes through a CONNECT tunnel). `timeout` bounds connecting (with TLS)
and each wait for the server's bytes, as httpx's timeout did.
"""

from __future__ import annotations

import json as jsonlib
import zlib
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from weft.stdlib_actions.http1.pool import Origin, Pool, Proxy, basic
from weft.stdlib_actions.http1.wire import MAX_BODY, Failure, Reply

MAX_REDIRECTS = 20
ROUTES = 4096  # URLs whose route a client remembers (a pure function of the URL and the client's proxies)
AGENT = b"weft"
_SAFE = "/%:@!$&'()*+,;=-._~?"  # left as they are in a URL's path and query; the rest is percent-encoded
_BAD = frozenset(b"\r\n\0")


class Client:
    """Requests from one event loop; `aclose` closes its connections."""

    def __init__(self) -> None:
        from urllib.request import getproxies_environment  # urllib.request imports much; only a client needs it

        self.pool = Pool()
        self._proxies = {k: v for k, v in getproxies_environment().items() if k in ("http", "https", "all", "no")}
        self._routes: dict[str, tuple[Origin, bytes, bytes]] = {}

    async def request(
        self, method: str, url: str, json: Any = None, headers: dict[str, str] | None = None, timeout: float = 30.0
    ) -> Reply:
        """The Reply of the URL that answered (after redirects), its body decoded; Failure if there is none."""
        if not method.isascii() or not method.replace("-", "").isalpha():
            raise Failure(f"{method!r} is not an HTTP method")
        body = b"" if json is None else _json_body(json)
        extra = _headers(headers, json is not None)
        for _ in range(MAX_REDIRECTS + 1):
            origin, target, host = self._route(url)
            sent = extra
            if origin.proxy is not None and origin.proxy.auth and origin.scheme == "http":
                sent = [*extra, (b"Proxy-Authorization", basic(origin.proxy.auth))]
            request = _head(method, target, host, sent, body) + body
            reply = await self.pool.send(origin, request, timeout, head_only=method == "HEAD")
            location = _header(reply, b"location") if reply.status in (301, 302, 303, 307, 308) else None
            if location is None:
                return _decoded(reply)
            after = urljoin(url, location.decode("latin-1").strip())
            if urlsplit(after).scheme not in ("http", "https"):
                raise Failure(f"redirected to {after!r}, which is not an http:// or https:// URL")
            if reply.status == 303 and method != "HEAD" or reply.status in (301, 302) and method == "POST":
                method, body = "GET", b""
                extra = [(k, v) for k, v in extra if k.lower() not in (b"content-type", b"content-length")]
            if self._route(after)[0][:3] != origin[:3]:
                extra = [(k, v) for k, v in extra if k.lower() != b"authorization"]
            url = after
        raise Failure(f"more than {MAX_REDIRECTS} redirects")

    def _route(self, url: str) -> tuple[Origin, bytes, bytes]:
        """(where to connect, the request target, the Host header) for `url`."""
        route = self._routes.get(url)
        if route is None:
            if len(self._routes) >= ROUTES:
                self._routes.clear()
            route = self._routes[url] = self._find_route(url)
        return route

    def _find_route(self, url: str) -> tuple[Origin, bytes, bytes]:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as e:
            raise Failure(f"the URL's port is not valid ({e})") from None
        if not host:
            raise Failure("the URL names no host")
        try:
            host_header = _netloc(host, parts.port, scheme).encode("idna")
        except UnicodeError as e:
            raise Failure(f"the URL's host {host!r} is not a valid name ({e})") from None
        target = quote(parts.path or "/", safe=_SAFE) + ("?" + quote(parts.query, safe=_SAFE) if parts.query else "")
        proxy = self._proxy(scheme, host)
        if proxy is None:
            return Origin(scheme, host, port, None), target.encode("ascii"), host_header
        if scheme == "https":
            return Origin(scheme, host, port, proxy), target.encode("ascii"), host_header
        absolute = b"http://" + host_header + target.encode("ascii")  # a proxy is asked for the whole URL
        return Origin(scheme, host, port, proxy), absolute, host_header

    def _proxy(self, scheme: str, host: str) -> Proxy | None:
        url = self._proxies.get(scheme) or self._proxies.get("all")
        if not url:
            return None
        from urllib.request import proxy_bypass_environment

        if proxy_bypass_environment(host, self._proxies):
            return None
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme != "http" or not parts.hostname:
            raise Failure(f"the proxy {url!r} is not an http:// proxy, the only kind std.http uses")
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}" if parts.username else None
        return Proxy(parts.hostname, parts.port or 80, auth)

    async def aclose(self) -> None:
        await self.pool.aclose()


def _json_body(value: Any) -> bytes:
    try:
        return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise Failure(f"the json body cannot be sent ({e})") from None


_DEFAULTS = {
    b"accept": (b"Accept", b"*/*"),
    b"accept-encoding": (b"Accept-Encoding", b"gzip, deflate"),
    b"user-agent": (b"User-Agent", AGENT),
}
_JSON = {**_DEFAULTS, b"content-type": (b"Content-Type", b"application/json")}
_PLAIN_HEADERS, _JSON_HEADERS = list(_DEFAULTS.values()), list(_JSON.values())


def _headers(given: dict[str, str] | None, json: bool) -> list[tuple[bytes, bytes]]:
    """The request's headers beside Host and Content-Length: Weft's defaults, then the caller's, which win."""
    if not given:
        return _JSON_HEADERS if json else _PLAIN_HEADERS
    chosen = dict(_JSON if json else _DEFAULTS)
    for name, value in given.items():
        raw_name, raw_value = str(name).encode("latin-1", "replace"), str(value).encode("utf-8")
        if not raw_name or _BAD.intersection(raw_name + raw_value) or b":" in raw_name or b" " in raw_name:
            raise Failure(f"header {name!r} cannot be sent (a name with no space or colon, no line breaks)")
        chosen[raw_name.lower()] = (raw_name, raw_value)
    chosen.pop(b"host", None), chosen.pop(b"content-length", None)
    return list(chosen.values())


def _head(method: str, target: bytes, host: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1", b"Host: " + host]
    lines += [name + b": " + value for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _header(reply: Reply, name: bytes) -> bytes | None:
    for key, value in reply.headers:
        if key == name:
            return value
    return None


def _decoded(reply: Reply) -> Reply:
    """`reply` with its body decoded from its Content-Encoding (gzip, deflate; others are left as they are)."""
    coding = _header(reply, b"content-encoding")
    if not coding or not reply.body:
        return reply
    body = reply.body
    for name in reversed([c.strip().lower() for c in coding.split(b",")]):
        if name in (b"gzip", b"x-gzip"):
            body = _inflate(body, 16 + zlib.MAX_WBITS)
        elif name == b"deflate":
            try:
                body = _inflate(body, zlib.MAX_WBITS)
            except Failure:  # some servers send raw deflate, without zlib's header
                body = _inflate(body, -zlib.MAX_WBITS)
    return Reply(reply.status, reply.headers, body)


def _inflate(data: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, MAX_BODY + 1)
    except zlib.error as e:
        raise Failure(f"the response body cannot be decoded ({e})") from None
    if len(out) > MAX_BODY:
        raise Failure(f"the response body is larger than {MAX_BODY >> 20} MiB once decoded, the most std.http reads")
    return out


def _netloc(host: str, port: int | None, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port is None or port == default else f"{name}:{port}"
