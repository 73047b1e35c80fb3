"""`weft check --format json|sarif`: the machine-readable outputs editors and
code-scanning tools read. JSON follows the stable schema (file, 1-based range,
code, severity, message, hint); SARIF is well-formed 2.1.0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weft.compiler.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[1]
FLOW = """\
flow greet(name: str, unused: int) {
    let hello = "hello ${name}"
    e = std.echo(valeu: hello)
    std.log(message: "héllo 🎉 ${e.value}", level: 3)
    std.log(message: e.valu)
}
"""


def check(folder: Path, fmt: str) -> dict:
    (folder / "greet.flow").write_text(FLOW, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "weft.cli.main", "check", "--format", fmt, "greet.flow"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def report(tmp_path: Path) -> dict:
    return check(tmp_path, "json")


def test_json_diagnostics_follow_the_stable_schema(report: dict):
    assert report["version"] == 1 and report["files"] == ["greet.flow"]
    for d in report["diagnostics"]:
        assert {"file", "range", "code", "severity", "message", "hint"} <= d.keys()
        assert d["file"] == "greet.flow"
        assert d["code"] in CODES and d["severity"] == CODES[d["code"]][1]
        assert isinstance(d["message"], str) and d["message"]
        assert d["hint"] is None or isinstance(d["hint"], str)
        start, end = d["range"]["start"], d["range"]["end"]
        for pos in (start, end):
            assert set(pos) == {"line", "column"}
            assert all(isinstance(v, int) and v >= 1 for v in pos.values())
        assert (start["line"], start["column"]) <= (end["line"], end["column"])


def test_json_positions_are_one_based_lines_and_columns(report: dict):
    found = [(d["code"], d["range"], d["hint"]) for d in report["diagnostics"]]
    assert found == [
        ("W202", {"start": {"line": 1, "column": 23}, "end": {"line": 1, "column": 34}}, None),
        ("E106", {"start": {"line": 3, "column": 9}, "end": {"line": 3, "column": 17}}, None),
        ("E105", {"start": {"line": 3, "column": 18}, "end": {"line": 3, "column": 23}}, "did you mean 'value'?"),
        # Columns count characters: the emoji before `level` is one.
        ("E105", {"start": {"line": 4, "column": 44}, "end": {"line": 4, "column": 49}}, "it takes: message"),
        ("E108", {"start": {"line": 5, "column": 24}, "end": {"line": 5, "column": 28}}, "did you mean 'value'?"),
    ]


def test_sarif_is_well_formed_2_1_0(tmp_path: Path, report: dict):
    sarif = check(tmp_path, "sarif")
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    [run] = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "weft"
    ids = [r["id"] for r in driver["rules"]]
    assert len(ids) == len(set(ids)) and set(CODES) <= set(ids)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["defaultConfiguration"]["level"] in ("error", "warning")
    located = []
    for result in run["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note", "none") and result["message"]["text"]
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == "greet.flow"
        region = physical["region"]
        assert all(
            isinstance(region[k], int) and region[k] >= 1 for k in ("startLine", "startColumn", "endLine", "endColumn")
        )
        located.append((result["ruleId"], region["startLine"], region["startColumn"]))
    in_json = [(d["code"], d["range"]["start"]["line"], d["range"]["start"]["column"]) for d in report["diagnostics"]]
    assert located == in_json
