"""`weft doctor [--repair] [--json]`: check a store's records and indexes against each other, and mend them.

Exit 0 when the store is sound (or a repair made it so), 1 when problems remain.
"""

from __future__ import annotations

import json
from typing import Any

from weft.client import Client


def doctor(args: Any) -> int:
    with Client(args.store) as client:
        report = client.doctor(repair=args.repair)
    if args.json:
        print(
            json.dumps(
                {
                    "store": report.path,
                    "healthy": report.healthy,
                    "problems": list(report.problems),
                    "repairs": list(report.repairs),
                    "remaining": list(report.remaining),
                },
                indent=2,
            )
        )
        return 0 if report.healthy else 1
    for line in report.problems:
        print(f"problem: {line}")
    for line in report.repairs:
        print(f"repaired: {line}")
    if args.repair:
        for line in report.remaining:
            print(f"remaining: {line}")
    if report.healthy:
        mended = f" after {len(report.repairs)} repairs" if report.repairs else ""
        print(f"store {report.path} is sound{mended}")
        return 0
    hint = "" if args.repair else "; `weft doctor --repair` mends what it can"
    print(f"store {report.path}: {len(report.remaining)} problems{hint}")
    return 1
