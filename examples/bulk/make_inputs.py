"""Write an inputs file for `bulk_create`: N hosts with distinct names and MACs.

    python examples/bulk/make_inputs.py                      # 100 hosts -> out/inputs-100.json
    python examples/bulk/make_inputs.py -n 20 -o examples/bulk/inputs.json
    weft run examples/bulk/hosts.flow --inputs out/inputs-100.json

Addresses are handed out from .10 upward, so a /24 holds 245 hosts; pass a
larger subnet (`--subnet 10.1.0.0/16`) for more.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys


def make_inputs(count: int, subnet: str = "10.0.0.0/24", prefix: str = "web") -> dict:
    """The inputs record of `bulk_create` for `count` hosts named prefix001, prefix002, ..."""
    width = max(2, len(str(count)))
    hosts = [{"name": f"{prefix}{i:0{width}d}", "mac": _mac(i)} for i in range(1, count + 1)]
    return {"subnet": subnet, "hosts": hosts}


def _mac(i: int) -> str:
    # 52:54:00 is the locally administered prefix QEMU/KVM guests use.
    return "52:54:00:" + ":".join(f"{b:02x}" for b in i.to_bytes(3, "big"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=100)
    parser.add_argument("--subnet", default="10.0.0.0/24")
    parser.add_argument("--prefix", default="web", help="host name prefix")
    parser.add_argument("-o", "--output", help="default: out/inputs-N.json in the current folder")
    args = parser.parse_args(argv)
    try:
        network = ipaddress.ip_network(args.subnet)
    except ValueError as e:
        parser.error(f"--subnet: {e}")
    room = network.num_addresses - 11
    if not 1 <= args.count <= room:
        parser.error(f"--count must be between 1 and {room} for {network} (addresses from .10 upward)")
    output = args.output or os.path.join("out", f"inputs-{args.count}.json")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(make_inputs(args.count, str(network), args.prefix), f, indent=2)
        f.write("\n")
    print(f"wrote {args.count} hosts in {network} to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
