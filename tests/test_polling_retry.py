"""A poll that raises never begins a second external task (issue 9, item 9).

Transient poll errors are retried on the same handle (the step's retry
policy, at least three polls in a row, with backoff); a polling step that
failed goes on polling its task after `resume`; only `--restart` (the Client's
`restart=`) calls `start` again. Real LMDB stores, driven through the Client.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import Weft
from runtime_support.plans import HERE, plan, step

from weft.client import Client

if HERE not in sys.path:
    sys.path.append(HERE)


def sync(path, **options) -> dict:
    inputs = {"path": str(path), "done": options.pop("done")}
    inputs.update({k: options.pop(k) for k in ("fail_from", "fail_until") if k in options})
    s = step("sync", "sync", module="rt_flaky_polls", inputs=inputs, **options)
    return plan("polling", [s, step("after", after=("sync",))])


def _lines(path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def client(tmp_path):
    with Client(tmp_path / "store") as c:
        yield c


def test_a_poll_that_raises_once_is_polled_again_and_start_runs_once(client, tmp_path):
    effects = tmp_path / "effects"
    rid = client.start_plan(sync(effects, done=3, fail_from=2, fail_until=2), hold=True)
    run = client.drive(rid)
    assert run.state == "succeeded", run.error
    assert _lines(effects) == ["start", "poll 1", "poll 2", "poll 3"]
    step_ = run.step("sync")
    assert step_.state == "succeeded" and step_.attempts == 1
    details = [e.detail or "" for e in client.get(rid).history if e.step == "sync"]
    assert any(d.startswith("poll failed (1 of 3); polls again in 0.01s: ActionFailed: poll 2") for d in details)


def test_the_retry_policy_allows_more_failed_polls_and_the_backoff_doubles(client, tmp_path):
    effects = tmp_path / "effects"
    p = sync(effects, done=6, fail_from=1, fail_until=5, retry=5, backoff=0.01)
    run = client.drive(client.start_plan(p, hold=True))
    assert run.state == "succeeded" and _lines(effects).count("start") == 1
    details = [e.detail or "" for e in run.history if e.step == "sync" and "poll failed" in (e.detail or "")]
    assert [d.split(";")[1].split(":")[0] for d in details] == [f" polls again in {0.01 * 2**i:g}s" for i in range(5)]


def test_a_polling_step_that_failed_polls_its_task_again_after_resume(client, tmp_path):
    effects = tmp_path / "effects"
    rid = client.start_plan(sync(effects, done=5, fail_from=1, fail_until=4), hold=True)
    run = client.drive(rid)
    assert run.state == "paused" and "poll 4: the service answered 503" in run.error
    assert _lines(effects) == ["start", "poll 1", "poll 2", "poll 3", "poll 4"]  # 1 + 3 retries, one task
    client.resume(rid, hold=True)
    run = client.drive(rid)
    assert run.state == "succeeded", run.error
    assert _lines(effects).count("start") == 1 and _lines(effects)[-1] == "poll 5"


def test_resume_with_restart_begins_a_new_task(client, tmp_path):
    effects = tmp_path / "effects"
    rid = client.start_plan(sync(effects, done=5, fail_from=1, fail_until=4), hold=True)
    assert client.drive(rid).state == "paused"
    client.resume(rid, restart=["sync"], hold=True)
    run = client.drive(rid)
    assert run.state == "succeeded" and _lines(effects).count("start") == 2


def test_weft_resume_restart_on_the_command_line(tmp_path):
    weft = Weft(tmp_path)
    effects = tmp_path / "effects"
    with Client(weft.store) as c:
        rid = c.start_plan(sync(effects, done=5, fail_from=1, fail_until=4), hold=True)
        assert c.drive(rid).state == "paused"
    refused = weft("resume", rid, "--restart", "after", code=2)
    assert "step after is pending, not failed" in refused.stderr
    weft("resume", rid, "--restart", "sync", code=0)
    assert _lines(effects).count("start") == 2
    assert json.loads(weft("show", rid, "--json").stdout)["state"] == "succeeded"
    assert os.path.exists(weft.store)
