"""The operational store: WAL, migrations, durable transactions, the outbox and its idempotent flush."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from procestra import InvalidArgumentError, Workspace
from procestra.ingest.outbox import flush_outbox
from procestra.store import ops
from procestra.store.ops import Event
from syscall_trace import trace, unsynced_at

T0 = datetime(2025, 1, 6, 5, 0, tzinfo=UTC)


def _events(n: int, *, case: str = "c", start: datetime = T0, **attrs: object) -> list[Event]:
    return [Event(f"{case}{i % 3}", "step", start + timedelta(seconds=i), "complete", "bot",
                  {"n": i, **attrs}) for i in range(n)]


def _ev_count(ws: Workspace, log: str) -> int:
    return ws.info(log).events


def test_connection_is_wal_with_durable_commits(ws: Workspace) -> None:
    ops.prepare(ws)
    with ops.connect(ws) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert con.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert ops.ops_path(ws) == ws.path / "ops.sqlite"


def test_migrations_apply_once_in_order_and_roll_back_whole(ws: Workspace) -> None:
    v1 = [["CREATE TABLE widgets (id INTEGER PRIMARY KEY)"]]
    assert ops.ensure_schema(ws, "demo", v1) == 1
    assert ops.ensure_schema(ws, "demo", v1) == 1  # no-op
    broken = v1 + [["ALTER TABLE widgets ADD COLUMN name TEXT", "CREATE TABLE widgets (oops)"]]
    ops._applied.clear()
    with pytest.raises(ops.OpsError):
        ops.ensure_schema(ws, "demo", broken)
    with ops.connect(ws) as con:
        cols = [r[1] for r in con.execute("PRAGMA table_info(widgets)").fetchall()]
        version = con.execute("SELECT version FROM schema_versions WHERE component='demo'").fetchone()[0]
    assert cols == ["id"] and version == 1  # the failed migration left nothing behind
    v2 = v1 + [["ALTER TABLE widgets ADD COLUMN name TEXT"]]
    assert ops.ensure_schema(ws, "demo", v2) == 2
    with ops.connect(ws) as con:
        rows = dict(con.execute("SELECT component, version FROM schema_versions").fetchall())
    assert rows == {"ops": 1, "demo": 2}
    ops._applied.clear()
    with pytest.raises(ops.OpsError, match="newer than this Procestra"):
        ops.ensure_schema(ws, "demo", v1)


def test_emit_commits_and_rolls_back_with_the_callers_transaction(ws: Workspace) -> None:
    ops.prepare(ws)
    with pytest.raises(RuntimeError), ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(3))
        raise RuntimeError("the state change failed")
    assert ops.outbox_stats(ws).pending == 0
    with ops.transaction(ws) as con:
        assert ops.emit(con, "jobs", _events(3)) == 3
    assert ops.outbox_stats(ws).pending == 3


@pytest.mark.parametrize("bad, match", [
    (Event("c", "a", datetime(2025, 1, 1)), "timezone-aware"),
    (Event("", "a", T0), "case_id must be a non-empty string"),
    (Event("c", "a", T0, attributes={"case_id": 1}), "attribute name 'case_id' is not allowed"),
    (Event("c", "a", T0, attributes={"1x": 1}), "attribute name '1x'"),
    (Event("c", "a", T0, attributes={"x": [1, 2]}), "attribute 'x' is a list"),
])
def test_emit_rejects_bad_events_and_stores_nothing(ws: Workspace, bad: Event, match: str) -> None:
    ops.prepare(ws)
    with pytest.raises(InvalidArgumentError, match=match), ops.transaction(ws) as con:
        ops.emit(con, "jobs", [_events(1)[0], bad])
    with pytest.raises(InvalidArgumentError, match="invalid log name"), ops.transaction(ws) as con:
        ops.emit(con, "bad;name'", _events(1))
    assert ops.outbox_stats(ws).pending == 0


def test_flush_creates_then_appends_with_typed_attributes(ws: Workspace) -> None:
    ops.prepare(ws)
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(5, outcome="ok", score=0.5))
        ops.emit(con, "other", _events(2, case="o"))
    r = flush_outbox(ws)
    assert r.events == 7 and r.logs == {"jobs": 5, "other": 2} and r.failed == 0
    info = ws.info("jobs")
    assert info.events == 5 and info.cases == 3
    assert info.event_attributes["n"] == "BIGINT" and info.event_attributes["score"] == "DOUBLE"
    assert info.event_attributes["outcome"] == "VARCHAR" and "event_uid" in info.event_attributes
    # a later batch with an int where the log has DOUBLE, and a new attribute, appends cleanly
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(4, case="d", start=T0 + timedelta(hours=1), score=2, extra=True))
    assert flush_outbox(ws).events == 4
    df = ws.to_pandas("jobs")
    assert len(df) == 9 and df["event_uid"].nunique() == 9
    assert sorted(df["score"].dropna().unique().tolist()) == [0.5, 2.0]
    assert flush_outbox(ws).events == 0  # nothing pending
    assert ops.outbox_stats(ws).pending == 0


def test_outbox_rows_are_read_and_marked_through_the_store(ws: Workspace) -> None:
    """The outbox's SQL lives in store.ops: pending rows in queue order, then marked flushed or set aside."""
    ops.prepare(ws)
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(3))
    rows = ops.pending_events(ws, 10)
    assert [r.case_id for r in rows] == ["c0", "c1", "c2"] and [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert rows[0].log == "jobs" and rows[0].resource == "bot" and '"n": 0' in rows[0].attributes
    assert len(ops.pending_events(ws, 2)) == 2
    ops.mark_flushed(ws, [rows[0].seq])
    ops.mark_rejected(ws, [rows[1].seq], "bad data")
    assert [r.seq for r in ops.pending_events(ws, 10)] == [rows[2].seq]
    assert ops.outbox_stats(ws) == ops.OutboxStats(pending=1, flushed=1, failed=1)
    ops.purge_flushed(ws)  # flushed today: kept a week
    assert ops.outbox_stats(ws).flushed == 1


def test_flush_sets_aside_a_batch_the_store_rejects(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from procestra.errors import DataError
    from procestra.ingest import outbox

    real = outbox.ingest

    def picky(workspace: Workspace, source: object, *, log: str, **options: object) -> object:
        if log == "bad":
            raise DataError("rejected on purpose")
        return real(workspace, source, log=log, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "ingest", picky)
    ops.prepare(ws)
    with ops.transaction(ws) as con:
        ops.emit(con, "bad", _events(2))
        ops.emit(con, "jobs", _events(3))
    r = flush_outbox(ws)
    assert (r.events, r.failed, r.logs) == (3, 2, {"jobs": 3})
    assert ops.outbox_stats(ws) == ops.OutboxStats(pending=0, flushed=3, failed=2)
    assert flush_outbox(ws).events == 0  # set aside, not retried


KILLED_FLUSH = """
import os, sys
from procestra import Workspace
from procestra.ingest.outbox import flush_outbox
from procestra.store import ops
ws = Workspace(sys.argv[1])
def die(*a, **k):
    os.kill(os.getpid(), 9)   # after the DuckDB commit, before the rows are marked flushed
ops.mark_flushed = die
flush_outbox(ws)
"""


def test_flush_reads_timestamps_of_rows_written_by_older_versions(ws: Workspace) -> None:
    """Rows whose time is not to_iso's fixed-width UTC text (naive, another offset) still arrive right."""
    ops.prepare(ws)
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(2))
        con.execute("UPDATE outbox SET ts = ? WHERE case_id = 'c0'", ["2025-01-06T06:00:00+01:00"])
        con.execute("UPDATE outbox SET ts = ? WHERE case_id = 'c1'", ["2025-01-06T05:30:00"])  # naive: UTC
    assert flush_outbox(ws).events == 2
    df = ws.to_pandas("jobs").sort_values("case:concept:name")
    assert [t.isoformat() for t in df["time:timestamp"]] == ["2025-01-06T05:00:00+00:00",
                                                             "2025-01-06T05:30:00+00:00"]


def test_flush_killed_between_store_commit_and_marking_neither_duplicates_nor_loses(ws: Workspace) -> None:
    ops.prepare(ws)
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(6))
    proc = subprocess.run([sys.executable, "-c", KILLED_FLUSH, str(ws.path)], capture_output=True, timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert _ev_count(ws, "jobs") == 6 and ops.outbox_stats(ws).pending == 6  # committed, not marked
    with ops.transaction(ws) as con:  # more events arrive before the next flush
        ops.emit(con, "jobs", _events(2, case="late", start=T0 + timedelta(days=1)))
    r = flush_outbox(ws)
    assert r.events == 8 and ops.outbox_stats(ws).pending == 0
    assert _ev_count(ws, "jobs") == 8  # the 6 sent twice are in the log once


WRITER = """
import sys
from datetime import datetime, timezone
from procestra import Workspace
from procestra.store import ops
ws = Workspace(sys.argv[1])
tag = sys.argv[2]
for i in range(int(sys.argv[3])):
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", [ops.Event(f"{tag}-{i}", "a", datetime.now(timezone.utc))])
    print(i, flush=True)
"""


def test_concurrent_writers_queue_and_acknowledged_writes_survive_sigkill(ws: Workspace) -> None:
    ops.prepare(ws)
    steady = [subprocess.Popen([sys.executable, "-c", WRITER, str(ws.path), t, "150"],
                               stdout=subprocess.PIPE, text=True) for t in ("a", "b")]
    victim = subprocess.Popen([sys.executable, "-c", WRITER, str(ws.path), "k", "100000"],
                              stdout=subprocess.PIPE, text=True)
    acked = -1
    assert victim.stdout is not None
    deadline = time.monotonic() + 60
    while acked < 40 and time.monotonic() < deadline:
        acked = int(victim.stdout.readline())
    victim.send_signal(signal.SIGKILL)
    rest = victim.stdout.read().split()
    acked = int(rest[-1]) if rest else acked
    victim.wait()
    for p in steady:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and out.split()[-1] == "149"
    with ops.connect(ws) as con:
        counts = dict(con.execute("SELECT substr(case_id, 1, 1), count(*) FROM outbox GROUP BY 1").fetchall())
    assert counts["a"] == 150 and counts["b"] == 150
    assert counts["k"] >= acked + 1  # every acknowledged commit is there


# A long-running writer as the engine's workers are: one kept connection, one ops.write per change.
# (A connection closed after each transaction checkpoints the WAL on close, which syncs it
# whatever the synchronous setting; a kept one leaves each commit's durability to that setting.)
KEPT_WRITER = """
import os, sys
from datetime import datetime, timezone
from procestra import Workspace
from procestra.store import ops
ws = Workspace(sys.argv[1])
con = ops.open_connection(ws)
for i in range(int(sys.argv[2])):
    with ops.write(con):
        ops.emit(con, "jobs", [ops.Event(f"k-{i}", "a", datetime.now(timezone.utc))])
    os.write(1, f"{i}\\n".encode())  # the acknowledgement: one write(2) call
con.close()
"""


def test_every_commit_is_on_disk_before_it_is_acknowledged(ws: Workspace, tmp_path: Path) -> None:
    """What synchronous=FULL buys, seen in the system calls (strace) rather than in the PRAGMA: each
    commit fsyncs the WAL before it returns, so a write acknowledged to a caller is on the disk,
    not only in the page cache that a SIGKILL spares and a power loss does not."""
    ops.prepare(ws)
    out = tmp_path / "trace"
    proc = trace([sys.executable, "-c", KEPT_WRITER, str(ws.path), "20"], out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(i) for i in range(20)]
    files = {str(ops.ops_path(ws)), f"{ops.ops_path(ws)}-wal"}
    acks = unsynced_at(out, lambda path: path in files, lambda name, fd, path: name == "write" and fd == 1)
    assert len(acks) == 20
    late = [(i, sorted(a.unsynced)) for i, a in enumerate(acks) if a.unsynced]
    assert not late, f"commits acknowledged before their writes were synced: {late[:3]}"


def test_to_iso_is_sortable_utc_and_rejects_naive() -> None:
    ams = datetime(2025, 3, 30, 3, 0, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Amsterdam"))
    assert ops.to_iso(ams) == "2025-03-30T01:00:00.000000+00:00"
    assert ops.from_iso(ops.to_iso(ams)) == ams
    with pytest.raises(InvalidArgumentError):
        ops.to_iso(datetime(2025, 1, 1))
