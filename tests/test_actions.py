"""The @action API: contracts read from type hints, results, calling, lookup."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from typing import Any, NotRequired, Optional, TypedDict

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import weft.stdlib_actions as std
from weft.plan import types as typesys
from weft.sdk.actions import (
    ActionDefinitionError,
    ActionInputError,
    ActionResultError,
    Context,
    action,
    call,
    definition,
    lookup,
    module_actions,
    normalize_outputs,
    resolve_path,
)
from weft.suggest import suggest
from weft.sdk.testing import RecordingContext, run_action
from weft.plan.types import EMPTY, INT, STR, DictType, Field, ListType, OptType, RecordType


class Lease(TypedDict):
    ip: str
    hostname: NotRequired[str]


@dataclass
class DnsRecord:
    name: str
    ttl: int = 300


@action(idempotent=True)
def release(subnet: str, mac: str) -> None:
    """Give the address back."""


@action(  # spread over lines: `line` must still name the def
    idempotent=True,
    undo=release,
)
def reserve(subnet: str, mac: str, tags: list[str] | None = None, *, ctx: Context) -> Lease:
    """Reserve an address for `mac` in `subnet`.

    Longer text that editors do not show in hovers.
    """
    ctx.progress(0.5)
    ctx.log(f"reserving {mac}")
    return {"ip": "10.0.0.7"}


@action
def dns_create(name: str, ttl: Optional[int] = None) -> DnsRecord:
    return DnsRecord(name, ttl or 300)


@action
def anything(value: Any) -> Any:
    return value


@action
def counts(words: list[str]) -> dict[str, int]:
    return {w: len(w) for w in words}


@action(name="exec")
def run_thing(argv: list[str], options: dict[str, list[int]]) -> None:
    pass


def _def_line(fn_name: str) -> int:
    with open(__file__, encoding="utf-8") as f:
        return next(i for i, text in enumerate(f, 1) if text.lstrip().startswith(f"def {fn_name}("))


# -- contracts ------------------------------------------------------------------


def test_typed_dict_contract():
    defn = definition(reserve)
    assert defn.name == "reserve" and defn.module == __name__
    assert [(p.name, p.type, p.required, p.default) for p in defn.params] == [
        ("subnet", STR, True, None),
        ("mac", STR, True, None),
        ("tags", OptType(ListType(STR)), False, None),
    ]
    assert defn.outputs == RecordType((Field("ip", STR), Field("hostname", STR, required=False)))
    assert not defn.open_outputs
    assert defn.idempotent and defn.undo == "release"
    assert defn.wants_context and defn.context_param == "ctx"
    assert defn.doc == "Reserve an address for `mac` in `subnet`."
    assert defn.file == __file__ and defn.line == _def_line("reserve")


def test_decorated_function_stays_callable():
    assert dns_create("web") == DnsRecord("web", 300)
    assert definition(release).undo is None and not definition(release).wants_context


def test_dataclass_and_optional_contract():
    defn = definition(dns_create)
    assert defn.outputs == RecordType((Field("name", STR), Field("ttl", INT, required=False)))
    assert defn.param("ttl") == defn.params[1] and defn.params[1].type == OptType(INT)
    assert defn.param("nope") is None


def test_open_and_empty_outputs():
    assert definition(anything).open_outputs and definition(anything).outputs == EMPTY
    assert definition(counts).open_outputs
    assert call(definition(counts), {"words": ["ab", "c"]}) == {"ab": 2, "c": 1}
    assert definition(release).outputs == EMPTY and not definition(release).open_outputs


def test_name_override_and_nested_types():
    defn = definition(run_thing)
    assert defn.name == "exec"
    assert defn.params[1].type == DictType(ListType(INT))


def test_every_problem_is_reported_at_once():
    with pytest.raises(ActionDefinitionError) as info:

        @action
        def broken(a, b: set[str], *rest: int, c: int = "x", **more: str):
            pass

    err = info.value
    assert isinstance(err, TypeError)
    assert err.problems == [
        "parameter 'a' has no type hint",
        "parameter 'b' type set[str] is unsupported",
        "*rest is not allowed: an action takes named parameters only",
        "parameter 'c' default 'x' is not of type int",
        "**more is not allowed: an action takes named parameters only",
        "missing return type (use '-> None' when the action has no outputs)",
    ]
    assert str(err).startswith("invalid action 'broken' (test_actions.py:")
    assert "for 6 reasons:\n  - parameter 'a' has no type hint\n" in str(err)


def test_message_format_for_two_reasons():
    with pytest.raises(ActionDefinitionError) as info:

        @action
        def dhcp_reserve(subnet: str, mac) -> set[str]:
            pass

    assert str(info.value) == (
        f"invalid action 'dhcp_reserve' (test_actions.py:{_def_line('dhcp_reserve')}) for 2 reasons:\n"
        "  - parameter 'mac' has no type hint\n"
        "  - return type set[str] is unsupported"
    )


def _fresh():
    def plain(x: int) -> None:
        pass

    return plain


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"name": "a.b"}, "name 'a.b' is not a plain identifier"),
        ({"undo": _fresh()}, "undo must be an @action or its name, not plain"),
        ({"undo": std.log}, f"undo action 'log' is in module weft.stdlib_actions, not in {__name__}"),
        ({"idempotent": "yes"}, "idempotent must be True or False, not 'yes'"),
    ],
)
def test_decorator_option_problems(options, problem):
    with pytest.raises(ActionDefinitionError) as info:
        action(**options)(_fresh())
    assert info.value.problems == [problem]


def test_signature_problems():
    def fetch(url: str) -> None:
        yield url

    def union(x: int | str, ctx) -> dict[int, str]:
        pass

    def positional(x: int, /) -> None:
        pass

    def two_contexts(a: Context, b: Context | None) -> None:
        pass

    def bad_field(x: int) -> list[str]:
        pass

    cases = [
        (fetch, "an action is a plain or async function, not a generator"),
        (union, "parameter 'x' type int | str is unsupported: only 'T | None' unions are supported, not int | str"),
        (union, "parameter 'ctx' has no type hint (annotate it 'ctx: Context' to receive the run context)"),
        (union, "return type dict[int, str] is unsupported: dict keys must be str, not int"),
        (positional, "parameter 'x' is positional-only: actions are called with named arguments"),
        (two_contexts, "only one parameter may receive the Context, not a, b"),
        (bad_field, "return type list[str] is unsupported: return a TypedDict or dataclass, dict[str, T], Any or None"),
    ]
    for fn, problem in cases:
        with pytest.raises(ActionDefinitionError) as info:
            action(fn)
        assert problem in info.value.problems, (fn.__name__, info.value.problems)


def test_not_a_function():
    with pytest.raises(ActionDefinitionError, match="applies to functions, not int"):
        action(3)


def test_string_annotations_resolve_and_unresolved_ones_are_reported(tmp_path, monkeypatch, request):
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("weft_test_proxy", "weft_test_unresolved"):
        request.addfinalizer(lambda name=name: sys.modules.pop(name, None))
    (tmp_path / "weft_test_proxy.py").write_text(
        textwrap.dedent('''
        from __future__ import annotations
        from typing import TypedDict
        from weft import action, Context

        class Lease(TypedDict):
            ip: str

        @action(idempotent=True)
        def release_lease(subnet: str, mac: str) -> None:
            """Release the lease."""

        @action(undo=release_lease)
        def reserve_lease(subnet: str, mac: str, ctx: Context) -> Lease:
            return {"ip": "10.0.0.9"}
    ''')
    )
    defn = lookup("weft_test_proxy", "reserve_lease")
    assert defn.outputs == typesys.record(ip=STR) and defn.undo == "release_lease"
    assert call(defn, {"subnet": "s", "mac": "m"}, None) == {"ip": "10.0.0.9"}

    (tmp_path / "weft_test_unresolved.py").write_text(
        textwrap.dedent("""
        from __future__ import annotations
        from weft import action

        @action
        def broken(a: Missing, b: int) -> Reply:
            pass
    """)
    )
    with pytest.raises(ActionDefinitionError) as info:
        lookup("weft_test_unresolved", "broken")
    assert info.value.problems == [
        "parameter 'a' type 'Missing' does not resolve (name 'Missing' is not defined)",
        "return type 'Reply' does not resolve (name 'Reply' is not defined)",
    ]
    assert "(weft_test_unresolved.py:6)" in str(info.value)


# -- results ----------------------------------------------------------------------


def test_normalize_accepts_dicts_dataclasses_and_none():
    assert normalize_outputs(definition(reserve), {"ip": "1.2.3.4", "hostname": "h"}) == {
        "ip": "1.2.3.4",
        "hostname": "h",
    }
    assert normalize_outputs(definition(dns_create), DnsRecord("a", 60)) == {"name": "a", "ttl": 60}
    assert normalize_outputs(definition(release), None) == {}


def test_normalize_converts_to_plain_data():
    @dataclass
    class Inner:
        x: tuple[int, ...]

    out = normalize_outputs(definition(anything), {"inner": Inner((1, 2)), "pair": ("a", None)})
    assert out == {"inner": {"x": [1, 2]}, "pair": ["a", None]}
    assert type(out["inner"]) is dict and msgpack.unpackb(msgpack.packb(out)) == out


@pytest.mark.parametrize(
    ("fn", "value", "problem"),
    [
        (reserve, {}, "result: missing field 'ip'"),
        (reserve, {"ip": 7}, "result.ip: expected str, got int 7"),
        (reserve, {"ip": "x", "port": 1}, "result: unexpected field 'port'"),
        (release, {"x": 1}, "result: unexpected field 'x'"),
        (anything, {"when": {1, 2}}, "result.when: set is not plain data"),
        (anything, {"m": {3: "x"}}, "result.m: key 3 is not a str"),
    ],
)
def test_normalize_reports_mismatches(fn, value, problem):
    with pytest.raises(ActionResultError) as info:
        normalize_outputs(definition(fn), value)
    assert problem in str(info.value)
    assert str(info.value).startswith(f"action '{definition(fn).name}' returned a result that does not match")


def test_normalize_rejects_non_records():
    with pytest.raises(ActionResultError, match=r"returned int, not a record of its outputs \(ip: str"):
        normalize_outputs(definition(reserve), 5)


@st.composite
def _plain_values(draw):
    leaves = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()
    return draw(st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))


@given(_plain_values())
def test_plain_values_round_trip_through_an_action(value):
    out = call(definition(std.echo), {"value": value})
    assert out == {"value": value}
    assert msgpack.unpackb(msgpack.packb(out), strict_map_key=False) == out


def _is(value, t) -> bool:
    """Whether `value` is a `t`, spelled out slowly: the oracle of the checker's fast path."""
    if isinstance(t, OptType):
        return value is None or _is(value, t.inner)
    if isinstance(t, ListType):
        return isinstance(value, list) and all(_is(v, t.item) for v in value)
    if isinstance(t, (DictType, RecordType)):
        if not isinstance(value, dict) or any(not isinstance(k, str) for k in value):
            return False
        if isinstance(t, DictType):
            return all(_is(v, t.value) for v in value.values())
        fields = {f.name: f for f in t.fields}
        return all(f.name in value or not f.required for f in t.fields) and all(
            _is(v, fields[k].type) for k, v in value.items() if k in fields
        )
    real = {"int": int, "float": (int, float), "bool": bool, "str": str}
    if t.name in real:
        return isinstance(value, real[t.name]) and (t.name == "bool" or not isinstance(value, bool))
    return t.name == "any" or value is None


