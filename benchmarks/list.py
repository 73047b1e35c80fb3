"""`weft list` on a store of 100,000 runs: index-driven queries against a full scan.

    python benchmarks/list.py [--runs 100000] [--store DIR]

Writes the runs straight through the store API in transactions of 10,000
(tests/runtime_support/catalog_data.py: every state, 20 flows, 10 users, tags, labels,
5 `each` parents with 1,000 sub-runs each), then times each query three ways:
`Store.search` in this process (best of 5), a full scan of every run record
in this process giving the same answer (checked), and a whole `weft list`
process (best of 3, interpreter start included). Prints figures; asserts only
that both ways agree.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from runtime_support import catalog_data  # noqa: E402
from weft.cli.main import build_parser  # noqa: E402
from weft.client.search import MULTI, queries  # noqa: E402
from weft.runtime.stores.query import Query  # noqa: E402
from weft.runtime.stores.lmdb.store import Store  # noqa: E402


def best(fn, times: int) -> float:
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)
    return min(took)


def query(args: argparse.Namespace) -> Query:
    """The store Query that `weft list` ARGS asks for (one value per filter here)."""
    filters = {name: getattr(args, name) for name in MULTI if getattr(args, name)}
    options = {k: getattr(args, k) for k in ("since", "before", "sort", "reverse", "limit", "offset")}
    _, combos, _ = queries(**filters, **options, sub_runs=args.all)
    return combos[0]


def full_scan(store: Store, q: Query) -> list[str]:
    """The baseline: decode every run record, filter and sort them in Python."""
    with store.read() as t:
        runs = [t.run(rid) for rid in t.run_ids()]
    return catalog_data.full_scan(runs, q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--store", help="keep the store in this (new) folder")
    opts = parser.parse_args()
    folder = opts.store or tempfile.mkdtemp(prefix="weft-list-")
    now = time.time()
    with Store(folder) as store:
        t0 = time.perf_counter()
        runs = catalog_data.fill(store, opts.runs, now=now, parents=5, children_per_parent=1000)
        took = time.perf_counter() - t0
        size = os.path.getsize(os.path.join(folder, "data.mdb")) >> 20
        print(f"wrote {len(runs):,} runs in {took:.1f}s ({len(runs) / took:,.0f} runs/s), store {size} MB at {folder}")
        parent = next(r["parent"]["run"] for r in runs if r["parent"])
        holder = next(r for r in runs if r["locks"])
        cases = [
            [],
            ["--flow", "flow_12", "--limit", "20"],
            ["--state", "failed", "--user", "bob", "--limit", "20"],
            ["--state", "succeeded", "--sort", "user", "--offset", "1000", "--limit", "20"],
            ["--label", "host-0424", "--limit", "20"],
            ["--since", "2d", "--limit", "20"],
            ["--before", "30d", "--sort", "ended", "--limit", "20"],
            ["--result", "rolled-back", "--tag", "dns", "--limit", "20"],
            ["--parent", parent],
            ["--lock", holder["locks"][0]],
            ["--tag", "prod", "--sort", "label", "--reverse", "--limit", "20"],
            ["--sort", "ended", "--offset", "90000", "--limit", "20"],
        ]
        print(f"\n{'weft list ...':<58} {'rows':>5} {'indexed':>9} {'full scan':>10} {'ratio':>7} {'process':>9}")
        for args in cases:
            q = query(build_parser().parse_args(["list", *args]))
            page = store.search(q)
            assert [r["id"] for r in page.runs] == full_scan(store, q), args
            indexed = best(lambda: store.search(q), 5)
            scan = best(lambda: full_scan(store, q), 1)
            command = [sys.executable, "-m", "weft.cli.main", "list", *args, "--store", folder, "--json"]
            whole = best(lambda: subprocess.run(command, check=True, capture_output=True), 3)
            print(
                f"{' '.join(args) or '(newest 50)':<58} {len(page.runs):>5} {indexed * 1000:>7.1f}ms "
                f"{scan * 1000:>8.0f}ms {scan / indexed:>6.0f}x {whole * 1000:>7.0f}ms"
            )
        startup = best(
            lambda: subprocess.run([sys.executable, "-m", "weft.cli.main", "--help"], check=True, capture_output=True),
            3,
        )
        print(f"\n(`weft --help` alone takes {startup * 1000:.0f}ms: the interpreter and argument parsing)")


if __name__ == "__main__":
    main()
