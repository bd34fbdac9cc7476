"""The data-quality report made after every load, as an object and as text.

Checks run as SQL over the staging table, so they cost one scan each whatever
the log's size; each issue keeps a count and the first row numbers (1-based
data rows of the source; for XES, the event's position in the file).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from procestra.store import catalogue
from procestra.store.home import Home

__all__ = ["QualityIssue", "QualityReport", "check_quality", "last_report"]

_EXAMPLES = 10


@dataclass(frozen=True)
class QualityIssue:
    """One finding: what, how many, and where (row numbers, example values)."""

    kind: str
    count: int
    message: str
    rows: tuple[int, ...] = ()
    examples: tuple[str, ...] = ()
    #: ``dropped`` issues removed rows from the load; ``warning`` issues kept them.
    severity: str = "warning"


@dataclass
class QualityReport:
    """What a load read, kept and dropped, and what looks wrong in the data."""

    rows_read: int = 0
    events: int = 0
    cases: int = 0
    activities: int = 0
    issues: list[QualityIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        """Rows left out of the load (missing or unparseable values)."""
        return sum(i.count for i in self.issues if i.severity == "dropped")

    @property
    def ok(self) -> bool:
        return not self.issues

    def issue(self, kind: str) -> QualityIssue | None:
        """The issue of ``kind`` (for example ``"out_of_order"``), or None."""
        return next((i for i in self.issues if i.kind == kind), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dropped"] = self.dropped
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityReport:
        issues = [
            QualityIssue(**{**i, "rows": tuple(i["rows"]), "examples": tuple(i["examples"])})
            for i in d.get("issues", [])
        ]
        return cls(
            rows_read=d.get("rows_read", 0), events=d.get("events", 0), cases=d.get("cases", 0),
            activities=d.get("activities", 0), issues=issues, notes=list(d.get("notes", [])),
        )

    def lines(self) -> list[str]:
        """The report as plain text lines, for the CLI and logs."""
        out = [
            f"read {self.rows_read:,} rows; loaded {self.events:,} events in {self.cases:,} cases "
            f"with {self.activities:,} activities; dropped {self.dropped:,} rows"
        ]
        for i in self.issues:
            where = f" (rows {', '.join(map(str, i.rows))}{', ...' if i.count > len(i.rows) else ''})" if i.rows else ""
            ex = f"; e.g. {', '.join(i.examples)}" if i.examples else ""
            tag = "dropped" if i.severity == "dropped" else "warning"
            out.append(f"  [{tag}] {i.message}: {i.count:,}{where}{ex}")
        out.extend(f"  [note] {n}" for n in self.notes)
        if not self.issues:
            out.append("  no data-quality issues found")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(i.severity)}</td><td>{html.escape(i.message)}</td>"
            f"<td style='text-align:right'>{i.count:,}</td>"
            f"<td>{html.escape(', '.join(map(str, i.rows)))}</td>"
            f"<td>{html.escape(', '.join(i.examples))}</td></tr>"
            for i in self.issues
        ) or "<tr><td colspan=5>no data-quality issues found</td></tr>"
        return (
            f"<p><b>Data quality</b>: {self.events:,} events, {self.cases:,} cases, "
            f"{self.activities:,} activities from {self.rows_read:,} rows; {self.dropped:,} dropped</p>"
            "<table><tr><th>kind</th><th>issue</th><th>count</th><th>rows</th><th>examples</th></tr>"
            f"{rows}</table>"
        )


def _issue(
    con: duckdb.DuckDBPyConnection, kind: str, message: str, where_sql: str,
    example_sql: str = "NULL", *, table: str = "stg", severity: str = "warning",
) -> QualityIssue | None:
    count = con.execute(f"SELECT count(*) FROM {table} WHERE {where_sql}").fetchall()[0][0]
    if not count:
        return None
    sample = con.execute(
        f"SELECT __row, {example_sql} FROM {table} WHERE {where_sql} ORDER BY __row LIMIT {_EXAMPLES}"
    ).fetchall()
    examples = tuple(str(e) for _, e in sample if e is not None)
    return QualityIssue(kind, int(count), message, tuple(int(r) for r, _ in sample), examples, severity)


def check_quality(con: duckdb.DuckDBPyConnection, *, now_sql: str = "now()") -> list[QualityIssue]:
    """Warnings about the kept events in staging table ``stg`` (rows already dropped are not seen).

    ``stg`` has ``__row``, ``case_id``, ``activity``, ``ts``, ``start_ts`` and ``__dup``
    (a hash of the whole source row); ``ca`` has ``case_id`` and ``n_events``.
    """
    found: list[QualityIssue | None] = []
    # Only this check needs the order within a case; the others are plain aggregates.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _q AS SELECT __row, case_id, activity FROM ("
        "SELECT __row, case_id, activity, ts < lag(ts) OVER (PARTITION BY case_id ORDER BY __row) AS ooo "
        "FROM stg) WHERE ooo"
    )
    found.append(_issue(con, "out_of_order", "events earlier than the event before them in their case",
                        "true", "case_id || ': ' || activity", table="_q"))
    has_dups = con.execute("SELECT count(*) > count(DISTINCT __dup) FROM stg").fetchall()[0][0]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _q AS SELECT s.__row, s.case_id, s.activity FROM stg s "
        "JOIN (SELECT __dup, min(__row) AS first FROM stg GROUP BY __dup HAVING count(*) > 1) d "
        "ON s.__dup = d.__dup AND s.__row > d.first" + ("" if has_dups else " WHERE false")
    )
    found.append(_issue(con, "duplicates", "exact duplicate events (same values as an earlier row)",
                        "true", "case_id || ': ' || activity", table="_q"))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _q AS SELECT min(s.__row) AS __row, s.case_id FROM stg s "
        "JOIN ca c ON c.case_id = s.case_id AND c.n_events = 1 GROUP BY s.case_id"
    )
    found.append(_issue(con, "single_event_cases", "cases with a single event", "true", "case_id", table="_q"))
    found.append(_issue(con, "clock_1970", "timestamps before 1971 (a clock that starts at 1970?)",
                        "ts < TIMESTAMPTZ '1971-01-01 00:00:00+00'", "strftime(ts, '%Y-%m-%d %H:%M:%S')"))
    found.append(_issue(con, "clock_future", "timestamps in the future",
                        f"ts > {now_sql} + INTERVAL 1 DAY", "strftime(ts, '%Y-%m-%d %H:%M:%S')"))
    found.append(_issue(con, "start_after_end", "start timestamps after the event's timestamp",
                        "start_ts > ts", "case_id || ': ' || activity"))
    con.execute("DROP TABLE _q")
    return [i for i in found if i is not None]


def last_report(home: Home, log: str) -> QualityReport:
    """The data-quality report of the last load of ``log``, as the catalogue keeps it."""
    with home.store.read() as con:
        row = catalogue.log_row(con, log)
    return QualityReport.from_dict(json.loads(row["quality"] or "{}"))
