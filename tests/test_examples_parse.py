"""The example scenarios: every .flow parses cleanly, and the simulated services behave."""

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from weft.sdk.actions import ActionFailed, definition
from weft.compiler.diagnostics import Sink
from weft.compiler.parse import parse_module
from weft.sdk.testing import run_action

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FLOWS = sorted(EXAMPLES.rglob("*.flow"))

# The flows name their modules from the repository root (`examples.foreman.proxy`)
# and, for the extension, from its own folder (`weft_audit.audit`).
for folder in (ROOT, EXAMPLES / "extension"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from examples.bulk.make_inputs import make_inputs  # noqa: E402
from examples.foreman import proxy  # noqa: E402
from examples.katello import katello  # noqa: E402
from weft_audit import audit  # noqa: E402


def test_every_scenario_has_its_flow():
    names = {p.relative_to(EXAMPLES).as_posix() for p in FLOWS}
    assert {
        "foreman/host.flow",
        "katello/organization.flow",
        "bulk/hosts.flow",
        "extension/weft_audit/audit.flow",
    } <= names


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_flow_parses_without_diagnostics(path):
    sink = Sink()
    module = parse_module(path.read_text(encoding="utf-8"), str(path), sink)
    assert sink.sorted() == []
    assert module.items


@pytest.mark.parametrize(
    "path, extensions",
    [
        ("foreman/host.flow", []),
        ("foreman/host.flow", ["extension"]),
        ("katello/organization.flow", []),
        ("bulk/hosts.flow", []),
        ("bulk/hosts.flow", ["extension"]),
    ],
)
def test_flow_checks_clean_and_compiles(path, extensions):
    from weft.compiler import compile_paths

    result = compile_paths([str(EXAMPLES / path)], [str(EXAMPLES / e) for e in extensions])
    assert [f"{d.span.line}: {d.code} {d.message}" for d in result.diagnostics] == []
    assert result.plan()


@pytest.fixture(autouse=True)
def services(tmp_path, monkeypatch):
    """Each test gets fresh service state, no latency and no fail switch."""
    for prefix in ("WEFT_PROXY", "WEFT_KATELLO"):
        monkeypatch.setenv(f"{prefix}_STATE", str(tmp_path / prefix.lower() / "state.json"))
        monkeypatch.setenv(f"{prefix}_LATENCY", "0")
        monkeypatch.delenv(f"{prefix}_FAIL", raising=False)
    monkeypatch.setenv("WEFT_KATELLO_SYNC_SECONDS", "0")
    return tmp_path


# -- the Foreman proxy -----------------------------------------------------------------------

SUBNET = "10.0.0.0/24"
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"


def test_proxy_actions_are_registered_with_their_undos():
    assert definition(proxy.dhcp_reserve).undo == "dhcp_release"
    assert definition(proxy.dns_create).undo == "dns_delete"
    assert definition(proxy.dhcp_reserve).outputs.names() == ["ip", "subnet", "mac"]
    assert definition(proxy.dns_create).outputs.names() == ["name", "type", "value"]


def test_reserve_is_idempotent_per_mac_and_starts_at_ten():
    first = run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC1)
    again = run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC1.upper())
    other = run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC2)
    assert first == {"ip": "10.0.0.10", "subnet": SUBNET, "mac": MAC1}
    assert again["ip"] == "10.0.0.10"
    assert other["ip"] == "10.0.0.11"
    assert first.context.log_lines == [f"reserved 10.0.0.10 for {MAC1} in {SUBNET}"]


def test_release_frees_the_address():
    run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC1)
    run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC2)
    run_action(proxy.dhcp_release, subnet=SUBNET, mac=MAC1)
    run_action(proxy.dhcp_release, subnet=SUBNET, mac=MAC1)  # again: harmless
    assert run_action(proxy.dhcp_reserve, subnet=SUBNET, mac="52:54:00:00:00:03")["ip"] == "10.0.0.10"
    assert proxy.SERVICE.read()["leases"][SUBNET] == {MAC2: "10.0.0.11", "52:54:00:00:00:03": "10.0.0.10"}


def test_concurrent_reservations_get_distinct_addresses():
    macs = [f"52:54:00:00:01:{i:02x}" for i in range(24)]
    ips: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda m=m: ips.update({m: run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=m)["ip"]}))
        for m in macs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ips.values())) == len(macs)
    assert proxy.SERVICE.read()["leases"][SUBNET] == ips


def test_a_full_subnet_and_bad_input_fail_cleanly():
    small = "192.168.5.0/28"  # 16 addresses: .10 to .14 are handed out
    for i in range(5):
        run_action(proxy.dhcp_reserve, subnet=small, mac=f"52:54:00:00:02:{i:02x}")
    with pytest.raises(ActionFailed, match="no free address"):
        run_action(proxy.dhcp_reserve, subnet=small, mac="52:54:00:00:02:ff")
    with pytest.raises(ActionFailed, match="invalid subnet"):
        run_action(proxy.dhcp_reserve, subnet="10.0.0.0/33", mac=MAC1)
    with pytest.raises(ActionFailed, match="invalid MAC"):
        run_action(proxy.dhcp_reserve, subnet=SUBNET, mac="52:54:00")


