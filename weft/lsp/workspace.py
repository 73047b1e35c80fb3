"""The last compilation of each open document, and the files each one read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from weft.compiler import Compilation, ast, compile_extension, compile_paths, find_flow_files, unknown_extended
from weft.lsp.index import Index


@dataclass
class Result:
    path: str
    comp: Compilation
    reads: set[str]  # .flow files the compilation read or tried to import
    _index: Index | None = field(default=None, repr=False)

    @property
    def index(self) -> Index:
        if self._index is None:
            self._index = Index(self.comp, self.path)
        return self._index


class Results:
    """Compilations by document URI. A document is stale from an edit of its
    own text, or of any file its last compilation read, until compiled again."""

    def __init__(self) -> None:
        self.by_uri: dict[str, Result] = {}
        self.stale: set[str] = set()

    def compile(self, uri: str, path: str, sources: dict[str, str], roots: list[str] = ()) -> Result:
        """Compile a document; an extension file is checked against the flows it
        extends, found among the workspace's .flow files (`roots`)."""
        comp = compile_paths([path], sources=sources, plans=False)
        missing = unknown_extended(comp)
        hosts = find_flow_files(missing, list(roots)) if missing else []
        if hosts:
            comp = compile_extension(path, hosts, sources=sources)
        result = Result(path, comp, _reads(comp))
        self.by_uri[uri] = result
        self.stale.discard(uri)
        return result

    def touch(self, path: str, uri: str | None = None) -> None:
        """`path` changed: its own document (if open) and every document that read it are stale."""
        if uri is not None:
            self.stale.add(uri)
        self.stale.update(u for u, r in self.by_uri.items() if path in r.reads)

    def forget(self, uri: str) -> None:
        self.by_uri.pop(uri, None)
        self.stale.discard(uri)


def _reads(comp: Compilation) -> set[str]:
    reads = set()
    for unit in comp.program.units:
        reads.add(unit.path)
        for item in unit.module.of(ast.Import):
            reads.add(os.path.abspath(os.path.join(os.path.dirname(unit.path), item.path)))
    return reads
