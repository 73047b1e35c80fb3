"""`weft lsp` on issue 14's forms: quoted record keys, `??`, `?` and an `each` step's results are
hovered, completed and diagnosed like the rest of the language (the server neither crashes nor
goes quiet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient
from test_lsp import SERVER, at, begin, open_doc, publication, write

pytestmark = pytest.mark.asyncio

TEXT = """\
flow host(name: str) -> (ip: str) {
    std.log(message: name)
    return (ip: "10.0.0.1")
}

flow bulk(names: list[str], flag: bool) -> (ips: list[(ip: str)?], kind: str) {
    probe = std.echo(value: ("Content-Type": "text/plain")) when flag
    made = each n in names {
        host(name: n)
    }
    sent = std.echo(value: ("X-Probe": probe.value?, "X-Ip": made.results[0].ip ?? "none"))
    std.log(message: "${probe.value}")
    return (ips: made.results, kind: sent.value["X-Ip"] ?? "")
}
"""


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    await begin(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def hover(client: LanguageClient, uri: str, pos: types.Position) -> str:
    found = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos))
    return found.contents.value


async def test_the_new_forms_are_diagnosed_and_hovered(client: LanguageClient, tmp_path: Path):
    uri = write(tmp_path, "bulk.flow", TEXT)
    open_doc(client, uri, TEXT)
    diags = await publication(client, uri, 0)
    assert [(d.code, d.range.start.line) for d in diags] == [("E126", 11)]
    assert "probe.value -> step 'log' (argument 'message')" in diags[0].message
    made = await hover(client, uri, at(TEXT, "made.results[0]", 1))
    assert "results: list[(ip: str)?]" in made
    assert await hover(client, uri, at(TEXT, "value?", 1)) == "```weft\nprobe.value: any\n```"
    items = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(uri), at(TEXT, "results, kind", 0))
    )
    labels = {i.label for i in (items.items if isinstance(items, types.CompletionList) else items or [])}
    assert "results" in labels
