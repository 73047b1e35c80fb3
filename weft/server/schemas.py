"""The API's request bodies and the answers that are not the Client's own dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from weft.client import Run, RunSummary
from weft.server.catalog import FileProblem, FlowSummary


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRun(Body):
    flow: str = Field(min_length=1, max_length=200, description="a flow of the catalogue (GET /api/v1/flows)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the flow's parameters, checked by their types")
    user: str | None = Field(None, min_length=1, max_length=200, description="who starts it (default: the server's)")
    label: str | None = Field(None, min_length=1, max_length=2000, description="replaces the flow's own label")


class Rollback(Body):
    force: bool = Field(False, description="go on past succeeded steps that have no undo")


class Skip(Body):
    outputs: dict[str, Any] | None = Field(None, description="the step's outputs, checked by its output type")


class Filter(Body):
    """The runs a bulk command steers, as GET /api/v1/runs filters them."""

    state: list[str] | None = None
    result: list[str] | None = None
    flow: list[str] | None = None
    tag: list[str] | None = None
    user: list[str] | None = None
    label: list[str] | None = None
    parent: list[str] | None = None
    lock: list[str] | None = None
    since: str | None = None
    before: str | None = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Many(Body):
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
    """A run in full, with the CLI command that does each action allowed now."""

    commands: dict[str, str]

    @classmethod
    def of(cls, run: Run, commands: dict[str, str]) -> RunPage:
        return cls(**{f.name: getattr(run, f.name) for f in fields(run)}, commands=commands)


@dataclass(frozen=True)
class FlowList:
    items: tuple[FlowSummary, ...]
    problems: tuple[FileProblem, ...]  # files of the served folders that do not compile


@dataclass(frozen=True)
class Counts:
    """Runs by state that started within each window (12h, 24h, 7d)."""

    windows: dict[str, dict[str, int]]
