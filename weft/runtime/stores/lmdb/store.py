"""The LMDB store: runs, their plans, steps, event history, indexes, leases and requests.

One environment per store folder, opened once per process, every named
database opened once at open. Writes go through `Store.write(fn)`: `fn` gets a
Txn, may be called again when the map is full (the map is grown and the
transaction retried), and its changes are durable (fsync) when `write` returns.

Keys (run ids are 26 ASCII characters, so they need no separator):
    runs      <run>                     run record
    plans     <run>                     the run's own copy of its Plan
    steps     <run><step id>            step record
    events    <run><u64 BE seq>         append-only history, seq from 1
    indexes   state\0<state>\0<run>, flow\0<flow>\0<run>, tag\0<tag>\0<run>,
              user\0<user>\0<run>, label\0<label, first 400 bytes>\0<run>,
              result\0<succeeded|failed|cancelled|rolled back>\0<run> (ended runs),
              started\0<u64 BE µs><run>, ended\0<u64 BE µs><run>,
              child\0<parent run><step>\0<u32 BE index><run> (sub-runs of an `each` step),
              top\0\0<run> (runs that are not sub-runs)
    leases    <run>                     the owning process
              lock\0<name>               the run holding a flow's `lock`
    requests  <run><kind>               cancel / signal requests for a live owner
    queue     at\0<u64 BE µs><run>, of\0<run>   runs a worker should pick up, by when (workqueue.py)
    timers    <u64 BE µs due><run><step>\0<kind>   steps' next poll, retry, deadline (timers.py)
    meta      format, indexes           store format version, index keys version
"""

from __future__ import annotations

import os
import resource
import signal
import struct
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import lmdb

from weft.errors import WeftError
from weft.runtime import ids
from weft.runtime.stores.lmdb import codec
from weft.runtime.stores.lmdb import timers
from weft.runtime.core.states import outcome

FORMAT_VERSION = 1
INDEX_VERSION = 3  # the index keys index_keys() makes; older stores are brought up to date by catalog.py
DATABASES = ("meta", "runs", "plans", "steps", "events", "indexes", "leases", "requests", "queue", "timers")
ID_LEN = 26
_SEQ = struct.Struct(">Q")
_INDEX = struct.Struct(">I")
_INITIAL_MAP = 64 << 20
_DEFAULT_MAX_MAP = 1 << 40
_NO_VALUE = codec.encode(None)
LABEL_KEY_MAX = 400  # bytes of a label kept in its index key (LMDB keys are at most 511 bytes)
T = TypeVar("T")

_open_paths: set[str] = set()
_open_guard = threading.Lock()


class StoreError(WeftError):
    """The store cannot be opened, read or written."""


class CorruptRecord(StoreError):
    """A stored value failed its checksum or does not decode."""


class StoreFull(StoreError):
    """The store reached its maximum size (WEFT_STORE_MAX_MB) or the disk is full."""


def store_dir(option: str | None) -> str:
    """`--store DIR`, else $WEFT_STORE, else ./.weft, as an absolute path."""
    return os.path.abspath(option or os.environ.get("WEFT_STORE") or ".weft")


def max_map_size() -> int:
    text = os.environ.get("WEFT_STORE_MAX_MB")
    if not text:
        return _DEFAULT_MAX_MAP
    try:
        return max(1, int(text)) << 20
    except ValueError:
        raise StoreError(f"WEFT_STORE_MAX_MB must be a number of megabytes, not {text!r}") from None


def seq_key(run_id: str, seq: int) -> bytes:
    return run_id.encode() + _SEQ.pack(seq)


def _micros(t: float) -> bytes:
    return _SEQ.pack(int(t * 1_000_000))


def index_keys(run: dict) -> set[bytes]:
    """The index entries a run record should have."""
    rid = run["id"].encode()
    keys = {
        b"state\0" + run["state"].encode() + b"\0" + rid,
        b"flow\0" + run["flow"].encode() + b"\0" + rid,
        b"started\0" + _micros(run["created"]) + rid,
        b"user\0" + (run.get("user") or "").encode() + b"\0" + rid,
        b"label\0" + (run.get("label") or "").encode()[:LABEL_KEY_MAX] + b"\0" + rid,
    }
    result = outcome(run)
    if result is not None:
        keys.add(b"result\0" + result.encode() + b"\0" + rid)
    keys.update(b"tag\0" + tag.encode() + b"\0" + rid for tag in run.get("tags") or ())
    if run.get("ended") is not None:
        keys.add(b"ended\0" + _micros(run["ended"]) + rid)
    if run.get("parent"):
        keys.add(_child_prefix(run["parent"]["run"], run["parent"]["step"]) + _INDEX.pack(run["parent"]["index"]) + rid)
    else:
        keys.add(b"top\0\0" + rid)
    return keys


