"""`weft run`, `watch`, `show`, `resume`, `skip`, `rerun`, `cancel`, `rollback` and `signal`: printers over the Client.

Exit codes: 0 the run succeeded (or was cancelled / rolled back as asked), 1 it
failed or was cancelled, 3 it paused (resumable), 2 nothing was started or
changed (bad input, unknown run or step, a run owned by a live process, a
store that is corrupt or full), 130 interrupted (Ctrl-C: the run is left
resumable, and the message says with which command).

Output is never what stops a run: once stdout is gone (`weft run F | head -1`)
the rest of the output is discarded and the run is driven to its end; the
exit code is still the run's.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

from weft.cli import views, when
from weft.cli.output import say
from weft.client import Client, CompileFailed, Conflict, FlowRequired, Run, limits
from weft.errors import WeftError

EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1, "paused": 3, "running": 0, "scheduled": 0}
SHOWN = 50  # steps and events `weft show` prints of a run unless --steps says otherwise (and `outcome` reads)
CANCEL_WAIT = 30.0  # seconds `weft cancel` waits for another process to cancel a run it drives


def _client(args: Any) -> Client:
    concurrency, workers = getattr(args, "concurrency", None), getattr(args, "workers", None)
    for option, n in (("--concurrency", concurrency), ("--workers", workers)):
        if n is not None and n < 1:
            raise WeftError(f"{option} must be at least 1, not {n}")
    return Client(
        args.store,
        workers=workers,
        broker=getattr(args, "broker", None),
        concurrency=concurrency,
    )


# -- weft run -------------------------------------------------------------------------------


def run(args: Any) -> int:
    given = read_inputs(args.inputs_file) if args.inputs_file else None
    at = when.start_time(args.at, args.within)
    if args.start_before is not None and at is None:
        raise WeftError("--start-before needs --at or --in")
    before = None if args.start_before is None else when.duration(args.start_before, "--start-before")
    with _client(args) as client:
        try:
            plan = client.compile(args.file, args.flow, args.extensions)
            gc.freeze()  # what compiling left is kept, never traversed again by the run's collections
            rid = client.start_plan(
                plan,
                given,
                user=args.user,
                detach=args.detach,
                hold=not args.detach,
                texts=args.inputs,
                at=at,
                start_before=before,
            )
        except CompileFailed as e:
            from weft.compiler.report import format_text

            print(format_text(e.diagnostics, e.sources, color=sys.stderr.isatty()), file=sys.stderr)
            raise
        except FlowRequired as e:
            raise WeftError(f"{e} with --flow NAME") from None
        say(f"run {rid}")
        if at is not None:
            say(
                f"scheduled to start at {when.shown(at)}"
                + ("" if args.detach else "; waiting for it (Ctrl-C leaves it)")
            )
        if args.detach:
            return 0
        if at is not None:
            return _when_due(client, rid, at)
        return _drive(client, rid)


def _when_due(client: Client, run_id: str, at: float) -> int:
    """Count down to a scheduled run's time, then drive it here (or follow it, if a worker took it)."""
    try:
        while time.time() < at:
            left = at - time.time()
            if sys.stdout.isatty():
                sys.stdout.write(f"\rstarts in {views.duration(0, left) or '0s'}   ")
                sys.stdout.flush()
            time.sleep(min(1.0, max(0.0, left)))
    except KeyboardInterrupt:
        print(f"\nweft: stopped waiting; run {run_id} stays scheduled (weft cancel {run_id} drops it)", file=sys.stderr)
        return 130
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    try:
        return _drive(client, run_id)
    except Conflict:  # a worker started it first: show it as it goes there
        return watch_run(client, run_id)


def read_inputs(path: str) -> dict[str, Any]:
    data = limits.read_json(path)
    if not isinstance(data, dict):
        raise WeftError(f"{path} must hold a JSON object of inputs")
    return data


# -- driving and reporting --------------------------------------------------------------------


def _go_on(client: Client, run: Run) -> int:
    """After a command: drive the run it left for this process, or print how it stands."""
    return _drive(client, run.id) if run.state in ("pending", "running") else outcome(run)


def _drive(client: Client, run_id: str) -> int:
    """Drive a run this process holds, showing it live; print how it came out."""
    from weft.cli.console import reporter

    run = client.get(run_id, steps=0, history=0)  # its label: no step needs reading
    report = reporter(run.label or run.flow)
    try:
        run = client.drive(run_id, observer=report, steps=SHOWN, history=0)  # what `outcome` prints
    except KeyboardInterrupt:
        print(
            f"weft: interrupted: run {run_id} stopped here as it was; weft resume {run_id} goes on"
            f" (steps that were running are recovered), weft cancel {run_id} stops it",
            file=sys.stderr,
        )
        return 130
    finally:
        report.close()
    return outcome(run)


