"""The PostgreSQL backend of the operational store: psycopg behind ``sqlite3``'s surface.

:mod:`procestra.ops` keeps its store in SQLite unless a workspace names a PostgreSQL
server (``$PROCESTRA_OPS_URL`` or ``<workspace>/ops.url``). Then the engine and the
scheduler run their SQL here, unchanged: :func:`translate` turns SQLite SQL into
PostgreSQL statements in one place, :class:`PgConnection` answers like a
``sqlite3.Connection`` (rows by index and name, ``sqlite3`` exceptions), and every write
transaction takes one advisory lock, so writers are serialised exactly as on SQLite.
Imported only when a workspace uses PostgreSQL.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg
from psycopg.adapt import Dumper

from procestra.store.ops import OpsUnavailableError, _ConnectionLost, redact

__all__ = ["WRITE_LOCK_KEY", "PgConnection", "translate"]

#: Key of the transaction-scoped advisory lock every write transaction takes on PostgreSQL:
#: writers queue on it as they queue on SQLite's write lock, so a transaction's reads and
#: writes see no other writer in between (callers rely on read-then-write).
WRITE_LOCK_KEY = 0x70726F6365737472  # "procestr"
_TYPE_NAMES = re.compile(r"\b(INTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT|INTEGER|REAL|TEXT)\b", re.IGNORECASE)
_DDL = re.compile(r"\s*(CREATE|ALTER)\s+((TEMP|TEMPORARY)\s+)?TABLE\b", re.IGNORECASE)
_PG_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "TEXT": 'TEXT COLLATE "C"'}


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, ...]:
    """SQLite SQL as the PostgreSQL statements that do the same (psycopg placeholders).

    ``?`` becomes ``%s`` outside quoted literals and identifiers, and ``%`` becomes ``%%``;
    ``BEGIN IMMEDIATE`` becomes ``BEGIN`` plus the writers' advisory lock; ``PRAGMA`` is
    dropped. In ``CREATE TABLE``/``ALTER TABLE`` the types become SQLite's: 64-bit
    ``INTEGER`` (``BIGINT``; ``INTEGER PRIMARY KEY AUTOINCREMENT`` a ``BIGSERIAL``), ``REAL``
    as ``DOUBLE PRECISION`` and ``TEXT`` compared bytewise (``COLLATE "C"``), as SQLite sorts.
    """
    words = sql.split(None, 2)
    first = words[0].upper() if words else ""
    if first == "PRAGMA":
        return ()
    if first == "BEGIN":
        if len(words) > 1 and words[1].upper().rstrip(";") in ("IMMEDIATE", "EXCLUSIVE"):
            return ("BEGIN", f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
        return ("BEGIN",)
    ddl = _DDL.match(sql) is not None
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":  # a literal or quoted identifier, with doubled quotes inside: kept, % escaped
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if sql.startswith("--", i) or sql.startswith("/*", i):
            j = sql.find("\n" if c == "-" else "*/", i)
            j = n if j < 0 else j + (1 if c == "-" else 2)
            out.append(sql[i:j].replace("%", "%%"))
            i = j
            continue
        j = i
        while j < n and sql[j] not in "'\"" and not sql.startswith("--", j) and not sql.startswith("/*", j):
            j += 1
        chunk = sql[i:j].replace("%", "%%").replace("?", "%s")
        if ddl:
            chunk = _TYPE_NAMES.sub(lambda m: _PG_TYPES.get(m.group(1).upper(), "BIGSERIAL PRIMARY KEY"), chunk)
        out.append(chunk)
        i = j
    return ("".join(out),)


class _Row(tuple[Any, ...]):
    """A result row like ``sqlite3.Row``: by index, by (case-insensitive) column name, ``keys()``, ``dict(row)``."""

    __slots__ = ()
    _names: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            i = self._index.get(key)
            if i is None:
                i = self._index.get(key.lower())
                if i is None:
                    raise IndexError("No item with that key")
            return tuple.__getitem__(self, i)
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[_Row]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
        index.setdefault(name.lower(), i)
    return type("Row", (_Row,), {"__slots__": (), "_names": names, "_index": index})


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    cls = _row_class(tuple(d.name for d in desc))
    return functools.partial(tuple.__new__, cls)


class _NoRows:
    """The cursor of a statement without a result (sqlite3 returns no rows there too)."""

    description = None

    def __init__(self, rowcount: int = -1) -> None:
        self.rowcount = rowcount

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def _scrub(message: str, url: str) -> str:
    """``message`` without ``url``'s password, however it appears."""
    message = message.replace(url, redact(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password and len(password) >= 4:
        message = message.replace(password, "***")
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", message)


class _BoolAsInt(Dumper):
    """Python booleans as 1 and 0, as SQLite stores them (the store's flags are integer columns)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class PgConnection:
    """A psycopg connection with the surface ops callers use of ``sqlite3.Connection``.

    Statements go through :func:`translate`; rows behave like ``sqlite3.Row``; errors
    become ``sqlite3.IntegrityError`` (constraints), ``sqlite3.OperationalError`` saying
    "database is locked" (lock timeout) or "no such table", and :class:`_ConnectionLost`.
    Autocommit, as SQLite with ``isolation_level=None``: transactions are explicit.
    """

    __slots__ = ("_raw", "_url")

    def __init__(self, raw: Any, url: str) -> None:
        self._raw = raw
        self._url = url

    @classmethod
    def open(cls, url: str, timeout: float) -> PgConnection:
        try:
            raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory, application_name="procestra",
                                  connect_timeout=max(2, min(int(timeout), 30)),
                                  options=f"-c lock_timeout={int(timeout * 1000)} -c synchronous_commit=on")
        except psycopg.Error as exc:
            raise OpsUnavailableError(
                f"cannot connect to the operational store {redact(url)}: {_scrub(' '.join(str(exc).split()), url)}; "
                "check the URL (host, port, database, user, password) and that the server is running and "
                "reachable from this machine") from None
        raw.adapters.register_dumper(bool, _BoolAsInt)
        return cls(raw, url)

    def _error(self, exc: Exception) -> sqlite3.Error:
        message = _scrub(str(exc).strip(), self._url)
        state = getattr(exc, "sqlstate", None)
        if isinstance(exc, psycopg.IntegrityError):
            return sqlite3.IntegrityError(message)
        if state == "42P01":
            return sqlite3.OperationalError(f"no such table: {message}")
        if state in ("55P03", "40P01", "40001", "57014"):
            return sqlite3.OperationalError(f"database is locked ({message})")
        if state is None or state.startswith(("08", "57P")) or self._raw.closed:
            return _ConnectionLost(message)
        return sqlite3.OperationalError(message)

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        cur = self._raw.cursor()
        try:
            for statement in translate(sql):
                cur.execute(statement, parameters if parameters is not None else ())
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return cur if cur.description is not None else _NoRows(cur.rowcount)

    def executemany(self, sql: str, seq_of_parameters: Any) -> Any:
        cur = self._raw.cursor()
        statements = translate(sql)
        try:
            if statements:
                cur.executemany(statements[-1], list(seq_of_parameters))
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return _NoRows(cur.rowcount)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()


