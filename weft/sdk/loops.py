"""What the async calls on one event loop share, such as std.http's connection pool.

`shared(key, make)` gives the running loop's one object for `key`, made by
`make()` on first use. Whoever owns the loop (an executor's loop thread, or
`perform` running one call with asyncio.run) awaits `close_shared()` before
the loop ends, which awaits each object's `aclose()`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = weakref.WeakKeyDictionary()


def shared(key: str, make: Callable[[], Any]) -> Any:
    """The running loop's object for `key` (made on first use)."""
    found = _by_loop.setdefault(asyncio.get_running_loop(), {})
    if key not in found:
        found[key] = make()
    return found[key]


async def close_shared() -> None:
    """Close (`aclose()`) what the running loop's calls shared, and forget it."""
    for value in _by_loop.pop(asyncio.get_running_loop(), {}).values():
        await value.aclose()
