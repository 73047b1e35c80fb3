"""What the two ends of remote execution share: the Celery app of a broker, the call task, the protocol's Redis keys.

An orchestrator (`CeleryExecutor`) sends each action call as the Celery task
`weft.call` with the call's id as the Celery task id; an agent (`Agent`)
runs it. Beside Celery's own queues and result keys, four kinds of Redis
keys carry the delivery protocol:

- `weft:claim:<call>`: the agent that took the call, set once (SET NX) before
  the action is called. A second delivery of the same call (a redelivery, a
  new owner's re-send) finds it and is dropped: no call runs twice.
- `weft:agent:<name>`: an agent's heartbeat, refreshed every `beat()` seconds
  and expiring after three; a call whose agent's beat is gone lost its agent.
- `weft:cancel:<call>`: the orchestrator no longer wants the call.
- `weft:reports:<run>`: what the calls of a run said (started, progress, log,
  done), in order; the outcome itself is Celery's result of the call.

Everything travels as msgpack, never pickle.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from weft.errors import WeftError

if TYPE_CHECKING:
    import redis
    from celery import Celery

BROKER_ENV = "WEFT_BROKER"
DEFAULT_QUEUE = "weft"
CALL_TASK = "weft.call"
CLAIM_TTL = 7 * 24 * 3600  # longer than any message lives: a late duplicate still finds its claim
REPORTS_TTL = 24 * 3600
RESULT_TTL = 7 * 24 * 3600
SCHEMES = ("redis://", "rediss://", "unix://")


def beat() -> float:
    """Seconds between an agent's heartbeats ($WEFT_HEARTBEAT, default 2); three missed mean the agent is gone."""
    return _seconds("WEFT_HEARTBEAT", 2.0)


def redeliver() -> float:
    """Seconds after which Redis gives an unacknowledged call to another agent ($WEFT_REDELIVER, default 60)."""
    return _seconds("WEFT_REDELIVER", 60.0)


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise WeftError(f"${name}: {text!r} is not a number of seconds") from None
    if value <= 0:
        raise WeftError(f"${name}: {text!r} must be more than 0 seconds")
    return value


def broker_url(given: str | None) -> str | None:
    """The broker to use: `given` (--broker), else $WEFT_BROKER, else None (run locally); checked."""
    url = given or os.environ.get(BROKER_ENV) or None
    if url is not None and not url.startswith(SCHEMES):
        where = "--broker" if given else f"${BROKER_ENV}"
        raise WeftError(f"{where}: {url!r} is not a Redis URL (redis://HOST:PORT/DB)")
    return url


def make_app(broker: str) -> Celery:
    """The Celery app of `broker` (Redis as broker and result backend), set up for Weft's calls."""
    from celery import Celery

    app = Celery("weft", broker=broker, backend=broker, set_as_current=False)
    if broker.startswith("redis://"):  # (rediss:// and unix:// keep kombu's own, which sets their connections up)
        app.conf.broker_transport = "weft.runtime.executors.redis_transport:Transport"
    app.conf.update(
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
        task_default_queue=DEFAULT_QUEUE,
        # Acknowledged once the call ended: a call whose agent died before it claimed it is given to another
        # agent; one whose agent died after the claim is dropped by the next agent (the claim is there).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # the agent stores each outcome itself, retrying until Redis takes it
        worker_prefetch_multiplier=1,
        broker_transport_options={  # a call an agent took and died with, unclaimed, goes to another in time
            "visibility_timeout": redeliver(),
            "unacked_restore_interval": max(1, round(redeliver() / 2)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=2,
        task_publish_retry=False,  # the orchestrator keeps an unsent call and sends it when Redis answers
        redis_socket_connect_timeout=2,
        redis_socket_timeout=5,
        result_expires=RESULT_TTL,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
    )
    return app


def redis_of(broker: str) -> redis.Redis:
    """A Redis client of `broker` that gives up on a dead server in seconds rather than hanging."""
    import redis

    return redis.Redis.from_url(broker, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10)


def claim_key(call: str) -> str:
    return f"weft:claim:{call}"


def agent_key(name: str) -> str:
    return f"weft:agent:{name}"


def cancel_key(call: str) -> str:
    return f"weft:cancel:{call}"


def reports_key(run: str) -> str:
    return f"weft:reports:{run}"


def broker_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis did not answer" on either end."""
    import kombu.exceptions
    import redis

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError, OSError)
