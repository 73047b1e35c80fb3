"""The public action API: `@action`, calling an action, and finding one by name.

An action is a plain Python function whose type hints are its contract:

    @action(idempotent=True)
    def dhcp_reserve(subnet: str, mac: str, ctx: Context) -> Lease: ...

Parameters become the step's named inputs (a `Context` parameter is filled by
the runtime instead); the return type (TypedDict, dataclass, None, or
`dict[str, T]` / `Any` for open outputs) is the step's output record. The
decorator checks all of it at import time and reports every problem at once.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import linecache
import os
import types
import typing
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from weft.plan import types as typesys
from weft.sdk.context import Context
from weft.plan.expr import type_name
from weft.suggest import suggest
from weft.plan.types import RecordType, Type


class ActionDefinitionError(TypeError):
    """An @action whose signature cannot serve as a contract; `problems` lists every reason."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class ActionInputError(TypeError):
    """An action was called with inputs that do not fit its parameters."""


class ActionResultError(TypeError):
    """An action returned a value that does not fit its declared outputs."""


class ActionFailed(Exception):
    """Raised by an action for an expected failure; the message is shown to the user."""


@dataclass(frozen=True, slots=True)
class ActionParam:
    name: str
    type: Type
    required: bool
    default: Any = None


@dataclass(frozen=True, slots=True)
class ActionDef:
    """An action's contract, built by `@action` when its module is imported."""

    name: str
    func: Callable[..., Any]
    module: str
    params: tuple[ActionParam, ...]
    outputs: RecordType
    open_outputs: bool  # `dict[str, T]` / `Any` result: any field, typed `any`
    idempotent: bool
    undo: str | None  # name of the undo action, in the same module
    doc: str
    file: str
    line: int
    context_param: str | None
    poll: Any = None  # a weft.polling.PollSpec for a polling action (a class with start/poll)
    pure: bool = False  # no side effects: nothing to undo on rollback (std.log, std.echo)
    queue: str | None = None  # the executor queue its calls go to when a step names none (None: the default)
    asynchronous: bool = False  # an `async def` (a polling action: a coroutine start or poll), run on an event loop
    concurrency: int | None = None  # at most this many calls at once in one executor (None: no limit of its own)

    @property
    def wants_context(self) -> bool:
        return self.context_param is not None

    def param(self, name: str) -> ActionParam | None:
        return next((p for p in self.params if p.name == name), None)


