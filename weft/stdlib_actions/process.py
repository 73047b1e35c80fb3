"""`std.exec`: run a program from an argv list, never through a shell."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import TypedDict

from weft.sdk.actions import ActionFailed, Context, action

_POLL = 0.1  # seconds between checks for cancellation and the timeout
_TERM_GRACE = 1.0  # seconds a stopped program's process group has between SIGTERM and SIGKILL
_TAIL_LINES = 20


class Completed(TypedDict):
    code: int
    stdout: str
    stderr: str


@action(name="exec")
def run_argv(
    argv: list[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    check: bool = True,
    *,
    ctx: Context,
) -> Completed:
    """Run the program `argv[0]` with arguments `argv[1:]`; return its exit code and output.

    `env` adds variables to the worker's environment. A non-zero exit fails
    the step unless `check` is false. `timeout` (seconds), the step's own
    timeout or cancelling the run ends the program's whole process group
    (SIGTERM, then SIGKILL one second later) and fails the step once it is gone.
    """
    if not argv:
        raise ActionFailed("argv is empty: give the program and its arguments")
    program = argv[0]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # a timeout kills the program's children too
        )
    except OSError as e:
        raise ActionFailed(f"cannot run {program}: {e.strerror or e}") from e
    stdout, stderr = _communicate(proc, program, timeout, ctx)
    code = proc.returncode
    if check and code != 0:
        why = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = "\n".join(stderr.strip().splitlines()[-_TAIL_LINES:])
        raise ActionFailed(f"{program} {why}" + (f":\n{tail}" if tail else ""))
    return {"code": code, "stdout": stdout, "stderr": stderr}


def _communicate(proc: subprocess.Popen, program: str, timeout: float | None, ctx: Context) -> tuple[str, str]:
    """Collect the output, ending the program's process group on timeout or cancellation."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
        try:
            return proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            if ctx.cancelled():
                late = ctx.deadline is not None and time.time() >= ctx.deadline
                reason = "ran past the step's timeout" if late else "was cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                reason = f"timed out after {timeout:g}s"
            else:
                continue
        _end_group(proc)
        raise ActionFailed(f"{program} {reason}")


def _end_group(proc: subprocess.Popen) -> None:
    """SIGTERM the program's process group, SIGKILL it if the program is not gone `_TERM_GRACE` s later; reap it."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=_TERM_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=_TERM_GRACE)
        except subprocess.TimeoutExpired:  # a process that left the group holds the output open
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # what it left behind in its group (it ignored SIGTERM, or forked)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
