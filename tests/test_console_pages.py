"""The console's pages as the server draws them (in process, no browser): sign-in, headers, escaping, forms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from weft.plan.types import STR, ListType, to_data
from weft.server import auth, console
from weft.server.app import Settings, create_app
from weft.server.catalog import Param
from weft.server.problems import PlainErrors

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OPERATOR, VIEWER = "o" * 20, "v" * 20
MARKUP = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
FLOW = """
flow typed(n: int, ratio: float = 0.5, on: bool, maybe: bool?, who: str, code: secret str, items: list[str]) {
    std.log(message: "${n} ${ratio} ${on} ${maybe} ${who} ${code} ${items}")
}
"""


@pytest.fixture(scope="module")
def web(tmp_path_factory, monkeypatch_module):
    folder = tmp_path_factory.mktemp("pages")
    (folder / "flows").mkdir()
    (folder / "flows" / "typed.flow").write_text(FLOW)
    monkeypatch_module.setenv("WEFT_PROXY_STATE", str(folder / "proxy" / "state.json"))
    monkeypatch_module.setenv("WEFT_PROXY_LATENCY", "0")
    tokens = auth.Tokens(OPERATOR, VIEWER, ())
    app = create_app(
        Settings(str(folder / "store"), flows=(str(EXAMPLES / "foreman"), str(folder / "flows")), tokens=tokens)
    )
    with TestClient(PlainErrors(app), base_url="http://127.0.0.1") as client:  # as `weft serve` wraps it
        yield client


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


@pytest.fixture(scope="module")
def signed_in(web):
    assert web.post("/api/v1/session", json={"token": OPERATOR}).status_code == 200
    return web


def test_pages_redirect_to_the_sign_in_page_which_only_sends_back_here(web):
    web.cookies.clear()
    answer = web.get("/runs?state=paused", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fruns%3Fstate%3Dpaused"
    tricks = ("/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\\evil.example")  # browsers drop \t \n
    cases = [("/runs/ABC", "/runs/ABC"), ("//evil.example/x", "/"), ("https://evil.example", "/")]
    for target, kept in cases + [(t, "/") for t in tricks]:
        page = web.get("/login", params={"next": target}).text
        assert f'data-next="{kept}"' in page


def test_pages_carry_a_policy_that_allows_no_inline_script(signed_in):
    answer = signed_in.get("/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text)  # every script is a file of this server
    assert " style=" not in answer.text and "<style" not in answer.text


def test_markup_from_a_run_is_escaped_on_every_page(signed_in):
    rid = signed_in.post(
        "/api/v1/runs",
        json={
            "flow": "create_host",
            "inputs": {"name": "h2", "mac": "52:54:00:00:00:02", "subnet": "10.0.0.0/24"},
            "label": MARKUP,
        },
        headers={"X-CSRF-Token": signed_in.cookies[auth.CSRF]},
    ).json()["id"]
    for path in ("/", "/runs", f"/runs/{rid}", f"/runs/{rid}?step=dhcp", "/runs?label=script"):
        page = signed_in.get(path).text
        assert MARKUP not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_a_post_by_cookie_without_the_forgery_token_is_refused(signed_in):
    answer = signed_in.post("/api/v1/runs/resume", json={"ids": ["nope"]})
    assert answer.status_code == 403 and "X-CSRF-Token" in answer.json()["detail"]


def test_unknown_runs_and_steps_are_said_on_the_page(signed_in):
    missing = signed_in.get("/runs/NOSUCHRUN")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "&#39;NOSUCHRUN&#39; is not a run id" in missing.text, missing.text  # (it said "Not found", as JSON)
    wrong = signed_in.get("/runs", params={"since": "yesterday"})
    assert wrong.status_code == 422 and "since takes a duration" in wrong.text, wrong.text  # ("Invalid input" before)
    rid = signed_in.post(  # a run of its own: the module's tests may run in other processes (xdist)
        "/api/v1/runs",
        json={"flow": "create_host", "inputs": {"name": "h3", "mac": "52:54:00:00:00:03", "subnet": "10.0.0.0/24"}},
        headers={"X-CSRF-Token": signed_in.cookies[auth.CSRF]},
    ).json()["id"]
    page = signed_in.get(f"/runs/{rid}?step=nosuchstep")
    assert page.status_code == 200 and 'class="problem"' in page.text and "nosuchstep" in page.text


def test_the_start_form_has_an_input_of_the_right_kind_per_parameter(signed_in):
    page = signed_in.get("/flows/typed").text
    found = re.findall(r'data-field="(\w+)" data-kind="(\w+)" data-empty="(\w+)"', page)
    assert {name: (kind, empty) for name, kind, empty in found} == {
        "n": ("int", "required"),
        "ratio": ("float", "omit"),
        "on": ("bool", "required"),
        "maybe": ("choice", "null"),
        "who": ("str", "required"),
        "code": ("secret", "required"),
        "items": ("json", "required"),
    }
    assert 'id="param-code"' in page and 'type="password"' in page


def test_record_types_give_one_input_per_field_and_other_types_one_json_input():
    rec = ["rec", [["name", ["str"], True], ["ip", ["str"], False], ["port", ["opt", ["int"]], True]]]
    assert [(f.name, f.kind, f.empty) for f in console.record_fields(rec)] == [
        ("name", "str", "required"),
        ("ip", "str", "omit"),
        ("port", "int", "null"),
    ]
    assert [(f.name, f.kind) for f in console.record_fields(["list", ["str"]])] == [("", "json")]
    assert console.record_fields(["none"]) == [] and console.record_fields(None) == []
    param = Param("hosts", "list[str]", to_data(ListType(STR)), "[]", False)
    assert [(f.name, f.kind, f.empty, f.default) for f in console.param_fields((param,))] == [
        ("hosts", "json", "omit", "[]")
    ]
