"""A simulated Foreman smart proxy: DHCP leases and DNS records, for `host.flow`.

Bound in a flow with `use examples.foreman.proxy as proxy`. Every call waits
50-150 ms like a network round trip, so the concurrent DNS steps visibly
overlap, and keeps the proxy's state in one JSON file:

    $WEFT_PROXY_STATE          default ./.weft-proxy/state.json (relative to the
                               current folder); changed under an fcntl lock and
                               replaced atomically, since concurrent steps call in
    $WEFT_PROXY_LATENCY        scale the latency; 0 turns it off

DHCP hands out addresses from the tenth host address of the subnet upward
(10.0.0.0/24 gives 10.0.0.10, 10.0.0.11, ...), one per MAC: reserving again
for the same MAC returns the same lease. DNS keeps one value per name and
record type; creating the same record again is harmless, creating a different
value for an existing name fails as a conflict, like the real proxy.

Making a call fail, to watch a run pause and resume:

    echo dns_create > .weft-proxy/fail        # the next dns_create fails, once
    echo dns_create:PTR >> .weft-proxy/fail   # the next PTR record fails, once
    echo dhcp_reserve:52:54:00:00:00:07 > .weft-proxy/fail   # that MAC's next reservation
    WEFT_PROXY_FAIL=dns_create:PTR weft run ...  # fails for as long as it is set

An entry is `action` or `action:value`, matching calls with an argument equal
to `value`. Each line of the `fail` file (in the state folder) fails one call
and is then removed, so after the run pauses, `weft resume RUN` succeeds;
write a line several times to fail several attempts (`retry 3` needs four).
The environment variable fails every matching call until it is unset.

Inspect the proxy with `cat .weft-proxy/state.json`; reset it by deleting the folder.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, TypedDict

from examples.simstate import Service
from weft import ActionFailed, Context, action

SERVICE = Service("WEFT_PROXY", ".weft-proxy")
FIRST_HOST = 10  # the first address handed out is the subnet's tenth
RECORD_TYPES = ("A", "AAAA", "PTR", "CNAME")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class Lease(TypedDict):
    ip: str
    subnet: str
    mac: str


class Record(TypedDict):
    name: str
    type: str
    value: str


# -- DHCP ------------------------------------------------------------------------------


@action(idempotent=True)
def dhcp_release(subnet: str, mac: str) -> None:
    """Release the lease of `mac` in `subnet`; releasing a lease that is gone is fine."""
    network, mac = _network(subnet), _mac(mac)
    with SERVICE.transaction("dhcp_release", {"subnet": subnet, "mac": mac}) as state:
        leases = state.setdefault("leases", {}).setdefault(str(network), {})
        leases.pop(mac, None)


@action(idempotent=True, undo=dhcp_release)
def dhcp_reserve(subnet: str, mac: str, ctx: Context) -> Lease:
    """Reserve the next free address of `subnet` for `mac` (the same one again for a known MAC)."""
    network, mac = _network(subnet), _mac(mac)
    with SERVICE.transaction("dhcp_reserve", {"subnet": subnet, "mac": mac}) as state:
        leases = state.setdefault("leases", {}).setdefault(str(network), {})
        ip = leases.get(mac)
        if ip is None:
            ip = _free_address(network, set(leases.values()))
            leases[mac] = ip
            ctx.log(f"reserved {ip} for {mac} in {network}")
        else:
            ctx.log(f"{mac} already holds {ip} in {network}")
    return {"ip": ip, "subnet": str(network), "mac": mac}


def _free_address(network: ipaddress.IPv4Network | ipaddress.IPv6Network, taken: set[str]) -> str:
    last = network.num_addresses - 1  # the broadcast address (or the last one in IPv6)
    base = int(network.network_address)
    for offset in range(FIRST_HOST, last):
        ip = str(ipaddress.ip_address(base + offset))
        if ip not in taken:
            return ip
    raise ActionFailed(f"subnet {network} has no free address left ({len(taken)} leases)")


def _network(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(subnet.strip())
    except ValueError as e:
        raise ActionFailed(f"invalid subnet {subnet!r}: {e}") from None


def _mac(mac: str) -> str:
    norm = mac.strip().lower().replace("-", ":")
    if not _MAC.match(norm):
        raise ActionFailed(f"invalid MAC address {mac!r} (expected six hex pairs like 52:54:00:12:34:56)")
    return norm


# -- DNS -------------------------------------------------------------------------------


@action(idempotent=True)
def dns_delete(name: str, type: str) -> None:
    """Delete the `type` record of `name`; deleting a record that is gone is fine."""
    type = _record_type(type)
    with SERVICE.transaction("dns_delete", {"name": name, "type": type}) as state:
        state.setdefault("dns", {}).setdefault(type, {}).pop(name, None)


@action(idempotent=True, undo=dns_delete)
def dns_create(name: str, type: str, value: str, ctx: Context) -> Record:
    """Create the `type` record `name` -> `value`; an existing record with another value is a conflict."""
    type = _record_type(type)
    _check_record(name, type, value)
    args: dict[str, Any] = {"name": name, "type": type, "value": value}
    with SERVICE.transaction("dns_create", args) as state:
        records = state.setdefault("dns", {}).setdefault(type, {})
        current = records.get(name)
        if current is not None and current != value:
            raise ActionFailed(
                f"{type} record {name} already exists with value {current}, not {value}: "
                f"delete it first (proxy.dns_delete) or choose another name"
            )
        records[name] = value
        ctx.log(f"{type} {name} -> {value}" + (" (already there)" if current == value else ""))
    return {"name": name, "type": type, "value": value}


def _record_type(type: str) -> str:
    norm = type.strip().upper()
    if norm not in RECORD_TYPES:
        raise ActionFailed(f"unsupported DNS record type {type!r} (one of {', '.join(RECORD_TYPES)})")
    return norm


def _check_record(name: str, type: str, value: str) -> None:
    if not name or not value:
        raise ActionFailed("a DNS record needs a name and a value")
    try:
        if type == "A":
            ipaddress.IPv4Address(value)
        elif type == "AAAA":
            ipaddress.IPv6Address(value)
        elif type == "PTR":
            ipaddress.ip_address(name)
    except ValueError as e:
        raise ActionFailed(f"invalid {type} record {name} -> {value}: {e}") from None
