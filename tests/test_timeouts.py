"""A step's timeout ends what its action started (issue 9, item 6), and no stored time crashes the runtime.

Real `weft run` processes: a std.exec step whose program outlives its
`timeout 1s` is failed only once the program's whole process group is gone,
even when the program ignores SIGTERM; the marker it would write 3 s in never
appears. Retry delays and timers far beyond any real time are capped.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import Weft, run_id
from runtime_support.plans import plan, step

from weft.runtime.core.events import Failed
from weft.runtime.core.states import error_record
from weft.runtime.core.timers import LATEST, MAX_DELAY, retry_delay, step_timers
from weft.runtime.engine import session
from weft.runtime.engine.session import persist
from weft.runtime.stores.lmdb.store import Store

FLOW = """\
flow polite(dir: str) {
    work = std.exec(argv: ["sh", "-c", "echo $$ > ${dir}/pid; sleep 3; echo x > ${dir}/marker"]) timeout 1s
}

flow stubborn(dir: str) {
    work = std.exec(argv: ["sh", "-c", "trap '' TERM; echo $$ > ${dir}/pid; sleep 3; echo x > ${dir}/marker"]) timeout 1s
}

flow long(dir: str) {
    work = std.exec(argv: ["sh", "-c", "echo $$ > ${dir}/pid; sleep 3; echo x > ${dir}/marker"])
}
"""


def _group_alive(pgid: int) -> list[int]:
    """The processes of process group `pgid`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(name))
    return found


@pytest.fixture
def weft(tmp_path):
    w = Weft(tmp_path)
    (tmp_path / "timeouts.flow").write_text(FLOW)
    return w


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["polite", "stubborn"])
def test_a_timed_out_program_is_gone_before_the_step_is_failed(weft, tmp_path, flow):
    t0 = time.time()
    done = weft("run", "timeouts.flow", "--flow", flow, "-i", f"dir={tmp_path}", code=3)
    assert time.time() - t0 < 8
    assert "timed out after 1s" in done.stdout + done.stderr
    pgid = int((tmp_path / "pid").read_text())
    assert _group_alive(pgid) == []  # the run paused: nothing of the program is left
    time.sleep(4)
    assert not (tmp_path / "marker").exists()


@pytest.mark.slow
def test_a_cancel_ends_the_program_and_its_group(weft, tmp_path):
    proc = weft.start("run", "timeouts.flow", "--flow", "long", "-i", f"dir={tmp_path}")
    rid = run_id(proc.stdout.readline())
    end = time.time() + 20
    while not (tmp_path / "pid").exists() and time.time() < end:
        time.sleep(0.02)
    weft("cancel", rid, code=0)
    assert proc.wait(15) == 1
    pgid = int((tmp_path / "pid").read_text())
    assert _group_alive(pgid) == []
    time.sleep(3.5)
    assert not (tmp_path / "marker").exists()


def test_retry_delays_and_timers_are_capped():
    assert retry_delay(1.0, 1) == 1.0 and retry_delay(1.0, 4) == 8.0
    assert retry_delay(1.0, 1000) == MAX_DELAY and retry_delay(1e300, 1100) == MAX_DELAY
    assert retry_delay(float("inf"), 1) == MAX_DELAY and retry_delay(float("nan"), 3) == 0.0
    rec = {"state": "pending", "attempts": 1, "due": 1e30, "deadline": None, "poll": None, "started": None}
    assert [t.due for t in step_timers("s", rec)] == [LATEST]
    rec = {**rec, "state": "running", "due": None, "deadline": float("inf")}
    assert [t.due for t in step_timers("s", rec)] == [LATEST]


def test_a_step_retried_a_thousand_times_never_overflows_a_timer(tmp_path):
    """backoff * 2**999 used to overflow the packed timer key (struct.error) on every save."""
    p = plan("many", [step("s", "fail", inputs={"message": "no"}, retry=1000, backoff=1.0)])
    with Store(str(tmp_path / "store")) as store:
        m, lease = session.create(store, p, {}, user="test", label=None, locks=[])
        rid, now = m.run["id"], time.time()
        [launch] = m.launches(now, 1)
        m.steps["s"]["retries_used"] = 998
        m.apply(Failed("s", launch.attempt, error_record("ActionFailed", "no")), now)
        store.write(lambda t: persist(t, m, lease))
        with store.read() as t:
            rec = t.steps(rid)["s"]
            assert rec["state"] == "pending" and rec["retries_used"] == 999
            assert rec["due"] == pytest.approx(now + MAX_DELAY)
            assert t.next_due().due == pytest.approx(now + MAX_DELAY, abs=1e-3)
        store.write(lambda t: t.put_step(rid, "s", {**rec, "due": 1e300}))  # a value no compiler writes
        with store.read() as t:
            assert t.next_due().due == LATEST
