"""Golden diagnostics: every .flow under tests/fixtures/diagnostics states what it must report.

A fixture lists its expected diagnostics in comment lines of its own text:

    # expect: E105 7:35 takes no argument 'cpu'

that is the code, the 1-based line and column where the diagnostic starts,
and a piece of its message. The test compiles the file with `compile_paths`
and compares: exactly the expected (code, line, column) diagnostics, no more,
no fewer, each message containing its piece. Fixtures under
tests/fixtures/valid must report nothing at all.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from weft.compiler import compile_paths
from weft.compiler.diagnostics import CODES, Diagnostic

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
DIAGNOSTICS = sorted((FIXTURES / "diagnostics").glob("*.flow"))
VALID = sorted((FIXTURES / "valid").glob("*.flow"))
DOCS = ROOT / "docs" / "diagnostics.md"

EXPECT = re.compile(r"#\s*expect:\s*(?P<code>[EW]\d{3})\s+(?P<line>\d+):(?P<col>\d+)\s*(?P<text>.*?)\s*$")


def expectations(path: Path) -> list[tuple[str, int, int, str]]:
    # Bytes, decoded leniently: the E003 fixture is deliberately not UTF-8.
    text = path.read_bytes().decode("utf-8", errors="replace")
    found = []
    for line in text.splitlines():
        m = EXPECT.search(line)
        if m:
            found.append((m["code"], int(m["line"]), int(m["col"]), m["text"]))
    return found


def describe(diags: list[Diagnostic]) -> str:
    return "\n".join(f"  {d.code} {d.span.line}:{d.span.col} {d.message}" for d in diags)


def compile_fixture(path: Path):
    return compile_paths([str(path)])


@pytest.mark.parametrize("path", DIAGNOSTICS, ids=lambda p: p.stem)
def test_fixture_reports_exactly_what_it_expects(path):
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    result = compile_fixture(path)
    diags = result.diagnostics
    got = Counter((d.code, d.span.line, d.span.col) for d in diags)
    want = Counter((code, line, col) for code, line, col, _ in expected)
    assert got == want, f"{path.name} reported:\n{describe(diags)}"
    for code, line, col, text in expected:
        messages = [d.message for d in diags if (d.code, d.span.line, d.span.col) == (code, line, col)]
        assert any(text in m for m in messages), f"{code} at {line}:{col}: {text!r} not in {messages}"
    # Every diagnostic is about the fixture itself, with a well-formed span and its catalogue severity.
    for d in diags:
        assert d.span.file == str(path)
        assert (d.span.end_line, d.span.end_col) >= (d.span.line, d.span.col)
        assert d.severity == CODES[d.code][1]


def test_diagnostics_come_sorted_by_position():
    for path in DIAGNOSTICS:
        diags = compile_fixture(path).diagnostics
        assert diags == sorted(diags, key=Diagnostic.sort_key), path.name


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_checks_clean_and_compiles(path):
    result = compile_paths([str(path)])
    assert result.diagnostics == [], describe(result.diagnostics)
    assert result.flows
    for name in result.flows:
        assert result.plan(name)["flow"] == name


def test_multi_error_fixture_reports_every_problem_in_one_pass():
    result = compile_fixture(FIXTURES / "diagnostics" / "multi_error.flow")
    codes = [d.code for d in result.diagnostics]
    assert len(codes) >= 5
    assert codes.count("E001") >= 2
    assert len(set(codes)) >= 4
    lines = [d.span.line for d in result.diagnostics]
    assert lines == sorted(lines)
    # The syntax errors are in different flows, yet both flows are still checked.
    assert len({d.span.line for d in result.diagnostics if d.code == "E001"}) >= 2


def test_suppression_comment_silences_only_its_codes_on_its_line():
    path = FIXTURES / "diagnostics" / "suppressed.flow"
    text = path.read_text(encoding="utf-8")
    ignored_lines = {n for n, line in enumerate(text.splitlines(), 1) if "weft: ignore[" in line}
    diags = compile_fixture(path).diagnostics
    assert ignored_lines
    # What is reported on an ignore line is a code that line did not name.
    for d in diags:
        if d.span.line in ignored_lines:
            named = re.search(r"ignore\[([^\]]*)\]", text.splitlines()[d.span.line - 1])[1]
            assert d.code not in named
    # Without the comments, the suppressed diagnostics come back.
    bare = path.parent / "suppressed.flow"
    stripped = re.sub(r"#\s*weft:\s*ignore\[[^\]]*\]", "", text)
    loud = compile_paths([str(bare)], sources={str(bare): stripped}).diagnostics
    assert {(d.code, d.span.line) for d in loud} > {(d.code, d.span.line) for d in diags}


def test_every_code_has_a_fixture():
    covered = {code for path in DIAGNOSTICS for code, *_ in expectations(path)}
    assert set(CODES) - covered == set()
    # And no fixture expects a code the catalogue does not have.
    assert covered - set(CODES) == set()


def test_every_code_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    headings = re.findall(r"^### ([EW]\d{3}) ", text, re.M)
    assert sorted(headings) == sorted(CODES)
    for code, (name, severity, _) in CODES.items():
        section = text.split(f"### {code} ", 1)[1].split("\n### ", 1)[0]
        assert name in section.splitlines()[0], code
        assert severity in section, code
        assert "```flow" in section, f"{code} has no example"
    assert "weft: ignore[" in text