def outcome(run: Run) -> int:
    """Print how a driven run came out, with the commands that go on from there; its exit code."""
    rid, state = run.id, run.state
    took = views.duration(run.started, run.ended)
    if state == "succeeded":
        say(f"run {rid} succeeded" + (f" in {took}" if took else ""))
        if run.result:
            say("result: " + json.dumps(run.result, sort_keys=True))
    elif state == "paused":
        say(f"run {rid} paused: {run.error or 'stopped'}")
        failed = [s.id for s in run.failed_steps]
        say(f"  weft resume {rid}      retry {', '.join(failed) or 'the failed steps'} and go on")
        for sid in failed[:3]:
            say(f"  weft skip {rid} {sid}  go on without it (--output K=V gives its outputs)")
            say(f"  weft show {rid} {sid}  its inputs, outputs and traceback")
        say(f"  weft rollback {rid}    undo the steps that succeeded")
        say(f"  weft cancel {rid}      stop the run")
    elif state == "failed":
        how = "rolled back" if run.rolled_back else "failed"
        say(f"run {rid} {how}" + (f": {run.error}" if run.error else ""))
    elif state == "cancelled":
        say(f"run {rid} cancelled")
    else:
        say(f"run {rid} is waiting for signal {', '.join(run.waiting_for)} (weft signal {rid} NAME K=V...)")
    return EXIT[state]


# -- watch -----------------------------------------------------------------------------


def watch(args: Any) -> int:
    """Follow a run driven by any process (a worker, a server, another `weft run`) as `weft run` shows it."""
    with _client(args) as client:
        return watch_run(client, args.run)


def watch_run(client: Client, run_id: str) -> int:
    from weft.cli.console import reporter

    run = client.get(run_id, steps=0, history=0)
    say(f"watching run {run.id} ({run.state})")
    report = reporter(run.label or run.flow)
    try:
        run = client.watch(run.id, report)
    except KeyboardInterrupt:
        print(f"weft: stopped watching run {run.id}; it goes on where it is driven", file=sys.stderr)
        return 130
    finally:
        report.close()
    return outcome(run)


# -- show -----------------------------------------------------------------------------


def show(args: Any) -> int:
    limit = (SHOWN if not args.json else None) if args.steps is None else limits.count(args.steps, "--steps")
    with _client(args) as client:
        if args.step is None:
            run = client.get(args.run, steps=limit, history=limit)
            text = json.dumps(views.run_json(run), indent=2, default=str) if args.json else views.run_text(run)
        else:
            detail = client.step(args.run, args.step)
            text = json.dumps(views.step_json(detail), indent=2, default=str) if args.json else views.step_text(detail)
    say(text)
    return 0


# -- steering ------------------------------------------------------------------------------------


def resume(args: Any) -> int:
    with _client(args) as client:
        run = client.resume(args.run, restart=args.restart, hold=True)
        say(f"resuming run {run.id}")
        return _go_on(client, run)


def skip(args: Any) -> int:
    with _client(args) as client:
        run = client.skip(args.run, args.step, texts=args.output, item=args.item, hold=True)
        if args.item is None:
            say(f"run {run.id}: step {run.step(args.step).id} skipped")
        else:
            skipped = [e.step for e in run.history if e.state == "skipped" and e.detail == "skipped by hand"]
            say(f"run {run.id} (item {args.item} of {args.run} {args.step}): step {skipped[-1]} skipped")
        return _go_on(client, run)


def rerun(args: Any) -> int:
    with _client(args) as client:
        run = client.rerun(args.run, args.step, args.with_dependents, item=args.item, hold=True)
        last = max(i for i, e in enumerate(run.history) if (e.note or "").startswith("re-run of"))
        again = [e.step for e in run.history[last:] if e.state == "pending" and (e.detail or "").startswith("re-run")]
        where = f"run {run.id}" if args.item is None else f"run {run.id} (item {args.item} of {args.run} {args.step})"
        say(f"{where}: re-running {', '.join(again)}")
        return _go_on(client, run)


def cancel(args: Any) -> int:
    with _client(args) as client:
        done = client.cancel(args.run, hold=True)
        run = done.run
        if run.state == "cancelled":
            if done.how == "delivered":  # the external tasks of its polling steps are cancelled here
                run = client.drive(run.id)
            say(f"run {run.id} cancelled")
            for step in run.steps:
                if step.cancel is not None and step.cancel.attempt == step.attempts:
                    say(f"  step {step.id}: {views.task_cancel(step)}")
            return 0
        if done.how == "delivered":  # nobody alive drove it: this process took it over and ends it
            say(f"run {run.id}: no live process drives it; cancelling it here")
            _drive(client, run.id)
            return 0 if client.get(run.id).state == "cancelled" else 1
        say(f"run {run.id} is driven by another process; asked it to cancel")
        run = client.wait(run.id, timeout=CANCEL_WAIT)
    if run.state == "running":
        say(f"run {run.id} will be cancelled when its running steps finish")
        return 0
    say(f"run {run.id} {run.state}")
    return 0 if run.state == "cancelled" else EXIT[run.state]


def rollback(args: Any) -> int:
    with _client(args) as client:
        run = client.rollback(args.run, args.force, retry_undo=args.retry_undo, skip_undo=args.skip_undo, hold=True)
        say(f"rolling back run {run.id}")
        _go_on(client, run)
        run = client.get(run.id)
    return 0 if run.rolled_back else 1


def signal(args: Any) -> int:
    with _client(args) as client:
        done = client.deliver(args.run, args.name, texts=args.fields, hold=True)
        rid = done.run_id
        if done.how == "workers":
            say(f"signal '{args.name}' handed to the workers serving run {rid}")
            return 0
        if done.how == "owner":
            say(f"signal '{args.name}' handed to the process driving run {rid}")
            return 0
        say(f"signal '{args.name}' delivered to run {rid}")
        if done.run.state == "paused":
            say(f"run {rid} is paused; weft resume {rid} goes on")
            return 3
        return _go_on(client, done.run)
