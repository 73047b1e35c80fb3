"""The durable runtime: runs persisted in LMDB, driven by an orchestrator and a worker pool.

It consumes compiled Plans (docs/plan-format.md) and never imports the compiler.
"""

from __future__ import annotations

__all__ = ["load_run_view"]


def load_run_view(
    store_dir: str | None,
    run_id_or_prefix: str,
) -> tuple[dict, dict[str, str], dict[str, dict[str, int]]]:
    """(plan, {step id: state}, {each step id: {state: sub-runs}}) of a stored run, for `weft graph RUN`.

    `store_dir` None means the default store.
    """
    from weft.runtime.engine import bulk
    from weft.runtime.stores import open_store, store_dir as default_dir

    with open_store(default_dir(store_dir), create=False) as store:
        with store.read() as t:
            run_id = t.find_run(run_id_or_prefix)
            plan, steps = t.plan(run_id), t.steps(run_id)
            return plan, {sid: rec["state"] for sid, rec in steps.items()}, bulk.each_counts(t, run_id, plan, steps)
