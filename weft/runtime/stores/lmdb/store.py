"""The LMDB store: one environment per store folder and process, many readers, one writer at a time.

Every Store opened on a folder in this process shares one lmdb Environment
(reference counted; closed with the last Store). Readers take no lock for the
length of their transaction: LMDB read transactions are MVCC snapshots, so a
read never waits for a commit or its fsync. One mutex per environment orders
this process's writers (LMDB orders writers across processes).

Writes go through `Store.write(fn)`: `fn` gets a Txn, may be called again when
the map is full (the map is grown and the transaction retried), and its
changes are durable (fsync) when `write` returns. Growing the map, or adopting
the size another process grew it to (MapResizedError), must not overlap any
transaction of this process: only then do new transactions wait, briefly, for
the ones in flight to finish (`_Gate`).

The folder is made 0700 and its files 0600 whatever the umask (run inputs are
in them); an existing store is opened as it is. Before each commit the
folder's data.mdb is checked to be the file opened (device and inode, one
stat): a store deleted, moved or replaced while in use stops its writers with
StoreGone instead of letting them write on into unlinked files.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import lmdb

from weft.runtime.stores import port
from weft.runtime.stores.lmdb import catalog, codec, length
from weft.runtime.stores.lmdb.derived import Derived
from weft.runtime.stores.lmdb.keys import DATABASES, INDEX_VERSION
from weft.runtime.stores.lmdb.txn import Txn
from weft.runtime.stores.port import StoreError, StoreFull

# 2: a big Plan's chunks may be packed groups of steps (weft.plan.shared), and step records move the run's tally
# (tally.py). A store of version 1 is read as it is; the first write of this Weft to it marks it 2, so that a Weft
# reading version 1 at most refuses it in one line instead of misreading what this one wrote.
FORMAT_VERSION = 2
_FORMAT = {"format": "weft.store", "version": FORMAT_VERSION}
_INITIAL_MAP = 64 << 20
_DEFAULT_MAX_MAP = 1 << 40
T = TypeVar("T")


def max_map_size() -> int:
    text = os.environ.get("WEFT_STORE_MAX_MB")
    if not text:
        return _DEFAULT_MAX_MAP
    try:
        return max(1, int(text)) << 20
    except ValueError:
        raise StoreError(f"WEFT_STORE_MAX_MB must be a number of megabytes, not {text!r}") from None


class _Gate:
    """Transactions come and go freely; a map resize waits until none is in flight, and holds new ones back.

    The condition's lock is held only to count, never while a transaction runs. A thread already
    inside a transaction never waits (its own transactions may nest), and a resize from such a
    thread waits only for the other threads' transactions.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._active = 0
        self._resizing = False
        self._mine = threading.local()

    def _depth(self) -> int:
        return getattr(self._mine, "depth", 0)

    def enter(self) -> None:
        """A transaction of this thread begins (waits only while a resize is under way)."""
        depth = self._depth()
        with self._lock:
            if self._resizing and depth == 0:
                self._cond.wait_for(lambda: not self._resizing)
            self._active += 1
        self._mine.depth = depth + 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._resizing:
                self._cond.notify_all()
        self._mine.depth -= 1

    @contextmanager
    def alone(self) -> Iterator[None]:
        mine = self._depth()
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active > mine:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class _Env:
    """An lmdb Environment, its named databases, and the handles open on it in this process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.max = max_map_size()
        self.writer = threading.Lock()
        self.queued = threading.Lock()  # guards `waiting`
        self.waiting: list = []  # the writers (store._Writer) whose next commit has not begun
        self.derived = {"runs": Derived(), "steps": Derived()}  # for the writer (txn.py)
        self.gate = _Gate()
        self.handles = 0
        self.older = False  # the store's format version is below FORMAT_VERSION: the next commit marks it
        _make_folder(path)
        data = os.path.join(path, "data.mdb")
        existed = os.path.exists(data)
        size = os.path.getsize(data) if existed else 0
        short = length.shortfall(data) if size else None
        if short is not None:
            raise StoreError(f"store {path} is damaged: {short}; restore it from a backup")
        self.env = lmdb.open(
            path,
            map_size=min(max(_INITIAL_MAP, 2 * size), self.max),
            max_dbs=len(DATABASES) + 4,
            sync=True,
            metasync=True,
            writemap=False,
            lock=True,
            readahead=False,
            mode=0o600,
        )
        try:
            if not existed:
                for name in ("data.mdb", "lock.mdb"):
                    os.chmod(os.path.join(path, name), 0o600)
            self.data = data
            self.identity = identity(data)
            self.env.reader_check()
            with self.env.begin(write=True) as txn:
                self.dbs = {name: self.env.open_db(name.encode(), txn=txn) for name in DATABASES}
        except BaseException:
            self.env.close()
            raise

    def check_identity(self) -> None:
        """StoreGone if the folder's data.mdb is no longer the file this environment opened."""
        try:
            now = identity(self.data)
        except OSError:
            now = None
        if now != self.identity:
            raise StoreGone(
                f"store {self.path} was deleted or replaced while in use: stopped, nothing more is written there"
            )

    def adopt_size(self) -> None:
        """Take on the map size another process grew the map to."""
        with self.gate.alone():
            self.env.set_mapsize(0)

    def grow(self) -> None:
        size = self.env.info()["map_size"]
        if size >= self.max:
            raise StoreFull(
                f"store {self.path} is full: it reached its maximum size of {size >> 20} MB "
                "(WEFT_STORE_MAX_MB); earlier records are intact"
            )
        with self.gate.alone():
            self.env.set_mapsize(min(size * 2, self.max))


