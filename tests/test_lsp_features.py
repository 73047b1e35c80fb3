"""`weft lsp` features over stdio: hover, go to definition (into an imported
.flow file and into a Python action module), document symbols, completion,
and quick fixes for "did you mean" diagnostics."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import LanguageClient
from test_lsp import LIB, ROOT, SERVER, at, begin, open_doc, publication, write

pytestmark = pytest.mark.asyncio

HOST = """\
use examples.foreman.proxy as proxy
import "./lib.flow"

flow create_host(name: str, mac: str, subnet: str = "10.0.0.0/24") -> (ip: str, fqdn: str) {
    let fqdn = "${name}.example.com"
    dhcp = proxy.dhcp_reserve(subnet: subnet, mac: mac)
    dns = make_dns(fqdn: fqdn, ip: dhcp.ip)
    finalize {
        std.log(message: "host ${fqdn} is ready at ${dhcp.ip}")
    }
    return (ip: dhcp.ip, fqdn: dns.fqdn)
}
"""

TYPOS = """\
use examples.foreman.proxy as proxy

flow create_host(name: str, mac: str, subnet: str) -> (ip: str) {
    dhcp = proxy.dhcp_reserve(subnet: subnet, mac: mac)
    a = proxy.dns_create(nme: name, type: "A", value: dhcp.ipp)
    prxy.dns_delete(name: name, type: "A") after a
    return (ip: dchp.ip)
}
"""


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    await begin(lsp_client)
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def host(tmp_path: Path) -> str:
    write(tmp_path, "lib.flow", LIB)
    return write(tmp_path, "host.flow", HOST)


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


async def hover_text(client: LanguageClient, uri: str, pos: types.Position) -> str:
    found = await client.text_document_hover_async(types.HoverParams(doc(uri), pos))
    return found.contents.value


async def test_hover(client: LanguageClient, host: str):
    open_doc(client, host, HOST)
    action = await hover_text(client, host, at(HOST, "dhcp_reserve", 3))
    assert action.startswith(
        "```weft\nproxy.dhcp_reserve(subnet: str, mac: str) -> (ip: str, subnet: str, mac: str)\n```"
    )
    assert "Reserve the next free address of `subnet` for `mac`" in action
    assert "`examples.foreman.proxy` · idempotent" in action

    step = await hover_text(client, host, at(HOST, "dhcp.ip)", 1))
    assert step.startswith("```weft\nstep dhcp: (ip: str, subnet: str, mac: str)\n```")
    assert await hover_text(client, host, at(HOST, "dhcp.ip)", 6)) == "```weft\ndhcp.ip: str\n```"
    flow = await hover_text(client, host, at(HOST, "make_dns"))
    assert flow == "```weft\nflow make_dns(fqdn: str, ip: str) -> (fqdn: str)\n```"
    assert await hover_text(client, host, at(HOST, "fqdn, ip:", 2)) == "```weft\nlet fqdn: str\n```"
    assert await hover_text(client, host, at(HOST, "subnet, mac", 1)) == "```weft\nparam subnet: str\n```"
    own = await hover_text(client, host, at(HOST, "create_host"))
    assert own == (
        '```weft\nflow create_host(name: str, mac: str, subnet: str = "10.0.0.0/24") -> (ip: str, fqdn: str)\n```'
    )
    argument = await hover_text(client, host, at(HOST, "mac: mac)"))
    assert argument == "```weft\n(argument) mac: str\n```\n\nof `proxy.dhcp_reserve`"

    found = await client.text_document_hover_async(types.HoverParams(doc(host), at(HOST, "dhcp.ip)", 2)))
    start = at(HOST, "dhcp.ip)")
    assert found.range == types.Range(start, types.Position(start.line, start.character + 4))


async def definition(client: LanguageClient, uri: str, pos: types.Position) -> types.Location:
    return await client.text_document_definition_async(types.DefinitionParams(doc(uri), pos))


def span(uri: str, pos: types.Position, length: int) -> types.Location:
    return types.Location(uri, types.Range(pos, types.Position(pos.line, pos.character + length)))


async def test_definition(client: LanguageClient, host: str):
    open_doc(client, host, HOST)
    assert await definition(client, host, at(HOST, "dhcp.ip)")) == span(host, at(HOST, "dhcp ="), 4)
    assert await definition(client, host, at(HOST, "fqdn, ip:")) == span(host, at(HOST, "fqdn ="), 4)
    assert await definition(client, host, at(HOST, "name}.example", 1)) == span(host, at(HOST, "name: str"), 4)
    assert await definition(client, host, at(HOST, "subnet, mac")) == span(host, at(HOST, "subnet: str"), 6)

    lib = host.replace("host.flow", "lib.flow")
    assert await definition(client, host, at(HOST, "make_dns")) == span(lib, at(LIB, "make_dns"), 8)
    assert await definition(client, host, at(HOST, "fqdn: fqdn, ip")) == span(lib, at(LIB, "fqdn: str"), 4)
    assert await definition(client, host, at(HOST, '"./lib.flow"')) == span(lib, types.Position(0, 0), 0)

    proxy = ROOT / "examples" / "foreman" / "proxy.py"
    line = proxy.read_text().split("\n").index("def dhcp_reserve(subnet: str, mac: str, ctx: Context) -> Lease:")
    found = await definition(client, host, at(HOST, "dhcp_reserve"))
    assert found == span(from_fs_path(str(proxy)), types.Position(line, 0), 0)


async def test_document_symbols(client: LanguageClient, host: str):
    open_doc(client, host, HOST)
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(doc(host)))

    def tree(items) -> list:
        return [(s.name, s.kind, s.detail, tree(s.children or [])) for s in items]

    assert tree(symbols) == [
        (
            "create_host",
            types.SymbolKind.Function,
            'flow create_host(name: str, mac: str, subnet: str = "10.0.0.0/24") -> (ip: str, fqdn: str)',
            [
                ("fqdn", types.SymbolKind.Variable, "str", []),
                ("dhcp", types.SymbolKind.Event, "proxy.dhcp_reserve", []),
                ("dns", types.SymbolKind.Event, "make_dns", []),
                ("finalize", types.SymbolKind.Namespace, None, [("std.log", types.SymbolKind.Event, "std.log", [])]),
            ],
        )
    ]
    flow = symbols[0]
    assert flow.selection_range == types.Range(at(HOST, "create_host"), at(HOST, "create_host", 11))
    assert flow.range.start == at(HOST, "flow create_host") and flow.range.end == types.Position(11, 1)


async def complete(client: LanguageClient, uri: str, typed: str) -> list[types.CompletionItem]:
    """Type `typed` on a new line before `finalize` and ask for completion at its end."""
    text = HOST.replace("    finalize {", f"    {typed}\n    finalize {{")
    whole = types.TextDocumentContentChangeWholeDocument(text=text)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(uri=uri, version=2), [whole])
    )
    pos = at(text, typed, len(typed))
    found = await client.text_document_completion_async(types.CompletionParams(doc(uri), pos))
    return found.items


async def test_completion(client: LanguageClient, host: str):
    open_doc(client, host, HOST)

    def labels(items: list[types.CompletionItem]) -> set[str]:
        return {i.label for i in items}

    proxy = await complete(client, host, "x = proxy.")
    assert labels(proxy) == {"dhcp_reserve", "dhcp_release", "dns_create", "dns_delete"}
    reserve = next(i for i in proxy if i.label == "dhcp_reserve")
    assert reserve.detail == "dhcp_reserve(subnet: str, mac: str) -> (ip: str, subnet: str, mac: str)"
    assert {"log", "echo", "sleep", "fail", "exec", "file", "http"} <= labels(await complete(client, host, "std."))
    assert labels(await complete(client, host, "std.file.ap")) == {"append", "write"}

    args = await complete(client, host, "x = proxy.dns_create(name: fqdn, ")
    assert [(i.label, i.detail, i.insert_text) for i in args] == [
        ("type", "str", "type: "),
        ("value", "str", "value: "),
    ]
    assert labels(await complete(client, host, "x = make_dns(")) == {"fqdn", "ip"}
    assert labels(await complete(client, host, "return (ip: dhcp.ip, ")) == {"fqdn"}

    fields = await complete(client, host, 'std.log(message: "${dhcp.')
    assert [(i.label, i.detail) for i in fields] == [("ip", "str"), ("subnet", "str"), ("mac", "str")]
    assert {"dhcp", "dns", "fqdn", "name", "mac", "subnet", "proxy", "std", "make_dns"} <= labels(
        await complete(client, host, "x = std.echo(value: ")
    )


def apply(text: str, edits: list[types.TextEdit]) -> str:
    """Apply edits (one-line, ASCII) from the last to the first."""
    lines = text.split("\n")
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        line = lines[e.range.start.line]
        lines[e.range.start.line] = line[: e.range.start.character] + e.new_text + line[e.range.end.character :]
    return "\n".join(lines)


async def test_quick_fixes_apply_the_did_you_mean(client: LanguageClient, tmp_path: Path):
    uri = write(tmp_path, "host.flow", TYPOS)
    open_doc(client, uri, TYPOS)
    diags = await publication(client, uri, 0)
    everything = types.Range(types.Position(0, 0), types.Position(len(TYPOS.split("\n")), 0))
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(doc(uri), everything, types.CodeActionContext(diagnostics=diags))
    )
    assert [(a.title, a.kind, a.diagnostics[0].code) for a in actions] == [
        ("Change 'nme' to 'name'", types.CodeActionKind.QuickFix, "E105"),
        ("Change 'ipp' to 'ip'", types.CodeActionKind.QuickFix, "E108"),
        ("Change 'prxy' to 'proxy'", types.CodeActionKind.QuickFix, "E104"),
        ("Change 'dchp' to 'dhcp'", types.CodeActionKind.QuickFix, "E101"),
    ]
    fixed = apply(TYPOS, [e for a in actions for e in a.edit.changes[uri]])
    assert fixed == (
        TYPOS.replace("nme:", "name:").replace("dhcp.ipp", "dhcp.ip").replace("prxy.", "proxy.").replace("dchp", "dhcp")
    )
    mark = len(client.diagnostics.log)
    whole = types.TextDocumentContentChangeWholeDocument(text=fixed)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(uri=uri, version=2), [whole])
    )
    assert await publication(client, uri, mark) == []


ROUTED = """\
use lsp_routed as r

flow f(subnet: str) {
    r.reserve(subnet: subnet) queue "proxy-${subnet}"
}
"""


async def test_hover_on_an_action_names_its_default_queue_and_the_queue_clause_is_checked(
    client: LanguageClient, tmp_path: Path
):
    write(
        tmp_path,
        "lsp_routed.py",
        'from weft import action\n\n\n@action(queue="proxy")\ndef reserve(subnet: str) -> None: ...\n',
    )
    uri = write(tmp_path, "routed.flow", ROUTED)
    open_doc(client, uri, ROUTED)
    assert (await hover_text(client, uri, at(ROUTED, "reserve", 2))).endswith("`lsp_routed` · queue `proxy`")
    assert await hover_text(client, uri, at(ROUTED, "subnet}", 1)) == "```weft\nparam subnet: str\n```"
