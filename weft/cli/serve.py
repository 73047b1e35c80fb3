"""`weft serve`: the REST API, live event streams and web console, with an embedded worker unless --no-worker."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

from weft.cli.worker import seconds
from weft.errors import WeftError
from weft.runtime.executors.celery_app import broker_url
from weft.runtime.stores import open_store, store_dir


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(args: Any) -> int:
    import uvicorn

    from weft.server import auth
    from weft.server.app import Settings, create_app
    from weft.server.problems import PlainErrors

    if args.workers is not None and args.workers < 1:
        raise WeftError(f"--workers must be at least 1, not {args.workers}")
    if not 0 <= args.port < 65536:
        raise WeftError(f"--port must be 0 (any free port) to 65535, not {args.port}")
    for folder in args.flows:
        if not os.path.isdir(folder):
            raise WeftError(f"--flows {folder}: no such folder")
    token = args.token or os.environ.get("WEFT_TOKEN") or None
    viewer = args.viewer_token or os.environ.get("WEFT_VIEWER_TOKEN") or None
    if not _loopback(args.host) and token is None:
        raise WeftError(f"--host {args.host} is not a loopback address: give --token (or $WEFT_TOKEN) to serve it")
    path = store_dir(args.store)
    open_store(path, create=True).close()  # the folder, owner-only, before the token files go in it
    tokens = auth.load(path, token, viewer)
    settings = Settings(
        store=path,
        flows=tuple(args.flows),
        tokens=tokens,
        worker=not args.no_worker,
        runs=args.workers or Settings.runs,
        grace=seconds(args.grace),
        broker=broker_url(args.broker),
    )
    app = create_app(settings)
    try:
        sock = socket.create_server((args.host, args.port), family=_family(args.host))
    except OSError as e:
        raise WeftError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    # Answers leave at once (no Nagle): asyncio turns Nagle off only for sockets made with proto IPPROTO_TCP,
    # which create_server's are not, and each answer's second write waited 40 ms for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"weft serve: console at http://{shown}:{port}/  (API: /api/v1, docs: /api/docs)")
    print(f"weft serve: operator token {tokens.operator}")
    print(f"weft serve: viewer token {tokens.viewer}")
    print(f"weft serve: store {path}, {'no worker' if args.no_worker else f'worker driving {settings.runs} runs'}")
    sys.stdout.flush()
    # outside every framework layer, so that even the body-size limiter answers with a problem
    config = uvicorn.Config(PlainErrors(app), log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
