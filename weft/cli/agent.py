"""`weft agent`: run the action calls that orchestrators send through a broker (see weft.runtime.executors.agent).

It prints one line once it serves, and stops on SIGTERM or SIGINT once the
calls it runs have ended (Celery's warm shutdown; a second signal stops at once).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from weft.errors import WeftError
from weft.runtime.executors.celery_app import DEFAULT_QUEUE, beat, broker_url, redeliver


def serve(args: Any) -> int:
    broker = broker_url(args.broker)
    if broker is None:
        raise WeftError("weft agent needs a broker: --broker redis://HOST:PORT/DB (or $WEFT_BROKER)")
    if args.concurrency < 1:
        raise WeftError(f"--concurrency must be at least 1, not {args.concurrency}")
    queues = args.queue or [DEFAULT_QUEUE]
    for queue in queues:
        if not queue or any(c.isspace() or c == "," for c in queue):
            raise WeftError(f"--queue {queue!r}: a queue name has no spaces or commas")
    beat(), redeliver()  # their settings are checked before anything starts
    sys.path.insert(0, os.getcwd())  # action modules next to where the agent runs, as `weft run` finds them

    from weft.runtime.executors.agent import Agent

    agent = Agent(broker, queues, args.concurrency, args.name)

    def ready() -> None:
        print(f"agent {agent.name} ready: queues {', '.join(queues)} on {_shown(broker)}", flush=True)

    agent.serve(ready)
    return 0


def _shown(url: str) -> str:
    """The broker URL without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{host}" if at else url
