"""Secret values: which of a run's values are secret, and how they are masked.

A `secret str` parameter is marked in the Plan (`params[i]["secret"]`), and so
are the step inputs computed from one (`step["secret"]`). The runtime keeps the
real values in the run's records, since it needs them to run and resume; what
shows a run masks them: a value marked secret becomes MASK as a whole, and
every occurrence of a secret value inside other text (log lines, labels,
errors, outputs) becomes MASK too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MASK = "***"


def secret_params(plan: dict) -> list[str]:
    """The names of a plan's secret parameters (kept in the run record as `secrets`)."""
    return [p["name"] for p in plan.get("params") or () if p.get("secret")]


def secret_values(run: dict) -> list[str]:
    """The values of a run's secret inputs, longest first. A value computed from one holds it
    (the expression language builds strings only by joining), so masking these masks those too."""
    inputs = run.get("inputs") or {}
    found = {inputs.get(name) for name in run.get("secrets") or ()}
    return sorted((v for v in found if isinstance(v, str) and v), key=len, reverse=True)


def mask(value: Any, secrets: Sequence[str]) -> Any:
    """`value` with every occurrence of a secret string replaced by MASK, inside lists and records too."""
    if not secrets:
        return value
    if isinstance(value, str):
        for s in secrets:
            if s in value:
                value = value.replace(s, MASK)
        return value
    if isinstance(value, list):
        return [mask(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: mask(v, secrets) for k, v in value.items()}
    return value


def hide(values: dict | None, names: Sequence[str], secrets: Sequence[str]) -> dict | None:
    """Inputs as they may be shown: those named secret as MASK, the rest masked where they hold a secret."""
    if values is None:
        return None
    return {k: MASK if k in names else mask(v, secrets) for k, v in values.items()}
