"""An undo interrupted by a crash never runs again without a person (issue 9, item 2).

Real `weft` processes: `weft rollback` is SIGKILLed while a non-idempotent
`std.exec` undo runs (it appends a line to a file, then sleeps); the next
`weft rollback` records the undo as interrupted, leaves it, and says how to
retry or skip it; only `--retry-undo STEP` runs it again.
"""

from __future__ import annotations

import random
import signal
import time

import pytest
from conftest import Weft

pytestmark = pytest.mark.slow  # `weft rollback` processes SIGKILLed

FLOW = """\
flow undo_exec(path: str, pause: float) {
    one = std.exec(argv: ["true"]) undo std.exec(argv: ["sh", "-c", "echo undo >> ${path}; sleep ${pause}"])
}
"""


class Undo(Weft):
    """A store, a flow file and an effects file in a temp folder, and the `weft` processes run on them."""

    def __init__(self, folder) -> None:
        super().__init__(folder)
        self.flow = self.tmp / "undo.flow"
        self.flow.write_text(FLOW)
        self.effects = self.tmp / "effects"
        self.env.pop("WEFT_CRASH_AT", None)

    def new_run(self, pause: float) -> str:
        self.effects.write_text("")
        return self.run(str(self.flow), "-i", f"path={self.effects}", "-i", f"pause={pause}", code=0)[0]

    def undos(self) -> int:
        return self.effects.read_text().count("undo")

    def kill_rollback(self, run_id: str, after: float, since_undo: bool = True) -> bool:
        """Start `weft rollback` and SIGKILL it `after` s after its undo began (not `since_undo`: after it
        started); whether the undo had begun."""
        proc = self.start("rollback", run_id)
        began = None if since_undo else time.time()
        end = time.time() + 30
        while time.time() < end and proc.poll() is None:
            if began is None and self.undos():
                began = time.time()
            if began is not None and time.time() - began >= after:
                break
            time.sleep(0.01)
        begun = self.undos() > 0
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        return begun


def _interrupted_events(run: dict) -> list[dict]:
    return [e for e in run["history"] if e.get("state") == "undo failed" and "interrupted" in e.get("detail", "")]


def test_an_interrupted_undo_waits_for_a_person_and_runs_again_only_when_asked(tmp_path):
    weft = Undo(tmp_path)
    rid = weft.new_run(pause=2.0)
    assert weft.kill_rollback(rid, after=0.2) and weft.undos() == 1

    again = weft("rollback", rid)  # takes the dead rollback over: the undo is interrupted, not run again
    assert again.returncode == 1, again.stderr
    assert "--retry-undo one" in again.stdout + again.stderr and "interrupted" in again.stdout + again.stderr
    assert weft.undos() == 1
    run = weft.show(rid)
    assert len(_interrupted_events(run)) == 1
    assert run["state"] == "failed" and "interrupted" in run["error"]

    refused = weft("rollback", rid)  # a plain rollback again is refused, changing nothing
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"weft rollback {rid} --retry-undo one" in refused.stderr and "--skip-undo one" in refused.stderr
    assert weft.show(rid)["history"] == run["history"] and weft.undos() == 1

    retried = weft("rollback", rid, "--retry-undo", "one")  # a person asks: it runs again
    assert retried.returncode == 0, retried.stderr
    assert weft.undos() == 2 and weft.show(rid)["rolled_back"]


def test_a_skipped_interrupted_undo_counts_as_done(tmp_path):
    weft = Undo(tmp_path)
    rid = weft.new_run(pause=2.0)
    assert weft.kill_rollback(rid, after=0.1)
    assert weft("rollback", rid).returncode == 1
    bad = weft("rollback", rid, "--retry-undo", "nosuch")
    assert bad.returncode == 2 and "no step 'nosuch'" in bad.stderr
    skipped = weft("rollback", rid, "--skip-undo", "one")
    assert skipped.returncode == 0, skipped.stderr
    run = weft.show(rid)
    assert weft.undos() == 1 and run["rolled_back"]
    assert [s["state"] for s in run["steps"] if s["id"] == "one"] == ["undone"]
    assert run["error"] is None  # as a rollback's of a run that succeeded (it kept "rollback incomplete ... run
    assert "rollback incomplete" not in skipped.stdout  # --retry-undo one", which is refused now)


@pytest.mark.parametrize("part", range(4))
def test_kill_loop_of_rollbacks_never_runs_an_undo_twice_without_a_person(tmp_path, part):
    """20 SIGKILLs of `weft rollback` at random instants (most during a std.exec undo), in four tests of five
    that run in parallel: zero double runs."""
    rng = random.Random(9 + part)
    weft = Undo(tmp_path)
    interrupted = 0
    for i in range(part * 5, part * 5 + 5):
        rid = weft.new_run(pause=1.0)
        if i % 4:  # mostly while the undo runs; every fourth kill at any instant of the command
            weft.kill_rollback(rid, after=rng.uniform(0.0, 0.8))
        else:
            weft.kill_rollback(rid, after=rng.uniform(0.2, 2.0), since_undo=False)
        before = weft.undos()
        assert before <= 1
        again = weft("rollback", rid)
        run = weft.show(rid)
        assert weft.undos() == max(before, 1) if not _interrupted_events(run) else weft.undos() == before, (
            f"kill {i}: the undo ran again without a person"
        )
        if _interrupted_events(run):
            interrupted += 1
            assert again.returncode == 1 and "--retry-undo one" in again.stdout + again.stderr
            assert weft("rollback", rid).returncode == 2 and weft.undos() == before
        else:  # killed before the undo was recorded running, or after it ended
            assert run["rolled_back"] or run["state"] == "failed" and before == 1, (again.stdout, again.stderr)
    assert interrupted >= 2  # of the three or four kills while the undo runs