def test_dns_create_is_idempotent_and_refuses_conflicts():
    rec = run_action(proxy.dns_create, name="web01.example.com", type="A", value="10.0.0.10")
    assert rec == {"name": "web01.example.com", "type": "A", "value": "10.0.0.10"}
    assert run_action(proxy.dns_create, name="web01.example.com", type="A", value="10.0.0.10") == rec
    with pytest.raises(ActionFailed, match="already exists with value 10.0.0.10"):
        run_action(proxy.dns_create, name="web01.example.com", type="A", value="10.0.0.99")
    run_action(proxy.dns_delete, name="web01.example.com", type="A")
    run_action(proxy.dns_delete, name="web01.example.com", type="A")
    assert run_action(proxy.dns_create, name="web01.example.com", type="A", value="10.0.0.99")["value"] == "10.0.0.99"
    with pytest.raises(ActionFailed, match="invalid PTR"):
        run_action(proxy.dns_create, name="web01", type="PTR", value="web01.example.com")
    with pytest.raises(ActionFailed, match="unsupported DNS record type"):
        run_action(proxy.dns_create, name="web01.example.com", type="MX", value="mail")


def test_fail_file_fails_one_matching_call_once():
    fail = proxy.SERVICE.fail_file()
    os.makedirs(os.path.dirname(fail), exist_ok=True)
    Path(fail).write_text("# one PTR failure\ndns_create:PTR\n")
    run_action(proxy.dns_create, name="web01.example.com", type="A", value="10.0.0.10")  # not a PTR: passes
    with pytest.raises(ActionFailed, match="simulated"):
        run_action(proxy.dns_create, name="10.0.0.10", type="PTR", value="web01.example.com")
    assert not os.path.exists(fail)  # used up
    assert run_action(proxy.dns_create, name="10.0.0.10", type="PTR", value="web01.example.com")["type"] == "PTR"
    assert proxy.SERVICE.read()["dns"]["PTR"] == {"10.0.0.10": "web01.example.com"}


def test_fail_file_lines_are_consumed_one_by_one():
    fail = proxy.SERVICE.fail_file()
    os.makedirs(os.path.dirname(fail), exist_ok=True)
    Path(fail).write_text(f"dhcp_reserve:{MAC2}\ndns_create\ndns_create\n")
    run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC1)
    with pytest.raises(ActionFailed):
        run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC2)
    assert run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC2)["ip"] == "10.0.0.11"
    for _ in range(2):
        with pytest.raises(ActionFailed):
            run_action(proxy.dns_create, name="a.example.com", type="A", value="10.0.0.10")
    assert run_action(proxy.dns_create, name="a.example.com", type="A", value="10.0.0.10")
    assert not os.path.exists(fail)


def test_fail_env_fails_while_set(monkeypatch):
    monkeypatch.setenv("WEFT_PROXY_FAIL", "dns_create:PTR")
    for _ in range(2):
        with pytest.raises(ActionFailed, match="WEFT_PROXY_FAIL"):
            run_action(proxy.dns_create, name="10.0.0.10", type="PTR", value="web01.example.com")
    assert run_action(proxy.dns_create, name="web01.example.com", type="A", value="10.0.0.10")
    monkeypatch.delenv("WEFT_PROXY_FAIL")
    assert run_action(proxy.dns_create, name="10.0.0.10", type="PTR", value="web01.example.com")


def test_a_failed_call_leaves_the_state_unchanged():
    run_action(proxy.dhcp_reserve, subnet=SUBNET, mac=MAC1)
    before = Path(proxy.SERVICE.state_path()).read_text()
    with pytest.raises(ActionFailed):
        run_action(proxy.dns_create, name="x.example.com", type="A", value="not-an-ip")
    assert Path(proxy.SERVICE.state_path()).read_text() == before


# -- the Katello server -------------------------------------------------------------------------

KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n"


def _organization_setup(upload_manifest: bool) -> dict:
    """The steps of organization.flow, called in one valid order."""
    org = run_action(katello.create_organization, name="ACME", label="acme")
    product = run_action(katello.create_product, organization_id=org["id"], name="CentOS Stream 9")
    gpg = run_action(katello.create_gpg_key, organization_id=org["id"], name="acme-signing", content=KEY)
    subs = None
    if upload_manifest:
        run_action(katello.upload_manifest, organization_id=org["id"], allocation="acme-satellite")
        subs = run_action(katello.import_subscriptions, organization_id=org["id"])
    dev = run_action(katello.create_lifecycle_environment, organization_id=org["id"], name="Dev", prior="Library")
    run_action(katello.create_lifecycle_environment, organization_id=org["id"], name="Prod", prior="Dev")
    repos = [
        run_action(
            katello.create_repository,
            product_id=product["id"],
            name=name,
            url=f"https://mirror.example.com/{name}",
            content_type="yum",
            gpg_key_id=gpg["id"],
        )
        for name in ("BaseOS", "AppStream")
    ]
    sync = run_action(katello.sync_repository, repository_id=repos[0]["id"])
    view = run_action(
        katello.create_content_view,
        organization_id=org["id"],
        name="acme-base",
        repository_ids=[r["id"] for r in repos],
    )
    version = run_action(katello.publish_content_view, content_view_id=view["id"], description="first")
    promotion = run_action(katello.promote_content_view_version, version_id=version["id"], environment_id=dev["id"])
    key = run_action(
        katello.create_activation_key,
        organization_id=org["id"],
        name="acme-dev",
        environment_id=dev["id"],
        content_view_id=view["id"],
        auto_attach=upload_manifest,
    )
    return locals()


