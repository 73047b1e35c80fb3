"""A data file cut short, found before it is mapped: reading a page past the end of a mapped file kills the
process (SIGBUS), with no message, `weft doctor` too.

LMDB's two meta pages (page 0 and 1) each hold a commit's transaction id and the root pages of its two
B-trees (the free pages' and the main one), pages in use that the file must hold; the newer of the two
valid metas counts. (Not its last page number: pages a commit allocated and freed again are never written,
so a sound file may end before it.) Copy-on-write puts a commit's roots at or near the end of the file, so
a file cut short loses them. The layout (lmdb.h, MDB_meta): after a 16-byte page header, the magic (u32),
the version (u32), the map address (8), the map size (8), two databases of 48 bytes (md_pad, which in the
first holds the page size, then flags, depth, four counts and the root, u64, last), the last page (u64) and
the transaction id (u64); in the machine's byte order.
"""

from __future__ import annotations

import os
import struct

_HEADER = 16
_MAGIC = 0xBEEFC0DE
_META = struct.Struct("=II8x8xI36xQ40xQ8xQ")  # magic, version, page size, free pages' root, main root, txnid
_NO_PAGE = 2**64 - 1  # the root of an empty tree


def _meta(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(page size, highest root page, txnid) of the meta page at offset `at`, None if it is not one."""
    if len(data) < at + _HEADER + _META.size:
        return None
    magic, _, size, free_root, main_root, txnid = _META.unpack_from(data, at + _HEADER)
    if magic != _MAGIC or size < 512 or size & (size - 1):
        return None
    return size, max((r for r in (free_root, main_root) if r != _NO_PAGE), default=1), txnid


def shortfall(path: str) -> str | None:
    """Why data file `path` cannot be mapped safely (it ends before its newest commit's root pages), or None (it
    can, or its meta pages are not readable: LMDB itself then says what is wrong). Its length is taken after its
    meta pages are read: another process may commit meanwhile, and a commit writes its pages before its meta."""
    try:
        with open(path, "rb") as f:
            first = _meta(f.read(_HEADER + _META.size), 0)
            if first is None:
                return None
            f.seek(first[0])
            second = _meta(f.read(_HEADER + _META.size), 0)
            length = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    newest = max((m for m in (first, second) if m is not None), key=lambda m: m[2])
    needed = (newest[1] + 1) * newest[0]
    if length >= needed:
        return None
    return f"its data file is {length:,} bytes, shorter than the {needed:,} its last commit wrote (truncated?)"
