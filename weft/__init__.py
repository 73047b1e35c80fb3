"""Weft: a workflow language with a compiler and a durable orchestration runtime.

Action authors need only `from weft import action, Context, ActionFailed, Pending`.
They are loaded on first use, so `import weft` (and the CLI) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weft.sdk.actions import ActionFailed, Context, action
    from weft.sdk.polling import Pending

__all__ = ["ActionFailed", "Context", "Pending", "action"]


def __getattr__(name: str) -> Any:
    if name == "Pending":
        from weft.sdk import polling

        return polling.Pending
    if name in __all__:
        from weft.sdk import actions

        return getattr(actions, name)
    raise AttributeError(f"module 'weft' has no attribute {name!r}")
