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
    from weft.cli.views import load_run_view as load

    return load(store_dir, run_id_or_prefix)
