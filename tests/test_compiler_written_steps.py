"""A flow may be written with more steps than inlining may grow one to (E124 is for flows that call flows)."""

from __future__ import annotations

from weft.compiler import compile_paths
from weft.compiler.limits import MAX_PLAN_STEPS


def test_a_flow_written_with_more_steps_than_inlining_may_make_compiles(tmp_path):
    n = MAX_PLAN_STEPS + 1
    path = tmp_path / "wide.flow"
    path.write_text("flow wide() {\n" + "".join(f"    s{i} = std.echo(value: {i})\n" for i in range(n)) + "}\n")
    comp = compile_paths([str(path)])
    assert not comp.has_errors, comp.diagnostics[:3]
    assert len(comp.plan("wide")["steps"]) == n
