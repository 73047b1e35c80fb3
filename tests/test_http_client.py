"""std.http.request's own HTTP/1.1 client against real local servers (plain, TLS, and a CONNECT proxy).

Calls go through the action (`call_async` of its definition) on one event
loop, asyncio's or uvloop's (the local executor's), so that they share the
loop's connections as the calls of a run do; the loop's shared client is
closed at its end as the executor closes it. The servers count the
connections they accept.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from weft.runtime.executors.asyncio import new_loop
from weft.sdk.actions import ActionFailed, call_async, definition
from weft.sdk.loops import close_shared
from weft.stdlib_actions import http as std_http

MiB = 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with _Handler.lock:
            type(self).connections += 1

    def _send(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        seen = {"method": self.command, "path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        self._send(200, json.dumps(seen).encode())

    def do_GET(self):
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"one ", b"two ", "thr\u00e9\u00e9".encode()):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/gzip":
            self._send(200, gzip.compress(b'{"packed": true}'), Content_Encoding="gzip")
        elif path == "/huge":  # announced too large: refused before it comes
            self.send_response(200)
            self.send_header("Content-Length", str(17 * MiB))
            self.end_headers()
            self.wfile.write(b"x" * MiB)
        elif path == "/endless":  # chunked, no length announced: refused once over the limit
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b"y" * MiB
            for _ in range(17):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/stall":  # the head and a part of the body, then nothing
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"12")
            self.wfile.flush()
            time.sleep(10)
        elif path == "/until-close":  # no length: the body ends when the server closes
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"all of it")
            self.close_connection = True
        elif path == "/hang-up":  # answers, then closes the kept connection without saying so
            self._send(200, b'{"bye": 1}')
            self.close_connection = True
        elif path == "/redirect":
            self._redirect(int(query["status"][0]), query["to"][0])
        elif path == "/proxied":  # asked of this server as of a proxy
            seen = {"target": self.path, "auth": self.headers.get("Proxy-Authorization")}
            self._send(200, json.dumps(seen).encode())
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._echo()

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/redirect":
            return self._echo()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = parse_qs(url.query)
        self._redirect(int(query["status"][0]), query["to"][0])

    def _redirect(self, status: int, to: str) -> None:
        self.send_response(status)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up on purpose (timeouts, refused bodies, failed handshakes)


def _serve(tls: ssl.SSLContext | None = None):
    srv = _Quiet(("127.0.0.1", 0), _Handler)
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()  # shut down in 0.05 s
    return srv


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    _Handler.connections = 0


@pytest.fixture
def server():
    srv = _serve()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    srv = _serve(context)
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request):
    return request.param


def _on_loop(kind: str, *inputs: dict, together: bool = False) -> list:
    """Each call's outputs, or the exception it raised, from calls on one event loop of `kind`."""
    defn = definition(std_http.request)

    async def one(i: dict):
        try:
            return await call_async(defn, i)
        except Exception as e:  # noqa: BLE001 - returned for the test to look at
            return e

    async def all_of_them() -> list:
        try:
            if together:
                return await asyncio.gather(*(one(i) for i in inputs))
            return [await one(i) for i in inputs]
        finally:
            await close_shared()

    running = new_loop() if kind == "uvloop" else asyncio.new_event_loop()
    try:
        return running.run_until_complete(all_of_them())
    finally:
        running.close()


def _failure(out) -> str:
    assert isinstance(out, ActionFailed), out
    return str(out)


def test_calls_on_one_loop_reuse_their_connections(server, loop):
    outs = _on_loop(loop, *({"url": f"{server}/n{i}"} for i in range(5)))
    assert [o["json"]["path"] for o in outs] == [f"/n{i}" for i in range(5)]
    assert _Handler.connections == 1
    outs = _on_loop(loop, *({"url": f"{server}/c{i}"} for i in range(4)), together=True)
    assert all(o["status"] == 200 for o in outs)
    assert _Handler.connections == 1 + 4  # a new loop, a new pool: one connection per call in flight at once


def test_a_connection_the_server_closed_is_not_used_again(server, loop):
    outs = _on_loop(loop, {"url": f"{server}/hang-up"}, {"url": f"{server}/after"}, {"url": f"{server}/again"})
    assert [o["status"] for o in outs] == [200, 200, 200]
    assert _Handler.connections == 2


def test_a_chunked_body_is_read_whole_and_decoded_by_its_charset(server, loop):
    (out,) = _on_loop(loop, {"url": f"{server}/chunked"})
    assert (out["status"], out["body"], out["json"]) == (200, "one two thr\u00e9\u00e9", None)
    assert out["headers"]["transfer-encoding"] == "chunked"


def test_a_gzip_body_is_decoded_and_a_body_until_close_is_read_whole(server, loop):
    gz, until_close = _on_loop(loop, {"url": f"{server}/gzip"}, {"url": f"{server}/until-close"})
    assert gz["json"] == {"packed": True}
    assert until_close["body"] == "all of it"


def test_a_head_request_has_no_body(server, loop):
    (out,) = _on_loop(loop, {"url": server, "method": "head"})
    assert (out["status"], out["body"], out["headers"]["content-length"]) == (200, "", "1234")


