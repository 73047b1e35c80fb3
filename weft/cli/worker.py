"""`weft worker`: the long-running service that drives the runs of a store (see weft.runtime.engine.worker).

SIGTERM or SIGINT stops it cleanly (a second one cuts the grace short); it
exits 0 once every run it drove is finished with or handed back.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

from weft.errors import WeftError
from weft.runtime.stores.lmdb.store import Store, ignore_file_size_signal, store_dir
from weft.runtime.engine.worker import DEFAULT_RUNS, Worker

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """`30`, `30s`, `1.5m` or `1h` as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text)
    if match is None:
        raise WeftError(f"--grace expects a time such as 30s, 2m or 1h, not {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def serve(args: Any) -> int:
    if args.workers is not None and args.workers < 1:
        raise WeftError(f"--workers must be at least 1, not {args.workers}")
    grace = seconds(args.grace)
    ignore_file_size_signal()
    with Store(store_dir(args.store), create=True) as store:
        worker = Worker(store, runs=args.workers or DEFAULT_RUNS, grace=grace, once=args.once)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop())
        if not worker.serve():
            # steps still run in threads whose leases were dropped: leave now, without touching the store again
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return 0
