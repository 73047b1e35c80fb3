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


def test_suppression_comment_silences_only_its_warnings_on_its_line():
    path = FIXTURES / "diagnostics" / "suppressed.flow"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    named = {
        n: {c.strip() for c in m[1].split(",")}
        for n, line in enumerate(lines, 1)
        if (m := re.search(r"weft:\s*ignore\[([^\]]*)\]", line))
    }
    diags = compile_fixture(path).diagnostics
    # A warning is never reported on a line whose comment names its code; an error always is.
    for d in diags:
        if d.severity == "warning":
            assert d.code not in named.get(d.span.line, set()), d
    assert any(d.severity == "error" and d.code in named.get(d.span.line, set()) for d in diags)
    # Without the comments, the silenced warnings come back.
    stripped = re.sub(r"#\s*weft:\s*ignore\[[^\]]*\]", "", text)
    loud = compile_paths([str(path)], sources={str(path): stripped}).diagnostics
    silenced = {(d.code, d.span.line) for d in loud} - {(d.code, d.span.line) for d in diags}
    assert silenced == {("W205", 7), ("W202", 9), ("W201", 10), ("W201", 13)}


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


def doc_sections() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    parts = re.split(r"^### ", text, flags=re.M)[1:]
    return {part.split(" ", 1)[0]: part for part in parts}


def flow_blocks(section: str) -> list[str]:
    return re.findall(r"```flow\n(.*?)```", section, re.S)


@pytest.mark.parametrize("code", sorted(set(CODES) - {"E003", "E117"}))
def test_documented_example_reports_its_code(code):
    """Each example in docs/diagnostics.md, compiled as if saved in docs/, reports its code
    with the message the page shows."""
    section = doc_sections()[code]
    path = str(ROOT / "docs" / f"{code.lower()}_example.flow")
    source = flow_blocks(section)[0]
    diags = compile_paths([path], sources={path: source}).diagnostics
    reported = [d for d in diags if d.code == code]
    assert reported, describe(diags)
    for d in reported:
        shown = d.message.replace(str(ROOT / "docs") + "/", "/home/me/flows/").replace(path, "example.flow")
        shown = shown.replace(f"{code.lower()}_example.flow", "example.flow")
        assert f"[{code}]: {shown.splitlines()[0]}" in section


def test_documented_suppression_example_checks_clean():
    text = DOCS.read_text(encoding="utf-8")
    example = flow_blocks(text.split("## Suppressing", 1)[1])[0]
    path = str(ROOT / "docs" / "suppression_example.flow")
    assert compile_paths([path], sources={path: example}).diagnostics == []
