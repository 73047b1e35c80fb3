"""The REST API under /api/v1: every operation is one Client call; the answers are its dataclasses."""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.sse import EventSourceResponse

from weft import render
from weft.client import (
    Bulk,
    Client,
    Delivery,
    Event,
    InvalidInput,
    Lock,
    RollbackPreview,
    Run,
    StepDetail,
    WorkerProcess,
)
from weft.client import limits
from weft.runtime.stores.query import NEWEST_FIRST
from weft.server import auth, stream
from weft.server.catalog import Catalog, FlowSummary
from weft.server.problems import Problem
from weft.server.schemas import (
    COUNT,
    WHEN,
    Counts,
    FlowList,
    Many,
    Name,
    Rerun,
    Result,
    Rollback,
    RunList,
    RunPage,
    Skip,
    StartRun,
    State,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": what}
    for status, what in (
        (400, "a body that is not JSON"),
        (401, "no token, or a wrong one"),
        (404, "no such run, step or flow"),
        (422, "a value that does not fit its type (the field is named)"),
    )
}
CHANGES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": Problem, "description": "a read-only token, or no forgery token with a session cookie"},
    409: {"model": Problem, "description": "the command does not fit the run's state now"},
}
SVG = {200: {"content": {"image/svg+xml": {}}, "description": "the diagram"}}
WINDOWS = {"12h": "12h", "24h": "24h", "7d": "7d"}
COUNTED = ("running", "paused", "failed", "succeeded", "scheduled")
STEPS = 200  # steps of a run that GET /runs/ID answers with unless `steps` says otherwise

Reader = Annotated[auth.Caller, Depends(auth.reader)]
Operator = Annotated[auth.Caller, Depends(auth.operator)]
Values = Annotated[list[Name] | None, Query()]

router = APIRouter(prefix="/api/v1", responses=ERRORS)


def client_of(request: Request) -> Client:
    return request.app.state.client


def catalog_of(request: Request) -> Catalog:
    return request.app.state.catalog


def _commands(request: Request, run: Run) -> dict[str, str]:
    """The `weft` command line that does each action the run allows now."""
    store = ["--store", request.app.state.client.path]
    failed = next((s.name or s.id for s in run.steps if s.state == "failed"), "STEP")
    lines = {
        "resume": ["weft", "resume", run.id],
        "skip": ["weft", "skip", run.id, failed, "--output", "K=V"],
        "rerun": ["weft", "rerun", run.id, failed],
        "cancel": ["weft", "cancel", run.id],
        "rollback": ["weft", "rollback", run.id],
        "signal": ["weft", "signal", run.id, run.waiting_for[0] if run.waiting_for else "NAME", "K=V"],
    }
    return {action: shlex.join(lines[action] + store) for action in sorted(run.actions)}


def _page(request: Request, run: Run, offset: int = 0) -> RunPage:
    return RunPage.of(run, _commands(request, run), offset)


@contextmanager
def within(part: str, exempt: Collection[str] = ()) -> Iterator[None]:
    """An InvalidInput's field as its path in the request body: `inputs.n` where the Client says `n`
    (but for the `exempt` fields, which are not under `part`: a run's `user` and `label`)."""
    try:
        yield
    except InvalidInput as e:
        if e.field and re.split(r"[.\[]", e.field, maxsplit=1)[0] not in exempt:
            e.field = f"{part}{'' if e.field.startswith('[') else '.'}{e.field}"
        raise


# -- runs ----------------------------------------------------------------------------------------


