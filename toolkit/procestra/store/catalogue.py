"""The catalogue: the ``logs`` and ``loads`` tables of the event store, and the only SQL on them.

``logs`` has one row per log: its name, source, content hash, column mapping, options,
counts (events, cases, activities, variants), time span, attribute types, last quality
report and version. ``loads`` keeps the history of loads, the key of idempotent loading.
Counts are written once, when a load commits, so that ``info`` and ``logs`` never
scan the events.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

from procestra.errors import LogNotFoundError
from procestra.names import check_name
from procestra.schema import table_names

if TYPE_CHECKING:
    from procestra.store.events import Store

__all__ = [
    "LoadRecord",
    "LogEntry",
    "LogInfo",
    "count_variants",
    "delete",
    "ensure",
    "event_attribute_types",
    "find",
    "first_loaded_at",
    "info",
    "infos",
    "load_counts",
    "log_id",
    "log_names",
    "log_row",
    "next_log_id",
    "record_load",
    "validate_log_name",
    "write_entry",
]

_DDL = """
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
    version       INTEGER,
    variants      BIGINT
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

# Stores written before the variant count was kept get the column on their next write;
# their rows hold NULL, and ``info`` counts those logs' variants from the events.
_MIGRATE = "ALTER TABLE logs ADD COLUMN IF NOT EXISTS variants BIGINT"


# Case-table columns that are not case attributes.
_RESERVED_CASE_COLUMNS = ("case_id", "n_events", "first_ts", "last_ts")


@dataclass(frozen=True)
class LogInfo:
    """Counts and time span of one log, plus where it came from."""

    name: str
    events: int
    cases: int
    activities: int
    variants: int
    start: datetime | None
    end: datetime | None
    source: str
    source_kind: str
    loaded_at: datetime | None
    version: int
    mapping: dict[str, Any]
    event_attributes: dict[str, str]
    case_attributes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("start", "end", "loaded_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.to_dict().items() if k not in ("mapping", "event_attributes", "case_attributes")
        )
        return f"<table>{rows}</table>"


@dataclass(frozen=True)
class LogEntry:
    """What a load (or a filtered copy) says about a log; the counts are read from its tables."""

    log_id: int
    name: str
    version: int
    source: str
    source_kind: str
    content_hash: str
    mapping: dict[str, Any]
    options: dict[str, Any]
    quality: dict[str, Any]
    #: the number of variants when the writer already knows it (counted in staging), else None
    variants: int | None = None


@dataclass(frozen=True)
class LoadRecord:
    """One row of the load history."""

    log_id: int
    version: int
    mode: str
    source: str
    content_hash: str
    options_hash: str
    rows_read: int
    events_added: int


def validate_log_name(name: Any, *, parameter: str = "log") -> str:
    """Check a log name against the one name rule (:mod:`procestra.names`)."""
    return check_name(name, kind="log", parameter=parameter)


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """Create the catalogue tables if missing (on a read-write connection)."""
    con.execute(_DDL)
    con.execute(_MIGRATE)


