"""The API's request bodies and the answers that are not the Client's own dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from weft.client import Run, RunSummary
from weft.client.limits import MAX_NAME, MAX_START_WITHIN
from weft.runtime.core.states import RUN_STATES
from weft.runtime.stores.query import RESULTS
from weft.server.catalog import FileProblem, FlowSummary

# since and before: a duration ago (2h, 1d12h) or an ISO date or datetime (local time unless it says). The
# pattern documents them; the Client checks them, with a better message than a regex for a wrong one.
WHEN = {
    "pattern": r"^(([0-9]+(\.[0-9]+)?[smhdw])+|[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?)?)$"
}

COUNT = {"pattern": r"^(0*1000000|0*[0-9]{1,6}|all)$"}  # a number of steps or events up to 1,000,000, or all of them

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]  # a filter value (the Client counts bytes)
Names = Annotated[list[Name], Field(min_length=1)]
State = Literal[tuple(s.value for s in RUN_STATES)]  # type: ignore[valid-type]
Result = Literal[(*RESULTS, "rolled-back")]  # type: ignore[valid-type]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRun(Body):
    flow: str = Field(min_length=1, max_length=200, description="a flow of the catalogue (GET /api/v1/flows)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the flow's parameters, checked by their types")
    user: str | None = Field(None, min_length=1, max_length=200, description="who starts it (default: the server's)")
    label: str | None = Field(None, min_length=1, max_length=2000, description="replaces the flow's own label")
    at: AwareDatetime | None = Field(None, description="start then (ISO 8601 with its offset); scheduled till then")
    start_before: float | None = Field(
        None, gt=0, le=MAX_START_WITHIN, description="seconds after `at` by which it must start, else it fails"
    )


class Rollback(Body):
    force: bool = Field(False, description="go on past succeeded steps that have no undo")


class Skip(Body):
    outputs: dict[str, Any] | None = Field(None, description="the step's outputs, checked by its output type")


class Rerun(Body):
    with_dependents: bool = Field(False, description="run every step downstream of the step again too")
    item: int | None = Field(
        None, ge=1, le=2**31, description="the step is an each step: run the sub-run of this item (from 1) again"
    )


class Filter(Body):
    """The runs a bulk command steers, as GET /api/v1/runs filters them."""

    state: Annotated[list[State], Field(min_length=1)] | None = None
    result: Annotated[list[Result], Field(min_length=1)] | None = None
    flow: Names | None = None
    tag: Names | None = None
    user: Names | None = None
    schedule: Names | None = None
    label: Names | None = None
    parent: Names | None = None
    lock: Names | None = None
    since: str | None = Field(None, max_length=100, json_schema_extra=WHEN)
    before: str | None = Field(None, max_length=100, json_schema_extra=WHEN)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _given(name: str, kind: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"type": kind}}}


class Many(Body):
    """The runs a bulk command steers: ids, or a filter (exactly one; the schema's oneOf says so)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [_given("ids", "array"), _given("filter", "object")]}
    )

    ids: list[str] | None = Field(None, max_length=10_000, description="run ids or unique prefixes")
    filter: Filter | None = Field(None, description="else: every run these filters match (at most 10,000)")


class Session(Body):
    token: str = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class SignedIn:
    role: str  # operator or viewer


@dataclass(frozen=True)
class RunList:
    items: tuple[RunSummary, ...]
    total: int  # runs that match, in all
    offset: int
    limit: int
    more: bool  # runs after this page


@dataclass(frozen=True)
class RunPage(Run):
    """A run (its steps in full, or a page of them from `steps_offset` on), with the CLI command that does each
    action allowed now."""

    commands: dict[str, str]
    steps_offset: int  # the place of its first step in the page order (steps_total: how many in all)

    @classmethod
    def of(cls, run: Run, commands: dict[str, str], offset: int = 0) -> RunPage:
        return cls(**{f.name: getattr(run, f.name) for f in fields(run)}, commands=commands, steps_offset=offset)


@dataclass(frozen=True)
class FlowList:
    items: tuple[FlowSummary, ...]
    problems: tuple[FileProblem, ...]  # files of the served folders that do not compile


@dataclass(frozen=True)
class Counts:
    """Runs by state that started within each window (12h, 24h, 7d)."""

    windows: dict[str, dict[str, int]]
