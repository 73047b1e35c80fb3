"""The one Diagnostic type, its code catalogue, and the sink passes append to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from typing import Iterable

from weft.compiler.ast import Span
from weft.compiler.limits import MAX_SUGGESTION_WORK
from weft.suggest import suggest

# code -> (short name, severity, what it means). docs/diagnostics.md documents each.
CODES: dict[str, tuple[str, str, str]] = {
    "E001": ("syntax-error", "error", "the text is not valid .flow syntax"),
    "E002": ("invalid-literal", "error", "a number or duration literal cannot be read"),
    "E003": ("unreadable-file", "error", "the file cannot be read as UTF-8 .flow text"),
    "E101": ("undefined-name", "error", "a name refers to nothing in scope"),
    "E102": ("unknown-action", "error", "a module has no action of that name"),
    "E103": ("unknown-flow", "error", "no flow of that name is defined or imported"),
    "E104": (
        "unknown-module",
        "error",
        "a `use` names a module that cannot be imported, or a call names an unbound alias",
    ),
    "E105": ("unknown-argument", "error", "a call passes an argument the action or flow does not take"),
    "E106": ("missing-argument", "error", "a call omits a required argument"),
    "E107": ("type-mismatch", "error", "a value's type does not fit where it is used"),
    "E108": ("unknown-field", "error", "a reference reads a field the value does not have"),
    "E109": ("duplicate-name", "error", "two steps, lets, params, flows or fields share a name"),
    "E110": ("dependency-cycle", "error", "steps depend on each other in a cycle"),
    "E111": ("each-not-list", "error", "`each` iterates over a value that is not a list"),
    "E112": ("return-mismatch", "error", "`return` does not match the flow's declared result"),
    "E113": ("extend-unknown-flow", "error", "`extend` names a flow that does not exist"),
    "E114": ("extend-unknown-step", "error", "an extension refers to a step the extended flow does not have"),
    "E115": ("lock-not-string", "error", "a `lock` name is not a string"),
    "E116": ("label-not-string", "error", "a `meta label` is not a string, or tags are not a list of strings"),
    "E117": ("invalid-action", "error", "an action module fails to import or defines a malformed action"),
    "E118": ("unknown-type", "error", "a type annotation names no known type"),
    "E119": (
        "invalid-option",
        "error",
        "a step option (retry, timeout, weight, concurrency, on error, queue) has a bad value or does not apply",
    ),
    "E120": ("recursive-flow", "error", "a flow calls itself, directly or through others"),
    "E121": ("import-failed", "error", "an imported .flow file cannot be found or read"),
    "E122": ("misplaced-statement", "error", "a statement appears where it is not allowed"),
    "E123": (
        "out-of-range",
        "error",
        "a number is larger than Weft supports, or a step option is past its limit",
    ),
    "E124": ("too-deep", "error", "expressions, blocks, lets or flow calls are nested past Weft's limit"),
    "E125": (
        "invalid-secret",
        "error",
        "a secret parameter is not a str, has a default, or names a lock or label",
    ),
    "E126": (
        "skipped-output-read",
        "error",
        "a step's outputs are read where nothing takes their place when its `when` skips it",
    ),
    "W201": ("unused-let", "warning", "a `let` value is never used"),
    "W202": ("unused-param", "warning", "a flow parameter is never used"),
    "W203": ("rollback-without-undo", "warning", "`on error rollback` applies to steps that have no `undo`"),
    "W204": ("constant-when", "warning", "a `when` condition is always true or always false"),
    "W205": ("unused-use", "warning", "a `use`d module is never called"),
    "W206": (
        "skip-on-error-output-read",
        "warning",
        "the outputs of a step with `on error skip` are read where nothing takes their place",
    ),
}

SEVERITY_ORDER = {"error": 0, "warning": 1}
SYNTAX_CODES = {"E001", "E002", "E003"}
CUTTING_CODES = {"E001", "E124"}  # the parser dropped text: warnings of the file are not reported


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    severity: str
    span: Span
    message: str
    hint: str | None = None
    # A machine-applicable replacement for the span ("did you mean"), for quick fixes.
    fix: str | None = None

    @property
    def name(self) -> str:
        return CODES[self.code][0]

    def sort_key(self) -> tuple:
        s = self.span
        return (s.file, s.line, s.col, SEVERITY_ORDER[self.severity], self.code, self.message)

    def to_json(self) -> dict:
        s = self.span
        return {
            "file": s.file,
            "range": {
                "start": {"line": s.line, "column": s.col},
                "end": {"line": s.end_line, "column": s.end_col},
            },
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


_IGNORE = re.compile(r"#\s*weft:\s*ignore\[([A-Z0-9_,\s]+)\]")


@dataclass
class Sink:
    """Collects diagnostics from every pass; honours `# weft: ignore[CODE]` comments on warnings."""

    items: list[Diagnostic] = field(default_factory=list)
    # file -> {line: codes suppressed there}
    ignores: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    suggestion_work: int = MAX_SUGGESTION_WORK  # name comparisons "did you mean" may still make

    def add(self, code: str, span: Span, message: str, hint: str | None = None, fix: str | None = None) -> None:
        severity = CODES[code][1]
        # Only warnings can be silenced: a program with an error is never planned.
        if severity == "warning" and code in self.ignores.get(span.file, {}).get(span.line, ()):
            return
        self.items.append(Diagnostic(code, severity, span, message, hint, fix))

    def misspelt(
        self,
        code: str,
        span: Span,
        message: str,
        wrong: str,
        known: Iterable[str],
        otherwise: str | None = None,
        prefix: str = "",
    ) -> None:
        """A diagnostic about a name that is not known: the closest known name (after
        `prefix`) becomes the hint ("did you mean ...?") and the quick fix, while the
        compilation's suggestion work lasts."""
        known = list(known)
        close = None
        if len(known) <= self.suggestion_work:
            self.suggestion_work -= len(known)
            close = suggest(known, wrong)
        fix = f"{prefix}{close}" if close else None
        self.add(code, span, message, f"did you mean '{fix}'?" if fix else otherwise, fix=fix)

    def note_source(self, file: str, text: str) -> None:
        """Record the suppression comments of a source file."""
        found: dict[int, set[str]] = {}
        if "weft:" in text:
            for n, line in enumerate(text.splitlines(), 1):
                m = _IGNORE.search(line)
                if m:
                    found[n] = {c.strip() for c in m.group(1).split(",") if c.strip()}
        self.ignores[file] = found

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        """Unique diagnostics by position. A line with a syntax error reports only
        that: what later passes say of it comes from the repaired text. A file with
        a syntax error or a cut nesting reports no warnings: the repair or the cut may
        have dropped the very text that uses a name, so "never used" would be a false alarm."""
        broken = {(d.span.file, d.span.line) for d in self.items if d.code == "E001"}
        broken_files = {d.span.file for d in self.items if d.code in CUTTING_CODES}
        unique = {
            (d.code, d.span, d.message): d
            for d in self.items
            if d.code in SYNTAX_CODES
            or (
                (d.span.file, d.span.line) not in broken
                and not (d.severity == "warning" and d.span.file in broken_files)
            )
        }
        return sorted(unique.values(), key=Diagnostic.sort_key)
