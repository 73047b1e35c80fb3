"""Diagnostics for people and tools: text with a caret, JSON, and SARIF 2.1.0."""

from __future__ import annotations

import json
import os

from weft.compiler.diagnostics import CODES, Diagnostic

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def format_text(diags: list[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    """`path:line:col: error[E104]: message`, the source line, a caret, the hint."""
    out = []
    lines_of: dict[str, list[str]] = {}
    for d in diags:
        s = d.span
        if s.file not in lines_of:
            lines_of[s.file] = sources.get(s.file, "").split("\n")
        lines = lines_of[s.file]
        head = f"{_display(s.file)}:{s.line}:{s.col}: {d.severity}[{d.code}]: {d.message}"
        if color:
            tint = "\033[1;31m" if d.severity == "error" else "\033[1;33m"
            head = (
                f"\033[1m{_display(s.file)}:{s.line}:{s.col}:\033[0m {tint}{d.severity}[{d.code}]\033[0m: {d.message}"
            )
        out.append(head)
        if 1 <= s.line <= len(lines) and lines[s.line - 1].strip():
            text = lines[s.line - 1].rstrip().expandtabs(1)
            width = max(1, (s.end_col if s.end_line == s.line else len(text) + 1) - s.col)
            width = min(width, max(1, len(text) - s.col + 1))
            text, col, width = _window(text, s.col, width)
            gutter = f"{s.line:>4} | "
            out.append(gutter + text)
            out.append(" " * (len(gutter) + col - 1) + "^" * width)
        if d.hint:
            out.append(f"     = hint: {d.hint}")
    return "\n".join(out)


WINDOW = 120  # characters of a long source line shown around the caret
_BEFORE = 40


def _window(text: str, col: int, width: int) -> tuple[str, int, int]:
    """The part of a long line around a caret at `col` (1-based) spanning `width`,
    elided with '...': a diagnostic costs the same on a 100 KB line as on a short one."""
    if len(text) <= WINDOW:
        return text, col, width
    start = max(0, col - 1 - _BEFORE)
    end = min(len(text), start + WINDOW)
    head, tail = ("..." if start else ""), ("..." if end < len(text) else "")
    return head + text[start:end] + tail, col - start + len(head), max(1, min(width, end - col + 1))


def summary(diags: list[Diagnostic], files: int) -> str:
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    if not diags:
        return f"checked {files} file{'s' * (files != 1)}: no problems"
    return f"checked {files} file{'s' * (files != 1)}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def format_json(diags: list[Diagnostic], files: list[str]) -> str:
    return json.dumps(
        {"version": 1, "files": [_display(f) for f in files], "diagnostics": [_rel(d.to_json()) for d in diags]},
        indent=2,
    )


def format_sarif(diags: list[Diagnostic]) -> str:
    used = sorted({d.code for d in diags} | set(CODES))
    rules = [
        {
            "id": code,
            "name": CODES[code][0],
            "shortDescription": {"text": CODES[code][2]},
            "defaultConfiguration": {"level": "error" if CODES[code][1] == "error" else "warning"},
        }
        for code in used
    ]
    index = {code: i for i, code in enumerate(used)}
    results = []
    for d in diags:
        s = d.span
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        results.append(
            {
                "ruleId": d.code,
                "ruleIndex": index[d.code],
                "level": "error" if d.severity == "error" else "warning",
                "message": {"text": message},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _display(s.file).replace(os.sep, "/")},
                            "region": {
                                "startLine": s.line,
                                "startColumn": s.col,
                                "endLine": s.end_line,
                                "endColumn": max(s.end_col, s.col),
                            },
                        }
                    }
                ],
            }
        )
    run = {"tool": {"driver": {"name": "weft", "rules": rules}}, "results": results}
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2)


def _display(path: str) -> str:
    """Paths under the working folder print relative to it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _rel(d: dict) -> dict:
    d["file"] = _display(d["file"])
    return d
