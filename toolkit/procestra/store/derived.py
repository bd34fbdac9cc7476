"""Derived tables of a log (``ac_<id>``, ``va_<id>``, ``cv_<id>``): what no case-level filter can change.

Built once per load, by the first statistic that needs them, in a write transaction of
their own (see ``mining.stats``). ``ev_<id>`` then carries a comment naming its row
count; readers use the derived tables only while it matches, so data derived from
older contents is never used. This module is the only code that writes these tables.
"""

from __future__ import annotations

import duckdb

from procestra.schema import table_names
from procestra.store import catalogue
from procestra.store.home import Home

__all__ = ["derive", "derive_log", "derived_marker", "derived_tables", "drop_derived", "is_derived", "underive"]


def derived_tables(log_id: int) -> tuple[str, str, str]:
    """The variant, case-variant and activity-code table names of log ``log_id``."""
    log_id = int(log_id)
    return f"va_{log_id}", f"cv_{log_id}", f"ac_{log_id}"


def derived_marker(events: int) -> str:
    """The comment :func:`procestra.stats.derive` puts on ``ev_<id>``: it dates the derived data."""
    return f"procestra-derived rows={int(events)}"


def is_derived(con: duckdb.DuckDBPyConnection, log_id: int) -> bool:
    """Whether the log's derived tables exist and were built from its current events.

    ``ev_<id>`` carries a comment naming its row count when derived; a replaced
    table has no comment and an append changes the count, so stale data is never used.
    """
    ev = table_names(log_id)[0]
    names = (ev, *derived_tables(log_id))
    found = dict(con.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name IN (?, ?, ?, ?)", list(names)).fetchall())
    if len(found) < 4 or not found[ev]:
        return False
    return bool(found[ev] == derived_marker(con.execute(f"SELECT count(*) FROM {ev}").fetchall()[0][0]))


def derive(con: duckdb.DuckDBPyConnection, log_id: int) -> None:
    """(Re)build the derived tables of log ``log_id`` inside the caller's write transaction.

    Call it after every change to ``ev_<id>`` (create, replace, append). It marks
    ``ev_<id>`` with a comment naming its row count; readers use the derived tables
    only while that comment matches, so a forgotten call costs speed, never correctness.
    """
    ev = table_names(log_id)[0]
    va, cv, ac = derived_tables(log_id)
    con.execute(f"CREATE OR REPLACE TABLE {ac} AS SELECT (row_number() OVER (ORDER BY activity) - 1)::INTEGER "
                f"AS code, activity FROM (SELECT DISTINCT activity FROM {ev})")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __procestra_seq AS
        SELECT e.case_id, list(a.code ORDER BY e.ts, e.event_id) AS codes, count(*)::INTEGER AS n_events,
               min(e.ts) AS first_ts, max(e.ts) AS last_ts, list(epoch_us(e.ts) ORDER BY e.ts, e.event_id) AS ts_us
        FROM {ev} e JOIN {ac} a USING (activity) GROUP BY e.case_id"""
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE {va} AS
        WITH g AS (SELECT codes, count(*) AS cases, sum(epoch_us(last_ts) - epoch_us(first_ts)) AS duration_us
                   FROM __procestra_seq GROUP BY codes),
             n AS (SELECT list(activity ORDER BY code) AS names FROM {ac}),
             v AS (SELECT g.*, list_transform(g.codes, lambda c: n.names[c + 1]) AS activities FROM g, n)
        SELECT (row_number() OVER (ORDER BY cases DESC, activities DESC) - 1)::INTEGER AS variant_id,
               activities, codes, len(codes)::INTEGER AS n_events, cases, duration_us::BIGINT AS duration_us
        FROM v ORDER BY variant_id"""
    )
    con.execute(f"CREATE OR REPLACE TABLE {cv} AS SELECT s.case_id, v.variant_id, s.n_events, s.first_ts, "
                f"s.last_ts, s.ts_us FROM __procestra_seq s JOIN {va} v USING (codes)")
    con.execute("DROP TABLE __procestra_seq")
    rows = con.execute(f"SELECT count(*) FROM {ev}").fetchall()[0][0]
    con.execute(f"COMMENT ON TABLE {ev} IS '{derived_marker(rows)}'")


def drop_derived(con: duckdb.DuckDBPyConnection, log_id: int) -> None:
    """Drop the derived tables of ``log_id`` (for ``Workspace.drop``)."""
    for t in derived_tables(log_id):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def derive_log(workspace: Home, log: str) -> None:
    """Build the derived tables of ``log`` in their own write transaction, unless they are current."""
    with workspace.store.write() as con:
        con.execute("BEGIN TRANSACTION")
        log_id = catalogue.log_id(con, log)
        if not is_derived(con, log_id):  # another process may have just done it
            derive(con, log_id)
        con.execute("COMMIT")


def underive(workspace: Home, log: str) -> None:
    """Remove the derived data of ``log`` (statistics then sort events per case, or rebuild it)."""
    with workspace.store.write() as con:
        con.execute("BEGIN TRANSACTION")
        drop_derived(con, catalogue.log_id(con, log))
        con.execute("COMMIT")
