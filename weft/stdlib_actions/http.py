"""`std.http.request`: one HTTP request (async); a status outside `ok` fails the step, unless `check` is false.

The calls on one event loop (the local executor's: the runs this process
drives) share one client (http1/: HTTP/1.1 over asyncio, responses parsed by
httptools) and so its connections: repeated calls to a service reuse them.
"""

from __future__ import annotations

import json as jsonlib
from typing import TYPE_CHECKING, Any, TypedDict

from weft.sdk.actions import ActionFailed, action

if TYPE_CHECKING:
    from weft.stdlib_actions.http1.wire import Reply

BODY_SHOWN = 200  # characters of a failing response's body its error message quotes


class Response(TypedDict):
    status: int
    body: str
    json: Any
    headers: dict[str, str]


@action
async def request(
    url: str,
    method: str = "GET",
    json: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    ok: list[int] | None = None,
    check: bool = True,
) -> Response:
    """Send an HTTP request; return its status, body, JSON body and headers.

    `json`, when given, is sent as a JSON body. A status not in `ok` (by
    default any 2xx or 3xx) fails the step, naming the status and the start
    of the body, so `retry`, pause and resume act on the request itself;
    with `check: false` every status is returned as data. A connection
    failure or timeout fails the step, and so does a body over 16 MiB.
    Redirects are followed. `json` in the result is the parsed body when the
    response is JSON, else none; header names are lower-case.
    """
    verb = method.upper()
    if not url.startswith(("http://", "https://")):
        raise ActionFailed(f"url must start with http:// or https://, not {url!r}")
    from weft.sdk.loops import shared  # (asyncio) at the first call: compiling a flow imports this module
    from weft.stdlib_actions.http1.client import Client
    from weft.stdlib_actions.http1.wire import Failure, TimedOut

    client: Client = shared("std.http", Client)
    try:
        reply = await client.request(verb, url, json=json, headers=headers, timeout=timeout)
    except TimedOut as e:
        raise ActionFailed(f"{verb} {url} failed: timed out") from e
    except Failure as e:
        raise ActionFailed(f"{verb} {url} failed: {e}") from e
    out = _response(reply)
    if check and not (out["status"] in ok if ok is not None else 200 <= out["status"] < 400):
        raise ActionFailed(f"{verb} {url} answered {out['status']}: {_start(out['body'])}")
    return out


def _start(body: str) -> str:
    """The start of a body for a one-line error message."""
    text = " ".join(body.split())
    if not text:
        return "(empty body)"
    return repr(text[:BODY_SHOWN] + ("..." if len(text) > BODY_SHOWN else ""))


def _response(reply: Reply) -> Response:
    merged: dict[str, str] = {}
    for key, value in reply.headers:
        name, text = key.decode("latin-1"), _text(value)
        merged[name] = f"{merged[name]}, {text}" if name in merged else text
    kind = merged.get("content-type", "")
    try:
        body = reply.body.decode(_charset(kind), errors="replace")
    except LookupError:  # a charset Python does not know
        body = reply.body.decode("utf-8", errors="replace")
    parsed = None
    if "json" in kind:
        try:
            parsed = jsonlib.loads(reply.body)
        except ValueError:
            parsed = None
    return {"status": reply.status, "body": body, "json": parsed, "headers": merged}


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return "utf-8"


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
