"""The editor server behind `weft lsp`: diagnostics, hover, definition, symbols,
completion and quick fixes over the Language Server Protocol.

server      the pygls server: documents, debounced publishing, the handlers
stream      stdio framing that recovers from malformed input and answers every request
workspace   each open document's last compilation and the files it read
index       what is at a position of a compiled file
features    hover, definition, document symbols, quick fixes
completion  completion items for the text before the cursor
positions   compiler columns <-> LSP (UTF-16) positions
"""