@pytest.mark.parametrize("path", ["huge", "endless"])
def test_a_body_over_16_mib_fails_the_step(server, loop, path):
    (out,) = _on_loop(loop, {"url": f"{server}/{path}"})
    assert _failure(out) == (
        f"GET {server}/{path} failed: the response body is larger than 16 MiB, the most std.http reads"
    )


def test_a_server_that_stops_sending_times_out(server, loop):
    t0 = time.monotonic()
    (out,) = _on_loop(loop, {"url": f"{server}/stall", "timeout": 0.3})
    assert _failure(out) == f"GET {server}/stall failed: timed out"
    assert time.monotonic() - t0 < 5  # the server would stall 10 s


def test_a_tls_handshake_that_does_not_come_times_out(loop):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the kernel does), never speaks
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        (out,) = _on_loop(loop, {"url": f"https://127.0.0.1:{port}/", "timeout": 0.3})
    assert _failure(out) == f"GET https://127.0.0.1:{port}/ failed: timed out"
    assert time.monotonic() - t0 < 5


def test_a_refused_connection_names_the_host_and_port(loop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (out,) = _on_loop(loop, {"url": f"http://127.0.0.1:{port}/x"})
    assert _failure(out) == f"GET http://127.0.0.1:{port}/x failed: Connection refused (127.0.0.1:{port})"


def test_an_unknown_host_is_named(loop):
    (out,) = _on_loop(loop, {"url": "http://no-such-host.invalid/"})
    assert _failure(out).startswith("GET http://no-such-host.invalid/ failed: cannot find host no-such-host.invalid")


def test_redirects_are_followed_as_httpx_did(server):
    other = server.replace("127.0.0.1", "localhost")  # another origin: the same server by another name
    post_302, post_307, cross, looping = _on_loop(
        "asyncio",
        {"url": f"{server}/redirect?status=302&to=/seen", "method": "POST", "json": {"n": 1}},
        {"url": f"{server}/redirect?status=307&to=/seen", "method": "POST", "json": {"n": 1}},
        {"url": f"{server}/redirect?status=301&to={other}/there", "headers": {"Authorization": "Bearer t"}},
        {"url": f"{server}/loop"},
    )
    assert post_302["json"] == {"method": "GET", "path": "/seen", "body": "", "auth": None}
    assert post_307["json"] == {"method": "POST", "path": "/seen", "body": '{"n":1}', "auth": None}
    assert cross["json"] == {"method": "GET", "path": "/there", "body": "", "auth": None}
    assert _failure(looping) == f"GET {server}/loop failed: more than 20 redirects"


def test_a_header_with_a_line_break_is_refused(server):
    (out,) = _on_loop("asyncio", {"url": server, "headers": {"X-Evil": "a\r\nX-Injected: 1"}})
    assert "failed: header 'X-Evil' cannot be sent" in _failure(out)


def test_https_is_verified_against_the_system_s_authorities(tls_server, ca, loop, monkeypatch, tmp_path):
    url = f"https://127.0.0.1:{tls_server}/secure"
    (out,) = _on_loop(loop, {"url": url})
    assert _failure(out).startswith(f"GET {url} failed: TLS certificate of 127.0.0.1:{tls_server} not accepted: ")
    assert "\n" not in str(out)
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))  # the authorities of this "system": the test's CA
    first, second = _on_loop(loop, {"url": url}, {"url": url, "method": "POST", "json": [1]})
    assert first["json"]["path"] == "/secure" and second["json"]["body"] == "[1]"


def test_http_through_a_proxy_asks_for_the_whole_url_with_the_proxy_s_credentials(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.replace("http://", "http://ops:s%40cret@"))
    monkeypatch.setenv("NO_PROXY", "direct.example.invalid")
    proxied, direct = _on_loop(
        "uvloop", {"url": "http://hosts.example.invalid:8080/proxied?q=1"}, {"url": "http://direct.example.invalid/"}
    )
    assert proxied["json"] == {
        "target": "http://hosts.example.invalid:8080/proxied?q=1",
        "auth": "Basic b3BzOnNAY3JldA==",
    }
    assert "failed: cannot find host direct.example.invalid" in _failure(direct)  # NO_PROXY: not through the proxy
    long = "http://hosts.example.invalid/proxied?q=" + "x" * 70  # longer than a host name's label may be
    (answer,) = _on_loop("uvloop", {"url": long})
    assert answer["json"]["target"] == long  # only the host is IDNA-encoded


class _Tunnels(threading.Thread):
    """A CONNECT proxy: opens a tunnel to the host and port asked, then copies bytes both ways."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.asked: list[bytes] = []

    def run(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        self.asked.append(head.split(b"\r\n")[0])
        host, port = head.split()[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_copy, args=(a, b), daemon=True).start()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def test_https_through_a_proxy_goes_in_a_connect_tunnel(tls_server, ca, loop, monkeypatch, tmp_path):
    proxy = _Tunnels()
    proxy.start()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    url = f"https://localhost:{tls_server}/tunnelled"
    first, second = _on_loop(loop, {"url": url}, {"url": url})
    assert first["json"]["path"] == second["json"]["path"] == "/tunnelled"
    assert proxy.asked == [f"CONNECT localhost:{tls_server} HTTP/1.1".encode()]  # one tunnel, kept for both
    proxy.listener.close()