_prims = st.sampled_from([typesys.STR, INT, typesys.FLOAT, typesys.BOOL, typesys.ANY, typesys.NONE])
_fields = st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=3, unique_by=lambda f: f[0])
_types = st.recursive(
    _prims,
    lambda inner: (
        inner.map(ListType)
        | inner.map(DictType)
        | inner.map(OptType)
        | st.builds(
            lambda fs, ts: RecordType(tuple(Field(n, t, r) for (n, r), t in zip(fs, ts))),
            _fields,
            st.lists(inner, min_size=3, max_size=3),
        )
    ),
    max_leaves=6,
)
_names = st.sampled_from("abcd")
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
    max_leaves=8,
)


@given(_types, _values)
def test_values_are_checked_against_types_as_the_slow_rules_say(t, value):
    problems = typesys.check_value(value, t, "v")
    assert (problems == []) == _is(value, t), (str(t), value, problems)
    assert all(p.startswith("v") for p in problems)


# -- calling ------------------------------------------------------------------------


def test_call_passes_context_and_defaults():
    seen = {}

    @action
    def probe(a: int, b: str = "dflt", *, ctx: Context) -> dict[str, Any]:
        seen.update(a=a, b=b, ctx=ctx)
        return {"sum": a}

    ctx = Context("run1", "probe", attempt=2)
    assert call(definition(probe), {"a": 1}, ctx) == {"sum": 1}
    assert seen == {"a": 1, "b": "dflt", "ctx": ctx}
    assert definition(probe).param("b").default == "dflt"


