"""`weft lsp` under malformed input: raw bytes over stdio to a real server process.

After a bad header, a wrong length, stray bytes, a body that is not JSON or
params of the wrong type, the server answers every request with a result or a
JSON-RPC error and goes on to the next well-formed message, shutdown included.
The framing itself is property-tested on random splits of a stream.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pygls.uris import from_fs_path

from weft.lsp.stream import INVALID_PARAMS, INVALID_REQUEST, JUNK, PARSE_ERROR, Framer

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30


def frame(message: dict | bytes, length: int | str | None = None) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode() + body


def request(msg_id, method: str, params=None) -> dict:
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params}


class RawServer:
    """A `weft lsp` process spoken to in bytes; replies are read on a thread."""

    def __init__(self, tmp_path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weft.cli.main", "lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=env,
        )
        self.replies: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                byte = out.read(1)
                if not byte:
                    return
                header += byte
            length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
            self.replies.put(json.loads(out.read(length)))

    def _drain_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def answer(self, msg_id) -> dict:
        """The reply to request `msg_id`; every reply read on the way is kept in `seen`."""
        while True:
            reply = self.replies.get(timeout=TIMEOUT)
            self.seen.append(reply)
            if "method" not in reply and reply.get("id") == msg_id:
                return reply

    def diagnostics(self, uri: str) -> list[dict]:
        """The next diagnostics published for `uri`."""
        while True:
            reply = self.replies.get(timeout=TIMEOUT)
            if reply.get("method") == "textDocument/publishDiagnostics" and reply["params"]["uri"] == uri:
                return reply["params"]["diagnostics"]

    def errors(self) -> list[dict]:
        """Error replies without an id seen so far (parse errors, invalid requests)."""
        return [r for r in self.seen if "error" in r and r.get("id") is None]

    def initialize(self, root: Path) -> None:
        self.send(
            frame(request(1, "initialize", {"processId": None, "rootUri": from_fs_path(str(root)), "capabilities": {}}))
        )
        assert "result" in self.answer(1)
        self.send(frame(notification("initialized", {})))

    def open(self, path: Path, text: str) -> str:
        uri = from_fs_path(str(path))
        item = {"uri": uri, "languageId": "weft", "version": 1, "text": text}
        self.send(frame(notification("textDocument/didOpen", {"textDocument": item})))
        return uri

    def finish(self) -> None:
        """Shutdown must still be answered, and exit must end the process."""
        self.send(frame(request("bye", "shutdown")))
        assert self.answer("bye").get("result", "missing") is None
        self.send(frame(notification("exit", None)))
        self.proc.stdin.close()
        assert self.proc.wait(timeout=TIMEOUT) is not None
        assert b"Traceback" not in self.stderr or b"RecursionError" not in self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    s = RawServer(tmp_path)
    s.initialize(tmp_path)
    yield s
    s.kill()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the tests whose requests are well framed: each test then checks it still answers a
    well-formed request; the last one out checks that shutdown is answered and exit ends it."""
    folder = tmp_path_factory.mktemp("lsp")
    s = RawServer(folder)
    s.initialize(folder)
    s.folder, s.ids = folder, itertools.count(1000)
    s.greet = s.open(folder / "greet.flow", FLOW)
    yield s
    try:
        s.finish()
    finally:
        s.kill()


def still_answers(server: RawServer) -> None:
    msg_id = next(server.ids)
    server.send(frame(hover(msg_id, server.greet, 1, 10)))
    assert "result" in server.answer(msg_id)


def hover(msg_id, uri: str, line=0, character=0) -> dict:
    return request(
        msg_id, "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
    )


FLOW = 'flow greet(who: str) {\n    std.log(message: "hello ${who}")\n}\n'


@pytest.mark.parametrize(
    "bad",
    [
        frame(hover(90, "file:///x.flow"), length="abc"),
        frame(hover(90, "file:///x.flow"), length=10),  # too short: the JSON runs on
        b"Content-Length: 99999999999\r\n\r\n{}",  # past the body limit
        frame(b"{not json at all"),
        frame(b"\xff\xfe\x00 not utf-8"),
        os.urandom(3000).replace(b"Content-Length", b""),
        b"\r\n\r\n\r\nContent-Type: x\r\n\r\n",
    ],
    ids=[
        "length-abc",
        "length-short",
        "length-huge",
        "body-not-json",
        "body-not-utf8",
        "random-bytes",
        "blank-headers",
    ],
)
def test_a_malformed_message_does_not_stop_later_requests(server, tmp_path, bad):
    uri = server.open(tmp_path / "greet.flow", FLOW)
    server.send(bad)
    server.send(frame(hover(2, uri, 1, 10)))
    assert "result" in server.answer(2)
    server.finish()


