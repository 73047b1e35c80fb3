"""The web console: server-rendered pages over the API's own functions, with a little script for live updates.

Pages: the dashboard (`/`), the runs list (`/runs`), a run (`/runs/ID`, with
`?step=ID` for a step's panel, `?sub=N` to page its sub-runs and `?steps=N` to
show its first N steps, a page more at each "show more"), the
catalogue (`/flows`, `/flows/NAME` with the start form) and the sign-in page
(`/login`). Each page reads through the functions of `weft.server.api`, so
it shows what the API answers; the script in static/console.js follows the
API's event streams and sends every action to the API as JSON, with the
session's forgery token.

Everything that comes from a run is text: Jinja escapes it here and the
script only ever sets textContent. Pages carry a Content-Security-Policy
that allows scripts, styles and images from this server only, and no inline
script or style at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from weft.client import NotFound, Step
from weft.client.limits import MAX_PAGE
from weft.errors import WeftError
from weft.render.style import type_text
from weft.runtime.core.states import RUN_STATES
from weft.runtime.core.steering import RERUNNABLE
from weft.server import api, auth, schedules_api
from weft.server.problems import Refused, status_of

HERE = Path(__file__).resolve().parent
PAGE = 50  # runs per page of the list
SUB_PAGE = 25  # sub-runs per page of a run
STEP_PAGE = api.STEPS  # steps a run's page shows at first, and how many more each "show more" adds
HISTORY = 1000  # events a run's page shows, the latest
LATEST = 8  # runs on the dashboard
RECENT = 5  # runs of each schedule on the schedules page
SORTS = ("label", "flow", "state", "user", "started", "ended")
RESULTS = ("succeeded", "failed", "cancelled", "rolled-back")
PHASES = (("run", "Run"), ("finalize", "Finalize"), ("hooks", "Hooks"))
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- forms from types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FormField:
    """One input of a form built from a Weft type: what the script reads and how it converts it."""

    name: str  # "" for a form whose whole value is one JSON field
    type: str  # the type as a flow writes it
    kind: str  # str, secret, int, float, bool, choice (an optional bool) or json
    empty: str  # what an empty field sends: omit, null or required
    default: str | None = None  # a parameter's default, as written


def _field(name: str, data: list, empty: str, default: str | None = None, secret: bool = False) -> FormField:
    if data[0] == "opt":
        inner = _field(name, data[1], "null" if empty == "required" else empty, default, secret)
        return FormField(name, type_text(data), "choice" if inner.kind == "bool" else inner.kind, inner.empty, default)
    kind = {"str": "secret" if secret else "str", "int": "int", "float": "float", "bool": "bool"}.get(data[0], "json")
    return FormField(name, type_text(data), kind, empty, default)


def record_fields(data: list | None) -> list[FormField]:
    """The inputs of a form for a value of type `data`: one per field of a record, else one JSON field."""
    if not data or data[0] == "none":
        return []
    if data[0] == "rec":
        return [_field(n, t, "required" if req else "omit") for n, t, req in data[1]]
    return [FormField("", type_text(data), "json", "required")]


def param_fields(params: tuple) -> list[FormField]:
    """The inputs of a flow's start form, one per parameter (a parameter with a default may be left empty)."""
    return [_field(p.name, p.schema, "required" if p.default is None else "omit", p.default, p.secret) for p in params]


# -- text helpers for templates -------------------------------------------------------------------