def test_call_without_context_logs_to_stdout(capsys):
    call(definition(std.log), {"message": "hello"})
    assert capsys.readouterr().out == "[local/log] hello\n"


def test_call_checks_inputs():
    with pytest.raises(ActionInputError) as info:
        call(definition(reserve), {"subnet": 3, "macc": "x"})
    assert str(info.value) == (
        "cannot call action 'reserve' for 3 reasons:\n"
        "  - unknown input 'macc' (did you mean 'mac'?)\n"
        "  - subnet: expected str, got int 3\n"
        "  - missing input 'mac'"
    )


_GROWING = """
from pathlib import Path
from typing import TypedDict

from weft import action


class Seen(TypedDict):
    items: list[int]
    tags: dict[str, str]


@action
def grow(items: list[int], tags: dict[str, str], marker: str) -> Seen:
    \"\"\"Change its inputs in place; fail the first time.\"\"\"
    seen = {"items": list(items), "tags": dict(tags)}
    items.append(99)
    tags["changed"] = "yes"
    if not Path(marker).exists():
        Path(marker).write_text("once")
        raise RuntimeError("the first attempt fails")
    return seen
"""


def test_an_action_that_changes_its_inputs_does_not_change_what_its_next_attempt_gets(tmp_path):
    (tmp_path / "growing.py").write_text(_GROWING)
    (tmp_path / "grow.flow").write_text(
        "use growing as g\n\nflow grow(marker: str) -> (items: list[int], tags: dict[str, str]) {\n"
        '    s = g.grow(items: [1, 2], tags: (a: "b"), marker: marker) retry 1\n'
        "    return (items: s.items, tags: s.tags)\n}\n"
    )
    from weft.client.operations import Client

    with Client(tmp_path / "store") as client:
        run = client.wait(client.start(str(tmp_path / "grow.flow"), "grow", {"marker": str(tmp_path / "m")}), 30)
    assert run.state == "succeeded", run.error
    assert run.result == {"items": [1, 2], "tags": {"a": "b"}}  # the second attempt got the flow's literals