def action(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    idempotent: bool = False,
    undo: Callable[..., Any] | str | None = None,
    name: str | None = None,
    pure: bool = False,
    queue: str | None = None,
    concurrency: int | None = None,
    poll_every: float = 1.0,
    poll_max: float = 60.0,
    poll_factor: float = 1.5,
) -> Any:
    """Register a function as an action: `@action` or `@action(idempotent=True, undo=release)`.

    The function is returned unchanged (still callable plainly), carrying its
    ActionDef as `fn.__weft_action__`. Raises ActionDefinitionError listing
    every problem with the signature. `pure=True` declares an action without
    side effects, which a rollback need not undo. `queue="proxy"` sends its calls to that
    executor queue unless a step says `queue ...`. `concurrency=N` lets at most N
    calls of it run at once in one executor (the others wait their turn). An
    `async def` action runs on the executor's event loop. On a class with `start` and `poll`
    methods it makes a polling action (see weft.sdk.polling); the `poll_*`
    arguments set its timer. `undo` is an @action of the same module, or its
    name (`undo="release"`, for one defined further down).
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isclass(f):
            from weft.sdk import polling

            spec = polling.PollSpec(poll_every, poll_max, poll_factor)
            defn = polling.define_poller(f, idempotent, undo, name, spec)
        else:
            defn = _define(f, idempotent, undo, name)
        if queue is not None and not (isinstance(queue, str) and queue):
            raise ActionDefinitionError(
                f"invalid action {defn.name!r}: queue must be a non-empty string, not {queue!r}"
            )
        if concurrency is not None and not (type(concurrency) is int and concurrency > 0):
            raise ActionDefinitionError(
                f"invalid action {defn.name!r}: concurrency must be a positive int, not {concurrency!r}"
            )
        f.__weft_action__ = dataclasses.replace(  # type: ignore[attr-defined]
            defn, pure=bool(pure), queue=queue, concurrency=concurrency
        )
        return f

    return decorate if fn is None else decorate(fn)


def definition(fn: Callable[..., Any]) -> ActionDef:
    """The ActionDef of an @action function; TypeError for anything else."""
    defn = getattr(fn, "__weft_action__", None)
    if not isinstance(defn, ActionDef):
        raise TypeError(f"{getattr(fn, '__name__', fn)!r} is not an @action")
    return defn


# -- building the definition -----------------------------------------------------

_UNRESOLVED = object()


def _define(fn: Callable[..., Any], idempotent: bool, undo: Any, name: str | None) -> ActionDef:
    if not inspect.isfunction(fn):
        raise ActionDefinitionError(f"@action applies to functions, not {type(fn).__name__}")
    file, line = _location(fn)
    name = fn.__name__ if name is None else name
    problems: list[str] = []
    if not (isinstance(name, str) and name.isidentifier()):
        problems.append(f"name {name!r} is not a plain identifier")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        problems.append("an action is a plain or async function, not a generator")
    if not isinstance(idempotent, bool):
        problems.append(f"idempotent must be True or False, not {idempotent!r}")
    undo_name = _undo_name(fn, undo, problems)
    hints = _hints(fn, problems)
    params, context_param = _params(fn, hints, problems)
    outputs, open_outputs = _outputs(hints, problems)
    if problems:
        head = f"invalid action {name!r} ({os.path.basename(file)}:{line})"
        raise ActionDefinitionError(_listing(head, problems), problems)
    return ActionDef(
        name=name,
        func=fn,
        module=fn.__module__,
        params=params,
        outputs=outputs,
        open_outputs=open_outputs,
        idempotent=idempotent,
        undo=undo_name,
        doc=_first_paragraph(fn),
        file=file,
        line=line,
        context_param=context_param,
        asynchronous=inspect.iscoroutinefunction(fn),
    )


def _listing(head: str, problems: list[str]) -> str:
    reasons = "reason" if len(problems) == 1 else "reasons"
    return f"{head} for {len(problems)} {reasons}:\n" + "\n".join(f"  - {p}" for p in problems)


def _location(fn: Callable[..., Any]) -> tuple[str, int]:
    """The file and the line of the `def` (not of its decorator)."""
    code = fn.__code__
    start = code.co_firstlineno  # its first decorator's line
    lines = linecache.getlines(code.co_filename, fn.__globals__)  # (not inspect's source block: 10x the time)
    for offset, text in enumerate(lines[start - 1 :]):
        if text.lstrip().startswith(("def ", "async def ")):
            return os.path.abspath(code.co_filename), start + offset
    return os.path.abspath(code.co_filename), start


def _first_paragraph(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _undo_name(fn: Callable[..., Any], undo: Any, problems: list[str]) -> str | None:
    """The undo's action name: given as a name (checked once the module is loaded: `undo_problems`) or an @action."""
    if undo is None:
        return None
    if isinstance(undo, str):
        if not undo.isidentifier():
            problems.append(f"undo {undo!r} is not the name of an action in the same module")
            return None
        return undo
    target = getattr(undo, "__weft_action__", None)
    if not isinstance(target, ActionDef):
        problems.append(f"undo must be an @action or its name, not {getattr(undo, '__name__', repr(undo))}")
        return None
    if target.module != fn.__module__:
        problems.append(f"undo action '{target.name}' is in module {target.module}, not in {fn.__module__}")
        return None
    return target.name


