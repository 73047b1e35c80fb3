"""The standard actions (`std.*`), each really run: files, programs, HTTP on loopback."""

import json
import os
import socket
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import weft.stdlib_actions as std
from weft.sdk.actions import ActionFailed, call, definition, lookup
from weft.stdlib_actions import file as std_file
from weft.stdlib_actions import http as std_http
from weft.sdk.testing import RecordingContext, run_action


def _cancelled_after(seconds: float) -> RecordingContext:
    cancel = threading.Event()
    threading.Timer(seconds, cancel.set).start()
    return RecordingContext(cancel_event=cancel)


# -- core -----------------------------------------------------------------------


def test_log_goes_to_the_context():
    out = run_action(std.log, message="host web1 is ready")
    assert out == {} and out.context.log_lines == ["host web1 is ready"]


def test_echo_returns_its_value():
    assert run_action(std.echo, value={"a": [1, 2.5, None, True]}) == {"value": {"a": [1, 2.5, None, True]}}


def test_sleep_waits():
    start = time.monotonic()
    assert run_action(std.sleep, seconds=0.05) == {}
    assert time.monotonic() - start >= 0.05


def test_sleep_stops_when_the_run_is_cancelled():
    start = time.monotonic()
    with pytest.raises(ActionFailed, match="cancelled while sleeping 30s"):
        call(definition(std.sleep), {"seconds": 30}, _cancelled_after(0.05))
    assert time.monotonic() - start < 5


def test_fail_raises_its_message():
    with pytest.raises(ActionFailed, match="^subnet is full$"):
        run_action(std.fail, message="subnet is full")


def test_std_actions_have_contracts():
    assert not definition(std.file.append).idempotent and definition(std.file.write).idempotent
    assert str(lookup("weft.stdlib_actions", "exec").outputs) == "(code: int, stdout: str, stderr: str)"
    assert str(definition(std_http.request).outputs) == "(status: int, body: str, json: any, headers: dict[str, str])"
    assert all(d.doc for d in map(definition, [std.log, std.echo, std.sleep, std.fail, std_file.write]))


# -- std.file -------------------------------------------------------------------


def test_append_creates_folders_and_appends_lines(tmp_path):
    target = tmp_path / "audit" / "log.txt"
    run_action(std_file.append, path=str(target), line="created web1")
    run_action(std_file.append, path=str(target), line="created web2")
    assert target.read_text() == "created web1\ncreated web2\n"


