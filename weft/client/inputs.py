"""Checking what people hand a run: its inputs, a skipped step's outputs, a signal's fields.

Values come as Python values (an `--inputs` JSON file, a Python caller) or as
`K=V` texts (`-i`, `--output`, `weft signal`), parsed by the type they are
for. Every problem names the field at fault; the first one becomes the
InvalidInput's `field`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from weft.client import limits
from weft.client.errors import InvalidInput
from weft.errors import WeftError
from weft.plan import expr
from weft.plan.schema import check_plan
from weft.plan import types as typesys
from weft.runtime.records import check_serializable
from weft.suggest import suggest


class _Problems:
    """Problems found so far, each with the field it is about."""

    def __init__(self) -> None:
        self.found: list[tuple[str | None, str]] = []

    def add(self, field: str | None, message: str) -> None:
        self.found.append((field, message))

    def raise_if_any(self, tail: str = "") -> None:
        if self.found:
            messages = tuple(m for _, m in self.found)
            raise InvalidInput("; ".join(messages) + tail, field=self.found[0][0], problems=messages)


def _parse(text: str, t: typesys.Type, field: str) -> Any:
    """A `K=V` text as a value of `t` (ValueError if it is not one), its nesting bounded before JSON parses it."""
    if t != typesys.STR and not (isinstance(t, typesys.OptType) and t.inner == typesys.STR):
        limits.text(text, field)
    value = typesys.parse_text(text, t)
    limits.value(value, field)  # (JSON text may say 1e999 or NaN)
    return value


def _path(error: str) -> str:
    """The value path at the head of a typesys.check_value message (`hosts[2].mac: expected str`)."""
    return error.partition(": ")[0]


def run_inputs(plan: dict, values: dict[str, Any] | None, texts: Iterable[str] = ()) -> dict[str, Any]:
    """A run's inputs from `values` and `K=V` texts (texts win), checked against the params, defaults filled."""
    params = {p["name"]: p for p in plan["params"]}
    types = {name: typesys.from_data(p["type"]) for name, p in params.items()}
    problems = _Problems()
    given: dict[str, Any] = {}

    def known(name: str) -> bool:
        if name in params:
            return True
        close = suggest(params, name)
        takes = f"; {plan['flow']} takes {', '.join(params) or 'no inputs'}"
        problems.add(name, f"unknown input '{name}'" + (f" (did you mean '{close}'?)" if close else takes))
        return False

    if values is not None and not isinstance(values, dict):
        raise InvalidInput("inputs must be a mapping of input names to values; nothing was run")
    for name, value in (values or {}).items():
        if known(name):
            limits.value(value, name)
            for e in typesys.check_value(value, types[name], name)[:3]:
                shown = f"input {e}" if not params[name].get("secret") else f"input {name}: expected str (a secret)"
                problems.add(_path(e), shown)
            given[name] = value
    for pair in texts:
        name, sep, text = pair.partition("=")
        if not sep:
            problems.add(None, f"-i expects KEY=VALUE, not {pair!r}")
        elif known(name):
            try:
                given[name] = _parse(text, types[name], name)
            except ValueError as e:
                problems.add(name, f"input '{name}': {e}")
                given.setdefault(name, None)  # given, though wrong: not also "missing"
    inputs: dict[str, Any] = {}
    for name, p in params.items():
        if name in given:
            inputs[name] = given[name]
        elif p["default"] is None:
            problems.add(name, f"missing input '{name}' ({types[name]})")
        else:
            try:
                inputs[name] = expr.evaluate(p["default"], expr.Env(inputs))
            except (expr.EvalError, expr.Unresolved) as e:
                problems.add(name, f"default of input '{name}' cannot be computed: {e}")
    problem = check_serializable(inputs)
    if problem:
        problems.add(None, f"inputs cannot be stored: {problem}")
    problems.raise_if_any("; nothing was run")
    return inputs


def record(
    t: typesys.Type, values: dict[str, Any] | None, texts: Iterable[str], where: str, what: str
) -> dict[str, Any]:
    """Fields of a record type `t` (a step's outputs, a signal's fields) from values and `K=V` texts."""
    fields = {f.name: f for f in t.fields} if isinstance(t, typesys.RecordType) else {}
    if (t == typesys.NONE or (isinstance(t, typesys.RecordType) and not fields)) and (values or texts):
        raise InvalidInput(f"{where} has no {what}s to give", field=next(iter(values or {}), None))
    open_ended = t == typesys.ANY or not fields
    given: dict[str, Any] = {}

    def field_of(name: str) -> typesys.Field | None:
        field = fields.get(name)
        if field is None and not open_ended:
            close = suggest(fields, name)
            hint = f" (did you mean '{close}'?)" if close else f" (it has: {', '.join(fields)})"
            raise InvalidInput(f"{where} has no {what} '{name}'{hint}", field=name)
        return field

    for name, value in (values or {}).items():
        field = field_of(name)
        limits.value(value, name)
        errors = typesys.check_value(value, field.type, name) if field else []
        if errors:
            raise InvalidInput(f"{what} {errors[0]}", field=_path(errors[0]))
        given[name] = value
    for pair in texts:
        name, sep, text = pair.partition("=")
        if not sep:
            raise InvalidInput(f"{what}s are given as K=V, not {pair!r}")
        field = field_of(name)
        try:
            given[name] = _parse(text, field.type if field else typesys.ANY, name)
        except ValueError as e:
            raise InvalidInput(f"{what} '{name}': {e}", field=name) from None
    missing = [f for f in fields.values() if f.required and f.name not in given]
    if missing:
        names = ", ".join(f"'{f.name}' ({f.type})" for f in missing)
        raise InvalidInput(f"{where} needs {what} {names} as well", field=missing[0].name)
    problem = check_serializable(given)
    if problem:
        raise InvalidInput(f"{what}s cannot be stored: {problem}")
    return given


@dataclass(frozen=True)
class Start:
    """What a new run of a plan is stored with: its checked inputs, label, lock names and user."""

    inputs: dict[str, Any]
    label: str | None
    locks: list[str]
    user: str


def prepare(
    plan: dict, inputs: dict[str, Any] | None, texts: Iterable[str], user: str, label: str | None = None
) -> Start:
    """Check `inputs` (and `K=V` texts) against the plan's parameters; compute its label and locks.

    `label` replaces the flow's own. InvalidInput names what is wrong.
    """
    try:
        check_plan(plan)
    except WeftError as e:
        raise InvalidInput(str(e)) from None
    values = run_inputs(plan, inputs, texts)
    env = expr.Env(values)
    if label is not None:
        label = limits.name(label, "label", limits.MAX_LABEL)
    elif plan.get("label") is not None:
        label = _text(plan["label"], env, "label")
    locks = [limits.name(_text(e, env, "lock"), "lock") for e in plan.get("locks") or ()]
    return Start(values, label, locks, limits.name(user, "user"))


def _text(e: list, env: expr.Env, what: str) -> str:
    try:
        return expr.show(expr.evaluate(e, env))
    except expr.EvalError as err:
        raise InvalidInput(f"cannot compute the flow's {what}: {err}", field=what) from None
