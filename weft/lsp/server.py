"""`weft lsp`: the editor server (Language Server Protocol over stdio, pygls;
messages are framed by weft.lsp.stream).

Each open document is compiled with every open document's unsaved text, and
its diagnostics are published on open, on save, and after an edit: at once
when the edit follows a quiet spell, otherwise once typing pauses for
DEBOUNCE seconds. A change to a file re-publishes every open document that
imports it. Hover, definition, symbols, completion and quick fixes answer
from the document's last compilation (compiled first if it is stale).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from importlib import metadata

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from weft.compiler.diagnostics import Diagnostic
from weft.lsp import completion, features, stream
from weft.lsp.positions import Lines
from weft.lsp.workspace import Result, Results

DEBOUNCE = 0.1  # seconds
IDLE = 0.25  # seconds without edits before collecting garbage
UNUSED = {"W201", "W202", "W205"}


class WeftServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("weft", _version(), text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.results = Results()
        self.timer: asyncio.TimerHandle | None = None
        self.collector: asyncio.TimerHandle | None = None
        self.last_busy = float("-inf")  # when the last edit came, or the last compile ended

    # -- compiling and publishing -----------------------------------------------

    def encoding(self) -> str:
        enc = self.workspace.position_encoding
        return getattr(enc, "value", enc) or "utf-16"

    def lines(self, uri: str) -> Lines:
        return Lines(self.workspace.get_text_document(uri).source, self.encoding())

    def open_paths(self) -> dict[str, str]:
        """Open documents that are files: URI -> absolute path."""
        found = {}
        for uri in self.workspace.text_documents:
            path = to_fs_path(uri) if uri.startswith("file:") else None
            if path:
                found[uri] = os.path.abspath(path)
        return found

    def roots(self, path: str) -> list[str]:
        """Folders searched for the flows an extension file extends: the workspace's,
        else the repository (or, outside one, the project) around the file."""
        folders = [to_fs_path(f.uri) for f in self.workspace.folders.values()]
        folders = [f for f in folders if f] or ([self.workspace.root_path] if self.workspace.root_path else [])
        if folders:
            return folders
        for marker in (".git", "pyproject.toml"):
            d = os.path.dirname(path)
            while os.path.dirname(d) != d:
                if os.path.exists(os.path.join(d, marker)):
                    return [d]
                d = os.path.dirname(d)
        return [os.path.dirname(path)]

    def refresh(self, uris: set[str] | None = None) -> None:
        """Compile and publish the stale documents (all of them, or those in `uris`)."""
        paths = self.open_paths()
        sources = {paths[u]: self.workspace.get_text_document(u).source for u in paths}
        for uri in sorted(self.results.stale if uris is None else uris & self.results.stale):
            if uri not in paths:
                self.results.forget(uri)
                continue
            try:
                result = self.results.compile(uri, paths[uri], sources, self.roots(paths[uri]))
            except Exception as e:  # a compiler bug: say so, keep the last result, serve on
                self.results.stale.discard(uri)
                message = f"weft: cannot check {paths[uri]}: {type(e).__name__}: {e}"
                self.window_log_message(types.LogMessageParams(type=types.MessageType.Error, message=message))
                continue
            self.publish(uri, result)
            self.last_busy = asyncio.get_running_loop().time()
            self.collect_when_idle()

    def publish(self, uri: str, result: Result) -> None:
        lines = self.lines(uri)
        diags = [to_lsp(d, lines) for d in result.comp.diagnostics if d.span.file == result.path]
        version = self.workspace.get_text_document(uri).version
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version)
        )

    def result(self, uri: str) -> Result | None:
        """The document's compilation, brought up to date first."""
        if uri not in self.results.by_uri:
            self.results.stale.add(uri)
        self.refresh({uri})
        return self.results.by_uri.get(uri)

    def edited(self, uri: str) -> None:
        """Schedule publishing after an edit: at once when nothing was edited or compiled
        for DEBOUNCE seconds, else once edits pause that long (keystrokes that queued up
        during a compile are one burst)."""
        path = self.open_paths().get(uri)
        if path is None:
            return
        self.results.touch(path, uri)
        loop = asyncio.get_running_loop()
        now = loop.time()
        delay = 0 if now - self.last_busy >= DEBOUNCE else DEBOUNCE
        self.last_busy = now
        for pending in (self.timer, self.collector):
            if pending is not None:
                pending.cancel()
        self.timer = loop.call_later(delay, self.refresh)

    def collect_when_idle(self) -> None:
        """A compilation leaves much garbage; collect it in a pause, before Python's
        own full collection would run in the middle of answering the editor."""
        if self.collector is not None:
            self.collector.cancel()
        self.collector = asyncio.get_running_loop().call_later(IDLE, gc.collect)

    def opened_or_saved(self, uri: str) -> None:
        path = self.open_paths().get(uri)
        if path is not None:
            self.changed([path], uri)

    def changed(self, paths: list[str], uri: str | None = None) -> None:
        """Files were opened, saved, closed or changed on disk: publish what they affect now."""
        for path in paths:
            self.results.touch(os.path.abspath(path), uri)
        self.refresh()


