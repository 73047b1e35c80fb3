"""`weft run`, `show`, `resume`, `skip`, `cancel`, `rollback` and `signal`: printers over the Client.

Exit codes: 0 the run succeeded (or was cancelled / rolled back as asked), 1 it
failed or was cancelled, 3 it paused (resumable), 2 nothing was started or
changed (bad input, unknown run or step, a run owned by a live process, a
store that is corrupt or full).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from weft.cli import views
from weft.client import Client, CompileFailed, FlowRequired, Run
from weft.errors import WeftError

EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1, "paused": 3, "running": 0}
CANCEL_WAIT = 30.0  # seconds `weft cancel` waits for another process to cancel a run it drives


def _client(args: Any) -> Client:
    return Client(args.store, workers=getattr(args, "workers", None))


# -- weft run -------------------------------------------------------------------------------


def run(args: Any) -> int:
    given = _read_json(args.inputs_file) if args.inputs_file else None
    with _client(args) as client:
        try:
            rid = client.start(
                args.file,
                args.flow,
                given,
                user=args.user,
                detach=args.detach,
                hold=not args.detach,
                texts=args.inputs,
                extensions=args.extensions,
            )
        except CompileFailed as e:
            from weft.compiler.report import format_text

            print(format_text(e.diagnostics, e.sources, color=sys.stderr.isatty()), file=sys.stderr)
            raise
        except FlowRequired as e:
            raise WeftError(f"{e} with --flow NAME") from None
        print(f"run {rid}", flush=True)
        if args.detach:
            return 0
        return _drive(client, rid)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise WeftError(f"cannot read inputs from {path}: {e}") from None
    if not isinstance(data, dict):
        raise WeftError(f"{path} must hold a JSON object of inputs")
    return data


# -- driving and reporting --------------------------------------------------------------------


def _go_on(client: Client, run: Run) -> int:
    """After a command: drive the run it left for this process, or print how it stands."""
    return _drive(client, run.id) if run.state in ("pending", "running") else outcome(run)


def _drive(client: Client, run_id: str) -> int:
    """Drive a run this process holds, showing it live; print how it came out."""
    from weft.cli.console import LiveReport, PlainReport  # rich is loaded only by commands that drive a run

    run = client.get(run_id)
    report = LiveReport(run.label or run.flow) if sys.stdout.isatty() else PlainReport()
    try:
        run = client.drive(run_id, observer=report)
    finally:
        report.close()
    return outcome(run)


def outcome(run: Run) -> int:
    """Print how a driven run came out, with the commands that go on from there; its exit code."""
    rid, state = run.id, run.state
    took = views.duration(run.started, run.ended)
    if state == "succeeded":
        print(f"run {rid} succeeded" + (f" in {took}" if took else ""))
        if run.result:
            print("result: " + json.dumps(run.result, sort_keys=True))
    elif state == "paused":
        print(f"run {rid} paused: {run.error or 'stopped'}")
        failed = [s.id for s in run.failed_steps]
        print(f"  weft resume {rid}      retry {', '.join(failed) or 'the failed steps'} and go on")
        for sid in failed[:3]:
            print(f"  weft skip {rid} {sid}  go on without it (--output K=V gives its outputs)")
            print(f"  weft show {rid} {sid}  its inputs, outputs and traceback")
        print(f"  weft rollback {rid}    undo the steps that succeeded")
        print(f"  weft cancel {rid}      stop the run")
    elif state == "failed":
        how = "rolled back" if run.rolled_back else "failed"
        print(f"run {rid} {how}" + (f": {run.error}" if run.error else ""))
    elif state == "cancelled":
        print(f"run {rid} cancelled")
    else:
        print(f"run {rid} is waiting for signal {', '.join(run.waiting_for)} (weft signal {rid} NAME K=V...)")
    return EXIT[state]


# -- show -----------------------------------------------------------------------------


def show(args: Any) -> int:
    with _client(args) as client:
        if args.step is None:
            run = client.get(args.run)
            text = json.dumps(views.run_json(run), indent=2, default=str) if args.json else views.run_text(run)
        else:
            detail = client.step(args.run, args.step)
            text = json.dumps(views.step_json(detail), indent=2, default=str) if args.json else views.step_text(detail)
    print(text)
    return 0


# -- steering ------------------------------------------------------------------------------------


def resume(args: Any) -> int:
    with _client(args) as client:
        run = client.resume(args.run, restart=args.restart, hold=True)
        print(f"resuming run {run.id}", flush=True)
        return _go_on(client, run)


def skip(args: Any) -> int:
    with _client(args) as client:
        run = client.skip(args.run, args.step, texts=args.output, hold=True)
        print(f"run {run.id}: step {run.step(args.step).id} skipped", flush=True)
        return _go_on(client, run)


def cancel(args: Any) -> int:
    with _client(args) as client:
        run = client.cancel(args.run)
        if run.state == "cancelled":
            print(f"run {run.id} cancelled")
            return 0
        print(f"run {run.id} is driven by another process; asked it to cancel", flush=True)
        run = client.wait(run.id, timeout=CANCEL_WAIT)
    if run.state == "running":
        print(f"run {run.id} will be cancelled when its running steps finish")
        return 0
    print(f"run {run.id} {run.state}")
    return 0 if run.state == "cancelled" else EXIT[run.state]


def rollback(args: Any) -> int:
    with _client(args) as client:
        run = client.rollback(args.run, args.force, retry_undo=args.retry_undo, skip_undo=args.skip_undo, hold=True)
        print(f"rolling back run {run.id}", flush=True)
        _go_on(client, run)
        run = client.get(run.id)
    return 0 if run.rolled_back else 1


def signal(args: Any) -> int:
    with _client(args) as client:
        done = client.deliver(args.run, args.name, texts=args.fields, hold=True)
        rid = done.run_id
        if done.how == "workers":
            print(f"signal '{args.name}' handed to the workers serving run {rid}")
            return 0
        if done.how == "owner":
            print(f"signal '{args.name}' handed to the process driving run {rid}")
            return 0
        print(f"signal '{args.name}' delivered to run {rid}", flush=True)
        if done.run.state == "paused":
            print(f"run {rid} is paused; weft resume {rid} goes on")
            return 3
        return _go_on(client, done.run)