def test_a_length_too_long_still_answers_the_request_and_the_next(server, tmp_path):
    uri = server.open(tmp_path / "greet.flow", FLOW)
    server.send(frame(hover(3, uri, 1, 10), length=100_000) + frame(hover(4, uri, 1, 10)))
    assert "result" in server.answer(3)
    assert "result" in server.answer(4)
    server.finish()


def test_bad_framing_is_answered_with_a_parse_error(server):
    server.send(frame(b"{nope", length="abc") + frame(b"[1, 2") + frame(request(5, "shutdown")))
    assert server.answer(5)["result"] is None
    errors = server.errors()
    assert errors and all(e["error"]["code"] == PARSE_ERROR for e in errors)
    server.send(frame(notification("exit", None)))


@pytest.mark.parametrize(
    "params",
    [
        {"textDocument": {"uri": "file:///x.flow"}, "position": "line 3"},
        {"textDocument": {"uri": "file:///x.flow"}, "position": {"line": 2**70, "character": 2**70}},
        {"textDocument": {"uri": "file:///x.flow"}, "position": {"line": -1, "character": 0}},
        {"textDocument": {"uri": 42}, "position": {"line": 0, "character": 0}},
        {"textDocument": "x"},
        "params as a string",
        [1, 2, 3],
    ],
)
@pytest.mark.parametrize("method", ["textDocument/hover", "textDocument/completion", "textDocument/definition"])
def test_ill_typed_params_get_a_json_rpc_error(shared, method, params):
    msg_id = next(shared.ids)
    shared.send(frame(request(msg_id, method, params)))
    reply = shared.answer(msg_id)
    assert "result" in reply or reply["error"]["code"] in (INVALID_PARAMS, INVALID_REQUEST, -32603)
    still_answers(shared)


def test_a_position_past_the_document_is_answered(server, tmp_path):
    uri = server.open(tmp_path / "greet.flow", FLOW)
    for n, (line, character) in enumerate([(2**31 - 1, 2**31 - 1), (1000, 0), (1, 100_000)]):
        server.send(frame(hover(10 + n, uri, line, character)))
        assert "result" in server.answer(10 + n)
        server.send(frame(request(20 + n, "textDocument/completion", hover(0, uri, line, character)["params"])))
        assert "result" in server.answer(20 + n)
    server.finish()


def test_messages_that_are_not_requests_get_invalid_request(server):
    server.send(frame([1, 2, 3]) + frame({"id": 7, "method": "textDocument/hover"}) + frame(b"42"))
    server.send(frame(request(8, "shutdown")))
    assert server.answer(8)["result"] is None
    codes = [e["error"]["code"] for e in server.errors()]
    assert INVALID_REQUEST in codes
    server.send(frame(notification("exit", None)))


def test_requests_after_shutdown_are_refused_not_dropped(server):
    server.send(frame(request(9, "shutdown")))
    assert server.answer(9)["result"] is None
    server.send(
        frame(
            request(
                10,
                "textDocument/hover",
                {"textDocument": {"uri": "file:///x"}, "position": {"line": 0, "character": 0}},
            )
        )
    )
    assert server.answer(10)["error"]["code"] == INVALID_REQUEST
    server.send(frame(notification("exit", None)))
    server.proc.stdin.close()
    assert server.proc.wait(timeout=TIMEOUT) is not None


NESTED = {
    "sequence": lambda n: (
        "flow f(x: int) {\n" + "sequence {\n" * n + "    std.log(message: x)\n    std.\n" + "}\n" * n + "}\n"
    ),
    "each": lambda n: (
        "flow f(x: list[int]) {\n" + "each i in x {\n" * n + "    std.log(message: i)\n    std.\n" + "}\n" * n + "}\n"
    ),
    "list": lambda n: "flow f(x: int) {\n    let v = " + "[" * n + "x" + "]" * n + "\n    std.\n}\n",
    "record": lambda n: "flow f(x: int) {\n    let v = " + "(a: " * n + "x" + ")" * n + "\n    std.\n}\n",
    "unclosed": lambda n: "flow f(x: int) {\n    let v = " + "[(a: " * n + "\n    std.\n",
    "unclosed-blocks": lambda n: "flow f(x: int) {\n" + "each i in [x] {\n" * n + "    std.\n",
}


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_completion_in_a_deeply_nested_document(shared, kind):
    text = NESTED[kind](200)
    uri = shared.open(shared.folder / f"deep-{kind}.flow", text)
    lines = text.split("\n")
    line = next(i for i, t in enumerate(lines) if t.strip() == "std.")
    params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": len(lines[line])}}
    msg_id = next(shared.ids)
    shared.send(frame(request(msg_id, "textDocument/completion", params)))
    reply = shared.answer(msg_id)
    assert "result" in reply, reply
    assert any(item["label"] == "log" for item in reply["result"]["items"])
    for method in ["textDocument/hover", "textDocument/definition", "textDocument/documentSymbol"]:
        msg_id = next(shared.ids)
        shared.send(
            frame(
                request(
                    msg_id,
                    method,
                    params if method != "textDocument/documentSymbol" else {"textDocument": {"uri": uri}},
                )
            )
        )
        assert "result" in shared.answer(msg_id)
    still_answers(shared)


