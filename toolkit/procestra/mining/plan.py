"""A filter compiled against one log: the SQL planning behind :class:`procestra.mining.filters.Filter`.

:class:`FilterPlan` holds the CTEs, bound parameters and current selection of a log
(kept cases, or kept events after an event-level step) and gives relations of it that
statistics and miners build their queries on. Each part of a filter narrows the plan
with ``keep_cases``, ``keep_facts``, ``keep_variants`` or ``keep_events``; compiling a
:class:`~procestra.mining.filters.Filter` is ``procestra.mining.filters.plan_filter``.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from procestra.errors import InvalidArgumentError
from procestra.schema import EVENT_COLUMNS, table_names
from procestra.store.derived import derived_tables, is_derived

__all__ = ["CASE_FACTS", "EVENT_ROLES", "FilterPlan", "lifecycle_instances_sql", "seconds_sql"]

#: Columns of ``ca_<id>`` that are not case attributes.
CASE_FACTS = ("case_id", "n_events", "first_ts", "last_ts")
#: Event roles usable as event attributes, with their pm4py names.
EVENT_ROLES = {"activity": "activity", "resource": "resource", "lifecycle": "lifecycle",
               "concept:name": "activity", "org:resource": "resource", "lifecycle:transition": "lifecycle"}
_NESTED = ("STRUCT", "MAP", "UNION")


# -- durations ---------------------------------------------------------------------------
def seconds_sql(micros: str) -> str:
    """SQL turning a count of microseconds into seconds the way pm4py does
    (``86400 * days + seconds + 1e-6 * microseconds``), so durations equal pm4py's bit for bit."""
    x = f"({micros})"
    return f"(CAST(86400 * ({x} // 86400000000) + ({x} // 1000000) % 86400 AS DOUBLE) + 1e-6 * ({x} % 1000000))"


# -- activity instances from lifecycle events ------------------------------------------------
def lifecycle_instances_sql(events: str) -> str:
    """Activity instances from the lifecycle ``start``/``complete`` events of ``events`` (a table
    or CTE with the ``ev_`` columns), as a query with the columns ``case_id, activity, resource,
    event_id, i_start, i_end`` (resource and event id of the complete, where there is one).

    Per case and activity, in order (timestamp, then event id), a ``complete`` closes the
    oldest open ``start``: pm4py's rule (``to_interval``). A ``complete`` with no open start
    is an instance of zero duration at its time, and so is a ``start`` that never completes;
    other transitions (``schedule``, ...) are left out. In SQL, by counting: the m-th complete
    that closes a start closes the m-th start, and a complete closes none exactly when the
    running balance of starts minus completes falls below both 0 and its earlier minimum.
    (Pairing the n-th start with the n-th complete instead goes wrong after a complete
    without a start: it pairs that complete with a later start, a negative duration.)
    """
    running = "PARTITION BY case_id, activity ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND"
    return f"""
        WITH __lc AS (
            SELECT case_id, activity, resource, event_id, ts, lc,
                   sum(CASE WHEN lc = 'start' THEN 1 ELSE -1 END) OVER ({running} CURRENT ROW) AS bal,
                   sum(CASE WHEN lc = 'start' THEN 1 ELSE 0 END) OVER ({running} CURRENT ROW) AS starts,
                   sum(CASE WHEN lc = 'complete' THEN 1 ELSE 0 END) OVER ({running} CURRENT ROW) AS completes
            FROM (SELECT *, lower(coalesce(lifecycle, 'complete')) AS lc FROM {events})
            WHERE lc IN ('start', 'complete')),
        __lo AS (
            SELECT *, greatest(0, -min(bal) OVER ({running} CURRENT ROW)) AS unclosed,
                   greatest(0, -coalesce(min(bal) OVER ({running} 1 PRECEDING), 0)) AS unclosed_before
            FROM __lc),
        __lm AS (
            SELECT *, lc = 'complete' AND unclosed > unclosed_before AS alone,
                   CASE WHEN lc = 'start' THEN starts ELSE completes - unclosed END AS n
            FROM __lo)
        SELECT coalesce(c.case_id, s.case_id) AS case_id, coalesce(c.activity, s.activity) AS activity,
               coalesce(c.resource, s.resource) AS resource, coalesce(c.event_id, s.event_id) AS event_id,
               coalesce(s.ts, c.ts) AS i_start, coalesce(c.ts, s.ts) AS i_end
        FROM (SELECT * FROM __lm WHERE lc = 'complete' AND NOT alone) c
        FULL JOIN (SELECT * FROM __lm WHERE lc = 'start') s
          ON s.case_id = c.case_id AND s.activity = c.activity AND s.n = c.n
        UNION ALL
        SELECT case_id, activity, resource, event_id, ts, ts FROM __lm WHERE alone"""