def test_write_replaces_atomically_and_keeps_permissions(tmp_path):
    target = tmp_path / "conf" / "hosts"
    run_action(std_file.write, path=str(target), text="one\n")
    assert target.read_text() == "one\n"
    os.chmod(target, 0o640)
    run_action(std_file.write, path=str(target), text="two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(target.parent) == ["hosts"]


def test_file_errors_fail_the_step(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ActionFailed, match="cannot write .*folder: Is a directory"):
        run_action(std_file.write, path=str(tmp_path / "folder"), text="x")
    assert os.listdir(tmp_path / "folder") == []
    with pytest.raises(ActionFailed, match="cannot append to"):
        run_action(std_file.append, path=str(tmp_path / "folder"), line="x")


# -- std.exec -------------------------------------------------------------------

run_argv = std.run_argv


def test_exec_runs_a_program():
    assert run_action(run_argv, argv=["/bin/echo", "hello", "world"]) == {
        "code": 0,
        "stdout": "hello world\n",
        "stderr": "",
    }


def test_exec_passes_env_and_cwd(tmp_path):
    script = "import os; print(os.environ['WEFT_GREETING'], os.getcwd())"
    out = run_action(run_argv, argv=[sys.executable, "-c", script], env={"WEFT_GREETING": "hi"}, cwd=str(tmp_path))
    assert out["stdout"] == f"hi {tmp_path}\n"


def test_exec_failure_reports_code_and_stderr():
    argv = ["/bin/sh", "-c", "echo first >&2; echo disk full >&2; exit 3"]
    with pytest.raises(ActionFailed) as info:
        run_action(run_argv, argv=argv)
    assert str(info.value) == "/bin/sh exited with code 3:\nfirst\ndisk full"
    assert run_action(run_argv, argv=argv, check=False)["code"] == 3


def test_exec_timeout_kills_the_program():
    start = time.monotonic()
    with pytest.raises(ActionFailed, match="^/bin/sh timed out after 0.2s$"):
        run_action(run_argv, argv=["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=0.2)
    assert time.monotonic() - start < 5


def test_exec_stops_when_the_run_is_cancelled():
    with pytest.raises(ActionFailed, match="^/bin/sleep was cancelled$"):
        call(definition(run_argv), {"argv": ["/bin/sleep", "30"]}, _cancelled_after(0.1))


def test_exec_of_a_missing_program_or_empty_argv_fails():
    with pytest.raises(ActionFailed, match="cannot run /no/such/program: No such file or directory"):
        run_action(run_argv, argv=["/no/such/program"])
    with pytest.raises(ActionFailed, match="argv is empty"):
        run_action(run_argv, argv=[])


# -- std.http -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Seen", "1")
        self.send_header("X-Seen", "2")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/hosts":
            self._reply(200, json.dumps({"hosts": ["web1"], "token": self.headers.get("X-Token")}))
        elif self.path == "/text":
            self._reply(200, "plain words", "text/plain; charset=utf-8")
        elif self.path == "/slow":
            time.sleep(1)
            self._reply(200, "{}")
        else:
            self._reply(404, json.dumps({"error": "not found"}))

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        received = json.loads(self.rfile.read(length))
        self._reply(
            500 if received.get("boom") else 201, json.dumps({"got": received, "type": self.headers["Content-Type"]})
        )


class _QuietServer(ThreadingHTTPServer):
    """The timeout test hangs up on purpose; a broken connection is not news."""

    def handle_error(self, request, client_address) -> None:
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    srv = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_get_parses_json(server):
    out = run_action(std_http.request, url=f"{server}/hosts", headers={"X-Token": "t0k"})
    assert out["status"] == 200
    assert out["json"] == {"hosts": ["web1"], "token": "t0k"}
    assert json.loads(out["body"]) == out["json"]
    assert out["headers"]["content-type"] == "application/json"
    assert out["headers"]["x-seen"] == "1, 2"


def test_http_text_body_has_no_json(server):
    out = run_action(std_http.request, url=f"{server}/text")
    assert (out["status"], out["body"], out["json"]) == (200, "plain words", None)


def test_http_post_sends_json(server):
    out = run_action(std_http.request, url=f"{server}/hosts", method="post", json={"name": "web1", "ips": [1, 2]})
    assert out["status"] == 201
    assert out["json"] == {"got": {"name": "web1", "ips": [1, 2]}, "type": "application/json"}


def test_http_error_statuses_are_returned_without_check(server):
    assert run_action(std_http.request, url=f"{server}/missing", check=False)["json"] == {"error": "not found"}
    assert run_action(std_http.request, url=f"{server}/missing", check=False)["status"] == 404
    out = run_action(std_http.request, url=server, method="POST", json={"boom": True}, check=False)
    assert out["status"] == 500


def test_http_error_statuses_fail_the_step(server):
    with pytest.raises(ActionFailed, match=rf"^GET {server}/missing answered 404: '{{\"error\": \"not found\"}}'$"):
        run_action(std_http.request, url=f"{server}/missing")
    assert run_action(std_http.request, url=f"{server}/missing", ok=[404])["status"] == 404


def test_http_connection_failures_fail_the_step():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ActionFailed, match=rf"^GET http://127.0.0.1:{port}/ failed: .*refused"):
        run_action(std_http.request, url=f"http://127.0.0.1:{port}/")


def test_http_timeout_fails_the_step(server):
    with pytest.raises(ActionFailed, match="failed: timed out"):
        run_action(std_http.request, url=f"{server}/slow", timeout=0.2)


def test_http_only_speaks_http():
    with pytest.raises(ActionFailed, match="url must start with http:// or https://"):
        run_action(std_http.request, url="file:///etc/passwd")