def _version() -> str:
    try:
        return metadata.version("weft")
    except metadata.PackageNotFoundError:  # run from a source folder that was never installed
        return "dev"


def to_lsp(d: Diagnostic, lines: Lines) -> types.Diagnostic:
    """A compiler diagnostic as an LSP one; the hint ends the message, a fix rides in `data`."""
    return types.Diagnostic(
        range=lines.range(d.span),
        severity=types.DiagnosticSeverity.Error if d.severity == "error" else types.DiagnosticSeverity.Warning,
        code=d.code,
        source="weft",
        message=d.message + (f"\nhint: {d.hint}" if d.hint else ""),
        tags=[types.DiagnosticTag.Unnecessary] if d.code in UNUSED else None,
        data={"fix": d.fix} if d.fix else None,
    )


server = WeftServer()


@server.feature(types.INITIALIZED)
def initialized(ls: WeftServer, params: types.InitializedParams) -> None:
    caps = ls.client_capabilities.workspace
    watched = caps.did_change_watched_files if caps else None
    if watched and watched.dynamic_registration:
        watcher = types.FileSystemWatcher(glob_pattern="**/*.flow")
        options = types.DidChangeWatchedFilesRegistrationOptions(watchers=[watcher])
        registration = types.Registration(
            id="weft-flow-files", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options
        )
        ls.client_register_capability(types.RegistrationParams(registrations=[registration]))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: WeftServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.opened_or_saved(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: WeftServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.edited(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: WeftServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.opened_or_saved(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: WeftServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    result = ls.results.by_uri.get(uri)
    ls.results.forget(uri)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
    if result is not None:
        ls.changed([result.path])  # its readers now read the file on disk


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def did_change_watched_files(ls: WeftServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.changed([path for c in params.changes if (path := to_fs_path(c.uri))])


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: WeftServer, params: types.HoverParams) -> types.Hover | None:
    result = ls.result(params.text_document.uri)
    return features.hover(result.index, ls.lines(params.text_document.uri), params.position) if result else None


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: WeftServer, params: types.DefinitionParams) -> types.Location | None:
    result = ls.result(params.text_document.uri)
    return features.definition(result.index, ls.lines(params.text_document.uri), params.position) if result else None


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbol(ls: WeftServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    result = ls.result(params.text_document.uri)
    if result is None or result.index.unit is None:
        return []
    return features.document_symbols(result.comp, result.index.unit, ls.lines(params.text_document.uri))


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", ","]))
def complete(ls: WeftServer, params: types.CompletionParams) -> types.CompletionList:
    result = ls.result(params.text_document.uri)
    items = completion.complete(result.index, ls.lines(params.text_document.uri), params.position) if result else []
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])
)
def code_action(ls: WeftServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    return features.quick_fixes(uri, ls.lines(uri), params.context.diagnostics)


def main(args=None) -> int:
    """Serve one editor over stdin/stdout until it disconnects (`weft lsp` takes no options)."""
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a print() in an action module must not corrupt the protocol
    stream.serve(server, sys.stdin.buffer, protocol_out)
    return 0