_envs: dict[str, _Env] = {}
_envs_guard = threading.Lock()


class Store(port.Store):
    """An open LMDB store folder. Use as a context manager, or call close()."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = os.path.abspath(path)
        if not create and not os.path.exists(os.path.join(self.path, "data.mdb")):
            raise StoreError(f"no store at {self.path} (give --store DIR or set WEFT_STORE)")
        with _envs_guard:
            env = _envs.get(self.path)
            if env is None:
                try:
                    env = _Env(self.path)
                except lmdb.Error as e:
                    raise StoreError(f"cannot open store {self.path}: {_reason(e)}") from None
                _envs[self.path] = env
            env.handles += 1
        self._env: _Env | None = env
        try:
            self._check_format(create)
            catalog.ensure_indexes(self)
        except BaseException:
            self.close()
            raise

    @property
    def env(self) -> lmdb.Environment:
        return self._opened().env

    def _opened(self) -> _Env:
        if self._env is None:
            raise StoreError(f"store {self.path} is closed")
        return self._env

    def _check_format(self, create: bool) -> None:
        with self.read() as t:
            meta = t.meta("format")
            damaged = meta is None and next(t.keys("runs"), None) is not None
        if damaged:
            return  # it holds runs but lost its format record (a damaged key): open it for `weft doctor`
        if meta is None:
            if not create:
                raise StoreError(f"{self.path} is not a weft store")

            def init(t: Txn) -> None:
                t.put_meta("format", _FORMAT)
                t.put_meta("indexes", {"version": INDEX_VERSION})

            self.write(init)
        elif not isinstance(meta, dict) or meta.get("format") != "weft.store":
            raise StoreError(f"{self.path} is not a weft store")
        elif meta.get("version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"store {self.path} has format version {meta['version']}; "
                f"this weft reads version {FORMAT_VERSION} at most"
            )
        else:
            self._opened().older = meta.get("version", 0) < FORMAT_VERSION

    def close(self) -> None:
        """Let go of the environment; the last Store open on the folder in this process closes it."""
        env, self._env = self._env, None
        if env is None:
            return
        with _envs_guard:
            env.handles -= 1
            if env.handles == 0:
                del _envs[env.path]
                env.env.close()

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """A consistent read-only snapshot; it waits for no writer."""
        env = self._opened()
        while True:
            env.gate.enter()
            try:
                txn = env.env.begin(write=False)
            except lmdb.MapResizedError:
                env.gate.leave()
                env.adopt_size()
                continue
            except lmdb.Error as e:
                env.gate.leave()
                raise StoreError(f"cannot read store {self.path}: {_reason(e)}") from None
            try:
                yield Txn(self, txn, env.dbs, env.derived)
            except lmdb.Error as e:
                raise StoreError(f"cannot read store {self.path}: {_reason(e)}") from None
            finally:
                txn.abort()
                env.gate.leave()
            return

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` in a write transaction and commit it durably; grow the map when full.

        Writers of this process that come while a commit is under way share the next one (group commit):
        the first of them runs every waiting `fn`, each in a nested transaction, so one that raises leaves
        no trace and is answered with its exception while the others commit, with one fsync for all. Each
        `write` returns once its changes are durable. Not from inside a `read()` of this thread: growing
        the map waits for every reader to finish.
        """
        env = self._opened()
        mine = _Writer(self, fn)
        with env.queued:
            env.waiting.append(mine)
        with env.writer:
            if not mine.done:
                with env.queued:
                    batch, env.waiting = env.waiting, []
                _commit(env, batch)
        return mine.outcome()


