"""The operational store: small, frequent, multi-process state in ``<workspace>/ops.sqlite``.

Scheduled jobs and runs, engine cases, human tasks and timers change many times a
second from several processes, which the DuckDB event store (one writer, no readers
while it writes) is not made for. They live in one SQLite file in WAL mode, or, when
workers run on several machines, on a PostgreSQL server (:func:`set_url`,
:mod:`procestra._ops_postgres`) with the same tables, SQL and guarantees:

- **Short-lived connections.** :func:`connect` opens one per operation; readers never
  block the writer and vice versa. :func:`transaction` runs ``BEGIN IMMEDIATE`` so that
  writers queue on SQLite's lock (``busy_timeout``) instead of failing mid-way, and
  commits with ``synchronous=FULL``: each commit fsyncs the WAL before it returns, so an
  acknowledged write survives SIGKILL and is on the disk (tests trace the fsyncs; no test
  cuts the power, so power loss is covered as far as the disk honours fsync).
  On PostgreSQL the writers queue on one advisory lock (``lock_timeout``), and commits
  wait for the server's WAL flush (``synchronous_commit=on``).
- **Schema per component.** :func:`ensure_schema` applies a component's numbered
  migrations once, in one transaction, and records the version in ``schema_versions``.
- **Outbox.** :func:`emit` writes events into the ``outbox`` table inside the caller's
  transaction, so a state change and its events commit together. The table and all SQL on
  it live here; ``procestra.ingest.outbox.flush_outbox`` moves the events into the event
  store in batches (:func:`pending_events`, then :func:`mark_flushed` once a batch is
  appended), idempotently.
- **Several machines.** With PostgreSQL, workspaces on several machines share one store;
  run events go into the event store of one of them, the *events home*
  (:func:`events_home`): a flush anywhere else leaves them queued.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from procestra.errors import InvalidArgumentError, ProcestraError, UserError
from procestra.store import catalogue

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "busy_or_error",
    "display_location",
    "lock_timeout",
    "open_connection",
    "workspace_id",
    "Event",
    "OpsBusyError",
    "OpsError",
    "OpsLocation",
    "OpsUnavailableError",
    "OpsUrlError",
    "OutboxRow",
    "OutboxStats",
    "backend",
    "claim_events_home",
    "connect",
    "emit",
    "emit_rows",
    "ensure_schema",
    "events_home",
    "from_iso",
    "location",
    "mark_flushed",
    "mark_rejected",
    "new_event_uid",
    "ops_path",
    "outbox_rows",
    "outbox_stats",
    "pending_events",
    "prepare",
    "purge_flushed",
    "redact",
    "set_url",
    "to_iso",
    "transaction",
    "utcnow",
    "where",
    "write",
]

OPS_FILE = "ops.sqlite"
#: Role columns of an outbox event; attribute names may not take them.
RESERVED_ATTRIBUTES = frozenset({"case_id", "activity", "timestamp", "start_timestamp", "lifecycle",
                                 "resource", "event_uid", "event_id"})
_ATTRIBUTE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_KEEP_FLUSHED = timedelta(days=7)


class OpsError(ProcestraError):
    """The operational store (``ops.sqlite``, or its PostgreSQL server) failed."""


class OpsBusyError(OpsError):
    """Another process held the operational store's write lock past the timeout (transient)."""

    transient = True


class OpsUnavailableError(OpsError):
    """The operational store's PostgreSQL server cannot be reached or refused the connection (transient)."""

    transient = True


class OpsUrlError(OpsError, UserError):
    """An operational store URL (argument, ``ops.url`` or ``$PROCESTRA_OPS_URL``) that is not a PostgreSQL URL."""


class _ConnectionLost(sqlite3.OperationalError):
    """The PostgreSQL server went away (or never answered): reconnecting may help."""


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


