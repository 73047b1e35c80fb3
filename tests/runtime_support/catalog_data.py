"""Many run records written straight through the store API, for catalog tests and benchmarks/list.py.

Runs are spread over `days` before `now`, in every state, across flows,
users, tags and labels; some are `each` parents with sub-runs; runs that have
not ended hold a lock. Each run gets the plan copy, step records and history
event a real run has, so pruning has everything to remove.
"""

from __future__ import annotations

import random

from runtime_support import plans
from weft.runtime.stores.query import Query
from weft.runtime.ids import ALPHABET
from weft.runtime.core.states import RUN_ENDED, new_run, new_step, outcome
from weft.runtime.stores.port import Store

FLOWS = [f"flow_{i:02d}" for i in range(20)]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
TAGS = ["prod", "staging", "dns", "dhcp", "content", "cloud", "audit", "nightly"]
STATES = ["succeeded"] * 85 + ["failed"] * 7 + ["cancelled"] * 3 + ["paused"] * 2 + ["running"] * 2 + ["pending"]
PLAN = plans.plan("flow_00", [plans.step("a"), plans.step("b", after=("a",))])


def run_id(ms: int, n: int) -> str:
    """An id in the layout of ids.new_run_id for a time in the past (n keeps ids apart within a millisecond)."""
    value = (ms << 80) | n
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def fill(
    store: Store,
    count: int,
    *,
    now: float,
    days: float = 60.0,
    seed: int = 7,
    batch: int = 10_000,
    children_per_parent: int = 50,
    parents: int = 4,
) -> list[dict]:
    """Write `count` runs (sub-runs included) in transactions of `batch`; returns their records, oldest first."""
    rng = random.Random(seed)
    span = days * 86400
    runs: list[dict] = []
    parent_at = {int(count * (k + 1) / (parents + 1)) for k in range(parents)}
    i = 0
    while len(runs) < count:
        created = now - span + span * len(runs) / count
        run = _record(rng, created, len(runs), now)
        runs.append(run)
        if i in parent_at:
            run.update(state="succeeded", ended=created + 60, rolled_back=False, locks=[])
            for index in range(min(children_per_parent, count - len(runs))):
                child = _record(rng, created + 0.001 * (index + 1), len(runs), now)
                child["parent"] = {"run": run["id"], "step": "each", "index": index}
                child["flow"], child["label"] = "child_flow", f"{run['label']} [{index + 1}]"
                if child["state"] not in RUN_ENDED:
                    child["state"], child["ended"], child["locks"] = "succeeded", child["created"] + 1, []
                runs.append(child)
        i += 1
    for start in range(0, len(runs), batch):
        store.write(lambda t, part=runs[start : start + batch]: _write(t, part))
    return runs


def _record(rng: random.Random, created: float, n: int, now: float) -> dict:
    flow = FLOWS[min(int(rng.expovariate(0.3)), len(FLOWS) - 1)]
    rid = run_id(int(created * 1000), n)
    label = f"{flow.replace('_', ' ')} host-{n:06d}.example.com" if rng.random() < 0.9 else None
    plan = {"flow": flow, "tags": rng.sample(TAGS, rng.randint(0, 2))}
    state = rng.choice(STATES)
    locks = [f"host:{n}"] if state not in RUN_ENDED else []
    run = new_run(rid, plan, {"n": n}, label=label, locks=locks, user=rng.choice(USERS), now=created)
    run.update(state=state, started=created + 0.01, progress=1.0 if state == "succeeded" else 0.5)
    if state in RUN_ENDED:
        run["ended"] = min(now, created + rng.uniform(0.5, 3600))
        run["rolled_back"] = state == "failed" and rng.random() < 0.3
        run["result"] = {"n": n} if state == "succeeded" else None
    return run


def _write(t, runs: list[dict]) -> None:
    for run in runs:
        rid = run["id"]
        t.put_run(run)
        t.put_plan(rid, PLAN)
        for sid in ("a", "b"):
            t.put_step(rid, sid, dict(new_step(), state="succeeded" if run["state"] == "succeeded" else "pending"))
        t.append_events(rid, [{"t": run["created"], "state": "pending", "detail": f"created by {run['user']}"}])
        for name in run["locks"]:
            t.put_lock(name, rid)


def full_scan(runs: list[dict], q: Query) -> list[str]:
    """The ids `catalog.search` should return for `q`, worked out from every record."""

    def fits(r: dict) -> bool:
        holds = q.lock in r["locks"] and r["state"] not in RUN_ENDED if q.lock is not None else True
        same = all(v is None or r[k] == v for k, v in (("state", q.state), ("flow", q.flow), ("user", q.user)))
        return (
            holds
            and same
            and (q.result is None or outcome(r) == q.result)
            and (q.tag is None or q.tag in r["tags"])
            and (q.label is None or q.label.casefold() in (r["label"] or "").casefold())
            and (q.parent is None or (r["parent"] or {}).get("run") == q.parent)
            and (q.sub_runs or q.parent is not None or not r["parent"])
            and (q.since is None or r["created"] >= q.since)
            and (q.before is None or r["created"] < q.before)
        )

    def key(r: dict) -> tuple:
        if q.sort in ("started", "ended"):
            return int((r[q.sort] if q.sort == "ended" and r["ended"] is not None else r["created"]) * 1e6), r["id"]
        if q.sort == "label":
            return (r["label"] or "").encode()[:400], r["id"]
        return r[q.sort], r["id"]

    desc = (q.sort in ("started", "ended")) != q.reverse
    found = sorted((r for r in runs if fits(r)), key=key, reverse=desc)
    if q.sort == "ended":
        found = [r for r in found if r["ended"] is not None] + [r for r in found if r["ended"] is None]
    return [r["id"] for r in found][q.offset : q.offset + q.limit]
