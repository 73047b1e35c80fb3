"""Stores: the port (port.py), its backends (lmdb/, memory.py), and `open_store`, the one way to open one.

The rest of the runtime opens stores here and speaks to them through the port;
it never imports a backend module.
"""

from __future__ import annotations

import os

from weft.runtime.stores import memory
from weft.runtime.stores.port import Store


def open_store(path: str, create: bool = True) -> Store:
    """The store at `path`: an LMDB store folder, or `memory://NAME` for one in this process's memory.

    Without `create`, StoreError if there is none yet. Opening an LMDB store from the main thread
    makes a file-size limit fail writes with a clear error instead of killing the process.
    """
    if path.startswith(memory.SCHEME):
        return memory.Store(path, create=create)
    from weft.runtime.stores.lmdb import store as lmdb_store

    lmdb_store.ignore_file_size_signal()
    return lmdb_store.Store(path, create=create)


def in_memory(path: str) -> bool:
    """Whether `path` names a store in this process's memory (`memory://NAME`), not a folder."""
    return path.startswith(memory.SCHEME)


def store_dir(option: str | None) -> str:
    """`--store DIR`, else $WEFT_STORE, else ./.weft, as an absolute path (a `memory://` name as it is)."""
    path = option or os.environ.get("WEFT_STORE") or ".weft"
    return path if path.startswith(memory.SCHEME) else os.path.abspath(path)
