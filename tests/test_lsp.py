"""`weft lsp` driven over stdio as an editor drives it: diagnostics on open, edit
and save, their exact ranges, tolerance of syntax errors, and re-publishing
when an imported file changes. Features (hover, definition, ...) are in
test_lsp_features.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

ROOT = Path(__file__).resolve().parents[1]
SERVER = ClientServerConfig(
    server_command=[sys.executable, "-m", "weft.cli.main", "lsp"],
    server_env={**os.environ, "PYTHONPATH": str(ROOT)},
)
pytestmark = pytest.mark.asyncio

BROKEN = """\
use examples.foreman.proxy as proxy

flow create_host(name: str, mac: str, subnet: str) -> (ip: str) {
    let fqdn = "${name}.example.com"
    dhcp = proxy.dhcp_reserve(subnet: subnet, mac: mac)
    a = proxy.dns_create(nme: fqdn, type: "A", value: dhcp.ipp)
    std.log(message: "héllo 🎉 wörld 🎉", levle: 3)
    return (ip: dchp.ip)
}
"""

LIB = """\
flow make_dns(fqdn: str, ip: str) -> (fqdn: str) {
    std.log(message: "${fqdn} -> ${ip}")
    return (fqdn: fqdn)
}
"""

USES_LIB = """\
import "./lib.flow"

flow host(name: str) {
    dns = make_dns(fqdn: "${name}.example.com", ip: "10.0.0.1")
}
"""


class Published(dict):
    """`client.diagnostics` that also keeps every publication, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, list[types.Diagnostic]]] = []

    def __setitem__(self, uri: str, diagnostics) -> None:
        self.log.append((uri, list(diagnostics)))
        super().__setitem__(uri, diagnostics)


async def begin(client: LanguageClient) -> None:
    """Initialize a session as VS Code would, recording publications and registrations."""
    client.diagnostics = Published()
    client.registrations = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams) -> None:
        client.registrations.append(params)

    await client.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    await begin(lsp_client)
    yield
    await lsp_client.shutdown_session()


def write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text, encoding="utf-8")
    return from_fs_path(str(folder / name))


def open_doc(client: LanguageClient, uri: str, text: str) -> None:
    item = types.TextDocumentItem(uri=uri, language_id="weft", version=1, text=text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))


def change(client: LanguageClient, uri: str, version: int, line: int, start: int, end: int, text: str) -> None:
    """Replace characters start..end of a line, as an editor sends a keystroke."""
    where = types.Range(types.Position(line, start), types.Position(line, end))
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=where, text=text)],
        )
    )


async def publication(client: LanguageClient, uri: str, after: int, until=lambda diags: True) -> list[types.Diagnostic]:
    """The first diagnostics published for `uri` after the first `after` publications
    (and satisfying `until`)."""
    for _ in range(500):
        found = [d for u, d in client.diagnostics.log[after:] if u == uri and until(d)]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing (more) was published for {uri}: {client.diagnostics.get(uri)}")


def at(text: str, needle: str, offset: int = 0) -> types.Position:
    """The position `offset` characters into the first `needle` of an ASCII line."""
    before = text[: text.index(needle) + offset]
    line = before.count("\n")
    assert text.split("\n")[line].isascii()
    return types.Position(line, len(before) - before.rfind("\n") - 1)


def summary(diags: list[types.Diagnostic]) -> list[tuple]:
    """(code, severity, start line, start char, end line, end char, message) of each."""
    return [
        (
            d.code,
            d.severity,
            d.range.start.line,
            d.range.start.character,
            d.range.end.line,
            d.range.end.character,
            d.message,
        )
        for d in diags
    ]


ERROR = types.DiagnosticSeverity.Error


async def test_open_publishes_every_diagnostic_with_exact_utf16_ranges(client: LanguageClient, tmp_path: Path):
    uri = write(tmp_path, "host.flow", BROKEN)
    open_doc(client, uri, BROKEN)
    diags = await publication(client, uri, 0)
    # Line 6: `levle` starts at character 40 of the line, but the two emoji before
    # it take two UTF-16 code units each (the accented letters one), so it is at 42.
    assert summary(diags) == [
        (
            "E106", ERROR, 5, 8, 5, 24,
            "proxy.dns_create is missing required argument 'name' (str)",
        ),
        (
            "E105", ERROR, 5, 25, 5, 28,
            "proxy.dns_create takes no argument 'nme'\nhint: did you mean 'name'?",
        ),
        (
            "E108", ERROR, 5, 59, 5, 62,
            "the output of step 'dhcp' has no field 'ipp'\nhint: did you mean 'ip'?",
        ),
        ("E105", ERROR, 6, 42, 6, 47, "std.log takes no argument 'levle'\nhint: it takes: message"),
        ("E101", ERROR, 7, 16, 7, 20, "'dchp' is not defined\nhint: did you mean 'dhcp'?"),
    ]  # fmt: skip
    assert {d.source for d in diags} == {"weft"}
    assert [d.data for d in diags] == [None, {"fix": "name"}, {"fix": "ip"}, None, {"fix": "dhcp"}]


