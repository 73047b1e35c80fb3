"""`weft run`, `show`, `resume`, `skip`, `cancel`, `rollback` and `signal` (`list` and `prune`: catalog.py).

Exit codes: 0 the run succeeded (or was cancelled / rolled back as asked), 1 it
failed or was cancelled, 3 it paused (resumable), 2 nothing was started or
changed (bad input, unknown run or step, a run owned by a live process, a
store that is corrupt or full).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from typing import Any

from weft.plan import expr
from weft.plan import types as typesys
from weft.errors import WeftError
from weft.runtime.engine import session
from weft.runtime.core import steering
from weft.cli import views
from weft.runtime.stores.lmdb import workqueue
from weft.runtime.records import check_serializable
from weft.cli.console import LiveReport, PlainReport
from weft.runtime.engine.driver import Driver
from weft.runtime.engine.lease import Lease
from weft.runtime.core.machine import Machine
from weft.runtime.stores.lmdb.store import Store, ignore_file_size_signal, store_dir
from weft.suggest import suggest

EXIT = {"succeeded": 0, "failed": 1, "cancelled": 1, "paused": 3, "running": 0}


def _store(option: str | None, create: bool = False) -> Store:
    ignore_file_size_signal()
    return Store(store_dir(option), create=create)


def _user(args: Any) -> str:
    if getattr(args, "user", None):
        return args.user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


# -- weft run -------------------------------------------------------------------------------


def run(args: Any) -> int:
    from weft.cli.compile import compile_or_explain  # the only way the runtime reaches the compiler

    plan = compile_or_explain(args.file, args.extensions).plan(args.flow)
    inputs = read_inputs(plan, args.inputs, args.inputs_file)
    env = expr.Env(inputs)
    label = _text(plan["label"], env, "label") if plan["label"] is not None else None
    locks = [_text(e, env, "lock") for e in plan["locks"]]
    with _store(args.store, create=True) as store:
        m, lease = session.create(store, plan, inputs, user=_user(args), label=label, locks=locks, detach=args.detach)
        print(f"run {m.run['id']}", flush=True)
        if args.detach:
            return 0
        return _drive(store, m, lease, args.workers)


def _text(e: list, env: expr.Env, what: str) -> str:
    try:
        return expr.show(expr.evaluate(e, env))
    except expr.EvalError as err:
        raise WeftError(f"cannot compute the flow's {what}: {err}") from None


def read_inputs(plan: dict, pairs: list[str], path: str | None) -> dict[str, Any]:
    """The run's inputs from `-i K=V` and `--inputs F.json`, checked against the params, defaults filled."""
    params = {p["name"]: p for p in plan["params"]}
    types = {name: typesys.from_data(p["type"]) for name, p in params.items()}
    problems: list[str] = []
    given: dict[str, Any] = {}

    def known(name: str) -> bool:
        if name in params:
            return True
        close = suggest(params, name)
        takes = f"; {plan['flow']} takes {', '.join(params) or 'no inputs'}"
        problems.append(f"unknown input '{name}'" + (f" (did you mean '{close}'?)" if close else takes))
        return False

    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise WeftError(f"cannot read inputs from {path}: {e}") from None
        if not isinstance(data, dict):
            raise WeftError(f"{path} must hold a JSON object of inputs")
        for name, value in data.items():
            if known(name):
                errors = typesys.check_value(value, types[name], name)
                problems += [f"input {e}" for e in errors[:3]]
                given[name] = value
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            problems.append(f"-i expects KEY=VALUE, not {pair!r}")
        elif known(name):
            try:
                given[name] = typesys.parse_text(text, types[name])
            except ValueError as e:
                problems.append(f"input '{name}': {e}")
                given.setdefault(name, None)  # given, though wrong: not also "missing"
    inputs: dict[str, Any] = {}
    for name, p in params.items():
        if name in given:
            inputs[name] = given[name]
        elif p["default"] is None:
            problems.append(f"missing input '{name}' ({types[name]})")
        else:
            try:
                inputs[name] = expr.evaluate(p["default"], expr.Env(inputs))
            except (expr.EvalError, expr.Unresolved) as e:
                problems.append(f"default of input '{name}' cannot be computed: {e}")
    problem = check_serializable(inputs)
    if problem:
        problems.append(f"inputs cannot be stored: {problem}")
    if problems:
        raise WeftError("; ".join(problems) + "; nothing was run")
    return inputs


# -- driving and reporting --------------------------------------------------------------------


def _drive(store: Store, m: Machine, lease: Lease, workers: int | None, until_waiting: bool = False) -> int:
    run = m.run
    title = run["label"] or run["flow"]
    report = LiveReport(title) if sys.stdout.isatty() else PlainReport()
    try:
        Driver(store, m, lease, workers=workers, observer=report, until_waiting=until_waiting).drive()
    finally:
        report.close()
    return _outcome(m)