# -- where the store is ------------------------------------------------------------------
OPS_URL_FILE = "ops.url"
OPS_URL_ENV = "PROCESTRA_OPS_URL"
_PG_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class OpsLocation:
    """Where a workspace's operational store is: backend, a description safe to print, and what chose it."""

    #: ``"sqlite"`` (``<workspace>/ops.sqlite``) or ``"postgresql"`` (shared by workspaces on several machines).
    backend: str
    #: The SQLite file, or the PostgreSQL URL with its password shown as ``***``.
    location: str
    #: What chose it: ``"default"``, ``"$PROCESTRA_OPS_URL"`` or the path of ``<workspace>/ops.url``.
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "location": self.location, "source": self.source}


@dataclass(frozen=True)
class _Target:
    backend: str
    dsn: str  # the file path, or the full URL (password included: never print it, print ``shown``)
    shown: str
    source: str


def ops_path(workspace: Home) -> Path:
    """Where ``workspace`` keeps its SQLite operational store (used unless a PostgreSQL URL is set)."""
    return Path(workspace.path) / OPS_FILE


def redact(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) shown as ``***``."""
    try:
        parts = urlsplit(url)
        user, at, host = parts.netloc.rpartition("@")
        if at and ":" in user:
            url = urlunsplit(parts._replace(netloc=user.partition(":")[0] + ":***@" + host))
    except ValueError:
        url = re.sub(r"://[^@/]*@", "://***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)


def _check_url(url: object, source: str) -> str:
    """``url`` if it is a PostgreSQL URL that libpq can parse, else :class:`OpsUrlError` naming ``source``."""
    if not isinstance(url, str) or not url.strip():
        raise OpsUrlError(f"{source}: the operational store URL is empty; give a postgresql://user:password@host/db "
                          "URL, or remove it to use the workspace's SQLite store")
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _PG_SCHEMES:
        raise OpsUrlError(f"{source}: {redact(url)!r} is not a PostgreSQL URL; the operational store takes "
                          "postgresql://user:password@host:port/database (or no URL: SQLite)")
    from psycopg.conninfo import conninfo_to_dict

    from procestra.store._postgres import _scrub

    try:
        conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError: libpq could not parse it
        raise OpsUrlError(f"{source}: {redact(url)!r} is not a valid PostgreSQL URL: "
                          f"{_scrub(str(exc), url)}") from None
    return url


_sqlite_targets: dict[str, _Target] = {}


def _target(workspace: Home) -> _Target:
    """The store of ``workspace``: ``$PROCESTRA_OPS_URL``, else ``<workspace>/ops.url``, else SQLite.

    Asked on every connection, so the SQLite case costs one ``stat``.
    """
    url = os.environ.get(OPS_URL_ENV)
    if url:
        return _pg_target(url, "$" + OPS_URL_ENV)
    root = str(workspace.path)
    file = os.path.join(root, OPS_URL_FILE)
    if not os.path.exists(file):
        found = _sqlite_targets.get(root)
        if found is None:
            path = os.path.join(root, OPS_FILE)
            found = _sqlite_targets[root] = _Target("sqlite", path, path, "default")
        return found
    try:
        url = Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise OpsError(f"cannot read {file}: {exc}; fix its permissions or remove it to use SQLite") from exc
    return _pg_target(url, file)


@functools.lru_cache(maxsize=64)
def _pg_target(url: str, source: str) -> _Target:
    url = _check_url(url, source)
    return _Target("postgresql", url, redact(url), source)


def backend(workspace: Home) -> str:
    """``"postgresql"`` when the workspace's operational store is a PostgreSQL server, else ``"sqlite"``."""
    return _target(workspace).backend


def location(workspace: Home) -> OpsLocation:
    """Which operational store ``workspace`` uses; the URL's password is never shown."""
    t = _target(workspace)
    return OpsLocation(t.backend, t.shown, t.source)


