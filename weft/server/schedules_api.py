"""Schedules over HTTP (/api/v1/schedules): list, show, add from the catalogue, pause, resume, trigger, remove."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import AwareDatetime, Field

from weft.client import Schedule, limits, login
from weft.server.api import CHANGES, ERRORS, Operator, Reader, catalog_of, client_of
from weft.server.schemas import Body

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["schedules"])


class NewSchedule(Body):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    flow: str = Field(min_length=1, max_length=200, description="a flow of the catalogue")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the flow's parameters, checked now")
    cron: str | None = Field(None, min_length=1, max_length=200, description="a cron line: '0 3 * * *'")
    every: float | None = Field(
        None, ge=limits.MIN_EVERY, le=limits.MAX_EVERY, description="else: seconds between slots"
    )
    tz: str | None = Field(None, min_length=1, max_length=100, description="the cron line's IANA time zone (UTC)")
    start: AwareDatetime | None = None
    until: AwareDatetime | None = None
    max_runs: int | None = Field(None, ge=1, le=10**9)
    overlap: Literal["skip", "buffer-one", "allow", "cancel-other"] = "skip"
    catchup: float = Field(60.0, ge=0, le=limits.MAX_CATCHUP, description="seconds a missed slot may be late and fire")
    jitter: float = Field(
        0.0, ge=0, le=limits.MAX_JITTER, description="seconds each slot may start late, spread evenly"
    )
    user: str | None = Field(None, min_length=1, max_length=200)


class Pause(Body):
    note: str | None = Field(None, max_length=limits.MAX_NOTE, description="why it is paused")


class Triggered(Body):
    run: str  # the id of the run it started


@router.get("/schedules", response_model=tuple[Schedule, ...], summary="Every schedule, by name")
def schedules(request: Request, _: Reader) -> tuple[Schedule, ...]:
    return client_of(request).schedules()


@router.get("/schedules/{name}", response_model=Schedule, summary="A schedule: next slots, what it did")
def schedule(request: Request, name: str, _: Reader) -> Schedule:
    return client_of(request).schedule(name)


@router.post(
    "/schedules", response_model=Schedule, status_code=201, responses=CHANGES, summary="Schedule a catalogue flow"
)
def add(request: Request, body: NewSchedule, _: Operator, response: Response) -> Schedule:
    plan = catalog_of(request).get(body.flow).plan
    s = client_of(request).add_schedule(
        body.name,
        plan,
        body.inputs,
        cron=body.cron,
        every=body.every,
        tz=body.tz,
        start=None if body.start is None else body.start.timestamp(),
        until=None if body.until is None else body.until.timestamp(),
        max_runs=body.max_runs,
        overlap=body.overlap,
        catchup=body.catchup,
        jitter=body.jitter,
        user=body.user or login(),
    )
    response.headers["Location"] = f"/api/v1/schedules/{s.name}"
    return s


@router.post("/schedules/{name}/pause", response_model=Schedule, responses=CHANGES, summary="Fire no slot")
def pause(request: Request, name: str, body: Pause, _: Operator) -> Schedule:
    return client_of(request).pause_schedule(name, body.note)


@router.post("/schedules/{name}/resume", response_model=Schedule, responses=CHANGES, summary="Fire slots again")
def resume(request: Request, name: str, _: Operator) -> Schedule:
    return client_of(request).resume_schedule(name)


@router.post(
    "/schedules/{name}/trigger", response_model=Triggered, status_code=201, responses=CHANGES, summary="One run now"
)
def trigger(request: Request, name: str, _: Operator) -> Triggered:
    rid = client_of(request).trigger_schedule(name)
    request.app.state.wake()
    return Triggered(run=rid)


@router.post("/schedules/{name}/remove", status_code=204, responses=CHANGES, summary="Remove (its runs stay)")
def remove(request: Request, name: str, _: Operator) -> Response:
    client_of(request).remove_schedule(name)
    return Response(status_code=204)
