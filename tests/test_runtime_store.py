"""The LMDB backend's own properties, on real stores in temporary folders: records on disk, the map, sharing.

What every backend promises is in test_store_contract.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from runtime_support.checks import index_problems
from weft.runtime import ids
from weft.runtime.stores.lmdb import codec
from weft.runtime.stores.lmdb.store import FORMAT_VERSION, Store
from weft.runtime.stores.port import CorruptRecord, StoreError, StoreFull


def run_record(run_id: str, state: str = "running", flow: str = "f", tags=("a",)) -> dict:
    return {"id": run_id, "state": state, "flow": flow, "tags": list(tags), "created": time.time(), "ended": None}


def test_codec_round_trips_and_detects_damage():
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": b"\x00\xff"}}
    raw = codec.encode(value)
    assert codec.decode(raw) == value
    flipped = bytearray(raw)
    flipped[-3] ^= 0x01
    with pytest.raises(codec.BadValue, match="checksum"):
        codec.decode(bytes(flipped))
    with pytest.raises(codec.BadValue, match="record version 9"):
        codec.decode(b"\x09" + raw[1:])
    with pytest.raises(codec.BadValue, match="too short"):
        codec.decode(b"\x01")


def test_run_ids_sort_by_creation_and_accept_prefixes():
    made = [ids.new_run_id() for _ in range(500)]
    assert made == sorted(made) and len(set(made)) == 500
    assert all(len(i) == 26 and ids.is_id_text(i) for i in made)
    assert ids.normalize(" 01abcdefghjk ") == "01ABCDEFGHJK"
    assert ids.normalize("0lo") == "010"


def test_a_flipped_byte_is_a_corrupt_record_not_a_different_value(tmp_path):
    rid = ids.new_run_id()
    with Store(str(tmp_path)) as store:
        store.write(lambda t: t.put_run(dict(run_record(rid), error="CANARY-LABEL-0123456789")))
    data = tmp_path / "data.mdb"
    raw = bytearray(data.read_bytes())
    at = raw.find(b"CANARY-LABEL")
    assert at > 0
    raw[at + 3] ^= 0x20
    data.write_bytes(bytes(raw))
    with Store(str(tmp_path), create=False) as store:
        with store.read() as t:
            with pytest.raises(CorruptRecord, match=f"corrupt record runs:{rid} in {tmp_path}"):
                t.run(rid)


def test_a_newer_store_format_is_refused(tmp_path):
    with Store(str(tmp_path)) as store:
        store.write(lambda t: t.put_meta("format", {"format": "weft.store", "version": 99}))
    with pytest.raises(StoreError, match="format version 99"):
        Store(str(tmp_path), create=False)


def test_a_store_of_the_format_before_is_read_as_it_is_and_marked_by_the_first_write(tmp_path):
    """Version 1 stores (no tallies, plain plan chunks) are read; the first commit of this Weft marks the store
    with its own version, so that a Weft reading version 1 at most refuses it rather than misread it."""
    rid = ids.new_run_id()
    with Store(str(tmp_path)) as store:
        store.write(lambda t: t.put_run(run_record(rid)))
        store.write(lambda t: t.put_meta("format", {"format": "weft.store", "version": 1}))
    with Store(str(tmp_path), create=False) as store:
        with store.read() as t:
            assert t.run(rid)["id"] == rid and t.meta("format")["version"] == 1  # reading changes nothing
        store.write(lambda t: t.put_run(run_record(rid, state="succeeded")))
        with store.read() as t:
            assert t.meta("format") == {"format": "weft.store", "version": FORMAT_VERSION} and FORMAT_VERSION == 2
            assert t.run(rid)["state"] == "succeeded"


def test_opening_needs_an_existing_store_unless_creating(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(str(tmp_path / "none"), create=False)
    assert not (tmp_path / "none").exists()


def test_stores_opened_twice_in_a_process_share_one_environment_until_the_last_closes(tmp_path):
    rid = ids.new_run_id()
    first = Store(str(tmp_path))
    with Store(str(tmp_path)) as second:
        assert second.env is first.env
        second.write(lambda t: t.put_run(run_record(rid)))
        first.close()
        with second.read() as t:
            assert t.run(rid)["state"] == "running"
    with pytest.raises(StoreError, match="is closed"):
        first.read().__enter__()
    with Store(str(tmp_path), create=False) as third:  # a fresh environment after the last close
        with third.read() as t:
            assert t.run(rid)["state"] == "running"


def test_the_map_grows_when_full_while_other_threads_read(tmp_path):
    with Store(str(tmp_path)) as store:
        rid = ids.new_run_id()
        store.write(lambda t: t.put_run(run_record(rid)))
        store.env.set_mapsize(1 << 20)
        stop, reads, errors = threading.Event(), [0], []

        def reader():
            try:
                while not stop.is_set():
                    with store.read() as t:
                        assert t.run(rid)["state"] == "running"
                    reads[0] += 1
                    time.sleep(0.001)  # readers as a server has them, not a loop holding the GIL
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for thread in threads:
            thread.start()
        blob = os.urandom(1 << 20).hex()
        for i in range(3):
            store.write(lambda t: t.put_meta(f"blob{i}", blob))
        stop.set()
        for thread in threads:
            thread.join()
        assert errors == [] and reads[0] > 0
        assert store.env.info()["map_size"] > 4 << 20
        with store.read() as t:
            assert t.meta("blob2") == blob
        assert index_problems(store) == []


def test_a_map_grown_by_another_process_is_adopted(tmp_path):
    with Store(str(tmp_path)) as store:
        store.env.set_mapsize(1 << 20)
        grow = (
            "import os, sys; from weft.runtime.stores.lmdb.store import Store\n"
            "with Store(sys.argv[1]) as s: s.write(lambda t: t.put_meta('big', os.urandom(3 << 20).hex()))"
        )
        subprocess.run([sys.executable, "-c", grow, str(tmp_path)], check=True, timeout=60)
        with store.read() as t:
            assert len(t.meta("big")) == 6 << 20
        store.write(lambda t: t.put_meta("after", 1))
        assert store.env.info()["map_size"] > 6 << 20


def test_a_full_store_fails_clearly_and_keeps_what_it_had(tmp_path, monkeypatch):
    monkeypatch.setenv("WEFT_STORE_MAX_MB", "2")
    rid = ids.new_run_id()
    with Store(str(tmp_path)) as store:
        store.write(lambda t: t.put_run(run_record(rid)))
        with pytest.raises(StoreFull, match="is full: it reached its maximum size of 2 MB"):
            store.write(lambda t: t.put_meta("big", os.urandom(3 << 20)))
    with Store(str(tmp_path), create=False) as store:
        with store.read() as t:
            assert t.run(rid)["state"] == "running" and t.meta("big") is None
