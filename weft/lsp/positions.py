"""Compiler spans <-> LSP positions.

The compiler counts 1-based lines and columns in Python characters (code
points). LSP positions are 0-based and count code units of the negotiated
encoding: UTF-16 by default, so a character outside the Basic Multilingual
Plane (an emoji) is two units, and an accented letter is one.
"""

from __future__ import annotations

from itertools import accumulate

from lsprotocol import types

from weft.compiler.ast import Span

_ENCODINGS = ("utf-8", "utf-16", "utf-32")


def units(text: str, encoding: str = "utf-16") -> int:
    """How many code units `text` takes in `encoding`."""
    if text.isascii():
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le")) // 2


class Lines:
    """One text's lines, for converting positions both ways."""

    def __init__(self, text: str, encoding: str = "utf-16") -> None:
        self.text = text
        self.lines = text.split("\n")
        self.encoding = encoding if encoding in _ENCODINGS else "utf-16"
        # line index -> code units before each character, for lines where they differ from
        # characters (None where they do not): a position is then found in constant time,
        # so 10,000 diagnostics on one 120 KB line cost one pass over it, not 10,000.
        self._units: dict[int, list[int] | None] = {}

    def line(self, index: int) -> str:
        """The text of 0-based line `index` ('' past the end)."""
        return self.lines[index] if 0 <= index < len(self.lines) else ""

    def position(self, line: int, col: int) -> types.Position:
        """A compiler (1-based line, 1-based character column) as an LSP position."""
        index = min(max(line - 1, 0), len(self.lines) - 1)
        chars = min(max(col - 1, 0), len(self.lines[index]))
        return types.Position(line=index, character=self._units_before(index, chars))

    def _units_before(self, index: int, chars: int) -> int:
        if index not in self._units:
            text = self.lines[index]
            plain = text.isascii() or self.encoding == "utf-32"
            self._units[index] = (
                None if plain else list(accumulate((units(ch, self.encoding) for ch in text), initial=0))
            )
        found = self._units[index]
        return chars if found is None else found[chars]

    def range(self, span: Span) -> types.Range:
        return types.Range(self.position(span.line, span.col), self.position(span.end_line, span.end_col))

    def column(self, pos: types.Position) -> int:
        """The 1-based character column of an LSP position on its line."""
        text = self.line(pos.line)
        if text.isascii() or self.encoding == "utf-32":
            return min(pos.character, len(text)) + 1
        seen = 0
        for i, ch in enumerate(text):
            if seen >= pos.character:
                return i + 1
            seen += units(ch, self.encoding)
        return len(text) + 1

    def offset(self, pos: types.Position) -> int:
        """The index into the whole text of an LSP position."""
        before = sum(len(t) + 1 for t in self.lines[: min(pos.line, len(self.lines))])
        return before + self.column(pos) - 1
