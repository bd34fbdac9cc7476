"""The operational store: small, frequent, multi-process state in ``<workspace>/ops.sqlite``.

Scheduled jobs and runs (and, later, engine cases, tasks and timers) change many times
a second from several processes, which the DuckDB event store (one writer, no readers
while it writes) is not made for. They live in one SQLite file in WAL mode:

- **Short-lived connections.** :func:`connect` opens one per operation; readers never
  block the writer and vice versa. :func:`transaction` runs ``BEGIN IMMEDIATE`` so that
  writers queue on SQLite's lock (``busy_timeout``) instead of failing mid-way, and
  commits with ``synchronous=FULL``: an acknowledged write survives SIGKILL and power loss.
- **Schema per component.** :func:`ensure_schema` applies a component's numbered
  migrations once, in one transaction, and records the version in ``schema_versions``.
- **Outbox.** :func:`emit` writes events into the ``outbox`` table inside the caller's
  transaction, so a state change and its events commit together. :func:`flush_outbox`
  moves them into the event store in batches, taking the DuckDB writer lock only for each
  batch's append. It is idempotent: a flusher killed after the DuckDB commit but before
  marking its rows sends the same events again, and the store's append key
  ``(case_id, activity, ts, lifecycle, resource)`` skips those already there. Each event
  also carries its ``event_uid`` as an attribute.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError, ProcestraError

if TYPE_CHECKING:
    import pyarrow as pa

    from .workspace import Workspace

__all__ = [
    "Event",
    "FlushResult",
    "OpsBusyError",
    "OpsError",
    "OutboxStats",
    "connect",
    "emit",
    "emit_rows",
    "ensure_schema",
    "flush_outbox",
    "from_iso",
    "ops_path",
    "outbox_rows",
    "outbox_stats",
    "prepare",
    "to_iso",
    "transaction",
    "write",
    "utcnow",
]

log = logging.getLogger(__name__)

OPS_FILE = "ops.sqlite"
#: Role columns of an outbox event; attribute names may not take them.
RESERVED_ATTRIBUTES = frozenset({"case_id", "activity", "timestamp", "start_timestamp", "lifecycle",
                                 "resource", "event_uid", "event_id"})
_ATTRIBUTE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_KEEP_FLUSHED = timedelta(days=7)


class OpsError(ProcestraError):
    """The operational store (``ops.sqlite``) failed."""


class OpsBusyError(OpsError):
    """Another process held the operational store's write lock past the timeout (transient)."""

    transient = True


# -- time ----------------------------------------------------------------------------
def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def to_iso(value: datetime) -> str:
    """``value`` as fixed-width ISO 8601 in UTC (sortable as text): ``2025-01-06T05:00:00.000000+00:00``."""
    if value.tzinfo is None:
        raise InvalidArgumentError(f"timestamp {value!r} has no timezone; give an aware datetime",
                                   parameter="timestamp")
    return value.astimezone(UTC).isoformat(timespec="microseconds")  # == %Y-%m-%dT%H:%M:%S.%f+00:00, faster


def from_iso(text: str | None) -> datetime | None:
    """The aware UTC datetime of an ISO 8601 text written by :func:`to_iso` (None stays None)."""
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- connections ---------------------------------------------------------------------
def ops_path(workspace: Workspace) -> Path:
    """Where ``workspace`` keeps its operational store."""
    return Path(workspace.path) / OPS_FILE


def _timeout() -> float:
    return float(os.environ.get("PROCESTRA_OPS_TIMEOUT") or 30.0)


def _open(path: Path, timeout: float) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise OpsError(f"cannot open the operational store {path}: {exc}") from exc
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OpsError(f"the operational store {path} cannot use WAL mode (got {mode!r}); "
                           "put the workspace on a local file system")
        con.execute("PRAGMA synchronous = FULL")
        con.execute("PRAGMA foreign_keys = ON")
    except sqlite3.OperationalError as exc:
        con.close()
        raise _busy_or_error(path, exc, timeout) from exc
    return con


def _busy_or_error(path: Path, exc: sqlite3.Error, timeout: float) -> OpsError:
    if "locked" in str(exc) or "busy" in str(exc):
        return OpsBusyError(f"the operational store {path} stayed locked by another process for "
                            f"{timeout:.0f}s; retry, or raise PROCESTRA_OPS_TIMEOUT")
    return OpsError(f"the operational store {path} failed: {exc}")


