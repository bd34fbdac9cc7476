"""The DuckDB event store: one file, short-lived connections, one writer at a time.

DuckDB lets only one process open a file read-write, and while it does no other
process can open it at all. So every operation opens a connection, does its work
and closes it. Writers first take an inter-process lock file (``events.lock``),
so that they queue instead of failing; readers (and writers, whose lock file
does not stop readers) retry on DuckDB's own lock conflict with backoff until a
timeout, then raise :class:`StoreBusyError`. Nothing keeps a connection open
between two calls, not even a notebook.

Catalogue tables live in the file next to one pair of tables per log:
``ev_<id>`` (the canonical event columns) and ``ea_<id>`` (the other event
attributes, typed, by ``event_id``), plus ``ca_<id>`` (one row per case with its
attributes). Table names are built from integer ids only; user-given names are
always bound as values or quoted as identifiers.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from .errors import LogNotFoundError, StoreBusyError, StoreError

__all__ = [
    "EVENT_COLUMNS",
    "Store",
    "quote_ident",
]

#: The canonical event columns of every ``ev_<id>`` table, in order.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "case_id",
    "activity",
    "ts",
    "start_ts",
    "lifecycle",
    "resource",
)

_CATALOGUE_SQL = """
CREATE TABLE IF NOT EXISTS logs (
    log_id        INTEGER PRIMARY KEY,
    name          VARCHAR NOT NULL UNIQUE,
    source        VARCHAR,
    source_kind   VARCHAR,
    content_hash  VARCHAR,
    mapping       JSON,
    options       JSON,
    loaded_at     TIMESTAMPTZ,
    events        BIGINT,
    cases         BIGINT,
    activities    BIGINT,
    first_ts      TIMESTAMPTZ,
    last_ts       TIMESTAMPTZ,
    event_attributes JSON,
    case_attributes  JSON,
    quality       JSON,
    version       INTEGER
);
CREATE TABLE IF NOT EXISTS loads (
    log_id        INTEGER,
    version       INTEGER,
    mode          VARCHAR,
    source        VARCHAR,
    content_hash  VARCHAR,
    options_hash  VARCHAR,
    loaded_at     TIMESTAMPTZ,
    rows_read     BIGINT,
    events_added  BIGINT
);
"""

_LOCK_CONFLICT_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


def quote_ident(name: str) -> str:
    """Quote an SQL identifier for DuckDB (doubling embedded quotes)."""
    return '"' + str(name).replace('"', '""') + '"'


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker in text for marker in _LOCK_CONFLICT_MARKERS)


class Store:
    """Access to one DuckDB event-store file, safe to share between processes.

    ``timeout`` bounds how long a call waits for another process's lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float | None = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(".lock")
        env_timeout = os.environ.get("PROCESTRA_LOCK_TIMEOUT")
        self.timeout = float(timeout if timeout is not None else env_timeout or 120.0)

    # -- connections --------------------------------------------------------------
    def _connect(self, *, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        delay = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                con.execute("SET TimeZone = 'UTC'")
                return con
            except duckdb.Error as exc:
                if not _is_lock_conflict(exc):
                    raise StoreError(f"cannot open the event store {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"the event store {self.path} stayed locked by another process for "
                        f"{self.timeout:.0f}s; wait for it to finish, or raise PROCESTRA_LOCK_TIMEOUT"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one operation; closed on exit."""
        if not self.path.exists():
            # Create an empty store so that readers of a new workspace see no logs.
            with self.write():
                pass
        deadline = time.monotonic() + self.timeout
        con = self._connect(read_only=True, deadline=deadline)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection holding the writer lock; closed on exit.

        The caller runs its own transaction (``BEGIN``/``COMMIT``); on an
        exception inside the block any open transaction is rolled back.
        """
        deadline = time.monotonic() + self.timeout
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=self.timeout)
        except Timeout as exc:
            raise StoreBusyError(
                f"another process kept writing to {self.path} for {self.timeout:.0f}s; "
                "wait for it to finish, or raise PROCESTRA_LOCK_TIMEOUT"
            ) from exc
        try:
            con = self._connect(read_only=False, deadline=deadline)
            try:
                con.execute(_CATALOGUE_SQL)
                yield con
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.close()
        finally:
            lock.release()

    # -- catalogue ----------------------------------------------------------------
    def log_id(self, con: duckdb.DuckDBPyConnection, name: str) -> int:
        """The id of log ``name``, or :class:`LogNotFoundError` listing the known logs."""
        row = con.execute("SELECT log_id FROM logs WHERE name = ?", [name]).fetchone()
        if row is None:
            known = [r[0] for r in con.execute("SELECT name FROM logs ORDER BY name").fetchall()]
            raise LogNotFoundError(name, known)
        return int(row[0])

    def log_row(self, con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any]:
        """The catalogue row of log ``name`` as a dict."""
        self.log_id(con, name)
        cur = con.execute("SELECT * FROM logs WHERE name = ?", [name])
        cols = [d[0] for d in cur.description]
        return dict(zip(cols, cur.fetchone()))

    def checksums(self) -> dict[str, tuple[int, int]]:
        """Row count and an order-independent content hash of every table.

        Used by tests and by ``procestra doctor`` to prove that a failed load
        left the store exactly as it was.
        """
        out: dict[str, tuple[int, int]] = {}
        if not self.path.exists():
            return out
        with self.read() as con:
            tables = [r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' ORDER BY table_name"
            ).fetchall()]
            for t in tables:
                n, h = con.execute(
                    f"SELECT count(*), coalesce(sum(hash(x)), 0)::HUGEINT FROM {quote_ident(t)} x"
                ).fetchone()
                out[t] = (int(n), int(h))
        return out


def table_names(log_id: int) -> tuple[str, str, str]:
    """The event, event-attribute and case table names of log ``log_id``."""
    log_id = int(log_id)
    return f"ev_{log_id}", f"ea_{log_id}", f"ca_{log_id}"