@router.get("/runs", response_model=RunList, summary="List runs, as `weft list` filters, sorts and pages them")
def list_runs(
    request: Request,
    _: Reader,
    state: Annotated[list[State] | None, Query()] = None,
    result: Annotated[list[Result] | None, Query()] = None,
    flow: Values = None,
    tag: Values = None,
    user: Values = None,
    schedule: Values = None,
    label: Values = None,
    parent: Values = None,
    lock: Values = None,
    since: Annotated[str | None, Query(max_length=100, json_schema_extra=WHEN, description="2h ago, or a date")] = None,
    before: Annotated[str | None, Query(max_length=100, json_schema_extra=WHEN)] = None,
    sort: Literal["started", "ended", "flow", "state", "user", "label"] = "started",
    order: Literal["asc", "desc"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    sub_runs: bool = False,
) -> RunList:
    reverse = order is not None and (order == "asc") == (sort in NEWEST_FIRST)
    filters = dict(
        state=state,
        result=result,
        flow=flow,
        tag=tag,
        user=user,
        schedule=schedule,
        label=label,
        parent=parent,
        lock=lock,
    )
    page = client_of(request).runs(
        **{k: v for k, v in filters.items() if v},
        since=since,
        before=before,
        sort=sort,
        reverse=reverse,
        limit=limit,
        offset=offset,
        sub_runs=sub_runs or bool(parent),
    )
    return RunList(page.runs, page.total, page.offset, page.limit, page.more)


@router.post("/runs", response_model=RunPage, status_code=201, responses=CHANGES, summary="Start a catalogue flow")
def start_run(request: Request, body: StartRun, who: Operator, response: Response) -> RunPage:
    plan = catalog_of(request).get(body.flow).plan
    client = client_of(request)
    own = {"lock", *StartRun.model_fields} - {"inputs"}  # what the Client names that is not an input
    with within("inputs", own - {p["name"] for p in plan["params"]}):
        rid = client.start_plan(
            plan,
            body.inputs,
            user=body.user,
            label=body.label,
            detach=True,
            at=None if body.at is None else body.at.timestamp(),
            start_before=body.start_before,
        )
    request.app.state.wake()
    response.headers["Location"] = f"/api/v1/runs/{rid}"
    return _page(request, client.get(rid))


@router.post("/runs/resume", response_model=Bulk, responses=CHANGES, summary="Resume many runs")
def resume_many(request: Request, body: Many, _: Operator) -> Bulk:
    ids, filters = _targets(body)
    return client_of(request).resume_many(ids, **filters)


@router.post("/runs/cancel", response_model=Bulk, responses=CHANGES, summary="Cancel many runs")
def cancel_many(request: Request, body: Many, _: Operator) -> Bulk:
    ids, filters = _targets(body)
    return client_of(request).cancel_many(ids, **filters)


def _targets(body: Many) -> tuple[list[str] | None, dict[str, Any]]:
    if (body.ids is None) == (body.filter is None):
        raise InvalidInput("give either ids or a filter, not both and not neither", field="ids")
    return body.ids, ({} if body.filter is None else body.filter.given())


@router.get("/runs/{run_id}", response_model=RunPage, summary="A run: a page of its steps, history, allowed actions")
def get_run(
    request: Request,
    run_id: str,
    _: Reader,
    steps: Annotated[
        str,
        Query(
            max_length=12,
            json_schema_extra=COUNT,
            description="how many steps: failed, running and suspended ones first, then the others in plan order, "
            "as `weft show` pages them; `all`: every step in plan order. steps_total and counts are of all of them",
        ),
    ] = str(STEPS),
    offset: Annotated[int, Query(ge=0, le=limits.MAX_PAGE, description="steps of that order to pass over first")] = 0,
    history: Annotated[
        str, Query(max_length=12, json_schema_extra=COUNT, description="the last N events, or `all` (history_total)")
    ] = "all",
) -> RunPage:
    shown, last = limits.count(steps, "steps"), limits.count(history, "history")
    return _page(request, client_of(request).get(run_id, steps=shown, history=last, offset=offset), offset)


@router.get("/runs/{run_id}/steps/{step}", response_model=StepDetail, summary="One step in full")
def get_step(request: Request, run_id: str, step: str, _: Reader) -> StepDetail:
    return client_of(request).step(run_id, step)


@router.get("/runs/{run_id}/events", response_model=tuple[Event, ...], summary="A run's history, paged")
def get_events(
    request: Request,
    run_id: str,
    _: Reader,
    after: Annotated[int, Query(ge=0, le=limits.MAX_PLACE)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> tuple[Event, ...]:
    return client_of(request).events(run_id, after, limit)


@router.get("/runs/{run_id}/graph.svg", response_class=Response, responses=SVG, summary="The run's diagram")
def run_graph(request: Request, run_id: str, _: Reader, expand: bool = False) -> Response:
    d = client_of(request).diagram(run_id)
    return Response(render.svg(d.plan, d.states, expand=expand, counts=d.counts), media_type="image/svg+xml")


@router.get("/runs/{run_id}/rollback", response_model=RollbackPreview, summary="What a rollback would undo now")
def rollback_preview(request: Request, run_id: str, _: Reader) -> RollbackPreview:
    return client_of(request).rollback_preview(run_id)


@router.post("/runs/{run_id}/resume", response_model=RunPage, responses=CHANGES, summary="Retry failed steps, go on")
def resume(request: Request, run_id: str, _: Operator) -> RunPage:
    return _page(request, client_of(request).resume(run_id))


@router.post("/runs/{run_id}/cancel", response_model=Delivery, responses=CHANGES, summary="Cancel a run")
def cancel(request: Request, run_id: str, who: Operator) -> Delivery:
    return client_of(request).cancel(run_id, by=f"the console ({who.role})")


@router.post("/runs/{run_id}/rollback", response_model=RunPage, responses=CHANGES, summary="Undo succeeded steps")
def rollback(request: Request, run_id: str, body: Rollback, _: Operator) -> RunPage:
    return _page(request, client_of(request).rollback(run_id, body.force))


@router.post(
    "/runs/{run_id}/steps/{step}/skip", response_model=RunPage, responses=CHANGES, summary="Skip a failed step"
)
def skip(request: Request, run_id: str, step: str, body: Skip, _: Operator) -> RunPage:
    with within("outputs"):
        return _page(request, client_of(request).skip(run_id, step, body.outputs))


@router.post("/runs/{run_id}/steps/{step}/rerun", response_model=RunPage, responses=CHANGES, summary="Run a step again")
def rerun(request: Request, run_id: str, step: str, body: Rerun, who: Operator) -> RunPage:
    client = client_of(request)
    run = client.rerun(run_id, step, body.with_dependents, item=body.item, by=f"the console ({who.role})")
    return _page(request, run)


@router.post(
    "/runs/{run_id}/signals/{name}", response_model=Delivery, responses=CHANGES, summary="Signal a waiting step"
)
def signal(request: Request, run_id: str, name: str, body: dict[str, Any], _: Operator) -> Delivery:
    return client_of(request).deliver(run_id, name, body)


# -- live events ---------------------------------------------------------------------------------


def _last_event_id(last_event_id: Annotated[str | None, Header(max_length=40)] = None) -> int | None:
    """The Last-Event-ID header as a place to resume after, checked as a dependency: once a stream has begun,
    an error can no longer be answered."""
    if last_event_id is None:
        return None
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit() and int(text) <= limits.MAX_PLACE):
        raise InvalidInput(f"Last-Event-ID must be a number, not {last_event_id[:40]!r}", field="Last-Event-ID")
    return int(text)


def _streamed_run(request: Request, run_id: str) -> str:
    """The run a stream follows (its id, or a prefix of it), found before the stream begins."""
    return client_of(request).resolve(run_id)


Resume = Annotated[int | None, Depends(_last_event_id)]


@router.get("/events", response_class=EventSourceResponse, summary="Every run's events, live (server-sent events)")
async def all_events(
    request: Request,
    _: Reader,
    last: Resume,
    after: Annotated[
        int | None, Query(ge=0, le=limits.MAX_PLACE, description="feed place to start after (default: now)")
    ] = None,
):
    at = after if last is None else last
    async for e in stream.all_runs(client_of(request), request.app.state.watcher, at):
        yield e


@router.get("/runs/{run_id}/stream", response_class=EventSourceResponse, summary="A run's events, live")
async def run_events(
    request: Request,
    _: Reader,
    rid: Annotated[str, Depends(_streamed_run)],
    last: Resume,
    after: Annotated[int, Query(ge=0, le=limits.MAX_PLACE, description="history seq to start after")] = 0,
):
    at = after if last is None else last
    async for e in stream.one_run(client_of(request), request.app.state.watcher, rid, at):
        yield e


# -- flows, locks, workers, counts -----------------------------------------------------------------


@router.get("/flows", response_model=FlowList, summary="The catalogue: flows this server may start")
def flows(request: Request, _: Reader) -> FlowList:
    cat = catalog_of(request)
    return FlowList(tuple(cat.flows()), cat.problems())


@router.get("/flows/{name}", response_model=FlowSummary, summary="A flow: parameters, result, levels")
def flow(request: Request, name: str, _: Reader) -> FlowSummary:
    return catalog_of(request).get(name).summary


@router.get("/flows/{name}/graph.svg", response_class=Response, responses=SVG, summary="A flow's diagram")
def flow_graph(request: Request, name: str, _: Reader, expand: bool = False) -> Response:
    return Response(render.svg(catalog_of(request).get(name).plan, expand=expand), media_type="image/svg+xml")


@router.get("/locks", response_model=tuple[Lock, ...], summary="Locks held by runs that have not ended")
def locks(request: Request, _: Reader) -> tuple[Lock, ...]:
    return client_of(request).locks()


@router.get("/workers", response_model=tuple[WorkerProcess, ...], summary="Worker processes serving the store")
def workers(request: Request, _: Reader) -> tuple[WorkerProcess, ...]:
    return client_of(request).worker_processes()


@router.get("/counts", response_model=Counts, summary="Runs by state started in the last 12 h, 24 h and 7 days")
def counts(request: Request, _: Reader) -> Counts:
    client = client_of(request)
    return Counts(
        {
            window: {state: client.runs(state=state, since=ago, limit=1).total for state in COUNTED}
            for window, ago in WINDOWS.items()
        }
    )
