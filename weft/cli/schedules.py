"""`weft schedule add|list|show|pause|resume|trigger|remove`: printers over the Client's schedules."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

from weft.cli import views, when
from weft.cli.output import say
from weft.cli.runs import read_inputs
from weft.client import Client, CompileFailed, FlowRequired, Schedule, login
from weft.errors import WeftError


def main(args: Any) -> int:
    with Client(args.store) as client:
        return {
            "add": add,
            "list": list_schedules,
            "show": show,
            "pause": pause,
            "resume": resume,
            "trigger": trigger,
            "remove": remove,
        }[args.action](client, args)


def add(client: Client, args: Any) -> int:
    given = read_inputs(args.inputs_file) if args.inputs_file else None
    try:
        plan = client.compile(args.file, args.flow, args.extensions)
    except CompileFailed as e:
        from weft.compiler.report import format_text

        print(format_text(e.diagnostics, e.sources, color=sys.stderr.isatty()), file=sys.stderr)
        raise
    except FlowRequired as e:
        raise WeftError(f"{e} with --flow NAME") from None
    s = client.add_schedule(
        args.name,
        plan,
        given,
        texts=args.inputs,
        cron=args.cron,
        every=None if args.every is None else when.duration(args.every, "--every"),
        tz=args.tz,
        start=None if args.start is None else when.moment(args.start, "--start"),
        until=None if args.until is None else when.moment(args.until, "--until"),
        max_runs=args.max_runs,
        overlap=args.overlap,
        catchup=_seconds(args.catchup, "--catchup"),
        jitter=0.0 if args.jitter is None else when.duration(args.jitter, "--jitter"),
        user=args.user or login(),
    )
    say(f"schedule {s.name} added: {_when(s)}; next at {_next(s)}")
    return 0


def _seconds(text: str, option: str) -> float:
    return 0.0 if text.strip() in ("0", "0s") else when.duration(text, option)


def _when(s: Schedule) -> str:
    rule = f"cron '{s.cron}' ({s.tz})" if s.cron else f"every {views.duration(0, s.every)}"
    limits = [f"until {views.stamp(s.until)}" if s.until else "", f"at most {s.max_runs} runs" if s.max_runs else ""]
    return ", ".join([f"{s.flow} {rule}", *(x for x in limits if x)])


def _next(s: Schedule) -> str:
    if s.paused:
        return "- (paused" + (f": {s.note})" if s.note else ")")
    return views.stamp(s.upcoming[0]) if s.upcoming else "- (no slot left)"


def list_schedules(client: Client, args: Any) -> int:
    found = client.schedules()
    if args.json:
        say(json.dumps([asdict(s) for s in found], indent=2, default=str))
        return 0
    rows = [("NAME", "WHEN", "OVERLAP", "RUNS", "NEXT")]
    rows += [(s.name, _when(s), s.overlap, str(s.fired), _next(s)) for s in found]
    say("\n".join(views.table(rows)) if found else "no schedules (weft schedule add NAME FILE --cron LINE adds one)")
    return 0


def show(client: Client, args: Any) -> int:
    s = client.schedule(args.name)
    runs = client.runs(schedule=s.name, limit=10)
    if args.json:
        say(json.dumps({**asdict(s), "runs": [asdict(r) for r in runs.runs]}, indent=2, default=str))
        return 0
    lines = [
        f"schedule {s.name}   {_when(s)}",
        f"overlap  {s.overlap}   catch-up {views.duration(0, s.catchup) or '0s'}"
        + (f"   jitter {views.duration(0, s.jitter)}" if s.jitter else ""),
        "inputs   " + (", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in s.inputs.items()) or "-"),
        f"runs     {s.fired} started" + (f", last {s.last_run}" if s.last_run else ""),
        "next     " + (", ".join(views.stamp(t) for t in s.upcoming) if s.upcoming else _next(s)),
    ]
    if s.history:
        lines += ["", "slots"]
        for e in s.history[-15:]:
            what = {"fire": f"started run {e.run}", "trigger": f"triggered run {e.run}"}.get(e.what, e.what)
            lines.append(f"  {views.stamp(e.slot)}  {what}" + (f": {e.note}" if e.note and e.what != "fire" else ""))
    if runs.runs:
        lines += ["", f"last runs ({runs.total} in all: weft list --schedule {s.name})"]
        lines += [f"  {r.id}  {r.state:<10} {views.stamp(r.created)}" for r in runs.runs]
    say("\n".join(lines))
    return 0


def pause(client: Client, args: Any) -> int:
    s = client.pause_schedule(args.name, args.note)
    say(f"schedule {s.name} paused")
    return 0


def resume(client: Client, args: Any) -> int:
    s = client.resume_schedule(args.name)
    say(f"schedule {s.name} resumed; next at {_next(s)}")
    return 0


def trigger(client: Client, args: Any) -> int:
    rid = client.trigger_schedule(args.name)
    say(f"run {rid}")
    say(f"started by schedule {args.name} now; a worker drives it (weft watch {rid} follows it)")
    return 0


def remove(client: Client, args: Any) -> int:
    client.remove_schedule(args.name)
    say(f"schedule {args.name} removed (its runs stay)")
    return 0
