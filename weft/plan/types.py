"""Weft's value types: shared by actions, the checker and the runtime.

Types are frozen dataclasses that print in Weft syntax (`list[(name: str)]`),
convert to and from plain data for the Plan, come from Python type hints for
actions, and check runtime values (flow inputs, hand-supplied outputs).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types as pytypes
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Type:
    def __str__(self) -> str:  # pragma: no cover - every subclass overrides
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class Prim(Type):
    """str, int, float, bool, any or none."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListType(Type):
    item: Type

    def __str__(self) -> str:
        return f"list[{self.item}]"


@dataclass(frozen=True, slots=True)
class DictType(Type):
    """A mapping from str to values of one type."""

    value: Type

    def __str__(self) -> str:
        return f"dict[str, {self.value}]"


@dataclass(frozen=True, slots=True)
class OptType(Type):
    inner: Type

    def __str__(self) -> str:
        return f"{self.inner}?"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: Type
    required: bool = True


@dataclass(frozen=True, slots=True)
class RecordType(Type):
    fields: tuple[Field, ...]

    def __str__(self) -> str:
        inner = ", ".join(f"{key_text(f.name)}{'' if f.required else '?'}: {f.type}" for f in self.fields)
        return f"({inner})"

    def get(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def names(self) -> list[str]:
        return [f.name for f in self.fields]


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def key_text(key: str) -> str:
    """A record key as a flow writes it: a name bare, any other key quoted (`"Content-Type"`)."""
    return key if _NAME.fullmatch(key) else json.dumps(key, ensure_ascii=False)


STR, INT, FLOAT, BOOL, ANY, NONE = (Prim(n) for n in ("str", "int", "float", "bool", "any", "none"))
EMPTY = RecordType(())
PRIMS = {t.name: t for t in (STR, INT, FLOAT, BOOL, ANY, NONE)}


def a(t: Type) -> str:
    """A type with its article, for messages: `an int`, `a str`."""
    text = str(t)
    return f"{'an' if text[:1] in 'aeiou' else 'a'} {text}"


def record(**fields: Type) -> RecordType:
    return RecordType(tuple(Field(k, v) for k, v in fields.items()))


def assignable(src: Type, dst: Type) -> bool:
    """Whether a value of type `src` may be used where `dst` is expected."""
    if src == dst or src == ANY or dst == ANY:
        return True
    if isinstance(dst, OptType):
        return src == NONE or assignable(src.inner if isinstance(src, OptType) else src, dst.inner)
    if src == INT and dst == FLOAT:
        return True
    if isinstance(src, ListType) and isinstance(dst, ListType):
        return assignable(src.item, dst.item)
    if isinstance(src, DictType) and isinstance(dst, DictType):
        return assignable(src.value, dst.value)
    if isinstance(src, RecordType) and isinstance(dst, DictType):
        return all(assignable(f.type, dst.value) for f in src.fields)
    if isinstance(src, RecordType) and isinstance(dst, RecordType):
        for f in dst.fields:
            have = src.get(f.name)
            if have is None:
                if f.required:
                    return False
            elif not assignable(have.type, f.type):
                return False
        return True
    return False


def join(a: Type, b: Type) -> Type:
    """The narrowest type holding both (for list literals); ANY if none."""
    if assignable(a, b):
        return b
    if assignable(b, a):
        return a
    if a == NONE:
        return OptType(b)
    if b == NONE:
        return OptType(a)
    return ANY


def field_type(t: Type, name: str) -> Type | None:
    """The type of `t.name`, or None when `t` has no such field."""
    if t == ANY:
        return ANY
    if isinstance(t, RecordType):
        f = t.get(name)
        return None if f is None else (f.type if f.required else OptType(f.type))
    if isinstance(t, DictType):
        return t.value
    return None


# -- plain data for the Plan ------------------------------------------------


def to_data(t: Type) -> list:
    if isinstance(t, Prim):
        return [t.name]
    if isinstance(t, ListType):
        return ["list", to_data(t.item)]
    if isinstance(t, DictType):
        return ["dict", to_data(t.value)]
    if isinstance(t, OptType):
        return ["opt", to_data(t.inner)]
    if isinstance(t, RecordType):
        return ["rec", [[f.name, to_data(f.type), f.required] for f in t.fields]]
    raise TypeError(f"not a Weft type: {t!r}")


def from_data(d: list) -> Type:
    tag = d[0]
    if tag in PRIMS:
        return PRIMS[tag]
    if tag == "list":
        return ListType(from_data(d[1]))
    if tag == "dict":
        return DictType(from_data(d[1]))
    if tag == "opt":
        return OptType(from_data(d[1]))
    if tag == "rec":
        return RecordType(tuple(Field(n, from_data(t), bool(r)) for n, t, r in d[1]))
    raise ValueError(f"unknown type tag {tag!r}")


# -- Python type hints (the action contract) ---------------------------------

_HINT_PRIMS = {str: STR, int: INT, float: FLOAT, bool: BOOL, type(None): NONE, Any: ANY}


def from_hint(hint: Any) -> Type:
    """Convert a Python annotation; raise TypeError naming what is unsupported."""
    if isinstance(hint, typing.Hashable) and hint in _HINT_PRIMS:
        return _HINT_PRIMS[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list and len(args) == 1:
        return ListType(from_hint(args[0]))
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError(f"dict keys must be str, not {hint_name(args[0])}")
        return DictType(from_hint(args[1]))
    if origin in (typing.Union, pytypes.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return OptType(from_hint(rest[0]))
        raise TypeError(f"only 'T | None' unions are supported, not {hint_name(hint)}")
    if isinstance(hint, type) and typing.is_typeddict(hint):
        required = hint.__required_keys__
        return RecordType(tuple(_field(k, v, k in required) for k, v in _class_hints(hint).items()))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _class_hints(hint)
        return RecordType(tuple(_field(f.name, hints[f.name], _dc_required(f)) for f in dataclasses.fields(hint)))
    if origin in (list, dict) or hint in (list, dict):
        raise TypeError(f"{hint_name(hint)} needs its item type (e.g. list[str])")
    raise TypeError(f"unsupported type {hint_name(hint)}")


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as e:  # a forward reference that does not resolve
        raise TypeError(f"cannot resolve the field types of {cls.__name__}: {e}") from None


def _field(name: str, hint: Any, required: bool) -> Field:
    try:
        return Field(name, from_hint(hint), required)
    except TypeError as e:
        raise TypeError(f"field '{name}': {e}") from None


def _dc_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def hint_name(hint: Any) -> str:
    """A Python annotation as written: `set[str]`, `int | str`, `Reply`."""
    if typing.get_origin(hint) is not None or isinstance(hint, pytypes.UnionType):
        return repr(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or repr(hint)


# -- runtime values -------------------------------------------------------------


def check_value(value: Any, t: Type, where: str = "value") -> list[str]:
    """Every way `value` fails to be a `t`, as messages naming the path."""
    return [] if conforms(value, t) else _problems(value, t, where)


def conforms(value: Any, t: Type) -> bool:
    """Whether `value` is a `t`: `check_value` finds no problem. Builds no message: an action's inputs and outputs
    are checked at every call, and almost always conform."""
    cls = t.__class__
    if cls is Prim:
        name = t.name
        if name == "str":
            return isinstance(value, str)
        if name == "any":
            return True
        if name == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if name == "bool":
            return isinstance(value, bool)
        if name == "float":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return name == "none" and value is None
    if cls is RecordType:
        if not isinstance(value, dict):
            return False
        for f in t.fields:
            if f.name in value:
                if not conforms(value[f.name], f.type):
                    return False
            elif f.required:
                return False
        return all(isinstance(k, str) for k in value)
    if cls is DictType:
        inner = t.value
        return isinstance(value, dict) and all(isinstance(k, str) and conforms(v, inner) for k, v in value.items())
    if cls is ListType:
        item = t.item
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    if cls is OptType:
        return value is None or conforms(value, t.inner)
    return False


def _problems(value: Any, t: Type, where: str) -> list[str]:
    """The messages of `check_value`, naming the path of each problem."""
    if isinstance(t, (DictType, RecordType)):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return [f"{where}: expected {t}, got {_kind(value)}"]
        if isinstance(t, DictType):
            return [e for k, v in value.items() for e in _problems(v, t.value, f"{where}.{k}")]
        errors = [f"{where}: missing field '{f.name}'" for f in t.fields if f.required and f.name not in value]
        for f in t.fields:
            if f.name in value:
                errors += _problems(value[f.name], f.type, f"{where}.{f.name}")
        return errors
    if isinstance(t, OptType):
        return [] if value is None else _problems(value, t.inner, where)
    if isinstance(t, ListType):
        if not isinstance(value, list):
            return [f"{where}: expected {t}, got {_kind(value)}"]
        return [e for i, v in enumerate(value) for e in _problems(v, t.item, f"{where}[{i}]")]
    return [] if conforms(value, t) else [f"{where}: expected {t}, got {_kind(value)}"]


def _kind(value: Any) -> str:
    if value is None:
        return "none"
    name = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "record"}
    return f"{name.get(type(value), type(value).__name__)} {json.dumps(value, default=str)[:40]}"


def parse_text(text: str, t: Type) -> Any:
    """A command-line value (`-i mac=aa:bb`) as a value of `t`; ValueError if it is not one."""
    if t == STR or (isinstance(t, OptType) and t.inner == STR):
        return text
    if t == ANY:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if t in (INT, FLOAT, BOOL, NONE) or isinstance(t, OptType):
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            value: Any = lowered == "true"
        elif lowered in ("none", "null"):
            value = None
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"{text!r} is not {a(t)}") from None
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{t} values are given as JSON: {e.msg} at column {e.colno}") from None
    errors = check_value(value, t)
    if errors:
        raise ValueError(f"{text!r} is not {a(t)} ({errors[0]})")
    return value
