"""Errors as RFC 9457 problem details: every refusal gets its status and says what and where, never a traceback."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from weft.client import Conflict, InvalidInput, limits
from weft.errors import WeftError
from weft.runtime.stores.port import StoreError, StoreFull

MEDIA = "application/problem+json"
log = logging.getLogger("weft.server")

TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Invalid input",
    500: "Internal error",
    503: "Store unavailable",
    507: "Store full",
}


PLAIN = {413: f"the request body is larger than {limits.MAX_FILE >> 20} MiB, the most a request may send"}


@dataclass(frozen=True)
class Problem:
    """The body of every error answer (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None  # the path of the value at fault (inputs.mac, hosts[2].name)
    problems: tuple[str, ...] = ()  # every problem found, when there are several
    state: str | None = None  # a conflict: the run's state


class Refused(Exception):
    """An answer other than success that is not one of the Client's errors (no token, a viewer's POST...)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def answer(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v not in (None, (), [])})
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers)


def status_of(e: WeftError) -> int:
    """The HTTP status of a WeftError: the Client's own, 507 for a full store, 503 for one that cannot answer."""
    if isinstance(e, StoreFull):
        return 507
    if isinstance(e, StoreError):
        return 503
    return getattr(e, "status", 400)


def _field(loc: tuple | list) -> str:
    """A validation error's location as a field path: ('body', 'inputs', 'hosts', 2) -> inputs.hosts[2]."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or str(loc[0] if loc else "request")


def _documented(app: FastAPI) -> None:
    """Document error answers as application/problem+json, the type they are sent with (FastAPI says JSON)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = generate()
        for operation in (op for path in schema.get("paths", {}).values() for op in path.values()) if first else ():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in "45" and "application/json" in content:
                    content[MEDIA] = content.pop("application/json")
        return schema

    app.openapi = openapi


def install(app: FastAPI) -> None:
    """Answer every error as a problem: the Client's by their status, bad requests 422, anything else 500."""
    _documented(app)

    @app.exception_handler(WeftError)
    async def weft_error(request: Request, e: WeftError) -> JSONResponse:
        return answer(
            status_of(e),
            str(e),
            field=getattr(e, "field", None),
            problems=tuple(getattr(e, "problems", ())) if isinstance(e, InvalidInput) else (),
            state=e.state if isinstance(e, Conflict) else None,
        )

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> JSONResponse:
        return answer(e.status, e.detail, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        if any(err.get("type") == "json_invalid" for err in e.errors()):
            return answer(400, "the request body is not valid JSON")
        found = [f"{_field(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in e.errors()]
        first = e.errors()[0] if e.errors() else {}
        return answer(422, found[0] if found else "invalid request", field=_field(first.get("loc", ())), problems=found)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        detail = e.detail if isinstance(e.detail, str) else TITLES.get(e.status_code, "Error")
        return answer(e.status_code, detail, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:  # a bug in Weft: logged, never shown
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return answer(500, f"internal error: {type(e).__name__} (the server's log has the traceback)")


class PlainErrors:
    """ASGI middleware: an error the framework answers in plain text or with no body type (a body too large...)
    becomes a problem."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        replaced: list[bytes] = []

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                kind = headers.get(b"content-type", b"")
                if message["status"] >= 400 and (not kind or kind.startswith(b"text/plain")):  # (the console's
                    # own pages of errors are HTML: they go out as they are)
                    status = message["status"]
                    body = answer(status, PLAIN.get(status, TITLES.get(status, "Error"))).body
                    replaced.append(body)
                    headers = [(b"content-type", MEDIA.encode()), (b"content-length", str(len(body)).encode())]
                    message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and replaced:
                if message.get("more_body"):
                    return  # the plain body is dropped; the problem goes out with the last part
                message = {**message, "body": replaced[0]}
            await send(message)

        await self.app(scope, receive, sending)
