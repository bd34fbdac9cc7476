"""The store shared by processes: readers isolated from writers, kills inside the commit, locks, checksums.

Expected event counts come from the generator's own tables (the rows written to each source
file), never from the store.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from procestra import StoreBusyError, Workspace
from procestra.store.events import Store
from procestra.store.testpoints import ENV as PAUSE_ENV
from syscall_trace import traced, unsynced_at

# A reader as readers are: Store.read() (read-only, retrying DuckDB's lock), then, inside ONE
# read transaction, every catalogue row's event count and the row count of its ev_<id> table,
# plus the ev_ tables that exist. It prints each distinct snapshot once. Its store gives up
# after 20 ms and it tries again at once: with the default timeout the retry's backoff grows
# towards 0.5 s while a writer holds the file, and the reader would sleep through the moments
# between two commits, where a store that commits a load in two steps shows half of it.
READER = """
import json, sys
from pathlib import Path
from procestra import StoreBusyError, Workspace
from procestra.store.events import Store

def snapshot(con):
    con.execute("BEGIN TRANSACTION")
    catalogue = con.execute("SELECT name, log_id, events FROM logs ORDER BY name").fetchall()
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE regexp_full_match(table_name, 'ev_[0-9]+')").fetchall()]
    rows = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    con.execute("COMMIT")
    return {"catalogue": {n: [i, e] for n, i, e in catalogue}, "rows": rows}

ws, stop = Workspace(sys.argv[1]), Path(sys.argv[2])
store = Store(ws.store.path, timeout=0.02)
reads, busy, seen = 0, 0, []
while True:
    final = stop.exists()  # one more read after the writers are done
    try:
        with store.read() as con:
            snap = snapshot(con)
    except StoreBusyError:
        busy += 1
        continue
    reads += 1
    if not seen or snap != seen[-1]:
        seen.append(snap)
    if reads == 1:
        print("ready", flush=True)
    if final:
        break
print(json.dumps({"reads": reads, "busy": busy, "seen": seen}))
"""

# A writer: a sequence of loads into one log through Workspace.ingest, each reported.
WRITER = """
import sys
from procestra import Workspace
ws = Workspace(sys.argv[1])
for step in sys.argv[3:]:
    mode, path = step.split("=", 1)
    r = ws.ingest(path, log=sys.argv[2], mode=mode, progress=False)
    print(r.status, r.events_added, flush=True)
"""


_STATUS = {"create": "loaded", "append": "appended", "replace": "replaced"}


Key = tuple[str, str, datetime]


@dataclass(frozen=True)
class Part:
    """One source file, and the rows the generator wrote into it as (case, activity, time), sorted."""

    path: Path
    keys: list[Key]

    @property
    def rows(self) -> int:
        return len(self.keys)


def _part(table: pa.Table, path: Path) -> Part:
    from procestra.mining.generate import write_log

    keys = zip(table["case_id"].to_pylist(), table["activity"].to_pylist(), table["timestamp"].to_pylist())
    return Part(write_log(table, path), sorted(keys))


def _events(ws: Workspace, log: str) -> list[Key]:
    """The (case, activity, time) of every event of ``log`` in the store, sorted."""
    with ws.store.read() as con:
        i = con.execute("SELECT log_id FROM logs WHERE name = ?", [log]).fetchone()[0]
        return sorted(con.execute(f"SELECT case_id, activity, ts FROM ev_{i}").fetchall())


def _parts(table: pa.Table, k: int, folder: Path, stem: str, ext: str) -> list[Part]:
    """Split ``table`` by case into ``k`` files (disjoint cases, so appends add every row)."""
    slot = pc.index_in(table["case_id"], pc.unique(table["case_id"])).to_numpy() % k
    return [_part(table.filter(pa.array(slot == i)), folder / f"{stem}{i}{ext}") for i in range(k)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Part]]:
    """Log a: 4 CSV parts; log b: 3 Parquet parts, then a different log that replaces them; c: one larger CSV."""
    from procestra.mining.generate import generate_log

    d = tmp_path_factory.mktemp("src")
    return {"a": _parts(generate_log(40_000, seed=1), 4, d, "a", ".csv"),
            "b": _parts(generate_log(30_000, seed=2), 3, d, "b", ".parquet"),
            "b_new": [_part(generate_log(12_000, seed=3), d / "b_new.parquet")],
            "c": [_part(generate_log(100_000, seed=4), d / "c.csv")]}


def _consistent(snap: dict) -> str | None:
    """Why a reader's snapshot shows a half-committed store, or None when it is whole."""
    ids = {f"ev_{i}" for i, _ in snap["catalogue"].values()}
    if ids != set(snap["rows"]):
        return f"ev_ tables {sorted(snap['rows'])} but catalogue ids {sorted(ids)}"
    for name, (i, events) in snap["catalogue"].items():
        if snap["rows"][f"ev_{i}"] != events:
            return f"log {name!r}: catalogue says {events} events, ev_{i} holds {snap['rows'][f'ev_{i}']} rows"
    return None


