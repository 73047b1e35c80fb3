"""Audit actions: one line per event in `log/actions.log`, relative to the current folder."""

from __future__ import annotations

import datetime
import os

from weft import ActionFailed, Context, action

LOG_PATH = os.path.join("log", "actions.log")


@action
def write(line: str, ctx: Context) -> None:
    """Append `line` to the audit log, stamped with the time (UTC) and the run and step ids."""
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    text = f"{stamp} {ctx.run_id}/{ctx.step_id} {' '.join(line.splitlines())}\n"
    try:
        os.makedirs(os.path.dirname(LOG_PATH), exist_ok=True)
        # One write of one line with O_APPEND: concurrent writers never interleave within a line.
        fd = os.open(LOG_PATH, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as e:
        raise ActionFailed(f"cannot write the audit log {os.path.abspath(LOG_PATH)}: {e.strerror or e}") from e
