"""The compiled-plan cache, through the CLI: `weft run`, `check` and `plan` reuse a compile when nothing
it was made from changed (the flow, the flows it imports, extensions, the action modules), and ignore
and rewrite an entry that cannot be read. WEFT_PLAN_CACHE=debug says on stderr what the cache did."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest

ACTIONS = """
from typing import TypedDict

from weft import action


class Greeting(TypedDict):
    text: str


@action(idempotent=True)
def greet(name: str) -> Greeting:
    return {"text": f"hello {name}"}
"""

MAIN = """
use acts as a
import "common.flow"

flow main(who: str = "world") {
    let unused = 1
    g = a.greet(name: who)
    c = common(who: who)
}
"""

COMMON = """
use acts as a

flow common(who: str) {
    h = a.greet(name: who)
}
"""

EXTENSION = """
use acts as a

extend main {
    audit = a.greet(name: "audit") after g
}
"""


@pytest.fixture
def project(weft) -> Path:
    """A flow importing another, an action module and a folder of extensions, with a cache of its own."""
    for name, text in (("main.flow", MAIN), ("common.flow", COMMON), ("acts.py", ACTIONS)):
        (weft.folder / name).write_text(textwrap.dedent(text))
    (weft.folder / "ext").mkdir()
    (weft.folder / "ext" / "audit.flow").write_text(textwrap.dedent(EXTENSION))
    weft.env.update(XDG_CACHE_HOME=str(weft.folder / "cache"), WEFT_PLAN_CACHE="debug")
    return weft.folder


def cache_said(weft, *args: str) -> str:
    """What the cache did for `weft run main.flow --extensions ext ARGS` (the run must succeed)."""
    done = weft("run", "main.flow", "--extensions", "ext", *args, code=0)
    lines = [line for line in done.stderr.splitlines() if line.startswith("plan cache: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def entries(project: Path) -> list[Path]:
    return sorted((project / "cache" / "weft" / "plans").glob("*.plan"))


def test_the_second_run_uses_the_cached_plan_and_check_prints_the_same(weft, project):
    assert cache_said(weft).startswith("plan cache: miss (no entry); stored ")
    assert cache_said(weft).startswith("plan cache: hit ")
    (entry,) = entries(project)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    shown = weft.show(weft.run("main.flow", "--extensions", "ext", code=0)[0])
    assert {s["id"] for s in shown["steps"]} >= {"g", "audit"}

    first, second = (weft("check", "main.flow", "--extensions", "ext", code=0) for _ in range(2))
    assert "miss" in first.stderr and "hit" in second.stderr
    assert "W201" in first.stdout and (first.stdout, first.returncode) == (second.stdout, second.returncode)
    plans = [weft("plan", "--json", "main.flow", "--extensions", "ext", code=0) for _ in range(2)]
    assert "hit" in plans[1].stderr and json.loads(plans[0].stdout) == json.loads(plans[1].stdout)


def test_a_change_to_the_flow_makes_a_new_compile(weft, project):
    cache_said(weft)
    main = project / "main.flow"
    main.write_text(main.read_text().replace('"world"', '"there"'))
    assert cache_said(weft).startswith(f"plan cache: miss ({main} changed)")
    assert cache_said(weft).startswith("plan cache: hit ")


def test_a_change_to_an_imported_flow_makes_a_new_compile(weft, project):
    cache_said(weft)
    common = project / "common.flow"
    common.write_text(common.read_text().replace("h = ", "renamed = "))
    assert cache_said(weft).startswith(f"plan cache: miss ({common} changed)")


def test_a_change_to_an_extension_makes_a_new_compile(weft, project):
    cache_said(weft)
    audit = project / "ext" / "audit.flow"
    audit.write_text(audit.read_text().replace('"audit"', '"audited"'))
    assert cache_said(weft).startswith(f"plan cache: miss ({audit} changed)")
    (project / "ext" / "more.flow").write_text(textwrap.dedent(EXTENSION).replace("audit", "more"))
    assert cache_said(weft).startswith(f"plan cache: miss (the .flow files in {project / 'ext'} changed)")
    run_id, _ = weft.run("main.flow", "--extensions", "ext", code=0)
    assert "more" in {s["id"] for s in weft.show(run_id)["steps"]}


def test_a_change_to_an_action_signature_makes_a_new_compile(weft, project):
    cache_said(weft)
    acts = project / "acts.py"
    before = acts.stat().st_mtime
    acts.write_text(ACTIONS.replace("name: str)", "name: int)"))
    # Python's own bytecode cache knows a source by its size and its mtime in whole seconds: an edit of the same
    # size within the second it was written would run the old code, whatever Weft's plan cache does
    os.utime(acts, (before + 2, before + 2))
    done = weft("run", "main.flow", "--extensions", "ext", code=2)  # `who` is a str: the call no longer fits
    assert f"plan cache: miss ({acts} changed)" in done.stderr and "E107" in done.stderr


def test_a_change_to_a_result_type_in_a_module_an_action_module_imports_makes_a_new_compile(weft, project):
    """A layout of shared result types in a module of their own: only the action module's own file was hashed,
    so `weft check` passed a flow that no longer fits (and `weft run` ran its stale Plan)."""
    (project / "shapes.py").write_text("from typing import TypedDict\n\n\nclass Greeting(TypedDict):\n    text: str\n")
    acts = ACTIONS.replace("from typing import TypedDict\n", "from shapes import Greeting\n")
    (project / "acts.py").write_text(acts[: acts.index("class Greeting")] + acts[acts.index("@action") :])
    (project / "uses.flow").write_text(
        'use acts as a\n\nflow uses() -> (text: str) {\n    g = a.greet(name: "x")\n    return (text: g.text)\n}\n'
    )
    for said in ("miss (no entry); stored", "hit "):
        assert f"plan cache: {said}" in weft("check", "uses.flow", code=0).stderr
    shapes = project / "shapes.py"
    before = shapes.stat().st_mtime
    shapes.write_text(shapes.read_text().replace("text: str", "words: str"))
    os.utime(shapes, (before + 2, before + 2))  # (see the test above)
    done = weft("check", "uses.flow", code=1)
    assert f"plan cache: miss ({shapes} changed)" in done.stderr and "E108" in done.stdout, done


def test_a_corrupt_entry_is_ignored_and_written_anew(weft, project):
    cache_said(weft)
    (entry,) = entries(project)
    for damage in (b"\x00not msgpack\xff", b"\x93\x01\x02\x03", entry.read_bytes()[:40]):
        entry.write_bytes(damage)
        assert cache_said(weft).startswith("plan cache: miss (entry ignored: ")
        assert cache_said(weft).startswith("plan cache: hit ")
    os.chmod(entry, 0)
    if not os.access(entry, os.R_OK):  # (root reads it anyway)
        assert cache_said(weft).startswith("plan cache: miss (entry ignored: ")