def test_readers_in_one_transaction_only_ever_see_whole_loads(tmp_path: Path, sources: dict[str, list[Part]]) -> None:
    """Two writers (create, appends, replace) and a reader in three processes at once.

    Every snapshot the reader takes in one read transaction agrees: the catalogue's event
    count of each log equals the rows of its ev_ table, no ev_ table lacks a catalogue row,
    and each log holds exactly the rows of the files loaded so far (absent or complete).
    """
    ws = Workspace.init(tmp_path / "ws")
    a, b = sources["a"], sources["b"]
    allowed = {
        "a": {sum(p.rows for p in a[:i]) for i in range(1, len(a) + 1)},
        "b": {sum(p.rows for p in b[:i]) for i in range(1, len(b) + 1)} | {sources["b_new"][0].rows},
    }
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(ws.path), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
    steps = {
        "a": [f"create={a[0].path}", *(f"append={p.path}" for p in a[1:])],
        "b": [f"create={b[0].path}", *(f"append={p.path}" for p in b[1:]), f"replace={sources['b_new'][0].path}"],
    }
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ws.path), log, *s],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PROCESTRA_NO_PROGRESS": "1"}) for log, s in steps.items()]
    try:
        outs = [w.communicate(timeout=300) for w in writers]
    finally:
        stop.touch()
    r_out, r_err = reader.communicate(timeout=300)
    for w, (out, err), log in zip(writers, outs, steps):
        assert w.returncode == 0, err
        assert [line.split()[0] for line in out.splitlines()] == [_STATUS[st.split("=")[0]] for st in steps[log]]
    assert reader.returncode == 0, r_err
    seen = json.loads(r_out)["seen"]
    for snap in seen:
        assert _consistent(snap) is None, f"the reader saw a half-committed store: {_consistent(snap)}"
        for name, (_, events) in snap["catalogue"].items():
            assert events in allowed[name], f"log {name!r} seen with {events} events, not a whole load"
    final = seen[-1]["catalogue"]
    assert {n: e for n, (_, e) in final.items()} == {"a": sum(p.rows for p in a), "b": sources["b_new"][0].rows}
    assert _events(ws, "a") == sorted(k for p in a for k in p.keys)  # every row of every file, once
    assert _events(ws, "b") == sources["b_new"][0].keys
    # the reader really read between the commits: it saw some of the intermediate states
    states = {(n, e) for snap in seen for n, (_, e) in snap["catalogue"].items()}
    assert len(states) >= 4, f"the reader saw only {sorted(states)}; it should interleave with the writers"


# -- kills inside the commit window ------------------------------------------------------
def _armed_ingest(ws: Path, part: Part, log: str, point: str, flag: Path, *extra: str,
                  strace: Path | None = None) -> subprocess.Popen[str]:
    """``procestra ingest`` (the command users run) that pauses at ``point`` until ``flag`` goes
    (under strace, tracing to ``strace``, if given)."""
    cmd = [sys.executable, "-m", "procestra.cli", "-w", str(ws), "ingest", str(part.path), "--log", log, *extra,
           "--json"]
    return subprocess.Popen(
        traced(cmd, strace) if strace else cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PROCESTRA_NO_PROGRESS": "1", PAUSE_ENV: f"{point}={flag}"},
    )


def _wait_paused(proc: subprocess.Popen[str], flag: Path) -> str:
    """Wait until ``proc`` pauses (its flag file appears); the point it paused at."""
    deadline = time.monotonic() + 180
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the ingest ended ({proc.returncode}) before its pause point: "
                                 f"{proc.communicate()[1]}")
        assert time.monotonic() < deadline, "the ingest never reached its pause point"
        time.sleep(0.01)
    return flag.read_text().split()[1]


