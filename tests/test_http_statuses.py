"""`std.http.request` statuses through `weft run`: a status outside `ok` fails the step (so `retry`, pause and
resume act on the request), `ok` widens what succeeds, and `check: false` returns every status as data."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from weft.sdk.actions import ActionFailed
from weft.sdk.testing import run_action
from weft.stdlib_actions import http as std_http


class _Service(BaseHTTPRequestHandler):
    """/flaky answers 500 to its first `failures` GETs, then 200; /gone is 404; /big is a 500 with a long body."""

    failures = 0
    seen = 0

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        cls = type(self)
        if self.path == "/flaky":
            cls.seen += 1
            if cls.seen <= cls.failures:
                self._reply(500, "database\n  locked")
            else:
                self._reply(200, json.dumps({"ip": "10.0.0.7", "calls": cls.seen}))
        elif self.path == "/big":
            self._reply(500, "x" * 5000)
        else:
            self._reply(404, json.dumps({"error": "no such host"}))


@pytest.fixture
def service(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    handler = type("Handler", (_Service,), {"failures": 0, "seen": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.handler = handler
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def flow(tmp_path, body: str) -> str:
    path = tmp_path / "calls.flow"
    path.write_text(f"flow calls(url: str) -> (status: int) {{\n{body}\n}}\n")
    return str(path)


def test_a_500_fails_the_step_and_retry_repeats_the_request(weft, service, tmp_path):
    service.handler.failures = 2
    path = flow(
        tmp_path,
        '    r = std.http.request(url: "${url}/flaky") retry 2 backoff 10ms\n    return (status: r.status)',
    )
    rid, done = weft.run(path, "-i", f"url={service.url}", code=0)
    assert 'result: {"status": 200}' in done.stdout
    run = weft.show(rid)
    retries = [e["detail"] for e in run["history"] if e.get("step") == "r" and e.get("state") == "pending"]
    assert len(retries) == 2 and all(f"GET {service.url}/flaky answered 500:" in d for d in retries), retries
    assert retries[0].endswith("answered 500: 'database locked'")  # the body's start, on one line
    assert service.handler.seen == 3


def test_a_500_past_its_retries_pauses_and_resume_sends_the_request_again(weft, service, tmp_path):
    service.handler.failures = 2
    path = flow(
        tmp_path, '    r = std.http.request(url: "${url}/flaky") retry 1 backoff 10ms\n    return (status: r.status)'
    )
    rid, done = weft.run(path, "-i", f"url={service.url}", code=3)
    assert f"paused: step r failed: ActionFailed: GET {service.url}/flaky answered 500" in done.stdout
    done = weft("resume", rid, code=0)
    assert 'result: {"status": 200}' in done.stdout and service.handler.seen == 3


def test_ok_names_the_statuses_that_succeed(weft, service, tmp_path):
    path = flow(tmp_path, '    r = std.http.request(url: "${url}/gone", ok: [200, 404])\n    return (status: r.status)')
    _, done = weft.run(path, "-i", f"url={service.url}", code=0)
    assert 'result: {"status": 404}' in done.stdout
    path = flow(tmp_path, '    r = std.http.request(url: "${url}/flaky", ok: [201])\n    return (status: r.status)')
    _, done = weft.run(path, "-i", f"url={service.url}", code=3)
    assert "answered 200" in done.stdout


def test_check_false_returns_every_status_as_data(weft, service, tmp_path):
    path = flow(
        tmp_path,
        '    r = std.http.request(url: "${url}/gone", check: false)\n'
        '    std.log(message: "said ${r.json.error}")\n'
        "    return (status: r.status)",
    )
    rid, done = weft.run(path, "-i", f"url={service.url}", code=0)
    assert 'result: {"status": 404}' in done.stdout
    assert any(e.get("log") == "said no such host" for e in weft.show(rid)["history"])


def test_the_error_quotes_a_bounded_start_of_the_body(service):
    with pytest.raises(ActionFailed) as err:
        run_action(std_http.request, url=f"{service.url}/big")
    message = str(err.value)
    assert message.startswith(f"GET {service.url}/big answered 500: 'xxx") and message.endswith("...'")
    assert len(message) < 300
