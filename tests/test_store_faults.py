"""The store folder under faults: private modes, unusable --store paths, a folder deleted mid-run (issue 9: 12-14)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

FLOW = """
flow quick() {
    a = std.log(message: "hi")
}

flow slow() {
    sequence {
        a = std.sleep(seconds: 1.0)
        b = std.sleep(seconds: 1.0)
        c = std.sleep(seconds: 1.0)
        d = std.sleep(seconds: 1.0)
    }
}
"""
RUN = "01M8REHJ2PVAE3AWXGXWSQ4D21"


def weft(*args: str, cwd: str, umask: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "weft.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )
    assert "Traceback" not in done.stderr and done.returncode != 70, done.stderr
    return done


@pytest.fixture
def flow(tmp_path) -> str:
    path = tmp_path / "f.flow"
    path.write_text(FLOW)
    return str(path)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a_new_store_is_private_whatever_the_umask(tmp_path, flow, umask):
    store = str(tmp_path / "store")
    assert weft("run", flow, "--flow", "quick", "--store", store, cwd=str(tmp_path), umask=umask).returncode == 0
    assert mode(store) == 0o700
    files = os.listdir(store)
    assert {"data.mdb", "lock.mdb"} <= set(files)
    assert all(mode(os.path.join(store, f)) == 0o600 for f in files), {
        f: oct(mode(os.path.join(store, f))) for f in files
    }


def test_an_existing_store_keeps_its_modes_and_works(tmp_path, flow):
    store = str(tmp_path / "store")
    weft("run", flow, "--flow", "quick", "--store", store, cwd=str(tmp_path))
    os.chmod(store, 0o750)
    for f in os.listdir(store):
        os.chmod(os.path.join(store, f), 0o640)
    assert weft("run", flow, "--flow", "quick", "--store", store, cwd=str(tmp_path)).returncode == 0
    assert "succeeded" in weft("list", "--store", store, cwd=str(tmp_path)).stdout
    assert mode(store) == 0o750 and mode(os.path.join(store, "data.mdb")) == 0o640


def bad_paths(tmp_path) -> dict[str, str]:
    regular = tmp_path / "a-file"
    regular.write_text("not a store")
    return {
        "a regular file": str(regular),
        "below a device": "/dev/null/x",
        "below a file": str(regular / "store"),
        "a 300-character name": str(tmp_path / ("x" * 300)),
        "uncreatable": "/proc/weft-store/x",
    }


COMMANDS = [
    ("run", "{flow}", "--flow", "quick"),
    ("run", "{flow}", "--flow", "quick", "--detach"),
    ("worker", "--once"),
    ("list",),
    ("prune", "--older-than", "1d"),
    ("show", RUN),
    ("resume", RUN),
    ("skip", RUN, "a"),
    ("cancel", RUN),
    ("rollback", RUN),
    ("signal", RUN, "go"),
    ("graph", RUN),
    ("doctor",),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_every_command_refuses_an_unusable_store_path_in_one_line(tmp_path, flow, command):
    for what, path in bad_paths(tmp_path).items():
        args = [a.format(flow=flow) for a in command]
        done = weft(*args, "--store", path, cwd=str(tmp_path))
        assert done.returncode == 2, (what, done.returncode, done.stderr)
        assert done.stderr.startswith("weft: error: ") and done.stderr.count("\n") == 1, (what, done.stderr)


def test_a_store_deleted_during_a_run_stops_it_with_one_line(tmp_path, flow):
    store = str(tmp_path / "store")
    proc = subprocess.Popen(
        [sys.executable, "-m", "weft.cli.main", "run", flow, "--flow", "slow", "--store", store],
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    end = time.monotonic() + 30
    while not os.path.exists(os.path.join(store, "data.mdb")):
        assert time.monotonic() < end
        time.sleep(0.05)
    time.sleep(0.5)
    shutil.rmtree(store)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (proc.returncode, out, err)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("weft: error: store ") and "was deleted or replaced while in use" in err
    assert "run succeeded" not in out


def test_a_truncated_data_file_is_refused_in_one_line_by_every_command(tmp_path, flow):
    """Cut below what its last commit wrote, the mapped file killed every command with SIGBUS (exit 135, no
    message), `weft doctor` included. The file is left as it was: nothing is written to it."""
    store = str(tmp_path / "store")
    assert weft("run", flow, "--flow", "quick", "--store", store, cwd=str(tmp_path)).returncode == 0
    data = os.path.join(store, "data.mdb")
    os.truncate(data, 16384)
    for command in COMMANDS:
        done = weft(*[a.format(flow=flow) for a in command], "--store", store, cwd=str(tmp_path))
        assert done.returncode == 2, (command, done.returncode, done.stderr)
        assert re.fullmatch(
            f"weft: error: store {re.escape(store)} is damaged: its data file is 16,384 bytes, shorter than the "
            r"[\d,]+ its last commit wrote \(truncated\?\); restore it from a backup\n",
            done.stderr,
        ), (command, done.stderr)
    assert os.path.getsize(data) == 16384
