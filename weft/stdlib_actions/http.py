"""`std.http.request`: one HTTP request (urllib); every status comes back as data."""

from __future__ import annotations

import http.client
import json as jsonlib
import urllib.error
import urllib.request
from email.message import Message
from typing import Any, TypedDict

from weft.sdk.actions import ActionFailed, action


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
) -> Response:
    """Send an HTTP request; return its status, body, JSON body and headers.

    `json`, when given, is sent as a JSON body. Any status (404, 500...) is
    returned, not raised; a connection failure or timeout fails the step.
    `json` in the result is the parsed body when the response is JSON, else
    none; header names are lower-case.
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
            return _response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        try:
            return _response(e.code, e.headers, e.read())
        finally:
            e.close()
    except urllib.error.URLError as e:
        raise ActionFailed(f"{verb} {url} failed: {e.reason}") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise ActionFailed(f"{verb} {url} failed: {e or type(e).__name__}") from e


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
