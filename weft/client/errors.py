"""The Client's domain errors: what went wrong, in terms a CLI maps to exit codes and a server to HTTP statuses.

All are WeftErrors (one line, exit 2: nothing was started or changed); the
`status` attribute is the HTTP status a server answers with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from weft.errors import WeftError


class NotFound(WeftError):
    """No such run, step, flow file or flow (HTTP 404)."""

    status = 404


class Conflict(WeftError):
    """The command does not fit the run's current state, or another live process drives it (HTTP 409)."""

    status = 409

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state  # the run's state when the command was refused


class InvalidInput(WeftError):
    """Inputs, outputs or signal fields that do not fit their types (HTTP 422).

    `field` is the path of the first value at fault (`hosts[2].mac`, `n`), or
    None when the problem is not one value's; `problems` lists every problem found.
    """

    status = 422

    def __init__(self, message: str, field: str | None = None, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.field = field
        self.problems = problems or (message,)


class FlowRequired(InvalidInput):
    """A file with several flows was started without naming one; `flows` lists them."""

    def __init__(self, message: str, flows: tuple[str, ...]) -> None:
        super().__init__(message, field="flow")
        self.flows = flows


class CompileFailed(InvalidInput):
    """The flow file has errors; `diagnostics` and `sources` are the compiler's, for printing."""

    def __init__(self, message: str, diagnostics: list, sources: dict[str, str]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics
        self.sources = sources


def steer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A steering command on a Machine (first argument) whose refusal (it does not fit the run's state) is a Conflict."""

    def apply(m: Any, *args: Any) -> Any:
        try:
            return fn(m, *args)
        except (NotFound, InvalidInput):
            raise
        except WeftError as e:
            raise Conflict(str(e), state=m.run["state"]) from None

    return apply