def _child_prefix(parent: str, step: str) -> bytes:
    return b"child\0" + parent.encode() + step.encode() + b"\0"


def index_prefix(field: str, value: str | None = None) -> bytes:
    return field.encode() + b"\0" + (b"" if value is None else value.encode() + b"\0")


class Store:
    """An open store folder. Use as a context manager, or call close()."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = os.path.abspath(path)
        if not create and not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise StoreError(f"no store at {self.path} (give --store DIR or set WEFT_STORE)")
        with _open_guard:
            if self.path in _open_paths:
                raise StoreError(f"store {self.path} is already open in this process")
            _open_paths.add(self.path)
        self._lock = threading.RLock()
        self._max = max_map_size()
        try:
            os.makedirs(self.path, exist_ok=True)
            data = os.path.join(self.path, "data.mdb")
            size = os.path.getsize(data) if os.path.exists(data) else 0
            self.env = lmdb.open(
                self.path,
                map_size=min(max(_INITIAL_MAP, 2 * size), self._max),
                max_dbs=len(DATABASES) + 4,
                sync=True,
                metasync=True,
                writemap=False,
                lock=True,
                readahead=False,
            )
            self.env.reader_check()
            self.dbs = self.write(lambda t: {name: self.env.open_db(name.encode(), txn=t.raw) for name in DATABASES})
            self._check_format(create)
        except lmdb.Error as e:
            self._forget()
            raise StoreError(f"cannot open store {self.path}: {_reason(e)}") from None
        except BaseException:
            self._forget()
            raise

    def _forget(self) -> None:
        if getattr(self, "env", None) is not None:
            self.env.close()
            self.env = None
        with _open_guard:
            _open_paths.discard(self.path)

    def _check_format(self, create: bool) -> None:
        with self.read() as t:
            meta = t.get("meta", b"format")
        if meta is None:
            if not create:
                raise StoreError(f"{self.path} is not a weft store")

            def init(t: Txn) -> None:
                t.put("meta", b"format", {"format": "weft.store", "version": FORMAT_VERSION})
                t.put("meta", b"indexes", {"version": INDEX_VERSION})

            self.write(init)
        elif not isinstance(meta, dict) or meta.get("format") != "weft.store":
            raise StoreError(f"{self.path} is not a weft store")
        elif meta.get("version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"store {self.path} has format version {meta['version']}; "
                f"this weft reads version {FORMAT_VERSION} at most"
            )

    def close(self) -> None:
        with self._lock:
            self._forget()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------

    def _begin(self, write: bool) -> lmdb.Transaction:
        try:
            return self.env.begin(write=write)
        except lmdb.MapResizedError:  # another process grew the map
            self.env.set_mapsize(0)
            return self.env.begin(write=write)

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """A consistent read-only view of the store."""
        with self._lock:
            try:
                txn = self._begin(write=False)
            except lmdb.Error as e:
                raise StoreError(f"cannot read store {self.path}: {_reason(e)}") from None
            try:
                yield Txn(self, txn)
            except lmdb.Error as e:
                raise StoreError(f"cannot read store {self.path}: {_reason(e)}") from None
            finally:
                txn.abort()

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` in a write transaction and commit it durably; grow the map when full."""
        with self._lock:
            while True:
                try:
                    txn = self._begin(write=True)
                except lmdb.Error as e:
                    raise StoreError(f"cannot write to store {self.path}: {_reason(e)}") from None
                try:
                    result = fn(Txn(self, txn))
                except lmdb.MapFullError:
                    txn.abort()
                    self._grow()
                    continue
                except lmdb.Error as e:
                    txn.abort()
                    raise StoreError(f"cannot write to store {self.path}: {_reason(e)}") from None
                except codec.BadValue as e:
                    txn.abort()
                    raise StoreError(f"cannot write to store {self.path}: {e}") from None
                except BaseException:
                    txn.abort()
                    raise
                try:
                    txn.commit()
                except lmdb.MapFullError:
                    self._grow()
                    continue
                except lmdb.Error as e:
                    raise _write_error(self.path, e) from None
                return result

    def _grow(self) -> None:
        size = self.env.info()["map_size"]
        if size >= self._max:
            raise StoreFull(
                f"store {self.path} is full: it reached its maximum size of {size >> 20} MB "
                "(WEFT_STORE_MAX_MB); earlier records are intact"
            )
        self.env.set_mapsize(min(size * 2, self._max))


