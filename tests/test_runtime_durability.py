"""Durability with real processes: SIGKILL at random instants, named crash points, a full store, a flipped byte.

After every crash a fresh `weft resume` process continues the run. The checks:
every step succeeded; the history's sequence numbers have no gaps; every
transition a process printed (it prints only after the commit) is in the
history; the indexes agree with a full scan; and side effects, recorded by the
actions as `<run> <step> <attempt>` lines, show that no attempt ran twice and
that a non-idempotent step ran again only after it was reported interrupted and
a person resumed it.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from collections import Counter

import pytest

from runtime_support.checks import history, index_problems
from weft.runtime.stores.lmdb.store import Store
from weft.cli.views import clock, event_text

pytestmark = pytest.mark.slow  # real processes SIGKILLed, crash points, a full map, a corrupt byte

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime_support")
DURABLE = os.path.join(HERE, "durable.flow")
CLI = os.path.join(HERE, "cli.flow")
ACK = re.compile(r"^\d\d:\d\d:\d\d .+$")


class Session:
    """A store folder and the `weft` processes run against it."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.store = str(tmp_path / "store")
        self.effects = str(tmp_path / "effects")
        self.env = dict(os.environ, WEFT_STORE=self.store)
        self.env.pop("WEFT_CRASH_AT", None)
        self.acknowledged: dict[str, Counter] = {}

    def start(self, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "weft.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or self.env,
            cwd=self.tmp,
            **popen,
        )

    def finish(self, proc: subprocess.Popen, run_id: str | None, first: str = "") -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=60)
        out = first + out
        assert "Traceback" not in err, err
        complete = out.split("\n")[:-1]  # a killed process may leave half a line
        if run_id is None and complete and complete[0].startswith("run "):
            run_id = complete[0].split()[1]
        if run_id is not None:
            self.acknowledged.setdefault(run_id, Counter()).update(x for x in complete if ACK.match(x))
        return proc.returncode, out, err

    def newest_run(self) -> str | None:
        if not os.path.exists(os.path.join(self.store, "data.mdb")):
            return None
        with Store(self.store, create=False) as store, store.read() as t:
            return next(t.index("started", reverse=True), None)

    def state(self, run_id: str) -> str:
        with Store(self.store, create=False) as store, store.read() as t:
            return t.run(run_id)["state"]

    def resume_until_done(self, run_id: str) -> None:
        """Resume as a person would: again after an 'interrupted' pause, until the run succeeds."""
        for _ in range(10):
            if self.state(run_id) == "succeeded":
                return
            code, out, err = self.finish(self.start("resume", run_id), run_id)
            if code == 0:
                return
            assert code == 3, (code, out, err)
            assert "was interrupted" in out
        raise AssertionError("the run did not finish")

    def check(self, run_id: str, tags: dict[str, str] | None = None) -> None:
        """All the invariants for one run; `tags` maps a step to the tag its effect lines carry (its id)."""
        with Store(self.store, create=False) as store:
            with store.read() as t:
                run, steps = t.run(run_id), t.steps(run_id)
                plan = t.plan(run_id)
            events = history(store, run_id)
            assert index_problems(store) == []
        assert run["state"] == "succeeded"
        assert all(s["state"] == "succeeded" for s in steps.values())
        recorded = Counter(f"{clock(e['t'])} {event_text(e)}" for e in events)
        missing = self.acknowledged.get(run_id, Counter()) - recorded
        assert not missing, f"acknowledged but not in the history: {list(missing)[:5]}"
        effects = Counter()
        with open(self.effects) as f:
            for line in f:
                rid, tag, attempt = line.split()
                if rid == run_id:
                    effects[(tag, int(attempt))] += 1
        assert max(effects.values()) == 1, "an attempt of a step ran twice"
        interrupted = Counter(
            e["step"] for e in events if e.get("state") == "failed" and e.get("detail") == "interrupted"
        )
        for spec in plan["steps"]:
            sid, rec = spec["id"], steps[spec["id"]]
            tag = sid if tags is None else tags.get(sid)
            if tag is None:
                continue
            assert effects[(tag, rec["attempts"])] == 1, f"{sid}: its recorded attempt left no effect"
            ran = sum(n for (t, _), n in effects.items() if t == tag)
            if not spec["action"]["idempotent"]:
                assert rec["attempts"] == 1 + interrupted[sid], f"{sid} ran again without being interrupted"
                assert ran <= rec["attempts"]


@pytest.fixture
def session(tmp_path):
    return Session(tmp_path)


