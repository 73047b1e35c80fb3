"""The sub-runs of an `each` step seen from its parent run: progress, and counts per state for diagrams."""

from __future__ import annotations

from collections import Counter

from weft.runtime.stores.port import Txn

STUCK = frozenset({"failed", "cancelled", "paused"})  # sub-runs that did not succeed and will not on their own


def total(rec: dict, runs: list[dict]) -> int:
    """How many items the step has: its recorded items, else the sub-runs made so far."""
    items = (rec.get("inputs") or {}).get("items")
    return len(items) if isinstance(items, list) else len(runs)


def progress(rec: dict, runs: list[dict]) -> dict[str, int]:
    """{"done": succeeded, "failed": failed, cancelled or paused, "total": items} of one `each` step."""
    return {
        "done": sum(r["state"] == "succeeded" for r in runs),
        "failed": sum(r["state"] in STUCK for r in runs),
        "total": total(rec, runs),
    }


def drawn_state(run: dict) -> str:
    """A sub-run's state in the diagram's step palette: paused waits (◷), rolled back is undone (↺)."""
    if run["state"] == "paused":
        return "suspended"
    if run["state"] == "failed" and run.get("rolled_back"):
        return "undone"
    return run["state"]


def each_counts(t: Txn, run_id: str, plan: dict, steps: dict[str, dict]) -> dict[str, dict[str, int]]:
    """{each step id: {state: sub-runs}}; items without a sub-run yet count as pending."""
    counts = {}
    for spec in plan["steps"]:
        if spec["kind"] == "each":
            runs = [r for r in (t.run(rid) for _, rid in t.children(run_id, spec["id"])) if r is not None]
            made = Counter(drawn_state(r) for r in runs)
            missing = total(steps[spec["id"]], runs) - len(runs)
            counts[spec["id"]] = dict(made, **({"pending": made["pending"] + missing} if missing > 0 else {}))
    return counts