# -- the framing alone ------------------------------------------------------------------------------

MESSAGES = st.lists(
    st.dictionaries(
        st.sampled_from(["id", "text", "n"]), st.one_of(st.integers(), st.text(max_size=30)), max_size=3
    ).map(lambda d: {"jsonrpc": "2.0", **d}),
    min_size=1,
    max_size=8,
)
JUNK_BYTES = st.binary(max_size=60).filter(lambda b: b"content-length" not in b.lower())


@settings(max_examples=200, deadline=None)
@given(MESSAGES, st.lists(JUNK_BYTES, min_size=9, max_size=9), st.lists(st.integers(1, 50), min_size=1), st.data())
def test_framer_recovers_every_well_formed_message(messages, junk, cuts, data):
    """Messages with junk between them, fed in arbitrary pieces: each message comes out once,
    in order, and the junk only as JUNK markers."""
    stream = b"".join(junk[i] + frame(m) for i, m in enumerate(messages))
    framer, got, at = Framer(), [], 0
    for size in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        got += framer.feed(stream[at : at + size])
        at += size
        if at >= len(stream):
            break
    got += framer.feed(stream[at:])
    assert [g for g in got if g is not JUNK] == messages


@given(st.binary(max_size=5000))
@settings(max_examples=100, deadline=None)
def test_framer_keeps_bounded_memory_on_garbage(garbage):
    framer = Framer()
    framer.feed(garbage.replace(b"Content-Length", b""))
    assert len(framer.buf) <= len(b"Content-Length:")
    framer.feed(b"Content-Length: 12" + b"9" * 5000)  # a header that never ends is junk too
    assert len(framer.buf) <= len(b"Content-Length:")


def test_framer_takes_the_json_when_the_declared_length_is_wrong():
    good = {"jsonrpc": "2.0", "id": 1, "method": "shutdown"}
    assert Framer().feed(frame(good, length=5)) == [good]  # too short, the rest arrived
    too_long = Framer()
    assert too_long.feed(frame(good, length=10_000)) == []  # too long: waits, it may be a big message
    assert too_long.feed(frame(good)) == [good, good]  # ... until the next header shows it was too long


def test_ten_thousand_diagnostics_on_one_long_line_are_published(server, tmp_path):
    """A 120 KB line of 10,000 unused parameters, with an emoji at its end (a line that is not
    ASCII): every warning is published at its UTF-16 position, without a pass over the line each."""
    params = ", ".join(f"p{i}: int" for i in range(10_000))
    text = f'flow f({params}) {{  # 🎉\n    std.log(message: "hi")\n}}\n'
    began = time.monotonic()
    diags = server.diagnostics(server.open(tmp_path / "wide.flow", text))
    assert time.monotonic() - began < 20
    assert len(diags) == 10_000 and all(d["code"] == "W202" for d in diags)
    last = diags[-1]["range"]["start"]
    assert last == {"line": 0, "character": text.index("p9999")}
    server.finish()


def test_a_document_importing_the_servers_own_input_or_a_pipe_is_told_so_and_the_server_goes_on(server, tmp_path):
    """`import "/dev/stdin"` (typed in an editor: the server's own requests) or a FIFO: the import was read, and
    the server waited on it for good, answering nothing again, shutdown included."""
    os.mkfifo(tmp_path / "pipe.flow")
    for target in ("/dev/stdin", "pipe.flow"):
        uri = server.open(tmp_path / "imports.flow", f'import "{target}"\nflow c() {{}}\n')
        assert [(d["code"], d["message"]) for d in server.diagnostics(uri)] == [
            ("E121", f"cannot read {target if target.startswith('/') else tmp_path / target}: not a regular file")
        ]
    server.send(frame(hover(5, uri, 1, 5)))
    assert "result" in server.answer(5)
    server.finish()
