"""What the Client shows of a run's secrets: nothing. Secret inputs read `***`, and every
occurrence of a secret value in what it returns (labels, results, outputs, errors, history)
is masked. The store keeps the real values, which the runtime needs to run and resume."""

from __future__ import annotations

from typing import Any

from weft.plan.secrets import hide, mask, secret_values


class Redactor:
    """Masks one run's secrets in copies of its records (they are never changed in place)."""

    def __init__(self, run: dict) -> None:
        self.names = tuple(run.get("secrets") or ())
        self.secrets = secret_values(run)

    def run(self, run: dict) -> dict:
        if not self.names:
            return run
        shown = {k: mask(run.get(k), self.secrets) for k in ("label", "result", "error")}
        return {**run, **shown, "inputs": hide(run.get("inputs") or {}, self.names, self.secrets)}

    def step(self, spec: dict, rec: dict) -> dict:
        if not self.names:
            return rec
        shown: dict[str, Any] = {k: mask(rec.get(k), self.secrets) for k in ("outputs", "error", "poll", "cancel")}
        if rec.get("undo"):
            shown["undo"] = {**rec["undo"], "error": mask(rec["undo"].get("error"), self.secrets)}
        names, inputs = spec.get("secret") or (), rec.get("inputs")
        if spec.get("kind") == "each" and inputs is not None:  # {"items", "with": the captured values}
            shown["inputs"] = {**mask(inputs, self.secrets), "with": hide(inputs.get("with"), names, self.secrets)}
        else:
            shown["inputs"] = hide(inputs, names, self.secrets)
        return {**rec, **shown}

    def event(self, e: dict) -> dict:
        if not self.secrets:
            return e
        return {**e, **{k: mask(e[k], self.secrets) for k in ("detail", "log", "note") if e.get(k) is not None}}

    def history(self, history: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        return [(seq, self.event(e)) for seq, e in history]
