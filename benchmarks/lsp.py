"""How long `weft lsp` takes from a didChange to the diagnostics it publishes.

Drives the real server process over stdio with a generated .flow file of
about 2,000 lines, then makes edits that break and repair one field reference,
timing each until the diagnostics for that document version arrive:

- single edits, each after a quiet spell (the usual case: one fix, one typo)
- bursts of keystrokes 40 ms apart, timed from the last keystroke

    python benchmarks/lsp.py [--lines 2000] [--edits 15]

Target: the median of single edits under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOW = """\
flow host_{i}(name: str, mac: str, subnet: str) -> (ip: str) {{
    let fqdn = "${{name}}.example.com"
    dhcp = proxy.dhcp_reserve(subnet: subnet, mac: mac)
        retry 3 backoff 2s
        undo proxy.dhcp_release(subnet: subnet, mac: mac)
    a = proxy.dns_create(name: fqdn, type: "A", value: dhcp.ip)
    ptr = proxy.dns_create(name: dhcp.ip, type: "PTR", value: fqdn)
    finalize {{
        std.log(message: "host ${{fqdn}} is ready at ${{dhcp.ip}}")
    }}
    return (ip: dhcp.ip)
}}

"""


def generate(lines: int) -> str:
    head = "use examples.foreman.proxy as proxy\n\n"
    per_flow = FLOW.count("\n")
    return head + "".join(FLOW.format(i=i) for i in range(max(1, (lines - 2) // per_flow)))


class Bench:
    def __init__(self, client: LanguageClient, uri: str, text: str) -> None:
        self.client, self.uri, self.version = client, uri, 1
        self.arrived: dict[int, asyncio.Future] = {}
        self.counts: dict[int, int] = {}
        # The edit flips `dhcp.ip` on the line below to `dhcp.iq` and back.
        self.line = text.split("\n").index('    a = proxy.dns_create(name: fqdn, type: "A", value: dhcp.ip)')
        self.col = len('    a = proxy.dns_create(name: fqdn, type: "A", value: dhcp.i')

        @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams) -> None:
            self.counts[params.version] = len(params.diagnostics)
            self.arrival(params.version).set_result(time.perf_counter())

    def edit(self) -> float:
        """Send one keystroke; return when it was sent."""
        self.version += 1
        start, end = types.Position(self.line, self.col), types.Position(self.line, self.col + 1)
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start, end), text="p" if self.version % 2 else "q"
        )
        doc = types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version)
        sent = time.perf_counter()
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(text_document=doc, content_changes=[change])
        )
        return sent

    def arrival(self, version: int) -> asyncio.Future:
        if version not in self.arrived:
            self.arrived[version] = asyncio.get_running_loop().create_future()
        return self.arrived[version]

    async def published(self, version: int) -> float:
        """When the diagnostics of `version` arrived."""
        return await asyncio.wait_for(self.arrival(version), timeout=10)


async def run(path: str, text: str, edits: int) -> None:
    client = LanguageClient("weft-bench", "1")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    await client.start_io(sys.executable, "-m", "weft.cli.main", "lsp", env=env, cwd=ROOT)
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    uri = from_fs_path(path)
    bench = Bench(client, uri, text)
    item = types.TextDocumentItem(uri=uri, language_id="weft", version=1, text=text)
    opened = time.perf_counter()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
    first = await bench.published(1) - opened

    single = []
    for _ in range(edits):
        await asyncio.sleep(0.4)
        sent = bench.edit()
        single.append(await bench.published(bench.version) - sent)
    bursts = []
    for _ in range(max(3, edits // 3)):
        await asyncio.sleep(0.4)
        for _ in range(5):
            sent = bench.edit()
            await asyncio.sleep(0.04)
        bursts.append(await bench.published(bench.version) - sent)

    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    print(f"file: {text.count(chr(10))} lines, {len(text)} characters")
    print(f"didOpen -> diagnostics (first compile): {first * 1000:.0f} ms")
    print(f"didChange -> diagnostics, {len(single)} single edits: {ms(single)}")
    print(f"last keystroke of a 5-key burst -> diagnostics, {len(bursts)} bursts: {ms(bursts)}")
    errors = {v: n for v, n in bench.counts.items() if v > 1}
    assert all(n == (0 if v % 2 else 1) for v, n in errors.items()), f"unexpected diagnostic counts: {errors}"


def ms(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--edits", type=int, default=15)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="weft-lsp-bench-"), "bench.flow")
    text = generate(args.lines)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    asyncio.run(run(path, text, args.edits))


if __name__ == "__main__":
    main()