def _outcome(m: Machine) -> int:
    run, rid = m.run, m.run["id"]
    state = run["state"]
    took = views.duration(run["started"], run["ended"])
    if state == "succeeded":
        print(f"run {rid} succeeded" + (f" in {took}" if took else ""))
        if run["result"]:
            print("result: " + json.dumps(run["result"], sort_keys=True))
    elif state == "paused":
        print(f"run {rid} paused: {run['error'] or 'stopped'}")
        failed = steering.failed_steps(m)
        print(f"  weft resume {rid}      retry {', '.join(failed) or 'the failed steps'} and go on")
        for sid in failed[:3]:
            print(f"  weft skip {rid} {sid}  go on without it (--output K=V gives its outputs)")
        print(f"  weft rollback {rid}    undo the steps that succeeded")
        print(f"  weft cancel {rid}      stop the run")
    elif state == "failed":
        how = "rolled back" if run["rolled_back"] else "failed"
        print(f"run {rid} {how}" + (f": {run['error']}" if run["error"] else ""))
    elif state == "cancelled":
        print(f"run {rid} cancelled")
    else:
        waits = sorted({m.specs[s]["wait"]["signal"] for s in m.specs if m.steps[s]["state"] == "suspended"})
        print(f"run {rid} is waiting for signal {', '.join(waits)} (weft signal {rid} NAME K=V...)")
    return EXIT[state]


# -- show -----------------------------------------------------------------------------


def show(args: Any) -> int:
    with _store(args.store) as store:
        view = views.load(store, args.run)
    print(json.dumps(views.run_json(view), indent=2, default=str) if args.json else views.run_text(view))
    return 0


# -- steering ------------------------------------------------------------------------------------


def resume(args: Any) -> int:
    with _store(args.store) as store:
        m, lease, rid = session.take(store, args.run, steering.resume)
        print(f"resuming run {rid}", flush=True)
        return _drive(store, m, lease, args.workers)


def skip(args: Any) -> int:
    def apply(m: Machine, now: float) -> None:
        sid = steering.find_step(m, args.step)
        outputs = read_outputs(m.specs[sid], args.output) if args.output else None
        steering.skip(m, sid, outputs, now)

    with _store(args.store) as store:
        m, lease, rid = session.take(store, args.run, apply)
        print(f"run {rid}: step {steering.find_step(m, args.step)} skipped", flush=True)
        return _drive(store, m, lease, args.workers)


def read_outputs(spec: dict, pairs: list[str]) -> dict[str, Any]:
    """Hand-given outputs `K=V` of a step, checked against its output type."""
    return _record(typesys.from_data(spec["outputs"]), pairs, f"step {spec['id']}", "output")


def _record(t: typesys.Type, pairs: list[str], where: str, what: str) -> dict[str, Any]:
    fields = {f.name: f for f in t.fields} if isinstance(t, typesys.RecordType) else {}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise WeftError(f"{what}s are given as K=V, not {pair!r}")
        field = fields.get(name)
        if field is None and t != typesys.ANY and fields:
            close = suggest(fields, name)
            hint = f" (did you mean '{close}'?)" if close else f" (it has: {', '.join(fields)})"
            raise WeftError(f"{where} has no {what} '{name}'{hint}")
        try:
            values[name] = typesys.parse_text(text, field.type if field else typesys.ANY)
        except ValueError as e:
            raise WeftError(f"{what} '{name}': {e}") from None
    missing = [f"'{f.name}' ({f.type})" for f in fields.values() if f.required and f.name not in values]
    if missing:
        raise WeftError(f"{where} needs {what} {', '.join(missing)} as well")
    return values


def cancel(args: Any) -> int:
    request = ("cancel", {"kind": "cancel", "by": _user(args), "t": time.time()})
    with _store(args.store) as store:
        m, _, rid = session.take(store, args.run, steering.cancel, request=request)
        if m is not None:
            print(f"run {rid} cancelled")
            return 0
        print(f"run {rid} is driven by another process; asked it to cancel", flush=True)
        state = _wait_stopped(store, rid, 30.0)
    if state == "running":
        print(f"run {rid} will be cancelled when its running steps finish")
        return 0
    print(f"run {rid} {state}")
    return 0 if state == "cancelled" else EXIT[state]


def _wait_stopped(store: Store, run_id: str, limit: float) -> str:
    end = time.time() + limit
    while True:
        with store.read() as t:
            state = t.run(run_id)["state"]
        if state != "running" or time.time() > end:
            return state
        time.sleep(0.1)


def rollback(args: Any) -> int:
    with _store(args.store) as store:
        m, lease, rid = session.take(store, args.run, lambda m, now: steering.rollback(m, now, args.force))
        print(f"rolling back run {rid}", flush=True)
        _drive(store, m, lease, args.workers)
    return 0 if m.run["rolled_back"] else 1


def signal(args: Any) -> int:
    with _store(args.store) as store:
        view = views.load(store, args.run)
        run = view.run
        m = Machine(view.plan, run, view.steps, time.time())
        targets = steering.waiting_for(m, args.name)
        if not targets:
            steering.signal(m, args.name, {}, time.time())  # raises the "nothing waits" error
        fields = {}
        for sid in targets:
            fields = _record(
                typesys.from_data(m.specs[sid]["wait"]["fields"]), args.fields, f"signal '{args.name}'", "field"
            )
        request = ("signal\0" + args.name, {"kind": "signal", "name": args.name, "fields": fields})
        if run.get("detached") and run["state"] == "running":
            workqueue.hand_over(store, run["id"], *request)
            print(f"signal '{args.name}' handed to the workers serving run {run['id']}")
            return 0
        m, lease, rid = session.take(
            store, run["id"], lambda m, now: steering.signal(m, args.name, fields, now), request=request
        )
        if m is None:
            print(f"signal '{args.name}' handed to the process driving run {rid}")
            return 0
        print(f"signal '{args.name}' delivered to run {rid}", flush=True)
        if m.run["state"] == "paused":
            print(f"run {rid} is paused; weft resume {rid} goes on")
            return 3
        return _drive(store, m, lease, None, until_waiting=True)
