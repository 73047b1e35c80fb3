"""`weft check`, `weft plan` and `weft graph`, run as a user runs them: `python -m weft.cli.main` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from weft.plan.schema import PLAN_VERSION

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
DIAG = FIXTURES / "diagnostics"
HOST = ROOT / "examples" / "foreman" / "host.flow"
BULK = ROOT / "examples" / "bulk" / "hosts.flow"
AUDIT = ROOT / "examples" / "extension"
SVG = "{http://www.w3.org/2000/svg}"
EXPECT = re.compile(r"#\s*expect:\s*([EW]\d{3})\s+(\d+):(\d+)")


def weft(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WEFT_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "weft.cli.main", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return proc


def expected(path: Path) -> list[tuple[str, int, int]]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    return sorted((m[1], int(m[2]), int(m[3])) for m in EXPECT.finditer(text))


# -- weft check: exit codes and text ------------------------------------------------------


def test_check_clean_files_exit_0():
    proc = weft("check", HOST, FIXTURES / "valid")
    assert proc.returncode == 0
    count = 1 + len(list((FIXTURES / "valid").glob("*.flow")))
    assert proc.stdout.strip().splitlines() == [
        "fleet: extended by tests/fixtures/valid/everything.flow:70",  # the extensions applied, then the summary
        "make_machine: extended by tests/fixtures/valid/extension.flow:7",
        f"checked {count} files: no problems",
    ]


def test_check_a_folder_finds_every_flow_file():
    proc = weft("check", ROOT / "examples")
    assert proc.returncode == 0, proc.stdout
    assert "checked 4 files: no problems" in proc.stdout


def test_check_errors_exit_1_with_position_source_line_and_caret():
    path = DIAG / "E105_unknown_argument.flow"
    proc = weft("check", path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    head = (
        "tests/fixtures/diagnostics/E105_unknown_argument.flow:7:35: error[E105]: inv.allocate takes no argument 'cpu'"
    )
    assert lines[0] == head
    source = path.read_text(encoding="utf-8").splitlines()[6]
    gutter = "   7 | "
    assert lines[1] == gutter + source
    assert lines[2] == " " * (len(gutter) + 35 - 1) + "^^^"
    assert lines[1][lines[2].index("^") :].startswith("cpu: 4")
    assert lines[3] == "     = hint: did you mean 'cpus'?"
    assert "checked 1 file: 1 error, 0 warnings" in proc.stderr


def test_check_reports_every_error_of_a_file_sorted():
    path = DIAG / "multi_error.flow"
    proc = weft("check", path)
    assert proc.returncode == 1
    heads = re.findall(r"^tests/fixtures/diagnostics/multi_error\.flow:(\d+):(\d+): (\w+)\[(\w+)\]", proc.stdout, re.M)
    found = [(code, int(line), int(col)) for line, col, _sev, code in heads]
    assert found == sorted(found, key=lambda x: (x[1], x[2]))
    assert sorted(found) == expected(path)


def test_warnings_fail_only_with_strict():
    path = DIAG / "W201_unused_let.flow"
    loose = weft("check", path)
    assert loose.returncode == 0
    assert "warning[W201]" in loose.stdout
    assert "1 warning" in loose.stderr
    strict = weft("check", "--strict", path)
    assert strict.returncode == 1
    assert strict.stdout == loose.stdout


# -- weft check: machine formats -----------------------------------------------------------


def test_check_json_schema():
    path = DIAG / "multi_error.flow"
    proc = weft("check", "--format", "json", path)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["version"] == 1
    assert report["files"] == ["tests/fixtures/diagnostics/multi_error.flow"]
    found = []
    for d in report["diagnostics"]:
        assert set(d) >= {"file", "range", "code", "severity", "message", "hint"}
        assert d["file"] == "tests/fixtures/diagnostics/multi_error.flow"
        start, end = d["range"]["start"], d["range"]["end"]
        assert set(start) == set(end) == {"line", "column"}
        assert start["line"] >= 1 and start["column"] >= 1
        assert (end["line"], end["column"]) >= (start["line"], start["column"])
        assert d["severity"] == ("error" if d["code"].startswith("E") else "warning")
        assert isinstance(d["message"], str) and (d["hint"] is None or isinstance(d["hint"], str))
        found.append((d["code"], start["line"], start["column"]))
    assert sorted(found) == expected(path)
    hinted = next(d for d in report["diagnostics"] if d["code"] == "E101")
    assert hinted["hint"] == "did you mean 'addr'?"


def test_check_json_for_a_clean_file():
    proc = weft("check", "--format", "json", HOST)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["diagnostics"] == []


def test_check_sarif():
    path = DIAG / "E119_invalid_option.flow"
    proc = weft("check", "--format", "sarif", path)
    assert proc.returncode == 1
    sarif = json.loads(proc.stdout)
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} >= {"E001", "E119", "W205"}
    results = run["results"]
    assert results
    for r in results:
        assert r["ruleId"] == "E119" and r["level"] == "error"
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        (loc,) = r["locations"]
        assert (
            loc["physicalLocation"]["artifactLocation"]["uri"] == "tests/fixtures/diagnostics/E119_invalid_option.flow"
        )
        region = loc["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
    regions = sorted(
        (
            "E119",
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["locations"][0]["physicalLocation"]["region"]["startColumn"],
        )
        for r in results
    )
    assert regions == expected(path)


# -- weft check: bad input never gives a traceback ---------------------------------------------


def test_missing_file(tmp_path):
    proc = weft("check", "no_such.flow", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("no_such.flow:1:1: error[E003]: cannot read")
    assert "No such file or directory" in proc.stdout


def test_folder_without_flow_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not a flow\n")
    proc = weft("check", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"weft: error: {tmp_path}: no .flow files in this folder"


def test_binary_junk(tmp_path):
    (tmp_path / "junk.flow").write_bytes(bytes(range(256)) * 40)
    proc = weft("check", "junk.flow", cwd=tmp_path)
    assert proc.returncode == 1
    assert "error[E003]" in proc.stdout and "binary file" in proc.stdout


def test_ten_megabytes_of_garbage(tmp_path):
    chunk = bytes(range(1, 256)) * 4096  # no NUL byte, not UTF-8
    (tmp_path / "huge.flow").write_bytes(chunk * (10 * 2**20 // len(chunk) + 1))
    proc = weft("check", "huge.flow", cwd=tmp_path)
    assert proc.returncode == 1
    assert "error[E003]" in proc.stdout and "larger than 8 MiB" in proc.stdout


def test_empty_file(tmp_path):
    (tmp_path / "empty.flow").write_text("")
    proc = weft("check", "empty.flow", cwd=tmp_path)
    assert (proc.returncode, proc.stdout.strip()) == (0, "checked 1 file: no problems")
    plan = weft("plan", "empty.flow", cwd=tmp_path)
    assert plan.returncode == 2 and "defines no flow" in plan.stderr


def test_non_utf8_file(tmp_path):
    (tmp_path / "latin1.flow").write_bytes('flow f() {\n    std.log(message: "grüß")\n}\n'.encode("latin-1"))
    proc = weft("check", "latin1.flow", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("latin1.flow:2:1: error[E003]:")
    assert "is not UTF-8 text" in proc.stdout


def test_printable_garbage_is_parsed_and_reported(tmp_path):
    import random

    rng = random.Random(7)
    alphabet = "flow use each abc(){}[]:,.=\"'\n#${}0123456789+-*/ \t"
    (tmp_path / "noise.flow").write_text("".join(rng.choice(alphabet) for _ in range(200_000)))
    proc = weft("check", "noise.flow", cwd=tmp_path)
    assert proc.returncode == 1
    assert "error[E001]" in proc.stdout


# -- weft plan ---------------------------------------------------------------------------------


def test_plan_shows_levels_and_critical_path():
    proc = weft("plan", HOST, "--extensions", AUDIT)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith('flow create_host(name: str, mac: str, subnet: str, domain: str = "example.com")')
    assert "5 steps, 3 parallel levels, critical path: dhcp -> a -> audit" in out
    levels = re.findall(r"^level (\d+)", out, re.M)
    assert levels == ["0", "1", "2"]
    level1 = out.split("level 1", 1)[1].split("level 2", 1)[0]
    assert re.search(r"^  \* a +proxy\.dns_create +\[needs dhcp\.ip; undo proxy\.dns_delete\]$", level1, re.M)
    assert re.search(r"^  \+ ptr ", level1, re.M)
    assert "extension: examples/extension/weft_audit/audit.flow:7" in out
    assert "finalize (in order, after every run step)" in out


def test_plan_json_is_the_plan():
    proc = weft("plan", "--json", BULK)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert (plan["format"], plan["version"], plan["flow"]) == ("weft.plan", PLAN_VERSION, "bulk_create")
    assert [s["id"] for s in plan["steps"]] == ["each", "log"]
    assert plan["steps"][0]["each"]["plan"]["steps"][0]["id"] == "create_host/dhcp"


def test_plan_of_a_named_flow_and_an_unknown_one():
    proc = weft("plan", FIXTURES / "valid" / "everything.flow", "--flow", "replace")
    assert proc.returncode == 0 and proc.stdout.startswith("flow replace(")
    proc = weft("plan", FIXTURES / "valid" / "everything.flow", "--flow", "replac")
    assert proc.returncode == 2 and "did you mean 'replace'" in proc.stderr


@pytest.mark.parametrize(
    "command, stopped",
    [
        (["plan"], "no plan was made"),
        (["graph"], "nothing was drawn"),
        (["graph", "-o", "out.svg"], "nothing was drawn"),
    ],
)
def test_compile_errors_exit_2_with_diagnostics_on_stderr(tmp_path, command, stopped):
    (tmp_path / "broken.flow").write_text('flow f() {\n    std.log(message: nope)\n    std.sleep(seconds: "x")\n}\n')
    cmd, *rest = command
    proc = weft(cmd, "broken.flow", *rest, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "broken.flow:2:22: error[E101]: 'nope' is not defined" in proc.stderr
    assert "broken.flow:3:24: error[E107]:" in proc.stderr
    assert "^^^^" in proc.stderr
    assert f"weft: error: broken.flow has 2 errors; {stopped}" in proc.stderr
    assert "run" not in proc.stderr.splitlines()[-1]  # planning or drawing runs nothing: it does not say so
    assert not (tmp_path / "out.svg").exists()


# -- weft graph --------------------------------------------------------------------------------


def svg_parts(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """{node title: texts}, {edge title: texts} of an SVG that Graphviz drew."""
    nodes, edges = {}, {}
    for g in ET.parse(path).getroot().iter(f"{SVG}g"):
        kind = g.get("class")
        if kind in ("node", "edge"):
            texts = [t.text for t in g.iter(f"{SVG}text") if t.text]
            (nodes if kind == "node" else edges)[g.find(f"{SVG}title").text] = texts
    return nodes, edges


def test_graph_svg_matches_the_plan(tmp_path):
    out = tmp_path / "host.svg"
    proc = weft("graph", HOST, "--extensions", AUDIT, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}"
    plan = json.loads(weft("plan", "--json", HOST, "--extensions", AUDIT).stdout)
    nodes, edges = svg_parts(out)
    assert set(nodes) == {s["id"] for s in plan["steps"]}
    for s in plan["steps"]:
        assert nodes[s["id"]][0] == s["id"]
    # One edge per data dependency, labelled with what it carries; control edges unlabelled.
    data_edges = {f"{d['from']}->{s['id']}": f"{d['field']} → {d['to']}" for s in plan["steps"] for d in s["data"]}
    control_edges = {f"{a}->{s['id']}" for s in plan["steps"] for a in s["after"]}
    assert set(data_edges) | control_edges <= set(edges)
    for title, label in data_edges.items():
        assert label in edges[title], (title, edges[title])
    assert edges["dhcp->a"] == ["ip → value"]
    assert edges["a->audit"] == []


def test_graph_dot_is_deterministic(tmp_path):
    first, second = tmp_path / "one.dot", tmp_path / "two.dot"
    assert weft("graph", BULK, "--extensions", AUDIT, "-o", first).returncode == 0
    assert weft("graph", BULK, "--extensions", AUDIT, "-o", second).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text().startswith('digraph "bulk_create" {')
    # Without -o, the same DOT goes to stdout.
    assert weft("graph", BULK, "--extensions", AUDIT).stdout == first.read_text()


def test_graph_png(tmp_path):
    out = tmp_path / "host.png"
    assert weft("graph", HOST, "-o", out).returncode == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_to_an_unknown_format_is_a_usage_error(tmp_path):
    proc = weft("graph", HOST, "-o", tmp_path / "host.gif")
    assert proc.returncode == 2
    assert "use .svg, .png, .pdf or .dot" in proc.stderr


# -- extension folders and messages a new user meets -----------------------------------------------


def test_extension_folder_ignores_build_output_and_installed_copies(tmp_path):
    """`pip install ./examples/extension` leaves build/ (and *.egg-info) copies of audit.flow
    behind; `--extensions` of the folder must not load them as second extensions."""
    import shutil

    ext = tmp_path / "extension"
    shutil.copytree(AUDIT, ext, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    flow = ext / "weft_audit" / "audit.flow"
    for copy in ("build/lib/weft_audit", "dist/weft_audit", "weft_audit.egg-info", ".venv/lib/weft_audit"):
        (ext / copy).mkdir(parents=True)
        shutil.copy(flow, ext / copy / "audit.flow")
    proc = weft("check", HOST, "--extensions", ext)
    assert proc.returncode == 0, proc.stdout
    assert "E109" not in proc.stdout
    assert proc.stdout.count("extended by") == 1


def test_two_files_of_one_name_are_told_apart_in_messages(tmp_path):
    for folder in ("team_a", "team_b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "audit.flow").write_text((AUDIT / "weft_audit" / "audit.flow").read_text())
    env_path = str(AUDIT)
    proc = subprocess.run(
        [sys.executable, "-m", "weft.cli.main", "check", str(HOST), "--extensions", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": env_path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    (line,) = [x for x in proc.stdout.splitlines() if "error[E109]" in x]
    assert "team_b/audit.flow:8:5: error[E109]" in line
    assert line.endswith("already defined as a step at ../team_a/audit.flow:8:5")


def test_an_extension_checked_alone_reports_no_unused_use():
    proc = weft("check", AUDIT)
    assert proc.returncode == 1
    assert "error[E113]: cannot extend 'create_host'" in proc.stdout
    assert "W205" not in proc.stdout  # its `use` is called inside the extend block


def test_type_messages_use_the_right_article(tmp_path):
    (tmp_path / "t.flow").write_text('flow f(n: int) {\n    std.log(message: n["x"])\n    std.log(message: n.x)\n}\n')
    proc = weft("check", "t.flow", cwd=tmp_path)
    assert "cannot index an int with a str" in proc.stdout
    assert "cannot read field 'x' of an int" in proc.stdout
    assert " a int" not in proc.stdout
