"""The scenarios end to end, through `weft` processes on real stores: Foreman host creation,
Katello organization setup, bulk host creation, the audit extension (from a folder and from
entry points), and on success / on failure hooks.

Every test runs in its own temporary folder, which holds the store, the simulated services'
state (through their `WEFT_PROXY_STATE` / `WEFT_KATELLO_STATE` variables) and `log/`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Weft

from weft.runtime.stores.lmdb.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HOST = str(EXAMPLES / "foreman" / "host.flow")
ORGANIZATION = str(EXAMPLES / "katello" / "organization.flow")
BULK = str(EXAMPLES / "bulk" / "hosts.flow")
EXTENSION = str(EXAMPLES / "extension")
AUDIT = str(EXAMPLES / "extension" / "weft_audit" / "audit.flow")
HOOKS = str(Path(__file__).resolve().parent / "runtime_support" / "hooks.flow")
SUBNET = "10.0.0.0/24"


class Scenario(Weft):
    """`weft` commands run as processes in a temporary folder, and the state they leave there."""

    timeout = 120.0

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.env = {k: v for k, v in os.environ.items() if not k.endswith("_FAIL")}
        self.env.update(
            WEFT_STORE=self.store,
            WEFT_PROXY_STATE=str(folder / "proxy" / "state.json"),
            WEFT_KATELLO_STATE=str(folder / "katello" / "state.json"),
            WEFT_PROXY_LATENCY="0.1",  # 5-15 ms a call: enough for concurrent calls to overlap
            WEFT_KATELLO_LATENCY="0.2",
            WEFT_KATELLO_SYNC_SECONDS="2",  # scaled by the latency: 0.4 s a sync
        )

    def fail_once(self, service: str, entry: str) -> None:
        """Make the next call matching `entry` fail (the services' fail file)."""
        folder = self.folder / service
        folder.mkdir(exist_ok=True)
        with open(folder / "fail", "a", encoding="utf-8") as f:
            f.write(entry + "\n")

    def state(self, service: str) -> dict:
        return json.loads((self.folder / service / "state.json").read_text())


@pytest.fixture
def weft(tmp_path) -> Scenario:
    return Scenario(tmp_path)


def steps(shown: dict) -> dict[str, dict]:
    return {s["id"]: s for s in shown["steps"]}


def overlap(*recs: dict) -> bool:
    """Every step ran while every other one was running: all started before any ended."""
    return max(r["started"] for r in recs) < min(r["ended"] for r in recs)


def host_inputs(name: str, n: int) -> list[str]:
    return ["-i", f"name={name}", "-i", f"mac=52:54:00:aa:00:{n:02x}", "-i", f"subnet={SUBNET}"]


# -- Foreman: create a host ------------------------------------------------------------------------


def test_foreman_host_pauses_on_a_dns_failure_and_resume_completes_it(weft):
    weft.fail_once("proxy", "dns_create:PTR")
    rid, done = weft.run(HOST, *host_inputs("db01", 1))
    assert done.returncode == 3 and f"run {rid} paused: step ptr failed" in done.stdout
    s = steps(weft.show(rid))
    assert {k: v["state"] for k, v in s.items()} == {
        "dhcp": "succeeded",
        "a": "succeeded",
        "ptr": "failed",
        "log": "pending",
    }
    ip = s["dhcp"]["outputs"]["ip"]
    assert s["a"]["inputs"]["value"] == ip and s["ptr"]["inputs"]["name"] == ip  # both fed by the lease
    assert s["a"]["started"] >= s["dhcp"]["ended"] and s["ptr"]["started"] >= s["dhcp"]["ended"]
    assert overlap(s["a"], s["ptr"])  # A and PTR concurrently
    assert "PTR" not in weft.state("proxy")["dns"]

    done = weft("resume", rid)
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1].removeprefix("result: ")) == {
        "ip": ip,
        "fqdn": "db01.example.com",
    }
    s = steps(weft.show(rid))
    assert [s[k]["attempts"] for k in ("dhcp", "a", "ptr", "log")] == [1, 1, 2, 1]
    proxy = weft.state("proxy")
    assert proxy["leases"][SUBNET] == {"52:54:00:aa:00:01": ip}
    assert proxy["dns"] == {"A": {"db01.example.com": ip}, "PTR": {ip: "db01.example.com"}}


