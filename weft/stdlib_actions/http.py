"""`std.http.request`: one HTTP request (httpx, async); a status outside `ok` fails the step, unless `check` is false.

The calls on one event loop (the local executor's: the runs this process
drives) share one httpx.AsyncClient over one connection pool (pool.py), so
repeated calls to a service reuse their connections. With a proxy in the
environment (HTTP_PROXY, ...) the client uses httpx's own transport instead.
"""

from __future__ import annotations

from typing import Any, TypedDict
from urllib.request import getproxies

import httpx

from weft.sdk.actions import ActionFailed, action
from weft.sdk.loops import shared
from weft.stdlib_actions.pool import Pool

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
    failure or timeout fails the step. Redirects are followed. `json` in the
    result is the parsed body when the response is JSON, else none; header
    names are lower-case.
    """
    verb = method.upper()
    if not url.startswith(("http://", "https://")):
        raise ActionFailed(f"url must start with http:// or https://, not {url!r}")
    client: httpx.AsyncClient = shared("std.http", _client)
    try:
        resp = await client.request(verb, url, json=json, headers=headers, timeout=timeout)
    except httpx.TimeoutException as e:
        raise ActionFailed(f"{verb} {url} failed: timed out") from e
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
        raise ActionFailed(f"{verb} {url} failed: {e or type(e).__name__}") from e
    out = _response(resp)
    if check and not (out["status"] in ok if ok is not None else 200 <= out["status"] < 400):
        raise ActionFailed(f"{verb} {url} answered {out['status']}: {_start(out['body'])}")
    return out


def _client() -> httpx.AsyncClient:
    """Weft's pool, unless the environment names a proxy: then httpx's own transport, which goes through it."""
    if getproxies():
        return httpx.AsyncClient(follow_redirects=True, limits=httpx.Limits(max_connections=None))
    return httpx.AsyncClient(transport=Pool(), follow_redirects=True)


def _start(body: str) -> str:
    """The start of a body for a one-line error message."""
    text = " ".join(body.split())
    if not text:
        return "(empty body)"
    return repr(text[:BODY_SHOWN] + ("..." if len(text) > BODY_SHOWN else ""))


def _response(resp: httpx.Response) -> Response:
    try:
        body = resp.content.decode(resp.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        body = resp.content.decode("utf-8", errors="replace")
    parsed = None
    if "json" in resp.headers.get("content-type", ""):
        try:
            parsed = resp.json()
        except ValueError:
            parsed = None
    merged: dict[str, str] = {}
    for key, value in resp.headers.multi_items():
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return {"status": resp.status_code, "body": body, "json": parsed, "headers": merged}
