"""The LMDB store and its record codec, on real stores in temporary folders."""

from __future__ import annotations

import os
import time

import pytest

from weft.runtime import ids
from weft.runtime.stores.lmdb import codec
from runtime_support.checks import index_problems
from weft.runtime.stores.lmdb.store import CorruptRecord, Store, StoreError, StoreFull


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


def test_records_indexes_and_history(tmp_path):
    with Store(str(tmp_path)) as store:
        a, b = ids.new_run_id(), ids.new_run_id()

        def write(t):
            t.put_run(run_record(a))
            t.put_run(run_record(b, flow="g", tags=("a", "b")))
            t.put_step(a, "x/y", {"state": "pending"})
            assert t.append_events(a, [{"n": 1}, {"n": 2}]) == 2

        store.write(write)
        store.write(lambda t: t.append_events(a, [{"n": 3}]))
        with store.read() as t:
            assert [seq for seq, _ in t.events(a)] == [1, 2, 3]
            assert t.events(b) == []
            assert t.steps(a) == {"x/y": {"state": "pending"}}
            assert list(t.index("state", "running")) == [a, b]
            assert list(t.index("tag", "b")) == [b]
            assert list(t.index("started", reverse=True)) == [b, a]
        done = dict(run_record(a), state="succeeded", ended=time.time())
        store.write(lambda t: t.put_run(done))
        with store.read() as t:
            assert list(t.index("state", "running")) == [b]
            assert list(t.index("state", "succeeded")) == [a]
            assert list(t.index("ended")) == [a]
        assert index_problems(store) == []


def test_find_run_by_prefix(tmp_path):
    with Store(str(tmp_path)) as store:
        a = ids.new_run_id()
        b = a[:-1] + ("1" if a[-1] != "1" else "2")
        store.write(lambda t: [t.put_run(run_record(a)), t.put_run(run_record(b))])
        with store.read() as t:
            assert t.find_run(a.lower()) == a
            with pytest.raises(StoreError, match="ambiguous"):
                t.find_run(a[:20])
            with pytest.raises(StoreError, match="no run 'ZZZZ'"):
                t.find_run("ZZZZ")
            with pytest.raises(StoreError, match="is not a run id"):
                t.find_run("run-1!")


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
        store.write(lambda t: t.put("meta", b"format", {"format": "weft.store", "version": 99}))
    with pytest.raises(StoreError, match="format version 99"):
        Store(str(tmp_path), create=False)


def test_opening_needs_an_existing_store_unless_creating(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store(str(tmp_path / "none"), create=False)
    assert not (tmp_path / "none").exists()


def test_one_open_per_process(tmp_path):
    with Store(str(tmp_path)):
        with pytest.raises(StoreError, match="already open"):
            Store(str(tmp_path))
    Store(str(tmp_path)).close()


def test_the_map_grows_when_full(tmp_path):
    with Store(str(tmp_path)) as store:
        store.env.set_mapsize(1 << 20)
        blob = os.urandom(1 << 20).hex()
        for i in range(3):
            store.write(lambda t: t.put("meta", f"blob{i}".encode(), blob))
        assert store.env.info()["map_size"] > 4 << 20
        with store.read() as t:
            assert t.get("meta", b"blob2") == blob


def test_a_full_store_fails_clearly_and_keeps_what_it_had(tmp_path, monkeypatch):
    monkeypatch.setenv("WEFT_STORE_MAX_MB", "2")
    rid = ids.new_run_id()
    with Store(str(tmp_path)) as store:
        store.write(lambda t: t.put_run(run_record(rid)))
        with pytest.raises(StoreFull, match="is full: it reached its maximum size of 2 MB"):
            store.write(lambda t: t.put("meta", b"big", os.urandom(3 << 20)))
    with Store(str(tmp_path), create=False) as store:
        with store.read() as t:
            assert t.run(rid)["state"] == "running" and t.get("meta", b"big") is None