# -- Context -------------------------------------------------------------------------


def test_context_reports_progress_log_and_cancellation():
    progress, lines, cancel = [], [], threading.Event()
    ctx = Context("r", "s", on_progress=progress.append, on_log=lines.append, deadline=12.5, cancel_event=cancel)
    ctx.progress(-1)
    ctx.progress(0.25)
    ctx.progress(7)
    ctx.log("one")
    assert progress == [0.0, 0.25, 1.0] and lines == ["one"]
    assert (ctx.run_id, ctx.step_id, ctx.attempt, ctx.deadline) == ("r", "s", 1, 12.5)
    assert not ctx.cancelled() and ctx.wait(0.01) is False
    cancel.set()
    assert ctx.cancelled() and ctx.wait(30) is True


def test_run_action_records_what_the_action_reports():
    out = run_action(reserve, subnet="10.0.0.0/24", mac="aa:bb")
    assert out == {"ip": "10.0.0.7"}
    assert out.context.progress_reports == [0.5]
    assert out.context.log_lines == ["reserving aa:bb"]
    assert isinstance(out.context, RecordingContext) and out.context.step_id == "reserve"


# -- lookup --------------------------------------------------------------------------


def test_module_actions_are_keyed_by_action_name_and_cached():
    found = module_actions(sys.modules[__name__])
    assert {"reserve", "release", "exec", "anything"} <= set(found)
    assert found["exec"].func is run_thing
    assert module_actions(sys.modules[__name__]) is found


def test_lookup():
    assert lookup("weft.stdlib_actions", "log") is definition(std.log)
    assert lookup("weft.stdlib_actions.file", "append").name == "append"
    with pytest.raises(LookupError, match=r"module 'weft.stdlib_actions' has no action 'lgo' \(did you mean 'log'\?\)"):
        lookup("weft.stdlib_actions", "lgo")
    with pytest.raises(LookupError, match="has no action 'zzz'$"):
        lookup("weft.stdlib_actions", "zzz")
    with pytest.raises(LookupError, match="cannot import action module 'weft.no_such_module'"):
        lookup("weft.no_such_module", "x")
    with pytest.raises(LookupError, match="'suggest' in module 'weft.suggest' is not an action"):
        lookup("weft.suggest", "suggest")
    with pytest.raises(LookupError, match="'run_argv' in module 'weft.stdlib_actions' is named 'exec' as an action"):
        lookup("weft.stdlib_actions", "run_argv")


@pytest.mark.parametrize(
    ("path", "module", "name"),
    [
        (["file", "append"], "weft.stdlib_actions.file", "append"),
        (["http", "request"], "weft.stdlib_actions.http", "request"),
        (["log"], "weft.stdlib_actions", "log"),
        (["exec"], "weft.stdlib_actions", "exec"),
    ],
)
def test_resolve_path(path, module, name):
    found_module, defn = resolve_path(std, path)
    assert found_module == module and defn.name == name
    assert lookup(found_module, name) is defn


@pytest.mark.parametrize("path", [[], ["file"], ["nope", "x"], ["file", "nope"], ["log", "x"], ["file", "append", "x"]])
def test_resolve_path_misses(path):
    assert resolve_path(std, path) is None


def test_suggest():
    assert suggest(["append", "write"], "apend") == "append"
    assert suggest(["Log", "echo"], "log") == "Log"
    assert suggest(["append", "write"], "zzz") is None


def test_import_weft_is_light():
    code = (
        "import sys, weft\n"
        "heavy = {'lark', 'lmdb', 'networkx', 'pygraphviz', 'weft.sdk.actions'} & set(sys.modules)\n"
        "from weft import action, Context, ActionFailed\n"
        "print(sorted(heavy), action.__module__, Context.__module__)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "weft.sdk.actions", "weft.sdk.context"]


def test_definitions_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        definition(reserve).name = "other"