def set_url(workspace: Home, url: str | None, *, events_home: bool | None = None) -> OpsLocation:
    """Keep the workspace's operational store on the PostgreSQL server at ``url`` (None: back to SQLite).

    The URL is checked by connecting; it is written to ``<workspace>/ops.url`` (readable by
    the owner only, as it may hold a password) and the store's tables are created there.
    ``$PROCESTRA_OPS_URL`` still wins over the file. Nothing is copied between stores.

    Workspaces sharing one server share cases, human tasks, timers and jobs; run events go
    into the event store of one of them, the *events home* (see :func:`events_home`). The
    first workspace to set a URL becomes it; ``events_home=True`` takes it over,
    ``False`` never claims it.
    """
    file = Path(workspace.path) / OPS_URL_FILE
    if url is None:
        file.unlink(missing_ok=True)
        return location(workspace)
    url = _check_url(url, "url")
    try:
        _pg_open(url, lock_timeout()).close()  # reachable, and the credentials work
    except OpsUnavailableError as exc:  # the URL the user gives is the one to fix: nothing was written
        raise OpsUrlError(f"{exc}; nothing was changed (the workspace keeps {location(workspace).backend})") from None
    _forget_schema(url)  # a database made again under the same URL: check its schema again
    tmp = file.with_name(f".{OPS_URL_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(url + "\n")
    os.replace(tmp, file)
    here = location(workspace)
    if here.backend == "postgresql" and _target(workspace).dsn == url:  # not overridden by the environment
        prepare(workspace)
        if events_home is not False:
            claim_events_home(workspace, force=bool(events_home))
    return here


def _pg_open(url: str, timeout: float) -> Any:
    from procestra.store._postgres import PgConnection

    return PgConnection.open(url, timeout)


def lock_timeout() -> float:
    return float(os.environ.get("PROCESTRA_OPS_TIMEOUT") or 30.0)


def open_connection(workspace: Home, timeout: float | None = None) -> Any:
    """A new connection to the workspace's store: a ``sqlite3.Connection``, or an ``_ops_postgres.PgConnection``."""
    t = lock_timeout() if timeout is None else timeout
    target = _target(workspace)
    if target.backend == "postgresql":
        return _pg_open(target.dsn, t)
    return _open_sqlite(target.dsn, t)


def _open_sqlite(path: str, timeout: float) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
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
        raise busy_or_error(path, exc, timeout) from exc
    return con


def display_location(workspace: Home) -> str:
    """The workspace's store for error messages: the SQLite path or the redacted URL."""
    return _target(workspace).shown


def busy_or_error(where: object, exc: sqlite3.Error, timeout: float) -> OpsError:
    if isinstance(exc, _ConnectionLost):
        return OpsUnavailableError(f"the operational store {where} cannot be reached: {exc}; check that the "
                                   "PostgreSQL server is running and reachable from this machine, or go back to "
                                   "the workspace's SQLite store with `procestra ops url --sqlite`")
    if "locked" in str(exc) or "busy" in str(exc):
        return OpsBusyError(f"the operational store {where} stayed locked by another process for "
                            f"{timeout:g}s; retry, or raise PROCESTRA_OPS_TIMEOUT")
    return OpsError(f"the operational store {where} failed: {exc}")


@contextlib.contextmanager
def connect(workspace: Home, *, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the workspace's operational store for one operation (autocommit); closed on exit.

    SQLite gives a ``sqlite3.Connection``; PostgreSQL a wrapper with the same surface
    (``execute``, ``executemany``, rows by index and name, ``sqlite3`` exceptions).
    """
    t = lock_timeout() if timeout is None else timeout
    target = _target(workspace)
    if target.backend == "postgresql":
        con: Any = _pg_open(target.dsn, t)
    else:
        con = _open_sqlite(target.dsn, t)
    try:
        yield con
    except sqlite3.OperationalError as exc:
        if target.backend == "postgresql" and "no such table" in str(exc):
            _forget_schema(target.dsn)  # the database was dropped and made again: migrate again next time
        raise busy_or_error(target.shown, exc, t) from exc
    finally:
        con.close()


@contextlib.contextmanager
def transaction(workspace: Home, *, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
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
#: Settings of a store shared by several workspaces (PostgreSQL only): the events home.
_SHARED_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated TEXT NOT NULL)",),
)
_applied: dict[tuple[Any, ...], int] = {}


def ensure_schema(workspace: Home, component: str, migrations: Sequence[Sequence[str]]) -> int:
    """Apply ``component``'s migrations not yet applied (each a list of single SQL statements).

    Migration ``i`` (0-based) brings the component to version ``i + 1``; all pending ones
    run in one transaction, so a crash leaves the old version whole. Returns the version.
    """
    target = _target(workspace)
    key = _schema_key(target, component)
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
            raise OpsError(f"{target.shown} has {component} schema version {version}, newer than this Procestra "
                           f"knows ({len(migrations)}); upgrade Procestra")
        for statements in migrations[version:]:
            for sql in statements:
                con.execute(sql)
        if version < len(migrations):
            con.execute("INSERT INTO schema_versions VALUES (?, ?, ?) ON CONFLICT (component) DO UPDATE "
                        "SET version = excluded.version, migrated_at = excluded.migrated_at",
                        [component, len(migrations), to_iso(utcnow())])
    key = _schema_key(target, component)
    if key is not None:
        _applied[key] = len(migrations)
    return len(migrations)


def _schema_key(target: _Target, component: str) -> tuple[Any, ...] | None:
    """What :func:`ensure_schema` remembers per process: the SQLite file by inode (a new file at
    the same path is a new store), or the PostgreSQL URL."""
    if target.backend == "postgresql":
        return (target.dsn, component)
    try:
        st = os.stat(target.dsn)  # an absolute path (workspaces are)
    except OSError:
        return None
    return (target.dsn, st.st_dev, st.st_ino, component)


def _forget_schema(dsn: str) -> None:
    for key in [k for k in _applied if k[0] == dsn]:
        _applied.pop(key, None)


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

    They commit (or roll back) with the caller's state change; ``procestra.ingest.outbox.flush_outbox``
    later moves them into the event store. Returns how many were queued.
    """
    return emit_rows(con, outbox_rows(log_name, events))


def outbox_rows(log_name: str, events: Iterable[Event]) -> list[tuple[Any, ...]]:
    """``events`` checked and encoded as outbox rows, for :func:`emit_rows`.

    Busy writers prepare rows before they open their transaction, to hold the lock briefly.
    """
    catalogue.validate_log_name(log_name)
    rows = []
    for i, event in enumerate(events):
        attributes = _check_event(event, i)
        rows.append((new_event_uid(), log_name, event.case_id, event.activity, to_iso(event.timestamp),
                     event.lifecycle, event.resource, json.dumps(attributes, sort_keys=True)))
    return rows


def where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b`` (or ``""``) and its parameters, from ``(condition, value)`` filters.

    A filter whose value is None is left out; its value is bound once per ``?`` in its condition.
    """
    parts, args = [], []
    for sql, value in conditions:
        if value is not None:
            parts.append(sql)
            args += [value] * sql.count("?")
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


def new_event_uid() -> str:
    """A unique outbox uid that sorts by time: inserts append to the uid index instead of
    scattering over it, so a commit of many events writes few pages."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


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


def prepare(workspace: Home) -> None:
    """Create the operational store and its outbox if missing (idempotent, cheap after the first call)."""
    ensure_schema(workspace, "ops", _OPS_MIGRATIONS)


def workspace_id(workspace: Home) -> str:
    """This workspace among those sharing a store: host name and absolute path."""
    return f"{socket.gethostname()}:{Path(workspace.path).resolve()}"


def events_home(workspace: Home) -> str | None:
    """The workspace (``host:path``) whose event store receives the run events of ``workspace``'s store.

    With SQLite that is the workspace itself; with PostgreSQL it is the workspace that
    claimed it (:func:`claim_events_home`, :func:`set_url`), or None when none has yet.
    """
    if backend(workspace) == "sqlite":
        return workspace_id(workspace)
    ensure_schema(workspace, "shared", _SHARED_MIGRATIONS)
    with connect(workspace) as con:
        row = con.execute("SELECT value FROM settings WHERE key = 'events_home'").fetchone()
    return row[0] if row else None


def claim_events_home(workspace: Home, *, force: bool = True) -> str:
    """Make ``workspace`` the events home of its shared store (``force=False``: only if none is set).

    Returns the events home afterwards. Stop the flushers (workers) of the old home first,
    so that a batch in flight is not also sent there.
    """
    me = workspace_id(workspace)
    if backend(workspace) == "sqlite":
        return me
    ensure_schema(workspace, "shared", _SHARED_MIGRATIONS)
    with transaction(workspace) as con:
        row = con.execute("SELECT value FROM settings WHERE key = 'events_home'").fetchone()
        if row is not None and not force:
            return str(row[0])
        con.execute("INSERT INTO settings (key, value, updated) VALUES ('events_home', ?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET value = excluded.value, updated = excluded.updated", [me, to_iso(utcnow())])
    return me


class OutboxRow(NamedTuple):
    """One queued event as stored in the outbox (``ts`` as ISO text, ``attributes`` as JSON)."""

    seq: int
    uid: str
    log: str
    case_id: str
    activity: str
    ts: str
    lifecycle: str
    resource: str | None
    attributes: str


def pending_events(workspace: Home, limit: int) -> list[OutboxRow]:
    """The oldest ``limit`` outbox events neither flushed nor set aside, in the order they were queued."""
    with connect(workspace) as con:
        rows = con.execute(
            "SELECT seq, uid, log, case_id, activity, ts, lifecycle, resource, attributes FROM outbox "
            "WHERE flushed_at IS NULL AND error IS NULL ORDER BY seq LIMIT ?", [limit]).fetchall()
    return [OutboxRow(*r) for r in rows]


def mark_flushed(workspace: Home, seqs: Sequence[int]) -> None:
    """Mark outbox events (by ``seq``) as moved into the event store; they are purged a week later."""
    _mark(workspace, seqs, "flushed_at", to_iso(utcnow()))


def mark_rejected(workspace: Home, seqs: Sequence[int], error: str) -> None:
    """Set outbox events (by ``seq``) aside with the event store's ``error``; see :func:`outbox_stats`."""
    _mark(workspace, seqs, "error", error)


def _mark(workspace: Home, seqs: Sequence[int], column: str, value: str) -> None:
    with transaction(workspace) as con:
        for i in range(0, len(seqs), 500):
            chunk = list(seqs[i:i + 500])
            marks = ",".join("?" * len(chunk))
            con.execute(f"UPDATE outbox SET {column} = ? WHERE seq IN ({marks})", [value, *chunk])


def purge_flushed(workspace: Home) -> None:
    """Delete the outbox events flushed more than a week ago."""
    with transaction(workspace) as con:
        con.execute("DELETE FROM outbox WHERE flushed_at IS NOT NULL AND flushed_at < ?",
                    [to_iso(utcnow() - _KEEP_FLUSHED)])


@dataclass(frozen=True)
class OutboxStats:
    """Outbox rows waiting to be flushed, flushed (kept a week) and set aside with an error."""

    pending: int
    flushed: int
    failed: int


def outbox_stats(workspace: Home) -> OutboxStats:
    """How many outbox events are pending, flushed and rejected."""
    prepare(workspace)
    with connect(workspace) as con:
        row = con.execute(
            "SELECT count(*) FILTER (WHERE flushed_at IS NULL AND error IS NULL), "
            "count(*) FILTER (WHERE flushed_at IS NOT NULL), count(*) FILTER (WHERE error IS NOT NULL) "
            "FROM outbox").fetchone()
    return OutboxStats(int(row[0]), int(row[1]), int(row[2]))
