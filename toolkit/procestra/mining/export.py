"""Logs out of the store: pm4py DataFrames, XES, CSV, Parquet and activity instances.

Events come out in pm4py's column format (``case:concept:name``, ``concept:name``,
``time:timestamp`` ...), cases in order of their first event, events within a case
by timestamp and then by source position, which is the order pm4py uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from procestra.errors import EmptyResultError, InvalidArgumentError
from procestra.mining.plan import lifecycle_instances_sql
from procestra.schema import PM4PY_NAMES, quote_ident, table_names
from procestra.store import catalogue
from procestra.store.home import output_path

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from procestra.mining.filters import Filter
    from procestra.store.home import Home

__all__ = ["activity_instances", "export", "pm4py_select", "to_arrow", "to_pandas"]


def pm4py_select(con: duckdb.DuckDBPyConnection, log_id: int, kept: str | None = None) -> str:
    """The SELECT that yields a log's events in pm4py's format and order.

    ``kept`` names a relation of ``event_id``s to restrict to (a filter's result).
    """
    ev, ea, ca = table_names(log_id)
    present = con.execute(
        f"SELECT count(start_ts) > 0, count(lifecycle) > 0, count(resource) > 0 FROM {ev}"
    ).fetchall()[0]
    cols = [
        f"e.case_id AS {quote_ident(PM4PY_NAMES['case'])}",
        f"e.activity AS {quote_ident(PM4PY_NAMES['activity'])}",
        f"e.ts AS {quote_ident(PM4PY_NAMES['timestamp'])}",
    ]
    for role, col, has in zip(("start_timestamp", "lifecycle", "resource"),
                              ("start_ts", "lifecycle", "resource"), present):
        if has:
            cols.append(f"e.{col} AS {quote_ident(PM4PY_NAMES[role])}")
    taken = {c.lower() for c in PM4PY_NAMES.values()}
    for (name,) in con.execute(f"SELECT column_name FROM (DESCRIBE {ea})").fetchall()[1:]:
        out = name if name.lower() not in taken else f"{name}_attr"
        taken.add(out.lower())
        cols.append(f"a.{quote_ident(name)} AS {quote_ident(out)}")
    for (name,) in con.execute(f"SELECT column_name FROM (DESCRIBE {ca})").fetchall()[4:]:
        out = f"case:{name}"
        if out.lower() in taken:
            out = f"case:{name}_attr"
        taken.add(out.lower())
        cols.append(f"c.{quote_ident(name)} AS {quote_ident(out)}")
    return (
        f"SELECT {', '.join(cols)} FROM {ev} e JOIN {ea} a USING (event_id) JOIN {ca} c USING (case_id) "
        + (f"SEMI JOIN {kept} k ON k.event_id = e.event_id " if kept else "") +
        f"JOIN (SELECT case_id, min(event_id) AS __first FROM {ev} GROUP BY case_id) o USING (case_id) "
        "ORDER BY o.__first, e.ts, e.event_id"
    )


def to_arrow(workspace: Home, log: str) -> pa.Table:
    """``log`` as an Arrow table in pm4py's column format."""
    with workspace.store.read() as con:
        log_id = catalogue.log_id(con, log)
        return con.sql(pm4py_select(con, log_id)).to_arrow_table()


def to_pandas(workspace: Home, log: str) -> pd.DataFrame:
    """``log`` as a pandas DataFrame in pm4py's format (timestamps tz-aware UTC)."""
    with workspace.store.read() as con:
        log_id = catalogue.log_id(con, log)
        return con.execute(pm4py_select(con, log_id)).df()


def export(workspace: Home, log: str, to: str | os.PathLike[str], filter: Filter | None = None) -> Path:
    """Write ``log`` (or what ``filter`` keeps of it) to ``to``: ``.xes``/``.xes.gz``, ``.csv`` or ``.parquet``.

    The file is written next to its target and renamed into place, so a failed
    export never leaves a half-written file.
    """
    path = Path(to)
    name = path.name.lower()
    kinds = {".xes": "xes", ".gz": "xes" if name.endswith(".xes.gz") else None, ".csv": "csv",
             ".parquet": "parquet"}
    kind = kinds.get(path.suffix.lower())
    if kind is None:
        raise InvalidArgumentError(
            f"cannot export to {str(path)!r}: use a .xes, .xes.gz, .csv or .parquet file name",
            parameter="to",
        )
    output_path(path, parameter="to")
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with workspace.store.read() as con:
            log_id = catalogue.log_id(con, log)
            kept = None
            if filter:
                from procestra.mining.filters import filtered_events_sql

                sql, params = filtered_events_sql(con, log_id, filter)
                con.execute(f"CREATE OR REPLACE TEMP TABLE __kept AS SELECT event_id FROM ({sql})", params)
                if not con.execute("SELECT count(*) FROM __kept").fetchall()[0][0]:
                    raise EmptyResultError(f"the filter keeps no events of log {log!r}; nothing to export")
                kept = "__kept"
            query = pm4py_select(con, log_id, kept)
            if kind == "xes":
                from procestra.ingest.xes import write_xes

                reader = con.sql(query).to_arrow_reader(100_000)
                write_xes((pa.Table.from_batches([b]) for b in reader), tmp,
                          gzip=name.endswith(".gz"))
            else:
                fmt = "(FORMAT csv, HEADER true)" if kind == "csv" else "(FORMAT parquet)"
                con.execute(f"COPY ({query}) TO '{_escape(str(tmp))}' {fmt}")
        os.replace(tmp, path)
    except PermissionError:
        raise InvalidArgumentError(f"cannot write {path}: permission denied", parameter="to") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _escape(path: str) -> str:
    return path.replace("'", "''")


def activity_instances(workspace: Home, log: str) -> pd.DataFrame:
    """Activity instances: one row each, with start, end and duration in seconds.

    Uses ``start_ts`` where the log has it; otherwise pairs lifecycle ``start`` and
    ``complete`` events of the same case and activity, each complete closing the oldest
    open start (see :func:`~procestra.mining.plan.lifecycle_instances_sql`). Events
    without a partner are instances of zero duration.
    """
    with workspace.store.read() as con:
        log_id = catalogue.log_id(con, log)
        ev = table_names(log_id)[0]
        has_start = con.execute(f"SELECT count(start_ts) > 0 FROM {ev}").fetchall()[0][0]
        if has_start:
            sql = (f"SELECT case_id, activity, resource, coalesce(start_ts, ts) AS start, ts AS end "
                   f"FROM {ev} WHERE lifecycle IS NULL OR lower(lifecycle) = 'complete'")
        else:
            sql = (f"SELECT case_id, activity, resource, i_start AS start, i_end AS \"end\" "
                   f"FROM ({lifecycle_instances_sql(ev)})")
        return con.execute(
            f"SELECT *, epoch(\"end\") - epoch(start) AS duration_seconds FROM ({sql}) "
            "ORDER BY case_id, start, \"end\""
        ).df()