def test_foreman_rollback_releases_the_lease_and_deletes_the_records(weft):
    kept, _ = weft.run(HOST, *host_inputs("db01", 1))
    rid, done = weft.run(HOST, *host_inputs("db02", 2))
    assert done.returncode == 0
    ip = steps(weft.show(rid))["dhcp"]["outputs"]["ip"]
    assert weft.state("proxy")["dns"]["A"]["db02.example.com"] == ip

    done = weft("rollback", rid)
    assert done.returncode == 0 and f"run {rid} rolled back" in done.stdout
    shown = weft.show(rid)
    assert shown["state"] == "failed" and shown["rolled_back"]
    assert {k: v["state"] for k, v in steps(shown).items()} == {
        "dhcp": "undone",
        "a": "undone",
        "ptr": "undone",
        "log": "succeeded",
    }
    undone = [e["step"] for e in shown["history"] if e.get("state") == "undone"]
    assert undone[-1] == "dhcp" and sorted(undone[:2]) == ["a", "ptr"]  # reverse dependency order
    proxy = weft.state("proxy")
    kept_ip = steps(weft.show(kept))["dhcp"]["outputs"]["ip"]
    assert proxy["leases"][SUBNET] == {"52:54:00:aa:00:01": kept_ip}
    assert proxy["dns"] == {"A": {"db01.example.com": kept_ip}, "PTR": {kept_ip: "db01.example.com"}}


# -- Katello: set up an organization ------------------------------------------------------------------


def test_katello_organization_end_to_end_with_polled_syncs_and_concurrent_steps(weft):
    rid, done = weft.run(ORGANIZATION, "-i", "name=ACME", "-i", "label=acme")
    assert done.returncode == 0
    shown = weft.show(rid)
    assert shown["result"] == {
        "organization_id": 1,
        "content_view_id": shown["result"]["content_view_id"],
        "version": "1.0",
        "activation_key": "acme-dev",
    }
    s = steps(shown)
    assert s["manifest"]["state"] == s["subscriptions"]["state"] == "skipped"  # upload_manifest is false
    assert s["log_2"]["phase"] == "failure" and s["log_2"]["state"] == "pending"
    assert overlap(s["os_product"], s["tools_product"], s["gpg"], s["dev"])
    assert overlap(s["sync_baseos"], s["sync_appstream"], s["sync_tools"])
    for sid in ("sync_baseos", "sync_appstream", "sync_tools"):  # polled: suspended between looks at the task
        assert any(e.get("step") == sid and e.get("state") == "suspended" for e in shown["history"]), sid
    assert s["publish"]["started"] >= max(s[k]["ended"] for k in ("sync_baseos", "sync_appstream", "sync_tools"))
    state = weft.state("katello")
    assert all(r["packages"] for r in state["repositories"].values())
    (version,) = state["versions"].values()
    dev = next(e for e in state["environments"].values() if e["name"] == "Dev")
    assert version["version"] == "1.0" and dev["id"] in version["environment_ids"]
    assert [k["name"] for k in state["activation_keys"].values()] == ["acme-dev"]


def test_katello_rollback_runs_the_on_failure_hook_and_deletes_the_organization(weft):
    weft.fail_once("katello", "publish_content_view")
    rid, done = weft.run(ORGANIZATION, "-i", "name=Umbrella", "-i", "label=umbrella")
    assert done.returncode == 3 and "step publish failed" in done.stdout
    assert steps(weft.show(rid))["log_2"]["state"] == "pending"  # paused is not an ending: no hook yet
    done = weft("rollback", rid, "--force")
    assert done.returncode == 0 and "setting up organization Umbrella failed" in done.stdout
    s = steps(weft.show(rid))
    assert s["log_2"]["phase"] == "failure" and s["log_2"]["state"] == "succeeded"
    assert s["org"]["state"] == s["view"]["state"] == "undone"
    assert weft.state("katello")["organizations"] == {}


# -- Bulk: 100 hosts, one failing ---------------------------------------------------------------------


