"""Hover, go to definition, document symbols and quick fixes for a compiled file."""

from __future__ import annotations

import json
import os
import re

from lsprotocol import types
from pygls.uris import from_fs_path

from weft.plan import types as T
from weft.sdk.actions import ActionDef
from weft.compiler import Compilation, ast
from weft.compiler.loader import FlowDef, Unit
from weft.lsp.index import Action, Index, Occurrence, declared_span
from weft.lsp.positions import Lines

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*")


# -- hover ------------------------------------------------------------------------


def hover(index: Index, lines: Lines, pos: types.Position) -> types.Hover | None:
    occ = index.at(pos.line + 1, lines.column(pos))
    if occ is None:
        return None
    value = types.MarkupContent(kind=types.MarkupKind.Markdown, value=describe(index, occ))
    return types.Hover(contents=value, range=lines.range(occ.span))


def describe(index: Index, occ: Occurrence) -> str:
    """Markdown for what an occurrence names: a signature or a type, then its documentation."""
    comp, target = index.comp, occ.target
    if occ.kind == "symbol":
        word = "each" if target.kind == "var" else target.kind
        return _code(f"{word} {target.name}: {index.symbol_type(target)}") + _step_note(target)
    if occ.kind == "flow":
        return _code(flow_signature(comp, target))
    if occ.kind == "action":
        defn = target.defn
        queue = [f"queue `{defn.queue}`"] if defn.queue else []
        notes = " · ".join([f"`{target.module}`"] + (["idempotent"] if defn.idempotent else []) + queue)
        return "\n\n".join(x for x in (_code(action_signature(target.written, defn)), defn.doc, notes) if x)
    if occ.kind == "field":
        return _code(f"{source(comp, target.span)}: {comp.typing.exprs.get(id(target), T.ANY)}")
    if occ.kind == "arg":
        callee = target.callee
        where = f"flow `{callee.flow.name}`" if isinstance(callee, FlowDef) else f"`{callee.written}`"
        return _code(f"(argument) {target.name}: {target.type}") + f"\n\nof {where}"
    unit = next((u for u in comp.program.units if u.path == target), None)
    flows = ", ".join(f"`{f.name}`" for f in unit.module.of(ast.Flow)) if unit else ""
    return f"imports `{os.path.relpath(target, os.path.dirname(index.path))}`" + (f": {flows}" if flows else "")


def action_signature(written: str, defn: ActionDef) -> str:
    params = ", ".join(f"{p.name}: {p.type}" + ("" if p.required else f" = {_value(p.default)}") for p in defn.params)
    result = "any" if defn.open_outputs else str(defn.outputs)
    return f"{written}({params})" + ("" if result == "()" else f" -> {result}")


def flow_signature(comp: Compilation, fdef: FlowDef) -> str:
    flow = fdef.flow
    params = ", ".join(
        f"{p.name}: {comp.typing.params.get(id(p), T.ANY)}"
        + (f" = {source(comp, p.default.span)}" if p.default else "")
        for p in flow.params
    )
    results = comp.typing.results.get(flow.name)
    return f"flow {flow.name}({params})" + (f" -> {results}" if results is not None else "")


def source(comp: Compilation, span: ast.Span) -> str:
    """The text of a one-line span."""
    line = comp.sources.get(span.file, "").split("\n")[span.line - 1 : span.line]
    return line[0][span.col - 1 : span.end_col - 1] if line and span.end_line == span.line else "..."


def _step_note(sym) -> str:
    if sym.kind != "step":
        return ""
    head = sym.node.node.head
    if isinstance(head, ast.Call):
        return f"\n\noutput of `{'.'.join(head.target)}`"
    if isinstance(head, ast.Wait):
        return f"\n\nfields of signal `{head.signal}`"
    return "\n\ncounts of the `each`"


def _code(text: str) -> str:
    return f"```weft\n{text}\n```"


