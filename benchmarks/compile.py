"""Compile-time benchmark: a generated flow of N steps with random data dependencies.

    python benchmarks/compile.py 10000

Prints the time of each pass and the ratio of the whole compile to Lark's raw
parse of the same text (the baseline, measured in this process).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time


def generate(n: int, seed: int = 7) -> str:
    rnd = random.Random(seed)
    lines = ["flow big(seed: str) -> (last: any) {"]
    for i in range(n):
        # Mostly one dependency on an earlier step, some with two, a few roots.
        refs = sorted({rnd.randrange(i) for _ in range(rnd.choice((1, 1, 1, 2)))}) if i > 2 else []
        if not refs:
            value = "seed"
        elif len(refs) == 1:
            value = f"s{refs[0]}.value"
        else:
            value = "[" + ", ".join(f"s{j}.value" for j in refs) + "]"
        after = f" after s{rnd.randrange(i)}" if i > 10 and rnd.random() < 0.1 else ""
        lines.append(f"    s{i} = std.echo(value: {value}){after}")
    lines.append(f"    return (last: s{n - 1}.value)")
    lines.append("}")
    return "\n".join(lines) + "\n"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    text = generate(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.flow")
        with open(path, "w") as f:
            f.write(text)

        from weft.compiler import check as check_mod, loader as loader_mod, resolve as resolve_mod, types as types_mod
        from weft.compiler.diagnostics import Sink
        from weft.compiler.lower import lower
        from weft.compiler.optimize import PASSES
        from weft.compiler.parse import parser
        from weft.compiler.emit import build_plan

        from importlib import resources

        from lark import Lark

        grammar = resources.files("weft.grammar").joinpath("flow.lark").read_text()
        plain = Lark(grammar, parser="lalr", start=["start", "expr"])  # Lark alone: the baseline
        parser()  # grammar loads are one-time costs, outside every figure
        _, raw = timed(lambda: plain.parse(text, start="start"))

        import gc

        gc.disable()  # as compile_paths does
        sink = Sink()
        ld = loader_mod.Loader(sink)
        _, t_parse = timed(lambda: ld.load(path))
        program = ld.program
        scopes, t_resolve = timed(lambda: resolve_mod.resolve(program, sink))
        typing, t_types = timed(lambda: types_mod.typecheck(scopes, sink))
        _, t_check = timed(lambda: check_mod.check(program, scopes, sink))
        assert not sink.has_errors, sink.sorted()[:3]
        graph, t_lower = timed(lambda: lower(scopes["big"], typing, lambda g: build_plan(g, [])))
        pass_times = []
        for run in PASSES:
            graph, t = timed(lambda run=run, graph=graph: run(graph, None))
            pass_times.append((run.__name__, t))
        plan, t_plan = timed(lambda: build_plan(graph, []))
        gc.enable()
        from weft.compiler import compile_paths

        _, t_api = timed(lambda: compile_paths([path]))
        total = t_parse + t_resolve + t_types + t_check + t_lower + sum(t for _, t in pass_times) + t_plan

        print(f"flow of {n} steps, {len(text) / 1e6:.2f} MB of text")
        print(f"  lark raw parse (baseline)  {raw:8.3f} s")
        print(f"  parse + AST                {t_parse:8.3f} s")
        print(f"  resolve                    {t_resolve:8.3f} s")
        print(f"  types                      {t_types:8.3f} s")
        print(f"  check                      {t_check:8.3f} s")
        print(f"  lower                      {t_lower:8.3f} s")
        for name, t in pass_times:
            print(f"  optimize: {name:<16} {t:8.3f} s")
        print(f"  plan                       {t_plan:8.3f} s")
        print(
            f"  whole compile              {total:8.3f} s   ({total / raw:.2f}x the raw parse; target < 2 s and < 3x)"
        )
        print(f"  compile_paths() end to end   {t_api:8.3f} s   ({t_api / raw:.2f}x the raw parse)")
        print(f"  plan: {len(plan['steps'])} steps, critical path {len(plan['critical_path'])} long")

        small = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "foreman", "host.flow")
        cmd = [sys.executable, "-m", "weft.cli.main", "check", small]
        subprocess.run(cmd, capture_output=True)  # warm the file cache
        _, whole = timed(lambda: subprocess.run(cmd, capture_output=True, check=True))
        _, bare = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        print(
            f"  `weft check` of a small file, whole process: {whole:.3f} s (bare python start {bare:.3f} s; target < 0.5 s)"
        )


if __name__ == "__main__":
    main()