def when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def took(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    seconds = (end if end is not None else time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def as_json(value: Any) -> str:
    return json.dumps(jsonable_encoder(value), indent=2, ensure_ascii=False, sort_keys=False)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, json=as_json, urlquote=lambda s: quote(str(s), safe=""))
    env.globals.update(took=took)
    return env


TEMPLATES = _environment()


# -- pages ----------------------------------------------------------------------------------------


class SignIn(Exception):
    """A page asked for without a session: answered with a redirect to /login."""


def _who(request: Request) -> auth.Caller:
    try:
        return auth.caller(request)
    except Refused:
        raise SignIn() from None


def render(request: Request, name: str, status: int = 200, who: auth.Caller | None = None, **context: Any) -> Response:
    page = TEMPLATES.get_template(name).render(request=request, who=who, status=status, **context)
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _query(request: Request, **changes: Any) -> str:
    """This page's query string with `changes` made (None removes a key)."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    items += [(k, str(v)) for k, v in changes.items() if v not in (None, "")]
    return "?" + urlencode(items) if items else ""


def _int(request: Request, name: str, default: int = 0) -> int:
    text = request.query_params.get(name, "")
    return int(text) if text.isascii() and text.isdigit() else default


def dashboard(request: Request, who: auth.Caller) -> Response:
    counts = api.counts(request, who)
    latest = api.list_runs(request, who, limit=LATEST)
    return render(request, "dashboard.html", who=who, counts=counts.windows, states=api.COUNTED, latest=latest)


def runs_list(request: Request, who: auth.Caller) -> Response:
    q = request.query_params
    filters = {
        k: [v for v in q.getlist(k) if v] or None
        for k in ("state", "result", "flow", "tag", "user", "schedule", "label", "parent")
    }
    sort = q.get("sort", "started")
    order = q.get("order") or None
    offset = _int(request, "offset")
    page = api.list_runs(
        request, who, **filters, since=q.get("since") or None, sort=sort, order=order, limit=PAGE, offset=offset
    )
    flows = sorted({f.name for f in api.flows(request, who).items})

    def sort_link(column: str) -> str:
        now_desc = (order or ("desc" if sort in ("started", "ended") else "asc")) == "desc"
        flip = "asc" if (column == sort and now_desc) else "desc" if column == sort else None
        return _query(request, sort=column, order=flip, offset=None)

    return render(
        request,
        "runs.html",
        who=who,
        page=page,
        filters={k: (v or [""])[0] for k, v in filters.items()},
        since=q.get("since", ""),
        sort=sort,
        order=order,
        sorts=SORTS,
        sort_link=sort_link,
        states=RUN_STATES,
        results=RESULTS,
        flows=flows,
        prev=_query(request, offset=max(0, offset - PAGE)) if offset else None,
        next=_query(request, offset=offset + PAGE) if page.more else None,
    )


def run_page(request: Request, run_id: str, who: auth.Caller) -> Response:
    shown = min(max(STEP_PAGE, _int(request, "steps", STEP_PAGE)), MAX_PAGE)
    run = api.get_run(request, run_id, who, steps=str(shown), history=str(HISTORY))
    if run.id != run_id:
        return RedirectResponse(f"/runs/{quote(run.id)}{_query(request)}", status_code=303)
    phases = [
        (title, [s for s in run.steps if (s.phase if s.phase in ("run", "finalize") else "hooks") == phase])
        for phase, title in PHASES
    ]
    chosen, detail, missing = request.query_params.get("step"), None, None
    if chosen:
        try:
            detail = api.get_step(request, run.id, chosen, who)
        except NotFound as e:
            missing = str(e)
    each = [s for s in run.steps if s.sub_runs is not None]
    sub_offset = _int(request, "sub")
    children = (
        api.list_runs(request, who, parent=[run.id], sort="started", order="asc", limit=SUB_PAGE, offset=sub_offset)
        if each
        else None
    )
    preview = api.rollback_preview(request, run.id, who) if "rollback" in run.actions else None
    rerun = detail is not None and "rerun" in run.actions and rerunnable(detail.step)
    return render(
        request,
        "run.html",
        who=who,
        run=run,
        phases=[(title, steps) for title, steps in phases if steps],
        detail=detail,
        missing=missing,
        each=each,
        children=children,
        sub_prev=_query(request, sub=max(0, sub_offset - SUB_PAGE)) + "#sub-runs" if sub_offset else None,
        sub_next=_query(request, sub=sub_offset + SUB_PAGE) + "#sub-runs" if children and children.more else None,
        preview=preview,
        rerun=rerun,
        failed=[s for s in run.steps if s.state == "failed"],
        waits=[s for s in run.steps if s.signal is not None and s.state == "suspended"],
        record_fields=record_fields,
        last_seq=max((e.seq or 0 for e in run.history), default=0),
        step_link=lambda sid: _query(request, step=sid) + "#step",
        more_steps=_query(request, steps=shown + STEP_PAGE) + "#steps-page" if run.steps_total > shown else None,
        step_page=STEP_PAGE,
    )


def rerunnable(step: Step) -> bool:
    """Whether the console offers to run `step` again (in a run that allows re-runs): a run or finalize step
    that succeeded, failed or was skipped, and whose undo has not run."""
    return step.phase in ("run", "finalize") and step.state in RERUNNABLE and step.undo is None


def flows_page(request: Request, who: auth.Caller) -> Response:
    return render(request, "flows.html", who=who, catalog=api.flows(request, who))


def flow_page(request: Request, name: str, who: auth.Caller) -> Response:
    flow = api.flow(request, name, who)
    return render(request, "flow.html", who=who, flow=flow, fields=param_fields(flow.params))


def schedules_page(request: Request, who: auth.Caller) -> Response:
    found = schedules_api.schedules(request, who)
    runs = {s.name: api.list_runs(request, who, schedule=[s.name], limit=RECENT) for s in found}
    return render(request, "schedules.html", who=who, schedules=found, runs=runs)


def mount(app: FastAPI) -> None:
    """Add the console's pages, its sign-in page and its static files to `app`."""
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(SignIn)
    async def sign_in(request: Request, e: SignIn) -> Response:
        return RedirectResponse("/login?" + urlencode({"next": _query_path(request)}), status_code=303)

    def page(path: str, build) -> None:
        async def handler(request: Request) -> Response:
            who = _who(request)
            try:
                return await run_in_threadpool(build, request, who=who, **request.path_params)
            except WeftError as e:
                status = status_of(e)
                return render(request, "error.html", status=status, who=who, message=str(e))

        app.add_api_route(path, handler, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)

    page("/", dashboard)
    page("/runs", runs_list)
    page("/runs/{run_id}", run_page)
    page("/flows", flows_page)
    page("/flows/{name}", flow_page)
    page("/schedules", schedules_page)

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login(request: Request) -> Response:
        return render(request, "login.html", next=_safe_next(request.query_params.get("next", "/")))


def _query_path(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(target: str) -> str:
    """Where to go after signing in: a path on this server, never another site. Browsers drop tabs and line
    breaks from a URL (`/<TAB>/evil.example` is `//evil.example`, another site), so a target with any control
    character, a backslash or a second leading slash goes to the dashboard."""
    odd = any(ord(c) < 0x20 or ord(c) == 0x7F for c in target) or "\\" in target
    return target if target.startswith("/") and not target.startswith("//") and not odd else "/"
