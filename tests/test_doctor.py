"""`weft doctor`: bit flips in the keys of every LMDB database are found, reads neither lie nor crash, and
`--repair` brings back the store as it was (issue 9, item 10)."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from weft.cli.main import main
from weft.client import Client
from weft.runtime.stores import open_store
from weft.runtime.stores.lmdb.keys import DATABASES

FLOW = """
flow ok(n: int = 2) -> (y: int) {
    meta label "ok ${n}" tags ["t1", "t2"]
    a = std.log(message: "one")
    b = std.log(message: "two") after a
    return (y: n)
}

flow many() {
    each i in [1, 2] concurrency 2 {
        ok(n: i)
    }
}

flow held(who: str = "x") {
    lock "host:${who}"
    ask = wait approval(ok: bool) timeout 1h
}
"""
FLIPS_PER_DATABASE = 2


def weft(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "weft.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode != 70, done.stderr
    return done


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A store with every database in use: ended runs, sub-runs, a run whose owner died (lease, lock,
    timer), a queued run (queue, lock) with a signal left for workers (request), a schedule."""
    root = tmp_path_factory.mktemp("doctor")
    flow, store = str(root / "f.flow"), str(root / "store")
    with open(flow, "w") as f:
        f.write(FLOW)
    assert weft("run", flow, "--flow", "ok", "--store", store).returncode == 0
    assert weft("run", flow, "--flow", "many", "--store", store).returncode == 0
    owner = subprocess.Popen(
        [sys.executable, "-m", "weft.cli.main", "run", flow, "--flow", "held", "--store", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with Client(store) as client:
        end = time.monotonic() + 30
        while not client.runs(flow="held").runs or client.runs(flow="held").runs[0].state != "running":
            assert time.monotonic() < end
            time.sleep(0.05)
        while not client.get(client.runs(flow="held").runs[0].id).steps[0].state == "suspended":
            assert time.monotonic() < end
            time.sleep(0.05)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    queued = weft("run", flow, "--flow", "held", "-i", "who=y", "--detach", "--store", store).stdout.split()[1]
    added = weft("schedule", "add", "nightly", flow, "--flow", "ok", "--cron", "0 3 * * *", "--store", store)
    assert added.returncode == 0, added.stderr
    with open_store(store) as s:
        s.hand_over(queued, "signal\0approval", {"kind": "signal", "name": "approval", "fields": {"ok": True}})
        with s.read() as t:
            assert all(t.raw_items(db) for db in DATABASES)
    return store


def contents(path: str) -> dict[str, list[tuple[bytes, bytes]]]:
    with open_store(path, create=False) as s, s.read() as t:
        return {db: t.raw_items(db) for db in DATABASES}


def flip(path: str, db: str, rng: random.Random) -> tuple[bytes, bytes]:
    """Flip one bit of one key of `db` (to a key not in use); (old key, new key)."""

    def write(t):
        items = t.raw_items(db)
        while True:
            key, raw = rng.choice(items)
            i = rng.randrange(len(key))
            new = key[:i] + bytes([key[i] ^ (1 << rng.randrange(8))]) + key[i + 1 :]
            if t.get_raw(db, new) is None:
                t.delete(db, key)
                t.put_raw(db, new, raw)
                return key, new

    with open_store(path, create=False) as s:
        return s.write(write)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code != 70 and "internal error" not in err and "Traceback" not in err, (args, err)
    return code, out, err


def run_ids(path: str) -> list[str]:
    with open_store(path, create=False) as s, s.read() as t:
        return [key.decode() for key, _ in t.raw_items("runs")]


def test_a_sound_store_is_sound(pristine, capsys):
    code, out, _ = cli(capsys, "doctor", "--store", pristine)
    assert code == 0 and "is sound" in out
    code, out, _ = cli(capsys, "doctor", "--store", pristine, "--json")
    assert code == 0 and json.loads(out)["healthy"] is True


@pytest.mark.parametrize("db", DATABASES)
def test_a_flipped_key_is_reported_never_returned_and_repaired(pristine, tmp_path, capsys, db):
    rng = random.Random(db)
    before = contents(pristine)
    runs = run_ids(pristine)
    for n in range(FLIPS_PER_DATABASE):
        store = str(tmp_path / f"store{n}")
        shutil.copytree(pristine, store)
        old, new = flip(store, db, rng)
        code, out, _ = cli(capsys, "doctor", "--store", store)
        assert code == 1, (old, new, out)
        # reads go on or refuse in one line: never exit 70, never a traceback
        for args in (("list", "--all"), ("list", "--state", "succeeded"), ("list", "--json", "--all")):
            cli(capsys, *args, "--store", store)
        for rid in runs:
            code, _, err = cli(capsys, "show", rid, "--store", store)
            assert code == 0 or (code == 2 and err.count("\n") <= 2), err
        code, out, _ = cli(capsys, "doctor", "--repair", "--store", store)
        assert code == 0, (old, new, out)
        assert contents(store) == before, (old, new, out)
        assert cli(capsys, "doctor", "--store", store)[0] == 0
        started = time.monotonic()
        done = weft("worker", "--once", "--store", store, timeout=60)
        assert done.returncode == 0 and time.monotonic() - started < 60, done.stderr
        assert cli(capsys, "doctor", "--store", store)[0] == 0


def test_reads_skip_and_report_an_index_entry_naming_no_run(pristine, tmp_path, capsys):
    store = str(tmp_path / "store")
    shutil.copytree(pristine, store)
    rid = run_ids(pristine)[0]
    ghost = rid[:-1] + ("0" if rid[-1] != "0" else "1")
    with open_store(store) as s:
        s.write(lambda t: t.put("indexes", b"state\0succeeded\0" + ghost.encode(), None))
    code, out, err = cli(capsys, "list", "--state", "succeeded", "--store", store)
    assert code == 0 and ghost not in out and rid in out
    assert err.startswith("weft: warning: corrupt index entry") and f"names run {ghost}, which does not exist" in err
    code, out, _ = cli(capsys, "doctor", "--store", store)
    assert code == 1 and f"stale index entry indexes:state:succeeded:{ghost}" in out


def test_a_gap_in_a_history_is_refused_in_one_line(pristine, tmp_path, capsys):
    store = str(tmp_path / "store")
    shutil.copytree(pristine, store)
    rid = run_ids(pristine)[0]
    with open_store(store) as s:
        s.write(lambda t: t.delete("events", rid.encode() + (2).to_bytes(8, "big")))
    code, _, err = cli(capsys, "show", rid, "--store", store)
    assert code == 2 and f"the history of run {rid} has no event 2" in err and err.count("\n") == 1


def test_a_worker_does_not_spin_on_a_queue_entry_it_cannot_claim(pristine, tmp_path):
    store = str(tmp_path / "store")
    shutil.copytree(pristine, store)
    with open_store(store) as s:
        s.write(lambda t: t.put("queue", b"at\0" + bytes(8) + b"0" * 26, None))
    started = time.monotonic()
    done = weft("worker", "--once", "--store", store, timeout=60)
    assert done.returncode == 0 and time.monotonic() - started < 30
    assert "queue:at:" in done.stderr and "cannot be claimed" in done.stderr


def test_the_memory_backend_checks_and_repairs_through_the_port():
    with open_store("memory://doctor") as store, Client("memory://doctor") as client:
        store.write(lambda t: (t.put_lease("0" * 26, {"pid": 1}), t.put_lock("gone", "0" * 26)))
        report = client.doctor()
        assert not report.healthy and len(report.problems) == 2
        report = client.doctor(repair=True)
        assert report.healthy and len(report.repairs) == 2
        assert client.doctor().problems == ()


def test_doctor_without_a_store_is_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "doctor", "--store", str(tmp_path / "none"))
    assert code == 2 and err.startswith("weft: error: no store at") and err.count("\n") == 1
