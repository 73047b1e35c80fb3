"""Plans for diagram tests: the design's flows, bulk, waits and big generated plans, built with
`runtime_support.plans` the way the compiler would emit them for examples.foreman.proxy."""

from __future__ import annotations

from runtime_support import plans
from runtime_support.plans import lit, param, ref

STR = ["str"]
EMPTY = ["rec", []]
FILE = "/srv/flows/hosts.flow"


def fmt(*parts):
    return ["fmt", list(parts)]


def step(sid, module="examples.foreman.proxy", name=None, *, data=(), inputs=None, outputs=EMPTY, **fields):
    """A step calling `module.name` (default: the id); `data` is (from, field, param) triples."""
    inputs = dict(inputs or {})
    for src, field, to in data:
        inputs.setdefault(to, ref(src, field))
    fields.setdefault("on_error", "pause")
    fields.setdefault("span", {"file": FILE, "line": 1, "col": 5})
    given = {k: fields.pop(k) for k in ("action", "undo") if k in fields}  # Plan form, not the builder's
    s = plans.step(
        sid, name or sid.rsplit("/", 1)[-1], module=module, inputs=inputs, outputs=outputs, idempotent=False, **fields
    )
    s.update(given)
    return s


def plan(flow, steps, *, params=(), results=(), **fields):
    """A Plan of `steps` with `(name, type, default)` params and `(name, type)` results."""
    return plans.plan(
        flow,
        steps,
        params=[{"name": n, "type": t, "default": d} for n, t, d in params],
        results=[{"name": n, "type": t} for n, t in results],
        file=FILE,
        search_path=["/srv/flows"],
        **fields,
    )


UNDO_DNS = {
    "action": {"module": "examples.foreman.proxy", "name": "dns_delete", "idempotent": True},
    "inputs": {"name": ref("a", "name")},
}


def create_host(prefix=""):
    """The design's create_host with an extension step and success / failure hooks."""
    p = prefix
    fqdn = fmt(param("name"), ".", param("domain"))
    steps = [
        step(
            f"{p}dhcp",
            name="dhcp_reserve",
            inputs={"subnet": param("subnet"), "mac": param("mac")},
            retry=3,
            backoff=2,
            undo=UNDO_DNS,
            outputs=["rec", [["ip", STR, True]]],
        ),
        step(
            f"{p}a",
            name="dns_create",
            data=[(f"{p}dhcp", "ip", "value")],
            undo=UNDO_DNS,
            inputs={"name": fqdn, "type": lit("A")},
        ),
        step(
            f"{p}ptr",
            name="dns_create",
            data=[(f"{p}dhcp", "ip", "name")],
            undo=UNDO_DNS,
            timeout=30,
            inputs={"value": fqdn, "type": lit("PTR")},
        ),
        step(
            f"{p}audit",
            "acme.audit",
            "write",
            after=[f"{p}a"],
            inputs={"line": fmt("created ", fqdn)},
            origin={"extension": "/srv/ext/audit.flow", "line": 2},
            on_error="skip",
        ),
        step(f"{p}log", "weft.stdlib_actions.std", "log", phase="finalize", data=[(f"{p}dhcp", "ip", "message")]),
    ]
    return steps


def create_host_plan():
    steps = create_host() + [
        step("notify", "acme.chat", "post", phase="success", inputs={"text": lit("done")}),
        step("alert", "acme.chat", "post", phase="failure", inputs={"text": lit('failed "badly" <now>')}),
    ]
    return plan(
        "create_host",
        steps,
        params=[("name", STR, None), ("mac", STR, None), ("subnet", STR, None), ("domain", STR, lit("example.com"))],
        results=[("ip", STR), ("fqdn", STR)],
        extensions=[{"file": "/srv/ext/audit.flow", "line": 1, "flow": "create_host"}],
    )


def bulk_plan():
    """A check, then an `each` whose body inlines create_host, then a report."""
    body = plan(
        "bulk_create.each",
        create_host("create_host/")[:3],
        params=[("h", ["rec", [["name", STR, True], ["mac", STR, True]]], None), ("subnet", STR, None)],
    )
    each = step(
        "each",
        data=[("check", "subnet", "subnet")],
        kind="each",
        action=None,
        each={"var": "h", "items": param("hosts"), "concurrency": 10, "plan": body},
    )
    steps = [
        step("check", name="subnet_check", inputs={"subnet": param("subnet")}),
        each,
        step("report", "weft.stdlib_actions.std", "log", after=["each"], inputs={"message": lit("all done")}),
    ]
    return plan("bulk_create", steps, params=[("hosts", ["list", STR], None), ("subnet", STR, None)])


def approval_plan():
    """A wait for a signal between two steps, with a `when` and a non-default error policy."""
    steps = [
        step("request", "acme.tickets", "open"),
        step(
            "approved",
            kind="wait",
            action=None,
            after=["request"],
            wait={"signal": "approved", "fields": ["rec", [["by", STR, True]]]},
            timeout=86400,
        ),
        step(
            "apply",
            "acme.tickets",
            "apply",
            data=[("approved", "by", "who")],
            when=["op", "!=", ref("approved", "by"), lit("")],
            on_error="rollback",
        ),
    ]
    return plan("approval", steps)


def generated_plan(groups=40, size=50):
    """`groups` inlined sub-flows of `size` chained steps between a start and a done step."""
    steps = [step("start")]
    for g in range(groups):
        prev = "start"
        for i in range(size):
            sid = f"g{g:03}/s{i:02}"
            steps.append(step(sid, data=[(prev, "out", "input")]))
            prev = sid
    steps.append(step("done", after=[f"g{g:03}/s{size - 1:02}" for g in range(groups)]))
    return plan("generated", steps)


def layered_plan(layers=10, width=40):
    """A flat flow too big to draw step by step: `layers` rows of `width` steps, each reading two
    steps of the row above (every fifth also one three rows up), an extension adding two
    audit steps per row, and a finalize step and hooks."""
    ext = {"extension": "/srv/ext/audit.flow", "line": 2}
    steps = []
    for row in range(layers):
        for col in range(width):
            data = []
            if row:
                data = [(f"r{row - 1}c{col}", "out", "input"), (f"r{row - 1}c{(col * 7 + 3) % width}", "out", "extra")]
            if row >= 3 and col % 5 == 0:
                data.append((f"r{row - 3}c{col}", "out", "early"))
            steps.append(step(f"r{row}c{col}", name="work", data=data))
        for n in range(2):
            steps.append(step(f"audit{row}_{n}", "acme.audit", "write", after=[f"r{row}c{n}"], origin=ext))
    steps += [
        step("cleanup", "weft.stdlib_actions.std", "log", phase="finalize", inputs={"message": lit("bye")}),
        step("notify", "acme.chat", "post", phase="success", inputs={"text": lit("done")}),
        step("alert", "acme.chat", "post", phase="failure", inputs={"text": lit("failed")}),
    ]
    return plan("layered", steps, extensions=[{"file": ext["extension"], "line": 1, "flow": "layered"}])


def chain_plan(size=3000):
    """One long chain of steps: the critical path is every step."""
    steps = [step("c0")]
    steps += [step(f"c{i}", name="work", data=[(f"c{i - 1}", "out", "input")]) for i in range(1, size)]
    return plan("chain", steps)