def test_sigkill_at_random_instants_loses_nothing(session):
    seed = int(os.environ.get("WEFT_KILL_SEED", time.time()))
    rnd = random.Random(seed)
    start_run = lambda: session.start("run", DURABLE, "-i", f"path={session.effects}", "-i", "pause=0.06")  # noqa: E731
    kills, runs = 0, []
    while kills < 22:
        before = session.newest_run()
        proc, run_id = start_run(), None
        while True:
            # mostly strike while the run is being driven; sometimes at any instant, start-up included
            first = proc.stdout.readline() if rnd.random() < 0.8 else ""
            time.sleep(rnd.uniform(0.0, 0.5))
            if proc.poll() is None:
                proc.kill()
                kills += 1
            session.finish(proc, run_id, first)
            newest = session.newest_run()
            run_id = run_id or (newest if newest != before else None)
            if run_id is None:
                proc = start_run()
            elif session.state(run_id) == "succeeded":
                break
            elif kills >= 22:
                session.resume_until_done(run_id)
                break
            else:
                proc = session.start("resume", run_id)
        runs.append(run_id)
    for run_id in runs:
        session.check(run_id)


@pytest.mark.parametrize(
    "point",
    [
        "before-commit:1",
        "before-commit:4",
        "after-action-before-commit:1",
        "after-action-before-commit:5",
        "after-commit:1",
        "after-commit:6",
    ],
)
def test_named_crash_points_resume_cleanly(session, point):
    env = dict(session.env, WEFT_CRASH_AT=point)
    proc = session.start("run", DURABLE, "-i", f"path={session.effects}", "-i", "pause=0", env=env)
    code, out, _ = session.finish(proc, None)
    assert code == 137
    run_id = out.split()[1]
    session.resume_until_done(run_id)
    session.check(run_id)


def test_a_full_map_fails_clearly_and_keeps_earlier_runs(session, tmp_path):
    env = dict(session.env, WEFT_STORE_MAX_MB="1")
    code, out, _ = session.finish(session.start("run", CLI, "--flow", "basic", "-i", "n=1", env=env), None)
    assert code == 0
    first = out.split()[1]
    (tmp_path / "big.json").write_text(json.dumps({"n": 2, "word": "x" * (2 << 20)}))
    code, out, err = session.finish(session.start("run", CLI, "--flow", "basic", "--inputs", "big.json", env=env), None)
    assert code == 2 and out == ""
    assert err.startswith(f"weft: error: store {session.store} is full") and err.count("\n") == 1
    code, out, _ = session.finish(session.start("list", "--json"), None)
    assert [(r["id"], r["state"]) for r in json.loads(out)] == [(first, "succeeded")]


def test_a_file_size_limit_mid_run_fails_clearly_and_the_run_resumes(session):
    code, out, _ = session.finish(session.start("run", CLI, "--flow", "basic", "-i", "n=1"), None)
    assert code == 0
    limit = os.path.getsize(os.path.join(session.store, "data.mdb")) + (48 << 10)
    proc = session.start(
        "run",
        DURABLE,
        "-i",
        f"path={session.effects}",
        "-i",
        "pause=0",
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    code, out, err = session.finish(proc, None)
    assert code == 2 and err.startswith(f"weft: error: store {session.store} is full") and err.count("\n") == 1
    run_id = out.split()[1]
    session.resume_until_done(run_id)
    session.check(run_id)


def test_a_flipped_byte_is_reported_as_a_corrupt_record(session):
    proc = session.start("run", CLI, "--flow", "basic", "-i", "n=1", "-i", "word=CANARY-0123456789")
    code, out, _ = session.finish(proc, None)
    run_id = out.split()[1]
    data = os.path.join(session.store, "data.mdb")
    with open(data, "rb") as f:
        raw = bytearray(f.read())
    spots = [m.start() for m in re.finditer(b"CANARY-0123456789", raw)]
    assert spots
    for at in spots:
        raw[at + 7] ^= 0x01
    with open(data, "wb") as f:
        f.write(raw)
    for args in (("show", run_id), ("list",)):
        code, out, err = session.finish(session.start(*args), None)
        assert code == 2 and out == ""
        assert err == f"weft: error: corrupt record runs:{run_id} in {session.store} (checksum mismatch)\n"


def test_a_crash_inside_an_each_step_resumes_its_sub_runs(session, tmp_path):
    env = dict(session.env, WEFT_CRASH_AT="after-commit:12")
    items = json.dumps(list(range(8)))
    proc = session.start(
        "run",
        CLI,
        "--flow",
        "bulk",
        "-i",
        f"path={session.effects}",
        "-i",
        f"marker={tmp_path}/none",
        "-i",
        f"items={items}",
        env=env,
    )
    code, out, _ = session.finish(proc, None)
    assert code == 137
    run_id = out.split()[1]
    session.resume_until_done(run_id)
    with Store(session.store, create=False) as store:
        with store.read() as t:
            children = [t.run(rid) for _, rid in t.children(run_id, "runs")]
            result = t.run(run_id)["result"]
        assert index_problems(store) == []
    assert result == {"done": 8} and len(children) == 8
    assert all(c["state"] == "succeeded" for c in children)
    for child in children:
        session.check(child["id"], {"one": f"item{child['inputs']['i']}"})