def test_bulk_resume_finishes_only_the_failed_host(weft):
    subprocess.run(
        [sys.executable, str(EXAMPLES / "bulk" / "make_inputs.py"), "-n", "100", "-o", "hosts.json"],
        cwd=weft.folder,
        check=True,
        capture_output=True,
    )
    weft.fail_once("proxy", "dns_create:web042.example.com")
    rid, done = weft.run(BULK, "--inputs", "hosts.json", "--extensions", EXTENSION)
    assert done.returncode == 3 and "1 of 100 sub-runs did not succeed: Create host web042" in done.stdout
    subs = steps(weft.show(rid))["each"]["sub_runs"]
    assert [s["state"] for s in subs].count("succeeded") == 99 and subs[41]["state"] == "paused"
    before = _sub_runs(weft, rid)
    assert len(_audit_lines(weft)) in (99, 100)  # web042's audit waits for its A record, the PTR one may fail

    done = weft("resume", rid)
    assert done.returncode == 0 and done.stdout.count("item ") == 1 and "item 42 of 100" in done.stdout
    after = _sub_runs(weft, rid)
    assert after.keys() == before.keys()  # no sub-run made again
    for sub_id, (run, recs) in after.items():
        if run["label"] == "Create host web042":
            assert run["state"] == "succeeded"
            assert sorted(r["attempts"] for r in recs.values()) == [1, 1, 1, 1, 2]  # its failed DNS step again
        else:
            assert (run, recs) == before[sub_id]  # untouched: same records, every step attempted once
            assert {r["attempts"] for r in recs.values()} == {1}
    lines = _audit_lines(weft)
    assert sorted(lines) == [f"created web{i:03d}.example.com" for i in range(1, 101)]  # one audit per host
    proxy = weft.state("proxy")
    assert len(proxy["leases"][SUBNET]) == len(proxy["dns"]["A"]) == len(proxy["dns"]["PTR"]) == 100


def _sub_runs(weft: Scenario, run_id: str) -> dict[str, tuple[dict, dict]]:
    with Store(str(weft.folder / "store"), create=False) as store, store.read() as t:
        return {rid: (t.run(rid), t.steps(rid)) for _, rid in t.children(run_id, "each")}


def _audit_lines(weft: Scenario) -> list[str]:
    path = weft.folder / "log" / "actions.log"
    return [line.split(" ", 2)[2] for line in path.read_text().splitlines()] if path.exists() else []


# -- The audit extension ------------------------------------------------------------------------------


def _site(folder: Path, name: str, entry_points: str) -> str:
    """A folder of installed-package metadata, as pip leaves in site-packages, declaring `entry_points`."""
    info = folder / name / f"{name}-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return str(folder / name)


def test_the_audit_extension_from_a_folder(weft):
    done = weft("check", HOST, "--extensions", EXTENSION)
    assert done.returncode == 0 and f"create_host: extended by {AUDIT}:7" in done.stdout.splitlines()
    rid, done = weft.run(HOST, "--extensions", EXTENSION, *host_inputs("db03", 3))
    assert done.returncode == 0
    audit = steps(weft.show(rid))["audit"]
    assert audit["state"] == "succeeded" and audit["origin"] == {"extension": AUDIT, "line": 8}
    assert f"  audit  {AUDIT}:8" in weft("show", rid).stdout.splitlines()
    assert _audit_lines(weft) == ["created db03.example.com"]


def test_the_audit_extension_from_entry_points(weft):
    site = _site(
        weft.folder,
        "weft_audit_test",
        "[weft.extensions]\naudit = weft_audit:EXTENSION\n\n[weft.actions]\naudit = weft_audit.audit\n",
    )
    plain = weft("plan", HOST).stdout
    assert "audit" not in plain
    weft.env["PYTHONPATH"] = os.pathsep.join([site, EXTENSION])
    done = weft("check", HOST)
    assert done.returncode == 0 and f"create_host: extended by {AUDIT}:7" in done.stdout.splitlines()
    plan = weft("plan", HOST).stdout
    assert f"extension: {AUDIT}:7" in plan
    assert re.search(rf"^  \* audit +audit\.write +\[after a; from extension {re.escape(AUDIT)}\]$", plan, re.M), plan
    (weft.folder / "in.json").write_text(
        json.dumps({"subnet": SUBNET, "hosts": [{"name": f"app{i}", "mac": f"52:54:00:bb:00:0{i}"} for i in (1, 2, 3)]})
    )
    _, done = weft.run(BULK, "--inputs", "in.json")
    assert done.returncode == 0
    assert sorted(_audit_lines(weft)) == [f"created app{i}.example.com" for i in (1, 2, 3)]

    # The package extends create_host only; other flows are checked and run as before.
    assert weft("check", ORGANIZATION).stdout == "checked 1 file: no problems\n"
    # The `weft.actions` entry point's name is an alias every flow sees without a `use` line.
    (weft.folder / "note.flow").write_text("flow note(line: str) {\n    audit.write(line: line)\n}\n")
    _, done = weft.run("note.flow", "-i", "line=noted by hand")
    assert done.returncode == 0 and _audit_lines(weft)[-1] == "noted by hand"