def _reason(e: lmdb.Error) -> str:
    return str(e).split(": ", 1)[-1] or type(e).__name__


def _write_error(path: str, e: lmdb.Error) -> StoreError:
    """A failed commit as a one-line error; LMDB reports a short write as EIO, so look for why."""
    reason = _reason(e)
    full = _no_room(path) if "Input/output" in reason else None
    if full or any(w in reason for w in ("No space", "too large", "Disk quota")):
        return StoreFull(f"store {path} is full: {full or reason}; earlier records are intact")
    return StoreError(f"cannot write to store {path}: {reason}")


def _no_room(path: str) -> str | None:
    """Why the store's file cannot grow (a file size limit, a full disk), or None."""
    size = os.path.getsize(os.path.join(path, "data.mdb"))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + (1 << 20) >= limit:
        return f"the file size limit ({limit >> 10} KB, ulimit -f) is reached"
    disk = os.statvfs(path)
    if disk.f_bavail * disk.f_frsize < 16 << 20:
        return "the disk is full"
    return None


def ignore_file_size_signal() -> None:
    """Make a file-size limit fail the write (a clear error) instead of killing the process."""
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class Txn:
    """One transaction: typed access to the records of the store."""

    __slots__ = ("store", "raw", "_dbs")

    def __init__(self, store: Store, raw: lmdb.Transaction) -> None:
        self.store = store
        self.raw = raw
        self._dbs = getattr(store, "dbs", None)

    # -- plain values ----------------------------------------------------------------

    def _decode(self, db: str, key: bytes, raw: bytes) -> Any:
        try:
            return codec.decode(raw)
        except codec.BadValue as e:
            shown = key.decode("utf-8", "replace").replace("\0", ":")
            raise CorruptRecord(f"corrupt record {db}:{shown} in {self.store.path} ({e})") from None

    def get(self, db: str, key: bytes) -> Any:
        raw = self.raw.get(key, db=self._dbs[db])
        return None if raw is None else self._decode(db, key, raw)

    def put(self, db: str, key: bytes, value: Any) -> None:
        self.raw.put(key, codec.encode(value), db=self._dbs[db])

    def delete(self, db: str, key: bytes) -> None:
        self.raw.delete(key, db=self._dbs[db])

    def keys(self, db: str, prefix: bytes, reverse: bool = False) -> Iterator[bytes]:
        """Keys starting with `prefix`, in key order (or reversed)."""
        for key, _ in self._items(db, prefix, reverse):
            yield key

    def scan(self, db: str, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        """(key, value) pairs whose key starts with `prefix`, in key order."""
        for key, raw in self._items(db, prefix, False):
            yield key, self._decode(db, key, raw)

    def _items(self, db: str, prefix: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        cur = self.raw.cursor(db=self._dbs[db])
        if not reverse:
            found = cur.set_range(prefix)
            while found and cur.key().startswith(prefix):
                yield cur.key(), cur.value()
                found = cur.next()
            return
        found = cur.set_range(prefix + b"\xff" * 16)
        found = cur.prev() if found else cur.last()
        while found and cur.key().startswith(prefix):
            yield cur.key(), cur.value()
            found = cur.prev()

    # -- runs, plans, steps ----------------------------------------------------------

    def run(self, run_id: str) -> dict | None:
        return self.get("runs", run_id.encode())

    def put_run(self, run: dict) -> None:
        """Write a run record and bring its index entries up to date."""
        key = run["id"].encode()
        old = self.get("runs", key)
        new_keys = index_keys(run)
        old_keys = index_keys(old) if old is not None else set()
        indexes = self._dbs["indexes"]
        for k in old_keys - new_keys:
            self.raw.delete(k, db=indexes)
        for k in new_keys - old_keys:
            self.raw.put(k, _NO_VALUE, db=indexes)
        self.put("runs", key, run)

    def plan(self, run_id: str) -> dict | None:
        return self.get("plans", run_id.encode())

    def put_plan(self, run_id: str, plan: dict) -> None:
        self.put("plans", run_id.encode(), plan)

    def steps(self, run_id: str) -> dict[str, dict]:
        return {key[ID_LEN:].decode(): rec for key, rec in self.scan("steps", run_id.encode())}

    def put_step(self, run_id: str, step_id: str, rec: dict) -> None:
        """Write a step record and bring its timer index entries up to date."""
        key = run_id.encode() + step_id.encode()
        timers.update(self, run_id, step_id, self.get("steps", key), rec)
        self.put("steps", key, rec)

    def run_ids(self, prefix: str = "") -> Iterator[str]:
        """Ids of the runs whose id starts with `prefix`, oldest first."""
        for key in self.keys("runs", prefix.encode()):
            yield key.decode()

    def find_run(self, text: str) -> str:
        """The id of the one run whose id is `text` or starts with it; StoreError otherwise."""
        prefix = ids.normalize(text)
        if not ids.is_id_text(prefix):
            raise StoreError(f"{text!r} is not a run id")
        found = []
        for run_id in self.run_ids(prefix):
            found.append(run_id)
            if run_id == prefix or len(found) > 5:
                break
        if prefix in found:
            return prefix
        if len(found) == 1:
            return found[0]
        if not found:
            raise StoreError(f"no run {text!r} in {self.store.path}")
        more = ", ..." if len(found) > 5 else ""
        raise StoreError(f"run id prefix {text!r} is ambiguous: {', '.join(found[:5])}{more}")

    def children(self, parent: str, step: str) -> list[tuple[int, str]]:
        """(item index, run id) of the sub-runs made by step `step` of run `parent`."""
        prefix = _child_prefix(parent, step)
        return [(_INDEX.unpack_from(k, len(prefix))[0], k[-ID_LEN:].decode()) for k in self.keys("indexes", prefix)]

    def index(self, field: str, value: str | None = None, reverse: bool = False) -> Iterator[str]:
        """Run ids from one index, in index order; `value` narrows it to one state/flow/tag."""
        for key in self.keys("indexes", index_prefix(field, value), reverse):
            yield key[-ID_LEN:].decode()

    # -- history -------------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        for key in self.keys("events", run_id.encode(), reverse=True):
            return _SEQ.unpack(key[ID_LEN:])[0]
        return 0

    def append_events(self, run_id: str, events: list[dict]) -> int:
        """Append events after the run's last one; returns the new last seq."""
        seq = self.last_seq(run_id)
        db = self._dbs["events"]
        for event in events:
            seq += 1
            self.raw.put(seq_key(run_id, seq), codec.encode(event), db=db, overwrite=False)
        return seq

    def events(self, run_id: str) -> list[tuple[int, dict]]:
        return [(_SEQ.unpack(k[ID_LEN:])[0], e) for k, e in self.scan("events", run_id.encode())]

    # -- leases and requests ---------------------------------------------------------

    def lease(self, run_id: str) -> dict | None:
        return self.get("leases", run_id.encode())

    def put_lease(self, run_id: str, lease: dict) -> None:
        self.put("leases", run_id.encode(), lease)

    def drop_lease(self, run_id: str) -> None:
        self.delete("leases", run_id.encode())

    def lock_holder(self, name: str) -> str | None:
        return self.get("leases", b"lock\0" + name.encode())

    def put_lock(self, name: str, run_id: str | None) -> None:
        if run_id is None:
            self.delete("leases", b"lock\0" + name.encode())
        else:
            self.put("leases", b"lock\0" + name.encode(), run_id)

    def requests(self, run_id: str) -> list[tuple[bytes, dict]]:
        return list(self.scan("requests", run_id.encode()))

    def put_request(self, run_id: str, name: str, request: dict) -> None:
        self.put("requests", run_id.encode() + name.encode(), request)
