"""Completion: actions after a module alias and a dot, fields after a name and a
dot, argument names inside a call, and otherwise the names in scope.

The text before the cursor says which; the last compilation of the file says
what is there. The line being typed need not parse.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from types import ModuleType

from lsprotocol import types

from weft.plan import types as T
from weft.sdk.actions import module_actions, resolve_path
from weft.compiler.resolve import Scope
from weft.lsp.features import action_signature, flow_signature
from weft.lsp.index import Index, lookup
from weft.lsp.positions import Lines

_NAME = r"[A-Za-z_]\w*"
_IDENT = re.compile(_NAME)
_DOTTED = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_DOT = re.compile(rf"({_DOTTED.pattern})\.\w*$")  # `proxy.dhc` or `dhcp.` before the cursor
# Strings (closed or not), comments, dotted names, and any other single character.
_TOKEN = re.compile(rf"\"(?:[^\"\\\n]|\\.)*\"?|'(?:[^'\\\n]|\\.)*'?|#[^\n]*|{_DOTTED.pattern}|\S")
_KIND = {
    "param": types.CompletionItemKind.Variable,
    "let": types.CompletionItemKind.Constant,
    "step": types.CompletionItemKind.Event,
    "var": types.CompletionItemKind.Variable,
}


def complete(index: Index, lines: Lines, pos: types.Position) -> list[types.CompletionItem]:
    line, col = pos.line + 1, lines.column(pos)
    scope = index.scope_at(line, col)
    dotted = _DOT.search(lines.line(pos.line)[: col - 1])
    if dotted:
        first, *rest = dotted.group(1).split(".")
        sym = lookup(scope, first)
        if sym is not None:
            return _fields(index.symbol_type(sym), rest)
        module = index.unit.aliases.get(first) if index.unit else None
        return _module_items(module, rest)
    call = open_call(lines.text[: lines.offset(pos)])
    params = _parameters(index, scope, call[0]) if call else None
    if params is not None:
        return _arguments(params, call[1])
    return _names(index, scope)


def open_call(prefix: str) -> tuple[str, set[str]] | None:
    """The call whose next argument name the text ends in, and the names it gives already."""
    frames: list[_Frame] = []
    prev = ""
    for m in _TOKEN.finditer(prefix):
        tok = m.group()
        if tok[0] == "#":
            continue
        if tok in "{}":
            frames.clear()  # arguments never hold a block: a '(' left open above is abandoned
        elif tok in "([":
            frames.append(_Frame(prev if tok == "(" and _DOTTED.fullmatch(prev) else None))
        elif tok in ")]":
            if frames:
                frames.pop()
        elif frames:
            frame = frames[-1]
            if tok == ",":
                frame.naming = True
            elif tok == ":" and frame.naming:
                frame.given.add(prev)
                frame.naming = False
            elif not _IDENT.fullmatch(tok):
                frame.naming = False
        prev = tok
    if frames and frames[-1].callee is not None and frames[-1].naming:
        return frames[-1].callee, frames[-1].given
    return None


@dataclass
class _Frame:
    """An open bracket: the call it belongs to, the argument names given, and
    whether the text is at the place of an argument's name."""

    callee: str | None
    given: set[str] = field(default_factory=set)
    naming: bool = True


def _fields(t: T.Type, path: list[str]) -> list[types.CompletionItem]:
    for name in path:
        t = T.field_type(t.inner if isinstance(t, T.OptType) else t, name) or T.ANY
    t = t.inner if isinstance(t, T.OptType) else t
    if not isinstance(t, T.RecordType):
        return []
    return [
        types.CompletionItem(
            label=f.name, kind=types.CompletionItemKind.Field, detail=str(f.type if f.required else T.OptType(f.type))
        )
        for f in t.fields
    ]


def _module_items(module: ModuleType | None, path: list[str]) -> list[types.CompletionItem]:
    for part in path:
        module = _submodule(module, part) if module is not None else None
    if module is None:
        return []
    items = [
        types.CompletionItem(
            label=name,
            kind=types.CompletionItemKind.Function,
            detail=action_signature(name, defn),
            documentation=defn.doc or None,
        )
        for name, defn in sorted(module_actions(module).items())
    ]
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        sub = _submodule(module, info.name) if not info.name.startswith("_") else None
        if sub is not None and module_actions(sub):
            items.append(
                types.CompletionItem(label=info.name, kind=types.CompletionItemKind.Module, detail=sub.__name__)
            )
    return items


def _submodule(module: ModuleType, part: str) -> ModuleType | None:
    value = getattr(module, part, None)
    if isinstance(value, ModuleType):
        return value
    if value is not None or not hasattr(module, "__path__"):
        return None
    try:
        return importlib.import_module(f"{module.__name__}.{part}")
    except Exception:  # a module that fails to import offers nothing; `weft check` reports why
        return None


def _parameters(index: Index, scope: Scope | None, callee: str) -> list[tuple[str, T.Type, bool]] | None:
    """(name, type, required) of what a flow, an action or a `return` takes; None if `callee` is neither."""
    first, *rest = callee.split(".")
    if callee == "return":
        while scope is not None and scope.parent is not None:
            scope = scope.parent
        results = index.comp.typing.results.get(scope.name) if scope is not None else None
        return [(f.name, f.type, f.required) for f in results.fields] if results else None
    if not rest and first in index.comp.program.flows:
        flow = index.comp.program.flows[first].flow
        return [(p.name, index.comp.typing.params.get(id(p), T.ANY), p.default is None) for p in flow.params]
    module = index.unit.aliases.get(first) if index.unit and rest else None
    found = resolve_path(module, rest) if module is not None else None
    return [(p.name, p.type, p.required) for p in found[1].params] if found else None


def _arguments(params: list[tuple[str, T.Type, bool]], given: set[str]) -> list[types.CompletionItem]:
    return [
        types.CompletionItem(
            label=name,
            kind=types.CompletionItemKind.Property,
            detail=str(t) + ("" if required else " (optional)"),
            insert_text=f"{name}: ",
            sort_text=f"{0 if required else 1}{n:03}",
        )
        for n, (name, t, required) in enumerate(params)
        if name not in given
    ]


def _names(index: Index, scope: Scope | None) -> list[types.CompletionItem]:
    items: dict[str, types.CompletionItem] = {}
    while scope is not None:
        for sym in scope.symbols.values():
            if sym.name not in items:
                detail = f"{sym.kind} {index.symbol_type(sym)}"
                items[sym.name] = types.CompletionItem(label=sym.name, kind=_KIND[sym.kind], detail=detail)
        scope = scope.parent
    for alias, module in index.unit.aliases.items() if index.unit else ():
        if module is not None and alias not in items:
            items[alias] = types.CompletionItem(
                label=alias, kind=types.CompletionItemKind.Module, detail=module.__name__
            )
    for name, fdef in index.comp.program.flows.items():
        if name not in items:
            detail = flow_signature(index.comp, fdef)
            items[name] = types.CompletionItem(label=name, kind=types.CompletionItemKind.Function, detail=detail)
    return list(items.values())