def test_broken_action_entry_points_are_reported(weft):
    site = _site(weft.folder, "weft_broken", "[weft.actions]\nbroken = no_such_module_here\nstd = weft_audit\n")
    weft.env["PYTHONPATH"] = os.pathsep.join([site, EXTENSION])
    done = weft("check", HOST)
    assert done.returncode == 1
    assert (
        "<entry point broken = no_such_module_here>:1:1: error[E121]: action entry point 'broken' failed to load"
        in done.stdout
    )
    assert "action entry point 'std' is not a usable alias" in done.stdout


def test_an_extension_with_a_type_error_is_reported_at_its_own_line(weft):
    ext = weft.folder / "ext"
    ext.mkdir()
    (ext / "bad.flow").write_text(
        "use weft_audit.audit as audit\n\nextend create_host {\n    audit = audit.write(line: dhcp.ip + 1) after a\n}\n"
    )
    done = weft("check", HOST, "--extensions", "ext")
    assert done.returncode == 1
    assert re.search(r"^ext/bad\.flow:4:31: error\[E107\]: cannot apply '\+' to str and int$", done.stdout, re.M)
    done = weft("run", HOST, "--extensions", "ext", *host_inputs("db04", 4))
    assert done.returncode == 2 and "ext/bad.flow:4:31: error[E107]" in done.stderr
    assert not (weft.folder / "store").exists()


# -- on success / on failure hooks ----------------------------------------------------------------------


def _effects(weft: Scenario) -> list[str]:
    return [re.sub(r"^[0-9A-Z]{26} ", "", line) for line in (weft.folder / "effects").read_text().splitlines()]


def _hooks(shown: dict) -> dict[str, tuple[str, str]]:
    return {s["id"]: (s["phase"], s["state"]) for s in shown["steps"] if s["phase"] in ("success", "failure")}


def test_on_success_runs_after_a_run_succeeds_even_after_a_pause(weft):
    marker = weft.folder / "marker"
    marker.write_text("x")
    rid, done = weft.run(HOOKS, "--flow", "hooked", "-i", "path=effects", "-i", f"marker={marker}")
    assert done.returncode == 3
    assert _hooks(weft.show(rid)) == {"cheer": ("success", "pending"), "alarm": ("failure", "pending")}
    marker.unlink()
    assert weft("resume", rid).returncode == 0
    assert _hooks(weft.show(rid)) == {"cheer": ("success", "succeeded"), "alarm": ("failure", "pending")}
    assert _effects(weft) == ["first 1", "success-first 1"]


def test_on_failure_runs_after_a_run_fails_and_a_failing_hook_keeps_the_outcome(weft):
    rid, done = weft.run(HOOKS, "--flow", "doomed", "-i", "path=effects")
    assert done.returncode == 1 and f"run {rid} failed: step bad failed: ActionFailed: doomed" in done.stdout
    shown = weft.show(rid)
    assert shown["state"] == "failed"
    assert _hooks(shown) == {
        "cheer": ("success", "skipped"),
        "alarm": ("failure", "succeeded"),
        "broken": ("failure", "failed"),
    }
    assert _effects(weft) == ["first 1", "failure 1"]


def test_on_failure_runs_after_a_rollback_and_not_after_a_cancel(weft):
    marker = weft.folder / "marker"
    marker.write_text("x")
    args = ("--flow", "hooked", "-i", "path=effects", "-i", f"marker={marker}")
    rid, _ = weft.run(HOOKS, *args)
    assert weft("rollback", rid).returncode == 0
    assert _hooks(weft.show(rid)) == {"cheer": ("success", "skipped"), "alarm": ("failure", "succeeded")}
    assert _effects(weft) == ["first 1", "undo first", "failure-first 1"]
    rid, _ = weft.run(HOOKS, *args)
    assert weft("cancel", rid).returncode == 0
    assert _hooks(weft.show(rid)) == {"cheer": ("success", "cancelled"), "alarm": ("failure", "cancelled")}
    assert len(_effects(weft)) == 4
