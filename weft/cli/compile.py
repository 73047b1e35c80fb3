"""`weft check`, `weft plan` and `weft graph`: the compiler's commands."""

from __future__ import annotations

import json
import os
import sys

from weft.compiler import Compilation, compile_extension, unknown_extended
from weft.compiler.cache import compile_cached
from weft.compiler.loader import searched
from weft.compiler.report import format_json, format_sarif, format_text, summary
from weft.errors import WeftError


def check(args) -> int:
    files = _flow_files(args.paths)
    results = {path: compile_cached([path], args.extensions, plans=False) for path in files}
    hosts = {name: path for path, r in results.items() for name in r.flows}
    diags, sources, seen, applied = [], {}, set(), set()
    for path, result in results.items():
        result = _with_hosts(path, result, hosts, args.extensions)
        sources.update(result.sources)
        applied |= {(name, e["file"], e["line"]) for name, es in result.extensions.items() if name in hosts for e in es}
        for d in result.diagnostics:
            key = (d.span, d.code, d.message)
            if key not in seen:
                seen.add(key)
                diags.append(d)
    diags.sort(key=lambda d: d.sort_key())
    if args.format == "json":
        print(format_json(diags, files))
    elif args.format == "sarif":
        print(format_sarif(diags))
    else:
        for name, file, line in sorted(applied):
            rel = os.path.relpath(file)
            print(f"{name}: extended by {file if rel.startswith('..') else rel}:{line}")
        if diags:
            print(format_text(diags, sources, color=sys.stdout.isatty()))
        print(summary(diags, len(files)), file=sys.stderr if diags else sys.stdout)
    failing = [d for d in diags if d.severity == "error" or args.strict]
    return 1 if failing else 0


def _with_hosts(path: str, result: Compilation, hosts: dict[str, str], extensions: list[str]) -> Compilation:
    """An extension file checked on its own is checked again against the flow it extends,
    when another file being checked defines that flow."""
    host_files = sorted({hosts[name] for name in unknown_extended(result) if name in hosts})
    return compile_extension(path, host_files, extensions) if host_files else result


def compile_or_explain(path: str, extensions: list[str], stopped: str = "nothing was run") -> Compilation:
    """Compile one file; on errors print every diagnostic and stop with exit 2, saying
    what the command did not do (`stopped`)."""
    if not os.path.exists(path):
        raise WeftError(f"{path}: no such file")
    result = compile_cached([path], extensions)
    if result.has_errors:
        errors = [d for d in result.diagnostics if d.severity == "error"]
        print(format_text(errors, result.sources, color=sys.stderr.isatty()), file=sys.stderr)
        raise WeftError(f"{path} has {len(errors)} error{'s' * (len(errors) != 1)}; {stopped}")
    return result


def plan(args) -> int:
    result = compile_or_explain(args.file, args.extensions, "no plan was made")
    p = result.plan(args.flow)
    if args.json:
        print(json.dumps(p, indent=2))
        return 0
    from weft.cli.plan_text import format_plan

    print(format_plan(p, result.extensions.get(p["flow"], [])))
    return 0


def graph(args) -> int:
    from weft import render

    target = args.target
    if os.path.exists(target) or target.endswith(".flow"):
        result = compile_or_explain(target, args.extensions, "nothing was drawn")
        p, states, counts = result.plan(args.flow), None, None
    else:
        if args.flow or args.extensions:  # a run is drawn from its stored Plan
            raise WeftError(f"{'--flow' if args.flow else '--extensions'} is for a .flow file; a run draws its own plan")
        from weft.runtime import load_run_view

        p, states, counts = load_run_view(args.store, target)
    if not args.output:
        sys.stdout.write(render.to_dot(p, states, expand=args.expand, counts=counts))
        return 0
    render.draw(p, args.output, states, expand=args.expand, counts=counts)
    print(f"wrote {args.output}")
    return 0


def _flow_files(paths: list[str]) -> list[str]:
    """The .flow files named or found under the folders named."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if searched(d))
                found += [os.path.join(root, n) for n in sorted(names) if n.endswith(".flow")]
            if not found:
                raise WeftError(f"{p}: no .flow files in this folder")
            files += found
        else:
            files.append(p)
    return files