async def test_edits_update_the_diagnostics(client: LanguageClient, tmp_path: Path):
    uri = write(tmp_path, "host.flow", BROKEN)
    open_doc(client, uri, BROKEN)
    await publication(client, uri, 0)

    mark = len(client.diagnostics.log)
    change(client, uri, 2, 5, 25, 28, "name")  # nme -> name
    codes = [(d.code, d.range.start.line) for d in await publication(client, uri, mark)]
    assert codes == [("E108", 5), ("E105", 6), ("E101", 7)]

    mark = len(client.diagnostics.log)
    change(client, uri, 3, 7, 16, 20, "dhcp")  # dchp -> dhcp
    change(client, uri, 4, 6, 40, 50, "")  # drop `, levle: 3` (after the two emoji)
    change(client, uri, 5, 5, 62, 63, "")  # dhcp.ipp -> dhcp.ip
    assert await publication(client, uri, mark, until=lambda diags: diags == []) == []
    published = [d for u, d in client.diagnostics.log[mark:] if u == uri]
    assert len(published) <= 2, "edits in quick succession are compiled once they pause"


async def test_syntax_error_keeps_the_rest_analysed(client: LanguageClient, tmp_path: Path):
    text = BROKEN.replace('    let fqdn = "${name}.example.com"', '    let fqdn = = "${name}.example.com"')
    text += "\nflow other(x: int) {\n    e = std.echo(value: x)\n}\n"
    uri = write(tmp_path, "host.flow", text)
    open_doc(client, uri, text)
    diags = await publication(client, uri, 0)
    codes = [(d.code, d.range.start.line) for d in diags]
    assert codes[0] == ("E001", 3)
    assert ("E108", 5) in codes and ("E101", 7) in codes

    hover = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri), at(text, "value: x", 7))
    )
    assert "param x: int" in hover.contents.value
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(types.TextDocumentIdentifier(uri))
    )
    assert [s.name for s in symbols] == ["create_host", "other"]


async def test_a_change_to_an_imported_file_republishes_its_importers(client: LanguageClient, tmp_path: Path):
    lib_uri = write(tmp_path, "lib.flow", LIB)
    uri = write(tmp_path, "host.flow", USES_LIB)
    open_doc(client, uri, USES_LIB)
    assert await publication(client, uri, 0) == []
    open_doc(client, lib_uri, LIB)
    await publication(client, lib_uri, 0)

    async def codes_after(step) -> tuple[list[str], list[str]]:
        """Take a step; the codes then published for host.flow and for lib.flow."""
        mark = len(client.diagnostics.log)
        step()
        host, lib = await publication(client, uri, mark), await publication(client, lib_uri, mark)
        return [d.code for d in host], [d.code for d in lib]

    # Renaming the parameter in the open, unsaved lib.flow breaks the call in host.flow.
    renamed = LIB.replace("make_dns(fqdn", "make_dns(name", 1)
    host, lib = await codes_after(lambda: change(client, lib_uri, 2, 0, 14, 18, "name"))
    assert host == ["E106", "E105"] and lib == ["W202", "E101", "E101"]
    assert list(client.diagnostics[lib_uri][0].tags) == [types.DiagnosticTag.Unnecessary]  # the unused `name`
    assert client.diagnostics[uri][1].message.startswith("flow 'make_dns' takes no argument 'fqdn'")

    # Saved, then closed (its diagnostics cleared): host.flow reads lib.flow from the disk.
    (tmp_path / "lib.flow").write_text(renamed, encoding="utf-8")
    saved = types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(lib_uri))
    assert (await codes_after(lambda: client.text_document_did_save(saved)))[0] == ["E106", "E105"]
    closed = types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(lib_uri))
    assert await codes_after(lambda: client.text_document_did_close(closed)) == (["E106", "E105"], [])

    # Changed on disk while closed: the editor's file watcher tells the server.
    (tmp_path / "lib.flow").write_text(LIB, encoding="utf-8")
    mark = len(client.diagnostics.log)
    event = types.FileEvent(uri=lib_uri, type=types.FileChangeType.Changed)
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[event]))
    assert await publication(client, uri, mark) == []
    [registration] = client.registrations[0].registrations
    assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES


async def test_diagnostics_of_imported_files_stay_with_their_file(client: LanguageClient, tmp_path: Path):
    write(tmp_path, "lib.flow", LIB.replace("return (fqdn: fqdn)", "return (fqdn: fdqn)"))
    uri = write(tmp_path, "host.flow", USES_LIB)
    open_doc(client, uri, USES_LIB)
    assert await publication(client, uri, 0) == []


async def test_an_extension_file_is_checked_against_the_flow_it_extends(client: LanguageClient):
    """No workspace folder is given, so the server looks around the file for its project
    (this repository) and finds create_host in examples/foreman/host.flow."""
    path = ROOT / "examples" / "extension" / "weft_audit" / "audit.flow"
    text = path.read_text(encoding="utf-8")
    uri = from_fs_path(str(path))
    open_doc(client, uri, text)
    assert await publication(client, uri, 0) == []
    broken = text.replace("after a", "after aa")
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=broken)],
        )
    )
    diags = await publication(client, uri, 1, until=lambda d: d != [])
    assert [(d.code, d.message) for d in diags] == [
        ("E114", "flow 'create_host' has no step 'aa'\nhint: did you mean 'a'?")
    ]
