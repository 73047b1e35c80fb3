"""Shared commits under SIGKILL: pure and idempotent steps share commits, non-idempotent ones never run twice.

A chain of quick steps: pure ones (`mix`), idempotent ones that leave a line
per call (`again`), and every tenth a non-idempotent one that leaves a line
per call and takes 0.15 s (`once`). The driver calls the pure and idempotent ones without a
commit of their own (docs/runtime.md, "Shared commits"), so a kill loses
some of them and `weft resume` calls them again. Real `weft` processes are
SIGKILLed at random instants (runs after runs, until six kills struck a live
process); a person then resumes the run, and skips a
`once` step reported interrupted whose line shows it ran. At the end: the
run succeeded, every `once` step ran exactly once, no pure or idempotent
step was ever reported interrupted (they simply ran again), and every
transition a killed process printed is in the history.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from runtime_support.checks import history
from weft.cli.views import clock, event_text
from weft.runtime.stores.lmdb.store import Store

pytestmark = pytest.mark.slow  # real processes SIGKILLed

STEPS = 200
ACTIONS = """
from typing import TypedDict

from weft.sdk.actions import Context, action


class Value(TypedDict):
    value: int


def _line(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (text + "\\n").encode())
    finally:
        os.close(fd)


@action(pure=True)
def mix(a: int) -> Value:
    return {"value": (a * 31 + 7) % 1000}


@action(idempotent=True)
def again(path: str, tag: str, ctx: Context) -> Value:
    _line(path, f"{ctx.run_id} {tag}")
    return {"value": 1}


@action
def once(path: str, tag: str, ctx: Context) -> Value:
    time.sleep(0.15)  # the run lasts long enough for kills to strike it
    _line(path, f"{ctx.run_id} {tag}")
    return {"value": 2}
"""
PRINTED = re.compile(r"^\d\d:\d\d:\d\d .+$")


def flow_text(once: bool = True) -> str:
    """A chain of STEPS steps: s9, s19... call `once` (if `once`), the other odd ones `again`, the even ones `mix`."""
    lines = ["use sc_actions as s", "", "flow shared(path: str) {"]
    for i in range(STEPS):
        after = f" after s{i - 1}" if i else ""
        if once and i % 10 == 9:
            call = f's.once(path: "${{path}}.once", tag: "s{i}")'
        elif i % 2:
            call = f's.again(path: "${{path}}.again", tag: "s{i}")'
        else:
            call = f"s.mix(a: {i})"
        lines.append(f"    s{i} = {call}{after}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class Person:
    """Runs `weft` against one store, kills it at random instants, and steers the run as a person would."""

    def __init__(self, weft, rnd: random.Random) -> None:
        self.weft = weft
        self.rnd = rnd
        self.effects = str(weft.folder / "fx")
        self.printed: Counter = Counter()

    def finish(self, proc, kill_after: float | None) -> str:
        if kill_after is not None:
            time.sleep(kill_after)
            if proc.poll() is None:
                proc.kill()
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        complete = out.split("\n")[:-1]  # a killed process may leave half a line
        self.printed.update(x for x in complete if PRINTED.match(x))
        return out

    def lines(self, kind: str, run_id: str) -> Counter:
        """How many times each step of run `run_id` left a line in the `kind` file."""
        path = Path(f"{self.effects}.{kind}")
        found = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
        return Counter(tag for rid, tag in found if rid == run_id)

    def next_command(self, run_id: str) -> list[str] | None:
        """What a person does now: nothing (it succeeded), skip an interrupted `once` that ran, or resume."""
        with Store(self.weft.store, create=False) as store, store.read() as t:
            run, steps = t.run(run_id), t.steps(run_id)
        if run["state"] == "succeeded":
            return None
        ran = self.lines("once", run_id)
        for sid, rec in steps.items():
            if rec["state"] == "failed" and "interrupted" in (rec["error"] or {}).get("message", "") and ran[sid]:
                return ["skip", run_id, sid]
        return ["resume", run_id]

    def check(self, run_id: str, seed: int) -> Counter:
        """Every `once` step ran exactly once, every other step succeeded and was never reported interrupted;
        returns the run's history as `weft` prints it."""
        once, again = self.lines("once", run_id), self.lines("again", run_id)
        tags = {f"s{i}": i for i in range(STEPS)}
        assert once == Counter({t: 1 for t, i in tags.items() if i % 10 == 9}), f"seed {seed}: {once}"
        assert set(again) == {t for t, i in tags.items() if i % 10 != 9 and i % 2}, f"seed {seed}"
        with Store(self.weft.store, create=False) as store:
            events = history(store, run_id)
            with store.read() as t:
                steps = t.steps(run_id)
        interrupted = {e["step"] for e in events if e.get("state") == "failed" and e.get("detail") == "interrupted"}
        assert all(tags[sid] % 10 == 9 for sid in interrupted), f"seed {seed}: {interrupted}"
        assert all(rec["state"] in ("succeeded", "skipped") for rec in steps.values())
        assert all(steps[sid]["state"] == "succeeded" for sid, i in tags.items() if i % 10 != 9)
        return Counter(f"{clock(e['t'])} {event_text(e)}" for e in events)