def _value(v: object) -> str:
    """A default value as Weft writes it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


# -- definition -------------------------------------------------------------------


def definition(index: Index, lines: Lines, pos: types.Position) -> types.Location | None:
    occ = index.at(pos.line + 1, lines.column(pos))
    if occ is None:
        return None
    comp, target, encoding = index.comp, occ.target, lines.encoding
    if occ.kind == "symbol":
        return _location(comp, declared_span(target), encoding)
    if occ.kind == "flow":
        return _location(comp, target.flow.name_span, encoding)
    if occ.kind == "action":
        return _python_location(target.defn)
    if occ.kind == "arg":
        callee = target.callee
        if isinstance(callee, Action):
            return _python_location(callee.defn)
        sym = comp.scopes[callee.flow.name].symbols.get(target.name)
        return _location(comp, declared_span(sym), encoding) if sym else None
    if occ.kind == "import" and os.path.isfile(target):
        return types.Location(uri=from_fs_path(target), range=types.Range(types.Position(0, 0), types.Position(0, 0)))
    return None


def _location(comp: Compilation, span: ast.Span, encoding: str) -> types.Location:
    return types.Location(
        uri=from_fs_path(span.file), range=Lines(comp.sources.get(span.file, ""), encoding).range(span)
    )


def _python_location(defn: ActionDef) -> types.Location:
    start = types.Position(max(defn.line - 1, 0), 0)
    return types.Location(uri=from_fs_path(defn.file), range=types.Range(start, start))


# -- document symbols -------------------------------------------------------------


def document_symbols(comp: Compilation, unit: Unit, lines: Lines) -> list[types.DocumentSymbol]:
    """Flows and `extend` blocks, with their steps, lets and blocks as children."""
    out = []
    for item in unit.module.items:
        if isinstance(item, ast.Flow):
            fdef = comp.program.flows.get(item.name)
            detail = flow_signature(comp, fdef) if fdef is not None and fdef.flow is item else None
            kind, name = types.SymbolKind.Function, item.name
        elif isinstance(item, ast.Extend):
            kind, name, detail = types.SymbolKind.Namespace, f"extend {item.flow}", None
        else:
            continue
        kids = _body(comp, lines, item.body)
        out.append(_symbol(lines, name, kind, item.span, item.name_span, detail, kids))
    return out


def _body(comp: Compilation, lines: Lines, body: tuple) -> list[types.DocumentSymbol]:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.Step):
            head = stmt.head
            if isinstance(head, ast.Call):
                what, at, kids = ".".join(head.target), head.target_span, []
            elif isinstance(head, ast.Wait):
                what, at, kids = f"wait {head.signal}", head.span, []
            else:
                what, at, kids = f"each {head.var}", head.var_span, _body(comp, lines, head.body)
            name = stmt.name or what
            out.append(_symbol(lines, name, types.SymbolKind.Event, stmt.span, stmt.name_span or at, what, kids))
        elif isinstance(stmt, ast.Let):
            detail = str(comp.typing.exprs.get(id(stmt.value), T.ANY))
            out.append(_symbol(lines, stmt.name, types.SymbolKind.Variable, stmt.span, stmt.name_span, detail, []))
        elif isinstance(stmt, ast.Block):
            word = {"success": "on success", "failure": "on failure"}.get(stmt.kind, stmt.kind)
            kids = _body(comp, lines, stmt.body)
            out.append(_symbol(lines, word, types.SymbolKind.Namespace, stmt.span, stmt.span, None, kids))
    return out


def _symbol(lines: Lines, name, kind, span, selection, detail, children) -> types.DocumentSymbol:
    return types.DocumentSymbol(
        name=name,
        kind=kind,
        range=lines.range(span),
        selection_range=lines.range(selection),
        detail=detail,
        children=children or None,
    )


# -- quick fixes ------------------------------------------------------------------


def quick_fixes(uri: str, lines: Lines, diagnostics: list[types.Diagnostic]) -> list[types.CodeAction]:
    """A "did you mean" replacement for each diagnostic that carries one."""
    actions = []
    for d in diagnostics:
        fix = d.data.get("fix") if d.source == "weft" and isinstance(d.data, dict) else None
        if not fix or d.range.start.line != d.range.end.line:
            continue
        found = _replacement(lines, d.range, fix)
        if found is None:
            continue
        where, old = found
        edit = types.WorkspaceEdit(changes={uri: [types.TextEdit(range=where, new_text=fix)]})
        actions.append(
            types.CodeAction(
                title=f"Change '{old}' to '{fix}'",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[d],
                edit=edit,
                is_preferred=True,
            )
        )
    return actions


def _replacement(lines: Lines, where: types.Range, fix: str) -> tuple[types.Range, str] | None:
    """What a fix replaces: the whole flagged name when the fix has as many dotted parts,
    else the name the flagged text begins with (`prxy` in `prxy.dns_create`)."""
    line = lines.line(where.start.line)
    start, end = lines.column(where.start) - 1, lines.column(where.end) - 1
    text = line[start:end]
    if _DOTTED.fullmatch(text) and text.count(".") == fix.count("."):
        return where, text
    head = _NAME.match(text)
    if head is None or "." in fix:
        return None
    stop = lines.position(where.start.line + 1, start + head.end() + 1)
    return types.Range(where.start, stop), head.group()
