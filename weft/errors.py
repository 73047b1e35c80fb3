"""Errors that end a command with a one-line message instead of a traceback."""

from __future__ import annotations


class WeftError(Exception):
    """A problem the user can act on; `exit_code` follows the CLI contract (2: nothing was done)."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