def _hints(fn: Callable[..., Any], problems: list[str]) -> dict[str, Any]:
    """Resolved annotations; one that does not resolve maps to _UNRESOLVED (and is a problem)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # some annotation does not resolve: find which, one by one
        hints: dict[str, Any] = {}
    for key, raw in fn.__annotations__.items():
        holder = types.SimpleNamespace(__annotations__={key: raw})
        try:
            hints[key] = typing.get_type_hints(holder, fn.__globals__)[key]
        except Exception as e:
            what = "return type" if key == "return" else f"parameter '{key}' type"
            problems.append(f"{what} {raw!r} does not resolve ({e})")
            hints[key] = _UNRESOLVED
    return hints


def _is_context(hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(rest) == 1 and _is_context(rest[0])
    return isinstance(hint, type) and issubclass(hint, Context)


def _params(
    fn: Callable[..., Any], hints: dict[str, Any], problems: list[str]
) -> tuple[tuple[ActionParam, ...], str | None]:
    params: list[ActionParam] = []
    context: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        where = f"parameter '{p.name}'"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "*" if p.kind is p.VAR_POSITIONAL else "**"
            problems.append(f"{stars}{p.name} is not allowed: an action takes named parameters only")
            continue
        if p.kind is p.POSITIONAL_ONLY:
            problems.append(f"{where} is positional-only: actions are called with named arguments")
            continue
        if p.name not in hints:
            tip = " (annotate it 'ctx: Context' to receive the run context)" if p.name == "ctx" else ""
            problems.append(f"{where} has no type hint{tip}")
            continue
        hint = hints[p.name]
        if hint is _UNRESOLVED:
            continue
        if _is_context(hint):
            context.append(p.name)
            continue
        try:
            t = typesys.from_hint(hint)
        except TypeError as e:
            problems.append(_unsupported(f"{where} type", hint, e))
            continue
        required = p.default is p.empty
        default = None
        if not required:
            bad: list[str] = []
            default = _plain(p.default, "default", bad)
            if bad or typesys.check_value(default, t):
                problems.append(f"{where} default {p.default!r} is not of type {t}")
        params.append(ActionParam(p.name, t, required, default))
    if len(context) > 1:
        problems.append(f"only one parameter may receive the Context, not {', '.join(context)}")
    return tuple(params), (context[0] if context else None)


def _outputs(hints: dict[str, Any], problems: list[str]) -> tuple[RecordType, bool]:
    if "return" not in hints:
        problems.append("missing return type (use '-> None' when the action has no outputs)")
        return typesys.EMPTY, False
    hint = hints["return"]
    if hint is _UNRESOLVED:
        return typesys.EMPTY, False
    try:
        t = typesys.from_hint(hint)
    except TypeError as e:
        problems.append(_unsupported("return type", hint, e))
        return typesys.EMPTY, False
    if t == typesys.NONE:
        return typesys.EMPTY, False
    if isinstance(t, RecordType):
        return t, False
    if t == typesys.ANY or isinstance(t, typesys.DictType):
        return typesys.EMPTY, True
    problems.append(
        f"return type {typesys.hint_name(hint)} is unsupported: "
        "return a TypedDict or dataclass, dict[str, T], Any or None"
    )
    return typesys.EMPTY, False


def _unsupported(what: str, hint: Any, error: TypeError) -> str:
    name = typesys.hint_name(hint)
    detail = str(error)
    return f"{what} {name} is unsupported" + ("" if detail == f"unsupported type {name}" else f": {detail}")


# -- calling ----------------------------------------------------------------------


def _plain(value: Any, where: str, problems: list[str]) -> Any:
    """`value` as msgpack-safe plain data (dataclasses become dicts, tuples lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                out[k] = _plain(v, f"{where}.{k}", problems)
            else:
                problems.append(f"{where}: key {k!r} is not a str")
        return out
    problems.append(f"{where}: {type(value).__name__} is not plain data (str, int, float, bool, none, list, record)")
    return None


class _NotPlain(Exception):
    """What `_copied` raises on meeting anything but dicts, lists and scalars of their own classes."""


_SCALAR = frozenset((str, int, float, bool, type(None)))


def _copied(value: Any) -> Any:
    """`_plain` of a value of dicts with str keys, lists, tuples and scalars of exactly their classes (what actions
    return almost always), without building a path per value; _NotPlain at anything else."""
    cls = value.__class__
    if cls in _SCALAR:
        return value
    if cls is dict:
        out = {}
        for k, v in value.items():
            if k.__class__ is not str:
                raise _NotPlain
            out[k] = v if v.__class__ in _SCALAR else _copied(v)
        return out
    if cls is list or cls is tuple:
        return [v if v.__class__ in _SCALAR else _copied(v) for v in value]
    raise _NotPlain


def _own(value: Any) -> Any:
    """An input value the action may change as it likes: a list or record of plain data is copied (the step's
    literal in the Plan would be the object itself, and its next attempt would get what this one changed)."""
    cls = value.__class__
    if cls is not list and cls is not dict:
        return value
    try:
        return _copied(value)
    except _NotPlain:  # not the runtime's plain data (a direct `call` given objects of its own): as given
        return value


def normalize_outputs(defn: ActionDef, value: Any) -> dict[str, Any]:
    """An action's return value as a plain dict checked against its outputs."""
    if value is not None and not isinstance(value, Mapping) and not dataclasses.is_dataclass(value):
        raise ActionResultError(
            f"action '{defn.name}' returned {type_name(value)}, not a record of its outputs {defn.outputs}"
        )
    problems: list[str] = []
    try:
        plain = {} if value is None else _copied(value)
    except _NotPlain:  # a dataclass, another Mapping, a subclass of str...: the slow way, which names what is wrong
        plain = _plain(value, "result", problems)
    if not problems:
        problems = typesys.check_value(plain, defn.outputs, "result")
    if not defn.open_outputs:
        problems += [f"result: unexpected field '{k}'" for k in plain if defn.outputs.get(k) is None]
    if problems:
        head = f"action '{defn.name}' returned a result that does not match {defn.outputs}"
        raise ActionResultError(_listing(head, problems))
    return plain


def _bind(defn: ActionDef, inputs: Mapping[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    names = [p.name for p in defn.params]
    for key in inputs:
        if key not in names:
            close = suggest(names, key)
            problems.append(f"unknown input '{key}'" + (f" (did you mean '{close}'?)" if close else ""))
    kwargs: dict[str, Any] = {}
    for p in defn.params:
        if p.name in inputs:
            value = inputs[p.name]
            problems += typesys.check_value(value, p.type, p.name)
            kwargs[p.name] = _own(value)
        elif p.required:
            problems.append(f"missing input '{p.name}'")
    if problems:
        raise ActionInputError(_listing(f"cannot call action '{defn.name}'", problems))
    return kwargs


def call(defn: ActionDef, inputs: Mapping[str, Any], ctx: Context | None = None) -> dict[str, Any]:
    """Run an action with named inputs (omitted optional ones take their defaults).

    A Context parameter gets `ctx`, or a local one printing its log lines.
    Returns the outputs as plain data; raises ActionInputError or
    ActionResultError on a contract breach, and whatever the action raises.
    An `async def` action runs to completion on an event loop of its own
    (from a coroutine, await `call_async` instead).
    """
    if defn.poll is not None:
        from weft.sdk import polling

        return polling.run_to_end(defn, dict(inputs), ctx)
    return normalize_outputs(defn, settled(defn.func(**_arguments(defn, inputs, ctx))))


async def call_async(defn: ActionDef, inputs: Mapping[str, Any], ctx: Context | None = None) -> dict[str, Any]:
    """`call` of a plain or `async def` action from a coroutine: a coroutine's result is awaited."""
    return normalize_outputs(defn, await awaited(defn.func(**_arguments(defn, inputs, ctx))))


def _arguments(defn: ActionDef, inputs: Mapping[str, Any], ctx: Context | None) -> dict[str, Any]:
    kwargs = _bind(defn, inputs)
    if defn.context_param is not None:
        kwargs[defn.context_param] = Context("local", defn.name) if ctx is None else ctx
    return kwargs


def settled(value: Any) -> Any:
    """What an action's method returned, a coroutine run to completion on an event loop of its own."""
    if value is None or type(value) is dict or not inspect.isawaitable(value):  # (isawaitable asks an ABC: slow)
        return value
    import asyncio  # only where a coroutine is run: a sync flow's `weft run` never imports it

    return asyncio.run(awaited(value))


async def awaited(value: Any) -> Any:
    """What an action's method returned, a coroutine awaited."""
    if type(value) is types.CoroutineType:  # an `async def`'s: no ABC to ask
        return await value
    return await value if inspect.isawaitable(value) else value


# -- lookup ---------------------------------------------------------------------------

_by_module: weakref.WeakKeyDictionary[types.ModuleType, dict[str, ActionDef]] = weakref.WeakKeyDictionary()


def module_actions(mod: types.ModuleType) -> dict[str, ActionDef]:
    """The actions a module defines or imports, by action name (cached per module)."""
    found = _by_module.get(mod)
    if found is None:
        found = {}
        for value in list(vars(mod).values()):
            defn = getattr(value, "__weft_action__", None) if callable(value) else None
            if isinstance(defn, ActionDef) and (defn.name not in found or defn.module == mod.__name__):
                found[defn.name] = defn
        _by_module[mod] = found
    return found


def undo_problems(mod: types.ModuleType) -> list[str]:
    """Undos named by the actions of `mod` that the module does not define as actions (`undo="release"`)."""
    found = module_actions(mod)
    problems = []
    for defn in found.values():
        if defn.module == mod.__name__ and defn.undo is not None and defn.undo not in found:
            close = suggest(found, defn.undo)
            tip = f" (did you mean '{close}'?)" if close else ""
            problems.append(
                f"action '{defn.name}' names undo '{defn.undo}', which module {mod.__name__} does not define{tip}"
            )
    return problems


def lookup(module_name: str, name: str) -> ActionDef:
    """The action `name` of module `module_name` (imported if needed); LookupError if none."""
    try:
        mod = importlib.import_module(module_name)
    except ImportError as e:
        raise LookupError(f"cannot import action module '{module_name}': {e}") from e
    actions = module_actions(mod)
    if name in actions:
        return actions[name]
    attr = getattr(mod, name, None)
    if isinstance(getattr(attr, "__weft_action__", None), ActionDef):
        raise LookupError(f"'{name}' in module '{module_name}' is named '{attr.__weft_action__.name}' as an action")
    if callable(attr):
        raise LookupError(f"'{name}' in module '{module_name}' is not an action (decorate it with @action)")
    close = suggest(actions, name)
    tip = f" (did you mean '{close}'?)" if close else ""
    raise LookupError(f"module '{module_name}' has no action '{name}'{tip}")


def resolve_path(module: types.ModuleType, path: list[str]) -> tuple[str, ActionDef] | None:
    """Resolve a dotted call below a bound module (`std` + ["file", "append"]).

    Leading parts name submodules (imported on demand); the last names an
    action. Returns (module name where found, ActionDef), or None.
    """
    if not path:
        return None
    mod = module
    for part in path[:-1]:
        sub = _submodule(mod, part)
        if sub is None:
            return None
        mod = sub
    defn = module_actions(mod).get(path[-1])
    return None if defn is None else (mod.__name__, defn)


def _submodule(mod: types.ModuleType, part: str) -> types.ModuleType | None:
    value = getattr(mod, part, None)
    if isinstance(value, types.ModuleType):
        return value
    if value is not None or not hasattr(mod, "__path__") or not part.isidentifier():
        return None
    full = f"{mod.__name__}.{part}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as e:
        if e.name == full:
            return None
        raise