def _kill(proc: subprocess.Popen[str]) -> bool:
    """SIGKILL ``proc``; whether it was still running when the signal went."""
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return running


def _state(ws: Workspace) -> dict[str, tuple[int, int, int, int]]:
    """Per log, in one read transaction: catalogue events, ev_ rows, distinct event keys, loads recorded.

    Also checks that every ev_ table has its catalogue row.
    """
    with ws.store.read() as con:
        con.execute("BEGIN TRANSACTION")
        logs = con.execute("SELECT name, log_id, events FROM logs").fetchall()
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE regexp_full_match(table_name, 'ev_[0-9]+')").fetchall()}
        out = {}
        for name, i, events in logs:
            rows, keys = con.execute(
                f"SELECT count(*), count(DISTINCT (case_id, activity, ts, lifecycle, resource)) FROM ev_{i}"
            ).fetchone()
            loads = con.execute("SELECT count(*) FROM loads WHERE log_id = ?", [i]).fetchone()[0]
            out[name] = (int(events), int(rows), int(keys), int(loads))
        con.execute("COMMIT")
    assert tables == {f"ev_{i}" for _, i, _ in logs}, f"ev_ tables {sorted(tables)} without catalogue rows"
    return out


def test_pause_points_fire_only_when_armed_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash tests' hook: no pause unless the variable names this very point; a malformed
    value or an unknown point is an error, never silently ignored; a paused writer goes on
    when its flag file is removed."""
    from procestra.store import testpoints

    monkeypatch.delenv(PAUSE_ENV, raising=False)
    testpoints.pause_point("ingest.before-commit")  # not armed: returns at once
    with pytest.raises(ValueError, match="unknown pause point"):
        testpoints.pause_point("ingest.commit")
    for bad in ("ingest.before-commit", "ingest.before-commit=relative/flag", f"ingest.commit={tmp_path}/f"):
        monkeypatch.setenv(PAUSE_ENV, bad)
        with pytest.raises(ValueError, match=PAUSE_ENV):
            testpoints.pause_point("ingest.before-commit")
    flag = tmp_path / "flag"
    monkeypatch.setenv(PAUSE_ENV, f"ingest.after-commit={flag}")
    testpoints.pause_point("ingest.before-commit")  # armed for another point
    assert not flag.exists()
    paused = threading.Thread(target=testpoints.pause_point, args=("ingest.after-commit",))
    paused.start()
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flag.read_text().split() == [str(os.getpid()), "ingest.after-commit"]
    assert paused.is_alive()
    flag.unlink()
    paused.join(timeout=30)
    assert not paused.is_alive()


def test_kills_inside_the_commit_window_leave_all_of_a_load_or_none(tmp_path: Path,
                                                                   sources: dict[str, list[Part]]) -> None:
    """Each branch forced by a pause point: killed before COMMIT, nothing of the load; killed after
    COMMIT (connection and writer lock still held), the whole load exactly once, and the same
    ingest again changes nothing. Both for a new log and for an append."""
    ws = Workspace.init(tmp_path / "ws")
    a, b = sources["a"], sources["b"][0]
    ws.ingest(b.path, log="b", progress=False)  # a bystander no kill may touch
    bystander = (b.rows, b.rows, b.rows, 1)
    ran = []
    for mode, part, had, extra in (("create", a[0], 0, ()), ("append", a[1], a[0].rows, ("--append",))):
        before = ws.store.checksums()
        proc = _armed_ingest(ws.path, part, "a", "ingest.before-commit", tmp_path / f"{mode}-1", *extra)
        assert _wait_paused(proc, tmp_path / f"{mode}-1") == "ingest.before-commit"
        assert _kill(proc)
        assert ws.store.checksums() == before, f"{mode} killed before COMMIT changed the store"
        ran.append((mode, "before-commit"))

        proc = _armed_ingest(ws.path, part, "a", "ingest.after-commit", tmp_path / f"{mode}-2", *extra)
        assert _wait_paused(proc, tmp_path / f"{mode}-2") == "ingest.after-commit"
        assert _kill(proc)
        n = had + part.rows  # the generator's rows: the files' cases are disjoint
        assert _state(ws) == {"a": (n, n, n, 1 if mode == "create" else 2), "b": bystander}
        assert _events(ws, "a") == sorted(a[0].keys + (part.keys if mode == "append" else []))
        after = ws.store.checksums()
        assert ws.ingest(part.path, log="a", mode=mode, progress=False).status == "unchanged"
        assert ws.store.checksums() == after, f"re-running the {mode} after its kill changed the store"
        ran.append((mode, "after-commit"))
    assert ran == [("create", "before-commit"), ("create", "after-commit"),
                   ("append", "before-commit"), ("append", "after-commit")]


def test_kills_at_random_moments_of_the_commit_leave_the_store_whole(tmp_path: Path,
                                                                    sources: dict[str, list[Part]]) -> None:
    """SIGKILL at random moments from just before COMMIT to the process's end (COMMIT, the
    close with its checkpoint, the lock's release): the store always holds all of the load
    or none of it, and reads back consistent."""
    ws = Workspace.init(tmp_path / "ws")
    b, big = sources["b"][0], sources["c"][0]
    ws.ingest(b.path, log="b", progress=False)
    before = ws.store.checksums()
    whole = {"b": (b.rows, b.rows, b.rows, 1), "c": (big.rows, big.rows, big.rows, 1)}
    # how long the commit takes here, now: from the pause before COMMIT to the process's exit
    proc = _armed_ingest(ws.path, big, "c", "ingest.before-commit", tmp_path / "probe")
    _wait_paused(proc, tmp_path / "probe")
    started = time.monotonic()
    (tmp_path / "probe").unlink()
    assert proc.wait(timeout=120) == 0, proc.communicate()[1]
    window = time.monotonic() - started
    assert _state(ws) == whole
    ws.drop("c")
    assert ws.store.checksums() == before
    rng = random.Random(7)
    outcomes = []
    for i in range(12):  # until 5 kills have landed while the process ran
        flag = tmp_path / f"kill-{i}"
        proc = _armed_ingest(ws.path, big, "c", "ingest.before-commit", flag)
        _wait_paused(proc, flag)
        flag.unlink()
        time.sleep(rng.uniform(0.0, 0.8) * window)
        running = _kill(proc)
        state = _state(ws)
        if state == whole:
            outcomes.append(("whole", running))
            ws.drop("c")
        else:
            assert state == {"b": whole["b"]}, f"kill {i} left a part of the load: {state}"
            outcomes.append(("none", running))
        assert ws.store.checksums() == before
        if not running:
            window /= 2  # it was over sooner than the probe: aim earlier
        if sum(r for _, r in outcomes) == 5:
            break
    assert sum(r for _, r in outcomes) == 5, f"the kills should land while the commit runs: {outcomes}"


def test_a_load_is_on_disk_when_its_commit_returns(tmp_path: Path, sources: dict[str, list[Part]]) -> None:
    """DuckDB's COMMIT fsyncs its WAL before it returns, seen in the system calls (strace): at the
    pause point right after COMMIT, and again when the ingest reports, every write to the store's
    files has been synced. (A SIGKILL spares the page cache; this is what a power loss needs.)"""
    ws = Workspace.init(tmp_path / "ws")
    flag, out = tmp_path / "committed", tmp_path / "trace"
    proc = _armed_ingest(ws.path, sources["a"][0], "a", "ingest.after-commit", flag, strace=out)
    assert _wait_paused(proc, flag) == "ingest.after-commit"
    flag.unlink()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "loaded"
    def unsynced(is_ack: Callable[[str, int, str], bool]) -> list[frozenset[str]]:
        return [a.unsynced for a in unsynced_at(out, lambda path: path.startswith(str(ws.store.path)), is_ack)]

    # the pause point's flag file, written right after COMMIT returned; then the report on stdout
    committed = unsynced(lambda name, fd, path: name == "write" and path == f"{flag}.part")
    reported = unsynced(lambda name, fd, path: name == "write" and fd == 1)
    assert len(committed) == 1 and reported
    late = [sorted(u) for u in committed + reported if u]
    assert not late, f"acknowledged before these were synced: {late}"


# -- locks and checksums -----------------------------------------------------------------
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
