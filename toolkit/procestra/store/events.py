"""The DuckDB event store: one file, short-lived connections, one writer at a time.

DuckDB lets only one process open a file read-write, and while it does no other
process can open it at all. So every operation opens a connection, does its work
and closes it. Writers first take an inter-process lock file (``events.lock``),
so that they queue instead of failing; readers (and writers, whose lock file
does not stop readers) retry on DuckDB's own lock conflict with backoff until a
timeout, then raise :class:`StoreBusyError`. Nothing keeps a connection open
between two calls, not even a notebook.

The catalogue (``store.catalogue``) lives in the file next to the tables of each
log (see ``schema``). Every write connection makes sure the catalogue exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from procestra.errors import StoreBusyError, StoreError
from procestra.schema import quote_ident
from procestra.store import catalogue

__all__ = ["Store"]

log = logging.getLogger(__name__)

_LOCK_CONFLICT_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


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

        Each write logs at DEBUG on ``procestra.store.events`` how long it kept others out,
        in the record's ``held_seconds`` (the writer lock: from taking it, through DuckDB's
        open, the caller's work and the close with its checkpoint, to its release) and
        ``open_seconds`` (the file open read-write, when no reader can open it). For a
        300k-event load ``benchmarks/bench_ingest.py`` reports both.
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
        acquired = time.monotonic()
        opened = closed = acquired
        try:
            con = self._connect(read_only=False, deadline=deadline)
            opened = time.monotonic()
            try:
                catalogue.ensure(con)
                yield con
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.close()
                closed = time.monotonic()
        finally:
            lock.release()
            held = time.monotonic() - acquired
            log.debug("writer lock on %s held %.3f s, the file open %.3f s", self.path, held, closed - opened,
                      extra={"held_seconds": held, "open_seconds": closed - opened})

    # -- the catalogue, for callers that hold a connection (the SQL lives in ``catalogue``) ----
    def log_id(self, con: duckdb.DuckDBPyConnection, name: str) -> int:
        """The id of log ``name``, or :class:`LogNotFoundError` listing the known logs."""
        return catalogue.log_id(con, name)

    def log_row(self, con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any]:
        """The catalogue row of log ``name`` as a dict."""
        return catalogue.log_row(con, name)

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
                ).fetchall()[0]
                out[t] = (int(n), int(h))
        return out