def log_id(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """The id of log ``name``, or :class:`LogNotFoundError` listing the known logs."""
    rows = con.execute("SELECT log_id FROM logs WHERE name = ?", [name]).fetchall()
    if not rows:
        raise LogNotFoundError(name, log_names(con))
    return int(rows[0][0])


def log_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every log's name, sorted."""
    return [r[0] for r in con.execute("SELECT name FROM logs ORDER BY name").fetchall()]


def log_row(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any]:
    """The catalogue row of log ``name`` as a dict (:class:`LogNotFoundError` if there is none)."""
    cur = con.execute("SELECT * FROM logs WHERE name = ?", [name])
    rows = cur.fetchall()
    if not rows:
        raise LogNotFoundError(name, log_names(con))
    return dict(zip([d[0] for d in cur.description], rows[0]))


def find(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, int, str] | None:
    """``(log_id, version, content_hash)`` of log ``name``, or None when there is no such log."""
    rows = con.execute("SELECT log_id, version, content_hash FROM logs WHERE name = ?", [name]).fetchall()
    return None if not rows else (int(rows[0][0]), int(rows[0][1]), str(rows[0][2]))


def load_counts(con: duckdb.DuckDBPyConnection, name: str, content_hash: str,
                options_hash: str) -> tuple[str, int, int] | None:
    """For log ``name``: its content hash, its number of loads, and how many of them loaded
    ``content_hash`` with ``options_hash``; None when there is no such log."""
    rows = con.execute(
        "SELECT l.content_hash, (SELECT count(*) FROM loads d WHERE d.log_id = l.log_id), "
        "(SELECT count(*) FROM loads d WHERE d.log_id = l.log_id AND d.content_hash = ? AND d.options_hash = ?) "
        "FROM logs l WHERE l.name = ?",
        [content_hash, options_hash, name],
    ).fetchall()
    return None if not rows else (str(rows[0][0]), int(rows[0][1]), int(rows[0][2]))


def next_log_id(con: duckdb.DuckDBPyConnection) -> int:
    """The id a new log gets (inside the writer's transaction)."""
    return int(con.execute("SELECT coalesce(max(log_id), 0) + 1 FROM logs").fetchall()[0][0])


def first_loaded_at(con: duckdb.DuckDBPyConnection, log: int) -> datetime | None:
    """When log ``log`` (an id) was first loaded in its current form (its oldest load), or None."""
    rows = con.execute("SELECT min(loaded_at) FROM loads WHERE log_id = ?", [log]).fetchall()
    return rows[0][0] if rows else None


def event_attribute_types(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str] | None:
    """The event attributes of log ``name`` with their DuckDB types, or None when there is no such log."""
    rows = con.execute("SELECT event_attributes FROM logs WHERE name = ?", [name]).fetchall()
    return None if not rows else dict(json.loads(rows[0][0] or "{}"))


def write_entry(con: duckdb.DuckDBPyConnection, entry: LogEntry) -> None:
    """Write (or rewrite) the catalogue row of ``entry``'s log, counting from its tables.

    Runs inside the writer's transaction, after the log's tables hold their new contents.
    """
    ev, ea, ca = table_names(entry.log_id)
    events, cases, activities, first, last = con.execute(
        f"SELECT count(*), count(DISTINCT case_id), count(DISTINCT activity), min(ts), max(ts) FROM {ev}"
    ).fetchall()[0]
    variants = entry.variants if entry.variants is not None else count_variants(con, ev)
    ev_attrs = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {ea})").fetchall())
    ev_attrs.pop("event_id", None)
    ca_attrs = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {ca})").fetchall())
    for k in _RESERVED_CASE_COLUMNS:
        ca_attrs.pop(k, None)
    con.execute("DELETE FROM logs WHERE log_id = ?", [entry.log_id])
    con.execute(
        "INSERT INTO logs (log_id, name, source, source_kind, content_hash, mapping, options, loaded_at, "
        "events, cases, activities, first_ts, last_ts, event_attributes, case_attributes, quality, version, "
        "variants) VALUES (?, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [entry.log_id, entry.name, entry.source, entry.source_kind, entry.content_hash,
         json.dumps(entry.mapping), json.dumps(entry.options, default=str), events, cases, activities,
         first, last, json.dumps(ev_attrs), json.dumps(ca_attrs), json.dumps(entry.quality), entry.version,
         variants],
    )


def count_variants(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """The number of distinct activity sequences in an event table (staged or stored).

    Sequences are compared as lists of small activity codes, not of strings: a third faster
    on a million events, and exact (each activity gets its own code, a missing one code 0).
    """
    return int(con.execute(
        f"WITH ac AS (SELECT activity, (row_number() OVER ())::UINTEGER AS code "
        f"FROM (SELECT DISTINCT activity FROM {table})) "
        f"SELECT count(DISTINCT v) FROM (SELECT list(coalesce(code, 0) ORDER BY ts, event_id) AS v "
        f"FROM {table} LEFT JOIN ac USING (activity) GROUP BY case_id)"
    ).fetchall()[0][0])


def record_load(con: duckdb.DuckDBPyConnection, load: LoadRecord) -> None:
    """Append one row to the load history (inside the writer's transaction)."""
    con.execute(
        "INSERT INTO loads (log_id, version, mode, source, content_hash, options_hash, loaded_at, rows_read, "
        "events_added) VALUES (?, ?, ?, ?, ?, ?, now(), ?, ?)",
        [load.log_id, load.version, load.mode, load.source, load.content_hash, load.options_hash,
         load.rows_read, load.events_added],
    )


def delete(con: duckdb.DuckDBPyConnection, log: int) -> None:
    """Remove log ``log`` (an id) from the catalogue and drop its tables (inside the writer's transaction)."""
    for t in table_names(log):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    con.execute("DELETE FROM loads WHERE log_id = ?", [log])
    con.execute("DELETE FROM logs WHERE log_id = ?", [log])


def _info(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> LogInfo:
    variants = row.get("variants")
    if variants is None:  # a log loaded before the count was kept
        variants = count_variants(con, table_names(row["log_id"])[0])
    return LogInfo(
        name=row["name"], events=int(row["events"]), cases=int(row["cases"]),
        activities=int(row["activities"]), variants=int(variants), start=row["first_ts"],
        end=row["last_ts"], source=row["source"], source_kind=row["source_kind"],
        loaded_at=row["loaded_at"], version=int(row["version"]),
        mapping=json.loads(row["mapping"]) if row["mapping"] else {},
        event_attributes=json.loads(row["event_attributes"] or "{}"),
        case_attributes=json.loads(row["case_attributes"] or "{}"),
    )


def info(store: Store, name: str) -> LogInfo:
    """Counts (events, cases, activities, variants) and time span of log ``name``, from the catalogue."""
    with store.read() as con:
        return _info(con, log_row(con, name))


def infos(store: Store) -> list[LogInfo]:
    """:func:`info` of every log, by name, in one read."""
    with store.read() as con:
        cur = con.execute("SELECT * FROM logs ORDER BY name")
        cols = [d[0] for d in cur.description]
        return [_info(con, dict(zip(cols, r))) for r in cur.fetchall()]