def write_flow(weft, once: bool = True) -> None:
    (weft.folder / "sc_actions.py").write_text("import os\nimport time\n" + ACTIONS)
    (weft.folder / "shared.flow").write_text(flow_text(once))


def test_a_crash_loses_the_steps_sharing_the_next_commit_and_resume_simply_runs_them_again(weft):
    write_flow(weft, once=False)
    effects = str(weft.folder / "fx")
    # the 100th round that applies an outcome applies s99's (a chain: one step a round), then the process dies
    env = dict(weft.env, WEFT_CRASH_AT="after-action-before-commit:100")
    proc = subprocess.run(
        weft.command("run", "shared.flow", "-i", f"path={effects}"),
        capture_output=True,
        text=True,
        env=env,
        cwd=weft.folder,
        timeout=60,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 137, (out, proc.stderr)
    run_id = out.split()[1]
    with Store(weft.store, create=False) as store, store.read() as t:
        assert t.steps(run_id)["s99"]["state"] in ("pending", "running")  # its outcome was never committed
    done = weft("resume", run_id, code=0)
    assert "interrupted" not in done.stdout.replace("interrupted; runs again", "")
    again = Counter(line.split()[1] for line in Path(effects + ".again").read_text().splitlines())
    assert again["s99"] == 2  # called again, as were the others of its unsaved commit
    assert set(again) == {f"s{i}" for i in range(1, STEPS, 2)} and max(again.values()) == 2


def test_kill_loop_of_shared_commits_reruns_pure_steps_and_never_a_non_idempotent_one_twice(weft):
    seed = int(os.environ.get("WEFT_KILL_SEED", time.time()))
    rnd = random.Random(seed)
    write_flow(weft)
    person = Person(weft, rnd)
    runs: list[str] = []
    kills = 0
    while kills < 6:  # new runs until six kills struck a live process
        proc = weft.start("run", "shared.flow", "-i", f"path={person.effects}")
        first = proc.stdout.readline()
        runs.append(first.split()[1])
        for _ in range(60):
            kill = kills < 6
            person.finish(proc, rnd.uniform(0.25, 0.9) if kill else None)
            kills += kill and proc.returncode == -9
            command = person.next_command(runs[-1])
            if command is None:
                break
            proc = weft.start(*command)
        else:
            raise AssertionError(f"run {runs[-1]} did not finish (seed {seed})")
    recorded: Counter = Counter()
    for run_id in runs:
        recorded += person.check(run_id, seed)
    missing = person.printed - recorded
    assert not missing, f"seed {seed}: printed but not in any history: {list(missing)[:5]}"


def test_writers_that_wait_share_one_commit_and_one_that_raises_leaves_no_trace(tmp_path):
    """The LMDB store's group commit: writers of one process that queue behind a commit share the next one."""
    with Store(str(tmp_path / "store")) as store:
        inside, release = threading.Event(), threading.Event()

        def first(t):
            t.put_meta("first", 1)
            inside.set()
            release.wait(5)  # the others queue up meanwhile: they share the next commit

        def ok(n):
            return lambda t: (t.put_meta(f"ok{n}", n), n)[1]

        def bad(t):
            t.put_meta("bad", 1)
            raise KeyError("refused")

        results: dict[str, object] = {}

        def write(name, fn):
            try:
                results[name] = store.write(fn)
            except KeyError as e:
                results[name] = e

        threads = [threading.Thread(target=write, args=("first", first))]
        threads[0].start()
        assert inside.wait(5)
        queued = [("ok1", ok(1)), ("bad", bad), ("ok2", ok(2))]
        for name, fn in queued:
            threads.append(threading.Thread(target=write, args=(name, fn)))
            threads[-1].start()
            time.sleep(0.05)  # in this order
        release.set()
        for thread in threads:
            thread.join(10)
        assert results["ok1"] == 1 and results["ok2"] == 2 and isinstance(results["bad"], KeyError)
        with store.read() as t:
            assert (t.meta("first"), t.meta("ok1"), t.meta("ok2"), t.meta("bad")) == (1, 1, 2, None)
