"""`std.file`: append to and write local files."""

from __future__ import annotations

import os
import stat
import uuid

from weft.sdk.actions import ActionFailed, action


@action
def append(path: str, line: str) -> None:
    """Append `line` and a newline to the file at `path`, creating it and its folders."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8", newline="") as f:
            f.write(line + "\n")
    except OSError as e:
        raise ActionFailed(f"cannot append to {path}: {e.strerror or e}") from e


@action(idempotent=True)
def write(path: str, text: str) -> None:
    """Replace the file at `path` with `text` atomically: readers see the old file or the new one.

    Folders are created as needed; an existing file keeps its permissions.
    """
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    temp = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(target):
                os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
            os.replace(temp, target)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        _sync_folder(folder)
    except OSError as e:
        raise ActionFailed(f"cannot write {path}: {e.strerror or e}") from e


def _sync_folder(folder: str) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
