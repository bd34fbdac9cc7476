"""The store shared by processes: concurrent writers and readers, kills, checksums, locks."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procestra import StoreBusyError, Workspace
from procestra.store.events import Store

READER = """
import sys, time, json
from procestra import Workspace
ws = Workspace(sys.argv[1])
deadline = time.time() + float(sys.argv[2])
reads, seen = 0, set()
while time.time() < deadline:
    for info in ws.logs():
        seen.add((info.name, info.events))
    reads += 1
print(json.dumps({"reads": reads, "seen": sorted(seen)}))
"""


@pytest.fixture(scope="module")
def big_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from procestra.mining.generate import generate_log, write_log

    d = tmp_path_factory.mktemp("big")
    a = write_log(generate_log(300_000, seed=1), d / "a.csv")
    b = write_log(generate_log(300_000, seed=2), d / "b.parquet")
    return a, b


def _ingest_proc(ws: Path, src: Path, log: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "procestra.cli", "-w", str(ws), "ingest", str(src), "--log", log, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PROCESTRA_NO_PROGRESS": "1"},
    )


def test_two_ingests_and_a_reader_in_separate_processes(tmp_path: Path, big_logs: tuple[Path, Path]) -> None:
    import json

    ws = Workspace.init(tmp_path / "ws")
    a, b = big_logs
    reader = subprocess.Popen([sys.executable, "-c", READER, str(ws.path), "12"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    writers = [_ingest_proc(ws.path, a, "a"), _ingest_proc(ws.path, b, "b")]
    outs = [w.communicate(timeout=300) for w in writers]
    r_out, r_err = reader.communicate(timeout=300)
    for w, (out, err) in zip(writers, outs):
        assert w.returncode == 0, err
        assert json.loads(out)["status"] == "loaded"
    assert reader.returncode == 0, r_err
    seen = json.loads(r_out)
    assert seen["reads"] > 5
    infos = {i.name: i.events for i in ws.logs()}
    assert set(infos) == {"a", "b"} and all(n > 290_000 for n in infos.values())
    # The reader only ever saw complete logs: a log appears with its full event count or not at all.
    for name, n in seen["seen"]:
        assert n == infos[name]


def test_killed_ingest_loses_nothing_and_leaves_no_lock(tmp_path: Path, big_logs: tuple[Path, Path]) -> None:
    """SIGKILL at random moments of a load: the store holds all of it or none of it."""
    ws = Workspace.init(tmp_path / "ws")
    a, b = big_logs
    ws.ingest(b, log="b")
    before = ws.store.checksums()
    started = time.monotonic()
    probe = _ingest_proc(ws.path, a, "probe")  # how long a whole load takes here, now
    assert probe.wait(timeout=300) == 0
    full = time.monotonic() - started
    ws.drop("probe")
    rng = random.Random(7)
    killed_running = 0
    for _ in range(6):
        proc = _ingest_proc(ws.path, a, "a")
        time.sleep(rng.uniform(0.05, 0.95) * full)
        if proc.poll() is None:
            killed_running += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = ws.store.checksums()
        if now != before:  # it got as far as its commit: then the whole log is there
            assert {i.name for i in ws.logs()} == {"a", "b"} and ws.info("a").events > 290_000
            ws.drop("a")
            assert ws.store.checksums() == before
    assert killed_running >= 3, "the kills should land while loads run"
    result = ws.ingest(a, log="a")
    assert result.status == "loaded" and ws.store.checksums()["logs"][0] == 2


def test_busy_store_times_out_with_a_clear_error(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(30)",
         str(ws.store.path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        slow = Store(ws.store.path, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="stayed locked"), slow.read():
            pass
        assert time.monotonic() - started >= 0.9
    finally:
        holder.kill()
        holder.wait()
    with ws.store.read() as con:  # free again once the other process is gone
        assert con.execute("SELECT count(*) FROM logs").fetchone()[0] == 0


def test_checksums_change_with_content(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    empty = ws.store.checksums()
    assert set(empty) == {"logs", "loads"}
    with ws.store.write() as con:
        con.execute("CREATE TABLE extra AS SELECT 1 AS x")
    assert ws.store.checksums() != empty