def test_katello_organization_setup_end_to_end():
    s = _organization_setup(upload_manifest=True)
    assert s["org"]["label"] == "acme"
    assert s["subs"]["count"] > 0
    assert s["sync"]["packages"] > 0 and s["sync"].context.progress_reports[-1] == 1.0
    assert s["version"]["version"] == "1.0"
    assert "AppStream" in s["version"].context.log_lines[0]  # never synced: published empty
    assert s["promotion"]["environment"] == "Dev"
    assert s["key"]["name"] == "acme-dev"


def test_katello_creates_are_idempotent_and_publish_is_not():
    s = _organization_setup(upload_manifest=False)
    assert run_action(katello.create_organization, name="ACME", label="acme")["id"] == s["org"]["id"]
    again = run_action(katello.create_product, organization_id=s["org"]["id"], name="CentOS Stream 9")
    assert again["id"] == s["product"]["id"]
    second = run_action(katello.publish_content_view, content_view_id=s["view"]["id"], description="second")
    assert second["version"] == "2.0"


def test_katello_refuses_steps_out_of_order():
    org = run_action(katello.create_organization, name="ACME", label="acme")
    with pytest.raises(ActionFailed, match="no environment 'Dev'"):
        run_action(katello.create_lifecycle_environment, organization_id=org["id"], name="Prod", prior="Dev")
    with pytest.raises(ActionFailed, match="has no manifest"):
        run_action(katello.import_subscriptions, organization_id=org["id"])
    dev = run_action(katello.create_lifecycle_environment, organization_id=org["id"], name="Dev", prior="Library")
    view = run_action(katello.create_content_view, organization_id=org["id"], name="v", repository_ids=[])
    with pytest.raises(ActionFailed, match="publish and promote it first"):
        run_action(
            katello.create_activation_key,
            organization_id=org["id"],
            name="k",
            environment_id=dev["id"],
            content_view_id=view["id"],
            auto_attach=False,
        )


def test_katello_delete_organization_removes_everything_in_it():
    _organization_setup(upload_manifest=True)
    run_action(katello.delete_organization, label="acme")
    run_action(katello.delete_organization, label="acme")
    state = katello.SERVICE.read()
    tables = {k: v for k, v in state.items() if k != "next_id"}
    assert tables and all(rows == {} for rows in tables.values())


def test_katello_fail_switch():
    Path(katello.SERVICE.folder()).mkdir(parents=True, exist_ok=True)
    Path(katello.SERVICE.fail_file()).write_text("create_organization:acme\n")
    with pytest.raises(ActionFailed, match="simulated"):
        run_action(katello.create_organization, name="ACME", label="acme")
    assert run_action(katello.create_organization, name="ACME", label="acme")["label"] == "acme"


def test_katello_sync_fails_by_repository_name():
    s = _organization_setup(upload_manifest=False)
    Path(katello.SERVICE.fail_file()).write_text("sync_repository:AppStream\n")
    base, app = (r["id"] for r in s["repos"])
    assert run_action(katello.sync_repository, repository_id=base)["packages"] > 0
    with pytest.raises(ActionFailed, match="sync_repository:AppStream"):
        run_action(katello.sync_repository, repository_id=app)
    assert run_action(katello.sync_repository, repository_id=app)["repository_id"] == app


# -- bulk inputs and the audit extension ----------------------------------------------------------


def test_bulk_inputs_fit_the_flow_parameters():
    data = json.loads((EXAMPLES / "bulk" / "inputs.json").read_text())
    assert set(data) == {"hosts", "subnet"}
    assert len(data["hosts"]) == 20
    assert all(set(h) == {"name", "mac"} for h in data["hosts"])
    assert len({h["mac"] for h in data["hosts"]}) == len({h["name"] for h in data["hosts"]}) == 20
    generated = make_inputs(100)
    assert len({h["mac"] for h in generated["hosts"]}) == 100
    assert make_inputs(20) == data


def test_audit_write_appends_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_action(audit.write, line="created web01.example.com")
    run_action(audit.write, line="created web02.example.com")
    lines = (tmp_path / "log" / "actions.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["created web01.example.com", "created web02.example.com"]


def test_audit_extension_entry_point_names_the_flow_file():
    import weft_audit

    assert Path(weft_audit.EXTENSION) == EXAMPLES / "extension" / "weft_audit" / "audit.flow"
    pyproject = (EXAMPLES / "extension" / "pyproject.toml").read_text()
    assert 'audit = "weft_audit:EXTENSION"' in pyproject and 'audit = "weft_audit.audit"' in pyproject
