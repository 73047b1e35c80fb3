"""The editor server's stdio transport: framing that recovers from malformed input.

pygls's own reader trusts every header. After `Content-Length: abc`, a length
that is too short, or stray bytes, it reads each later body as a header line
and answers nothing again, shutdown included; a request whose params do not
fit their type is logged and never answered. This transport frames messages
itself: it finds the next `Content-Length` header wherever it is, takes the
JSON a body holds when its declared length is wrong, and answers what it
cannot hand on with a JSON-RPC error (with the request's id when it has one),
so every request gets a result or an error and the session goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import BinaryIO

from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

logger = logging.getLogger(__name__)

HEADER = re.compile(
    rb"Content-Length:[ \t]*([0-9]{1,12})[ \t]*\r?\n(?:[A-Za-z][A-Za-z0-9-]*:[^\r\n]*\r?\n)*\r?\n", re.IGNORECASE
)
MAX_BODY = 64 << 20  # bytes: an 8 MiB .flow file, escaped, fits many times over
_KEEP = len(b"Content-Length:")  # what may be the start of a header split across reads
MAX_HEADER = 1024  # bytes of a header block that is still arriving
JUNK = object()  # bytes that are no message: answered with a parse error

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602


class Framer:
    """Splits a byte stream into JSON messages, resynchronizing on the next header.

    `feed` returns, in order, each complete message (the decoded JSON value) and
    JUNK once for each run of bytes that is no message."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.in_junk = False  # JUNK was reported for the bytes being skipped
        self.searched = 0  # how far a pending body was searched for a next header

    def feed(self, data: bytes) -> list:
        self.buf += data
        out: list = []
        while True:
            m = HEADER.search(self.buf)
            junk = self._header_start() if m is None else m.start()
            if bytes(self.buf[:junk]).strip():
                self._junk(out)
            del self.buf[:junk]
            if m is None:
                return out
            if junk:
                continue  # offsets moved
            start, size = m.end(), int(m.group(1))
            if size > MAX_BODY:
                self._skip(out, start)
                continue
            if len(self.buf) - start >= size:
                value = _decode(self.buf[start : start + size])
                if value is not JUNK:
                    self._take(out, value, start + size)
                    continue
                end = _json_end(self.buf, start)  # the declared length is wrong: the JSON decides
                if end is None:
                    self._skip(out, start)
                else:
                    self._take(out, _decode(self.buf[start:end]), end)
                continue
            # Not all there yet, or the declared length is too long: it is too long when a
            # complete JSON value is followed by the next message's header.
            later = HEADER.search(self.buf, max(start, self.searched - _KEEP))
            self.searched = len(self.buf)
            end = _json_end(self.buf, start) if later else None
            if end is None or not HEADER.match(self.buf, _skip_space(self.buf, end)):
                return out
            self._take(out, _decode(self.buf[start:end]), end)

    def _header_start(self) -> int:
        """Where a header that has not fully arrived may begin: the bytes before it are junk."""
        at = self.buf.lower().rfind(b"content-length:")
        if at >= 0 and len(self.buf) - at <= MAX_HEADER:
            return at
        return max(0, len(self.buf) - _KEEP)

    def _take(self, out: list, value, end: int) -> None:
        out.append(value)
        del self.buf[:end]
        self.in_junk, self.searched = False, 0

    def _skip(self, out: list, end: int) -> None:
        """Drop a header whose body cannot be read; what follows is junk up to the next header."""
        self._junk(out)
        del self.buf[:end]
        self.searched = 0

    def _junk(self, out: list) -> None:
        if not self.in_junk:
            out.append(JUNK)
            self.in_junk = True


def _decode(body: bytes):
    try:
        return json.loads(body)
    except ValueError:  # bad JSON or bad UTF-8
        return JUNK


def _json_end(buf: bytearray, start: int) -> int | None:
    """The end (a byte offset) of the complete JSON value that starts at `start`, if any."""
    text = bytes(buf[start:]).decode("utf-8", errors="replace")
    try:
        _value, end = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip()))
    except ValueError:
        return None
    return start + len(text[:end].encode("utf-8", errors="replace"))


def _skip_space(buf: bytearray, at: int) -> int:
    while at < len(buf) and buf[at] in b" \t\r\n":
        at += 1
    return at


class Dispatcher:
    """Hands decoded messages to the server's protocol, answering those it cannot take."""

    def __init__(self, server: LanguageServer, writer: StdoutWriter) -> None:
        self.server, self.writer = server, writer
        self.shut_down = False

    def __call__(self, value) -> None:
        if value is JUNK:
            return self.error(None, PARSE_ERROR, "parse error: not a JSON-RPC message (bad header or JSON)")
        if not isinstance(value, dict) or value.get("jsonrpc") != "2.0":
            return self.error(_id(value), INVALID_REQUEST, "invalid request: not a JSON-RPC 2.0 message")
        request = "id" in value and "method" in value
        if request and self.shut_down and value["method"] != "exit":
            return self.error(_id(value), INVALID_REQUEST, "invalid request: the server is shutting down")
        protocol = self.server.protocol
        try:
            message = protocol.structure_message(value)
        except Exception as e:  # params of the wrong shape or type: pygls would answer nothing
            if request:
                self.error(_id(value), INVALID_PARAMS, f"invalid params for {value['method']!r}: {_cause(e)}")
            return None
        if request and value["method"] == "shutdown":
            self.shut_down = True
        try:
            protocol.handle_message(message)
        except Exception as e:  # a request pygls could not route still gets its answer
            logger.exception("cannot handle message")
            if request:
                self.error(_id(value), INVALID_REQUEST, f"cannot handle {value['method']!r}: {_cause(e)}")
        return None

    def error(self, msg_id, code: int, message: str) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})
        self.writer.write(f"Content-Length: {len(body)}\r\n\r\n{body}".encode())


def _id(value):
    """A message's id if it is a valid JSON-RPC id, else None (as the spec answers)."""
    msg_id = value.get("id") if isinstance(value, dict) else None
    return msg_id if isinstance(msg_id, (str, int)) and not isinstance(msg_id, bool) else None


def _cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def serve(server: LanguageServer, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serve over a byte stream until it ends or the client says `exit`
    (pygls's `start_io`, with this module's framing)."""
    writer = StdoutWriter(stdout)
    server.protocol.set_writer(writer)
    try:
        asyncio.run(_loop(server, stdin, writer))
    except BrokenPipeError:
        logger.error("the editor closed the connection")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


async def _loop(server: LanguageServer, stdin: BinaryIO, writer: StdoutWriter) -> None:
    loop = asyncio.get_running_loop()
    framer, dispatch = Framer(), Dispatcher(server, writer)
    read = getattr(stdin, "read1", stdin.read)
    while True:  # `exit` ends it with SystemExit
        data = await loop.run_in_executor(server.thread_pool, read, 1 << 16)
        if not data:
            break
        for value in framer.feed(data):
            dispatch(value)