class _Writer:
    """One `Store.write` waiting for its commit: its function, then its result or exception."""

    __slots__ = ("done", "error", "fn", "result", "store")

    def __init__(self, store: Store, fn: Callable[[Txn], object]) -> None:
        self.store = store
        self.fn = fn
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None

    def outcome(self) -> object:
        if self.error is not None:
            raise self.error
        return self.result


def _commit(env: _Env, batch: list[_Writer]) -> None:
    """Commit the functions of `batch` in one transaction, growing or resizing the map and trying again as
    needed; answer each writer. A fault of the transaction itself answers every writer of it."""
    try:
        while True:
            env.gate.enter()
            try:
                done = _attempt(env, batch)
            finally:
                env.gate.leave()
            if done == "resized":
                env.adopt_size()
            elif done == "full":
                env.grow()
            else:
                break
    except BaseException as e:  # noqa: BLE001 - answered to each writer of the batch, in its own thread
        for writer in batch:
            writer.error = e
    for writer in batch:
        writer.done = True


def _attempt(env: _Env, batch: list[_Writer]) -> str:
    """One try at the functions of `batch`: "ok", or "full" | "resized" to grow or resize and retry."""
    path = batch[0].store.path
    try:
        txn = env.env.begin(write=True)
    except lmdb.MapResizedError:
        return "resized"
    except lmdb.Error as e:
        raise StoreError(f"cannot write to store {path}: {_reason(e)}") from None
    for writer in batch:
        writer.result, writer.error = None, None
        try:
            inner = txn if len(batch) == 1 else env.env.begin(write=True, parent=txn)
        except lmdb.Error as e:
            txn.abort()
            raise StoreError(f"cannot write to store {path}: {_reason(e)}") from None
        try:
            t = Txn(writer.store, inner, env.dbs, env.derived)
            writer.result = writer.fn(t)
            t.settle()
            if inner is not txn:
                inner.commit()
        except lmdb.MapFullError:
            inner.abort()
            txn.abort()
            return "full"
        except Exception as e:  # noqa: BLE001 - this writer's fault, answered to it alone
            inner.abort()
            if len(batch) == 1:
                txn.abort()
            writer.error = _fault(writer.store.path, e)
            if len(batch) == 1:
                return "ok"
        except BaseException:
            inner.abort()
            if inner is not txn:
                txn.abort()
            raise
    try:
        env.check_identity()
    except StoreGone:
        txn.abort()
        raise
    older = env.older
    if older:  # what this commit writes may be of the current format only
        Txn(batch[0].store, txn, env.dbs, env.derived).put_meta("format", _FORMAT)
    try:
        txn.commit()
    except lmdb.MapFullError:
        return "full"
    except lmdb.Error as e:
        raise _write_error(path, e) from None
    if older:
        env.older = False
    return "ok"


def _fault(path: str, e: Exception) -> Exception:
    """What a writer whose function raised `e` is answered: the store's faults as StoreError, others as they are."""
    if isinstance(e, lmdb.Error):
        return StoreError(f"cannot write to store {path}: {_reason(e)}")
    if isinstance(e, codec.BadValue):
        return StoreError(f"cannot write to store {path}: {e}")
    return e


class StoreGone(StoreError):
    """The store folder was deleted or replaced under an open store."""


def identity(data: str) -> tuple[int, int]:
    """(device, inode) of file `data`: a folder deleted, moved or replaced leaves none, or another."""
    found = os.stat(data)
    return found.st_dev, found.st_ino


def _make_folder(path: str) -> None:
    """Create the store folder (0700), or check that `path` is one; StoreError saying why it cannot be."""
    try:
        os.makedirs(path, mode=0o700)
        os.chmod(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise StoreError(f"cannot use {path} as a store: it is a file, not a folder") from None
    except OSError as e:
        raise StoreError(f"cannot create store folder {path}: {e.strerror or e}") from None


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