@contextlib.contextmanager
def connect(workspace: Workspace, *, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the workspace's ``ops.sqlite`` for one operation (autocommit); closed on exit."""
    path = ops_path(workspace)
    t = _timeout() if timeout is None else timeout
    con = _open(path, t)
    try:
        yield con
    except sqlite3.OperationalError as exc:
        raise _busy_or_error(path, exc, t) from exc
    finally:
        con.close()


@contextlib.contextmanager
def transaction(workspace: Workspace, *, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """A write transaction (``BEGIN IMMEDIATE``): committed on exit, rolled back on any exception."""
    with connect(workspace, timeout=timeout) as con, write(con):
        yield con


@contextlib.contextmanager
def write(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on ``con``, an open connection (a long-running worker keeps one)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# -- schema ----------------------------------------------------------------------------
_OPS_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE outbox (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            uid        TEXT NOT NULL UNIQUE,
            log        TEXT NOT NULL,
            case_id    TEXT NOT NULL,
            activity   TEXT NOT NULL,
            ts         TEXT NOT NULL,
            lifecycle  TEXT NOT NULL,
            resource   TEXT,
            attributes TEXT NOT NULL,
            flushed_at TEXT,
            error      TEXT
        )""",
        "CREATE INDEX outbox_pending ON outbox (flushed_at, seq)",
    ),
)
_applied: dict[tuple[str, int, int, str], int] = {}


def ensure_schema(workspace: Workspace, component: str, migrations: Sequence[Sequence[str]]) -> int:
    """Apply ``component``'s migrations not yet applied (each a list of single SQL statements).

    Migration ``i`` (0-based) brings the component to version ``i + 1``; all pending ones
    run in one transaction, so a crash leaves the old version whole. Returns the version.
    """
    path = ops_path(workspace)
    key = _schema_key(path, component)
    if key is not None and _applied.get(key) == len(migrations):
        return len(migrations)
    if component != "ops":
        ensure_schema(workspace, "ops", _OPS_MIGRATIONS)  # every component may emit events
    with transaction(workspace) as con:
        con.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, "
                    "version INTEGER NOT NULL, migrated_at TEXT NOT NULL)")
        row = con.execute("SELECT version FROM schema_versions WHERE component = ?", [component]).fetchone()
        version = int(row[0]) if row else 0
        if version > len(migrations):
            raise OpsError(f"{path} has {component} schema version {version}, newer than this Procestra "
                           f"knows ({len(migrations)}); upgrade Procestra")
        for statements in migrations[version:]:
            for sql in statements:
                con.execute(sql)
        if version < len(migrations):
            con.execute("INSERT INTO schema_versions VALUES (?, ?, ?) ON CONFLICT (component) DO UPDATE "
                        "SET version = excluded.version, migrated_at = excluded.migrated_at",
                        [component, len(migrations), to_iso(utcnow())])
    key = _schema_key(path, component)
    if key is not None:
        _applied[key] = len(migrations)
    return len(migrations)


def _schema_key(path: Path, component: str) -> tuple[str, int, int, str] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), st.st_dev, st.st_ino, component)


def _ensure_outbox(workspace: Workspace) -> None:
    ensure_schema(workspace, "ops", _OPS_MIGRATIONS)


# -- outbox ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One event for a log in the event store: what happened to which case, when, by whom.

    ``attributes`` are scalars (str, int, float, bool, None); datetimes become ISO text.
    """

    case_id: str
    activity: str
    timestamp: datetime
    lifecycle: str = "complete"
    resource: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


def _check_event(event: Event, index: int) -> dict[str, Any]:
    where = f"event {index + 1}"
    if not isinstance(event, Event):
        raise InvalidArgumentError(f"{where} is a {type(event).__name__}, not an ops.Event", parameter="events")
    for name in ("case_id", "activity", "lifecycle"):
        value = getattr(event, name)
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{where}: {name} must be a non-empty string, not {value!r}",
                                       parameter=name)
    if event.resource is not None and not isinstance(event.resource, str):
        raise InvalidArgumentError(f"{where}: resource must be a string or None, not {event.resource!r}",
                                   parameter="resource")
    if not isinstance(event.timestamp, datetime) or event.timestamp.tzinfo is None:
        raise InvalidArgumentError(f"{where}: timestamp must be a timezone-aware datetime, "
                                   f"not {event.timestamp!r}", parameter="timestamp")
    attributes: dict[str, Any] = {}
    for key, value in dict(event.attributes).items():
        if not isinstance(key, str) or not _ATTRIBUTE_RE.match(key) or key in RESERVED_ATTRIBUTES:
            raise InvalidArgumentError(
                f"{where}: attribute name {key!r} is not allowed; use letters, digits and _ "
                f"(not starting with a digit), other than {', '.join(sorted(RESERVED_ATTRIBUTES))}",
                parameter="attributes")
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, float) and not math.isfinite(value):
            value = None
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidArgumentError(f"{where}: attribute {key!r} is a {type(value).__name__}; "
                                       "use str, int, float, bool or None", parameter="attributes")
        attributes[key] = value
    return attributes


def emit(con: sqlite3.Connection, log_name: str, events: Iterable[Event]) -> int:
    """Queue ``events`` for log ``log_name`` in the outbox, inside ``con``'s open transaction.

    They commit (or roll back) with the caller's state change; :func:`flush_outbox` later
    moves them into the event store. Returns how many were queued.
    """
    return emit_rows(con, outbox_rows(log_name, events))


def outbox_rows(log_name: str, events: Iterable[Event]) -> list[tuple[Any, ...]]:
    """``events`` checked and encoded as outbox rows, for :func:`emit_rows`.

    Busy writers prepare rows before they open their transaction, to hold the lock briefly.
    """
    from .ingest import validate_log_name

    validate_log_name(log_name)
    rows = []
    for i, event in enumerate(events):
        attributes = _check_event(event, i)
        rows.append((os.urandom(16).hex(), log_name, event.case_id, event.activity, to_iso(event.timestamp),
                     event.lifecycle, event.resource, json.dumps(attributes, sort_keys=True)))
    return rows


def emit_rows(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert rows made by :func:`outbox_rows` inside ``con``'s open transaction."""
    if rows:
        try:
            con.executemany(
                "INSERT INTO outbox (uid, log, case_id, activity, ts, lifecycle, resource, attributes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise OpsError("the outbox table is missing: call ops.ensure_schema (or ops.prepare) "
                               "for the workspace before emitting") from exc
            raise
    return len(rows)


def prepare(workspace: Workspace) -> None:
    """Create the operational store and its outbox if missing (idempotent, cheap after the first call)."""
    _ensure_outbox(workspace)


@dataclass(frozen=True)
class FlushResult:
    """What one :func:`flush_outbox` moved: events sent per log, batches, dead letters and time."""

    events: int
    batches: int
    logs: dict[str, int]
    failed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "batches": self.batches, "logs": dict(self.logs),
                "failed": self.failed, "seconds": round(self.seconds, 3)}


_SCHEMA_COLUMNS = ("case_id", "activity", "timestamp", "start_timestamp", "lifecycle", "resource")


def flush_outbox(workspace: Workspace, *, batch_size: int = 5000, lock_timeout: float = 120.0) -> FlushResult:
    """Move pending outbox events into the event store, log by log, in batches; idempotent.

    One flusher runs at a time per workspace (``ops.flush.lock``). Each batch is one
    append to its log (created when missing) under the store's writer lock, then its
    rows are marked flushed. A batch the store rejects as bad data is set aside with the
    error (see :func:`outbox_stats`) instead of blocking the others.
    """
    from filelock import FileLock, Timeout

    from .errors import UserError

    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be at least 1, not {batch_size}", parameter="batch_size")
    started = time.perf_counter()
    _ensure_outbox(workspace)
    lock = FileLock(str(Path(workspace.path) / "ops.flush.lock"))
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        raise OpsBusyError(f"another process kept flushing the outbox of {workspace.path} for "
                           f"{lock_timeout:.0f}s; try again later") from None
    sent: dict[str, int] = {}
    batches = failed = 0
    try:
        while True:
            with connect(workspace) as con:
                rows = con.execute(
                    "SELECT seq, uid, log, case_id, activity, ts, lifecycle, resource, attributes FROM outbox "
                    "WHERE flushed_at IS NULL AND error IS NULL ORDER BY seq LIMIT ?", [batch_size]).fetchall()
            if not rows:
                break
            by_log: dict[str, list[sqlite3.Row]] = {}
            for r in rows:
                by_log.setdefault(r["log"], []).append(r)
            for log_name, group in by_log.items():
                seqs = [int(r["seq"]) for r in group]
                try:
                    table = _to_arrow(group, _attribute_types(workspace, log_name))
                    workspace.ingest(table, log=log_name, schema=_schema(), mode="append", progress=False)
                except UserError as exc:
                    log.error("outbox: %d events for log %r rejected by the event store: %s", len(seqs),
                              log_name, exc)
                    _mark(workspace, seqs, error=str(exc))
                    failed += len(seqs)
                    continue
                _mark(workspace, seqs)
                sent[log_name] = sent.get(log_name, 0) + len(seqs)
                batches += 1
        with transaction(workspace) as con:
            con.execute("DELETE FROM outbox WHERE flushed_at IS NOT NULL AND flushed_at < ?",
                        [to_iso(utcnow() - _KEEP_FLUSHED)])
    finally:
        lock.release()
    return FlushResult(sum(sent.values()), batches, sent, failed, time.perf_counter() - started)


def _schema() -> Any:
    from .schema import LogSchema

    return LogSchema(case="case_id", activity="activity", timestamp="timestamp",
                     start_timestamp="start_timestamp", lifecycle="lifecycle", resource="resource")


def _mark(workspace: Workspace, seqs: list[int], *, error: str | None = None) -> None:
    stamp = to_iso(utcnow())
    with transaction(workspace) as con:
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            marks = ",".join("?" * len(chunk))
            if error is None:
                con.execute(f"UPDATE outbox SET flushed_at = ? WHERE seq IN ({marks})", [stamp, *chunk])
            else:
                con.execute(f"UPDATE outbox SET error = ? WHERE seq IN ({marks})", [error, *chunk])


def _attribute_types(workspace: Workspace, log_name: str) -> dict[str, str]:
    """The DuckDB types of ``log_name``'s event attributes (empty when the log does not exist yet)."""
    store = workspace.store
    if not store.path.exists():
        return {}
    with store.read() as con:
        row = con.execute("SELECT event_attributes FROM logs WHERE name = ?", [log_name]).fetchone()
    return json.loads(row[0] or "{}") if row else {}


_ARROW_OF_DUCKDB = {"BIGINT": "int64", "INTEGER": "int64", "SMALLINT": "int64", "TINYINT": "int64",
                    "DOUBLE": "float64", "FLOAT": "float64", "BOOLEAN": "bool", "VARCHAR": "string"}


def _coerce(value: Any, kind: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "string":
            return value if isinstance(value, str) else json.dumps(value)
        if kind == "bool":
            return value if isinstance(value, bool) else None
        if kind == "int64":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, float) and not value.is_integer():
                return None
            return int(value)
        if kind == "float64":
            return float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def _infer(values: list[Any]) -> str | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def _to_arrow(rows: list[sqlite3.Row], known: dict[str, str]) -> pa.Table:
    """Outbox rows as an Arrow table with the role columns and typed attribute columns.

    Attribute types follow the log's existing columns (values that do not fit become
    null, logged), else the values; a column null in the whole batch is left out.
    """
    import pyarrow as pa

    attrs = [json.loads(r["attributes"]) for r in rows]
    for a, r in zip(attrs, rows):
        a["event_uid"] = r["uid"]
    names: list[str] = sorted({k for a in attrs for k in a})
    columns: dict[str, pa.Array] = {
        "case_id": pa.array([r["case_id"] for r in rows], pa.string()),
        "activity": pa.array([r["activity"] for r in rows], pa.string()),
        "timestamp": pa.array([from_iso(r["ts"]) for r in rows], pa.timestamp("us", "UTC")),
        "start_timestamp": pa.nulls(len(rows), pa.timestamp("us", "UTC")),
        "lifecycle": pa.array([r["lifecycle"] for r in rows], pa.string()),
        "resource": pa.array([r["resource"] for r in rows], pa.string()),
    }
    for name in names:
        values = [a.get(name) for a in attrs]
        existing = next((t for k, t in known.items() if k.lower() == name.lower()), None)
        kind = _ARROW_OF_DUCKDB.get(str(existing).upper()) if existing else _infer(values)
        if existing and kind is None:
            kind = "string"
        if kind is None:
            continue
        coerced = [_coerce(v, kind) for v in values]
        lost = sum(1 for v, c in zip(values, coerced) if v is not None and c is None)
        if lost:
            log.warning("outbox: %d values of attribute %r do not fit its type %s and are stored as null",
                        lost, name, existing or kind)
        if all(v is None for v in coerced):
            continue
        columns[name] = pa.array(coerced, getattr(pa, {"string": "string", "bool": "bool_", "int64": "int64",
                                                       "float64": "float64"}[kind])())
    return pa.table(columns)


@dataclass(frozen=True)
class OutboxStats:
    """Outbox rows waiting to be flushed, flushed (kept a week) and set aside with an error."""

    pending: int
    flushed: int
    failed: int


def outbox_stats(workspace: Workspace) -> OutboxStats:
    """How many outbox events are pending, flushed and rejected."""
    _ensure_outbox(workspace)
    with connect(workspace) as con:
        row = con.execute(
            "SELECT count(*) FILTER (WHERE flushed_at IS NULL AND error IS NULL), "
            "count(*) FILTER (WHERE flushed_at IS NOT NULL), count(*) FILTER (WHERE error IS NOT NULL) "
            "FROM outbox").fetchone()
    return OutboxStats(int(row[0]), int(row[1]), int(row[2]))
