"""The FastAPI application of `weft serve`: API, streams and console over one Client, with an embedded worker."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Response

from weft.client import Client, limits
from weft.runtime.engine.driver import Driver
from weft.runtime.engine.worker import DEFAULT_RUNS, Worker
from weft.runtime.stores import open_store
from weft.server import api, auth, console, problems, schedules_api
from weft.server.catalog import Catalog
from weft.server.schemas import Session, SignedIn
from weft.server.stream import Disconnects, Watcher


@dataclass(frozen=True)
class Settings:
    store: str  # the store folder
    flows: tuple[str, ...] = ()  # folders of the catalogue's .flow files
    tokens: auth.Tokens | None = None  # None: generated into the store folder
    worker: bool = True  # drive the store's runs in this process too
    runs: int = DEFAULT_RUNS  # runs the embedded worker drives at once
    grace: float = 30.0  # on stop, how long running steps may take to finish
    broker: str | None = None  # actions run on agents through this Redis (None: $WEFT_BROKER, else here)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = Client(settings.store, broker=settings.broker)
        store = open_store(client.path, create=True)
        worker = None
        if settings.worker:
            worker = Worker(
                store, Driver, runs=settings.runs, grace=settings.grace, kind="server", executor=client.executor()
            )
            thread = threading.Thread(target=worker.serve, name="weft-embedded-worker", daemon=True)
            thread.start()
        app.state.client = client
        app.state.watcher = Watcher(client)
        app.state.wake = worker.wake if worker is not None else lambda: None
        app.state.worker = worker
        try:
            yield
        finally:
            app.state.watcher.close()
            if worker is not None:
                worker.stop()
                thread.join(settings.grace + 5.0)
            client.close(settings.grace)
            store.close()

    tokens = settings.tokens or auth.load(settings.store, None, None)
    app = FastAPI(
        title="Weft",
        summary="Start, watch and steer durable Weft runs.",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
        max_body_size=limits.MAX_FILE,  # a request body as large as an --inputs file, no larger
    )
    app.state.sessions = auth.Sessions(tokens)
    app.state.catalog = Catalog(settings.flows)
    problems.install(app)
    app.add_middleware(Disconnects)
    app.include_router(api.router)
    app.include_router(schedules_api.router)
    _sessions(app)
    console.mount(app)
    return app


def _sessions(app: FastAPI) -> None:
    """POST /api/v1/session signs in with a token (setting the cookies); POST /api/v1/session/end signs out."""

    @app.post("/api/v1/session", response_model=SignedIn, responses=api.ERRORS, tags=["session"])
    def sign_in(body: Session, response: Response) -> SignedIn:
        sessions: auth.Sessions = app.state.sessions
        role = sessions.tokens.role(body.token)
        if role is None:
            raise problems.Refused(401, "that token is neither the operator's nor the viewer's")
        session, csrf = sessions.issue(role)
        common = dict(samesite="strict", path="/", max_age=int(auth.SESSION_TTL))
        response.set_cookie(auth.SESSION, session, httponly=True, **common)
        response.set_cookie(auth.CSRF, csrf, httponly=False, **common)
        return SignedIn(role)

    @app.post("/api/v1/session/end", status_code=204, tags=["session"])
    def sign_out(response: Response) -> None:
        response.delete_cookie(auth.SESSION, path="/")
        response.delete_cookie(auth.CSRF, path="/")
