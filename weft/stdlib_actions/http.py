"""`std.http.request`: one HTTP request (urllib); a status outside `ok` fails the step, unless `check` is false."""

from __future__ import annotations

import http.client
import json as jsonlib
import urllib.error
import urllib.request
from email.message import Message
from typing import Any, TypedDict

from weft.sdk.actions import ActionFailed, action

BODY_SHOWN = 200  # characters of a failing response's body its error message quotes


class Response(TypedDict):
    status: int
    body: str
    json: Any
    headers: dict[str, str]


@action
def request(
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
    failure or timeout fails the step. `json` in the result is the parsed body
    when the response is JSON, else none; header names are lower-case.
    """
    verb = method.upper()
    if not url.startswith(("http://", "https://")):
        raise ActionFailed(f"url must start with http:// or https://, not {url!r}")
    sent = dict(headers or {})
    data = None
    if json is not None:
        data = jsonlib.dumps(json).encode("utf-8")
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
    try:
        req = urllib.request.Request(url, data=data, headers=sent, method=verb)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = _response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        try:
            out = _response(e.code, e.headers, e.read())
        finally:
            e.close()
    except urllib.error.URLError as e:
        raise ActionFailed(f"{verb} {url} failed: {e.reason}") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise ActionFailed(f"{verb} {url} failed: {e or type(e).__name__}") from e
    if check and not (out["status"] in ok if ok is not None else 200 <= out["status"] < 400):
        raise ActionFailed(f"{verb} {url} answered {out['status']}: {_start(out['body'])}")
    return out


def _start(body: str) -> str:
    """The start of a body for a one-line error message."""
    text = " ".join(body.split())
    if not text:
        return "(empty body)"
    return repr(text[:BODY_SHOWN] + ("..." if len(text) > BODY_SHOWN else ""))


def _response(status: int, headers: Message, raw: bytes) -> Response:
    try:
        body = raw.decode(headers.get_content_charset() or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        body = raw.decode("utf-8", errors="replace")
    parsed = None
    if "json" in headers.get_content_type():
        try:
            parsed = jsonlib.loads(body)
        except ValueError:
            parsed = None
    merged: dict[str, str] = {}
    for key, value in headers.items():
        key = key.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return {"status": status, "body": body, "json": parsed, "headers": merged}