# -- compilation --------------------------------------------------------------------------
class FilterPlan:
    """A filter compiled against one log: CTEs, bound parameters and the current selection.

    The selection is in one of three states. *Fast* (derived tables present, no
    event-level step yet): kept cases are the rows of ``cv_<id>`` matching ``preds``.
    *Cases* (no derived tables, no event-level step): ``cases`` names a CTE of kept
    ``case_id`` (None: all). *Events* (after an event-level step): ``events`` names a
    CTE of kept events. The ``*_rel`` methods give relations of the current selection;
    statistics build their query on top and run it with :meth:`run`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, log_id: int) -> None:
        self.con = con
        self.log_id = int(log_id)
        self.ev, self.ea, self.ca = table_names(log_id)
        self.va, self.cv, self.ac = derived_tables(log_id)
        self.derived = is_derived(con, log_id)
        self.params: dict[str, Any] = {}
        self.preds: list[str] = []
        self.cases: str | None = None
        self.events: str | None = None
        self._ctes: list[str] = []
        self._cache: dict[tuple[Any, ...], str] = {}
        self._columns: dict[str, dict[str, str]] = {}

    # building blocks ------------------------------------------------------------------
    def param(self, value: Any) -> str:
        """Bind ``value``; returns its placeholder."""
        key = f"p{len(self.params)}"
        self.params[key] = value
        return f"${key}"

    def add(self, sql: str, *, materialized: bool = False) -> str:
        """Add a CTE; returns its name."""
        name = f"__f{len(self._ctes)}"
        self._ctes.append(f"{name} AS {'MATERIALIZED ' if materialized else ''}({sql})")
        return name

    def sql(self, body: str) -> str:
        """``body`` preceded by the plan's CTEs."""
        return f"WITH {', '.join(self._ctes)} {body}" if self._ctes else body

    def run(self, body: str) -> duckdb.DuckDBPyConnection:
        """Execute ``body`` with the plan's CTEs and parameters."""
        return self.con.execute(self.sql(body), self.params)

    def arrow(self, body: str) -> pa.Table:
        """The result of ``body`` (with the plan's CTEs and parameters) as an Arrow table."""
        self.con.complete()  # a relation may not start while an execute() result is open
        return self.con.sql(self.sql(body), params=self.params or None).to_arrow_table()

    @property
    def fast(self) -> bool:
        """Whether the derived tables answer for the current selection."""
        return self.derived and self.events is None

    def _cached(self, kind: str, make: str) -> str:
        key = (kind, self.cases, self.events, tuple(self.preds))
        if key not in self._cache:
            self._cache[key] = self.add(make, materialized=True)
        return self._cache[key]

    def _cv(self) -> str:
        """``cv_<id>`` restricted to the kept cases (fast state)."""
        return f"(SELECT * FROM {self.cv} WHERE {' AND '.join(self.preds)})" if self.preds else self.cv

    def kept_cases(self) -> str | None:
        """A query of the kept ``case_id``s, or None when every case is kept."""
        if self.events is not None:
            return f"SELECT case_id FROM {self.facts_rel()}"
        if self.derived:
            return f"SELECT case_id FROM {self._cv()}" if self.preds else None
        return f"SELECT case_id FROM {self.cases}" if self.cases else None

    def case_in(self, column: str = "case_id") -> str:
        """A predicate restricting ``column`` to the kept cases."""
        kept = self.kept_cases()
        return f"{column} IN ({kept})" if kept else "TRUE"

    def _where(self, column: str = "case_id") -> str:
        kept = self.kept_cases()
        return f" WHERE {column} IN ({kept})" if kept else ""

    # relations of the current selection ----------------------------------------------------
    def events_rel(self) -> str:
        """Kept events with the canonical columns of ``ev_<id>``."""
        if self.events is not None:
            return self.events
        return f"(SELECT {', '.join(EVENT_COLUMNS)} FROM {self.ev}{self._where()})"

    def facts_rel(self) -> str:
        """One row per kept case: ``case_id, n_events, first_ts, last_ts``."""
        if self.fast:
            return f"(SELECT {', '.join(CASE_FACTS)} FROM {self._cv()})"
        if self.events is None:
            return f"(SELECT {', '.join(CASE_FACTS)} FROM {self.ca}{self._where()})"
        return self._cached("facts", "SELECT case_id, count(*) AS n_events, min(ts) AS first_ts, "
                                     f"max(ts) AS last_ts FROM {self.events} GROUP BY case_id")

    def seq_rel(self) -> str:
        """One row per kept case: ``case_id, activities, ts_us`` (in order), plus
        ``variant_id, codes`` when :attr:`fast`."""
        if self.fast:
            return (f"(SELECT c.case_id, c.variant_id, v.activities, v.codes, c.ts_us FROM {self._cv()} c "
                    f"JOIN {self.va} v USING (variant_id))")
        return self._cached(
            "seq", "SELECT case_id, list(activity ORDER BY ts, event_id) AS activities, "
                   f"list(epoch_us(ts) ORDER BY ts, event_id) AS ts_us FROM {self.events_rel()} GROUP BY case_id")

    def variants_rel(self, *, durations: bool = True) -> str:
        """One row per variant of the kept cases: ``activities, cases`` and, with ``durations``,
        ``duration_us`` (the sum over its cases of last minus first timestamp)."""
        if self.fast and not self.preds:
            return f"(SELECT variant_id, activities, cases, duration_us FROM {self.va})"
        if self.fast:
            dur = ", sum(epoch_us(last_ts) - epoch_us(first_ts)) AS duration_us" if durations else ""
            return (f"(SELECT v.variant_id, v.activities, g.* EXCLUDE (variant_id) FROM (SELECT variant_id, "
                    f"count(*) AS cases{dur} FROM {self._cv()} GROUP BY variant_id) g "
                    f"JOIN {self.va} v USING (variant_id))")
        return self._cached("variants", "SELECT activities, count(*) AS cases, sum(ts_us[-1] - ts_us[1]) "
                                        f"AS duration_us FROM {self.seq_rel()} GROUP BY activities")

    # narrowing the selection ------------------------------------------------------------
    def keep_cases(self, case_ids_sql: str) -> None:
        """Keep the kept cases that ``case_ids_sql`` (a query of ``case_id``) also yields."""
        name = self.add(case_ids_sql)
        if self.fast:
            self.preds.append(f"case_id IN (SELECT case_id FROM {name})")
        elif self.events is not None:
            self.events = self.add(f"SELECT * FROM {self.events} WHERE case_id IN (SELECT case_id FROM {name})")
        else:
            prev = self.cases
            self.cases = name if prev is None else self.add(
                f"SELECT case_id FROM {name} WHERE case_id IN (SELECT case_id FROM {prev})")

    def keep_facts(self, predicate: str) -> None:
        """Keep the cases whose ``n_events``, ``first_ts``, ``last_ts`` satisfy ``predicate``."""
        if self.fast:
            self.preds.append(f"({predicate})")
        else:
            self.keep_cases(f"SELECT case_id FROM {self.facts_rel()} WHERE {predicate}")

    def keep_variants(self, predicate: str) -> None:
        """Keep the cases whose variant (column ``activities``) satisfies ``predicate``."""
        if self.fast:
            self.preds.append(f"variant_id IN (SELECT variant_id FROM {self.va} WHERE {predicate})")
        else:
            self.keep_cases(f"SELECT case_id FROM {self.seq_rel()} WHERE {predicate}")

    def keep_events(self, predicate: str) -> None:
        """Keep the events (alias ``e``) satisfying ``predicate``."""
        cols = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
        self.events = self.add(f"SELECT {cols} FROM {self.events_rel()} e WHERE {predicate}")
        self.cases, self.preds = None, []

    # attributes ---------------------------------------------------------------------------
    def _describe(self, table: str) -> dict[str, str]:
        if table not in self._columns:
            self._columns[table] = dict(self.con.execute(
                f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
        return self._columns[table]

    def case_attribute(self, name: str) -> tuple[str, str]:
        """The ``ca_<id>`` column and type of case attribute ``name`` (``case:`` prefix optional)."""
        cols = {c: t for c, t in self._describe(self.ca).items() if c not in CASE_FACTS}
        col = name if name in cols else name[5:] if name.startswith("case:") and name[5:] in cols else None
        if col is None:
            known = ", ".join(sorted(cols)) or "none"
            raise InvalidArgumentError(f"unknown case attribute {name!r}; the log's case attributes are: {known}",
                                       parameter="name")
        return col, cols[col]

    def event_attribute(self, name: str) -> tuple[str, str, bool]:
        """The column, type and whether it lives in ``ea_<id>`` of event attribute ``name``."""
        if name in EVENT_ROLES:
            return EVENT_ROLES[name], "VARCHAR", False
        cols = {c: t for c, t in self._describe(self.ea).items() if c != "event_id"}
        if name not in cols:
            known = ", ".join(["activity", "lifecycle", "resource", *sorted(cols)])
            raise InvalidArgumentError(f"unknown event attribute {name!r}; the log's event attributes are: {known}",
                                       parameter="name")
        return name, cols[name], True

    def member(self, ref: str, typ: str, values: tuple[Any, ...], exclude: bool, name: str) -> str:
        """``ref`` is (not) one of ``values``, each bound and cast to ``typ``; None matches missing values."""
        if typ.upper().startswith(_NESTED) or typ.endswith("]"):
            raise InvalidArgumentError(f"cannot filter on attribute {name!r} of type {typ}", parameter="name")
        present = [v for v in values if v is not None]
        for v in present:
            ok = self.con.execute(f"SELECT TRY_CAST($v AS {typ}) IS NOT NULL", {"v": v}).fetchall()[0][0]
            if not ok:
                raise InvalidArgumentError(f"{v!r} is not a valid {typ} value for attribute {name!r}",
                                           parameter="values")
        alts = [f"{ref} IN ({', '.join(f'CAST({self.param(v)} AS {typ})' for v in present)})"] if present else []
        if len(present) < len(values):
            alts.append(f"{ref} IS NULL")
        cond = f"({' OR '.join(alts)})"
        return f"{cond} IS NOT TRUE" if exclude else f"{cond} IS TRUE"
