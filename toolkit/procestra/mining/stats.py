"""Process statistics in DuckDB SQL: DFGs, variants, durations, activities, resources, times.

Every function takes ``(workspace, log, filter=None)`` (see :mod:`procestra.mining.filters`),
opens a short read connection, and returns a frozen result that displays itself in
a notebook and converts with ``.to_pandas()`` (DFGs and variants also ``.to_pm4py()``).
An empty selection gives empty results, never an error.

>>> d = stats.dfg(ws, "loans", Filter.variants(top=10))
>>> dfg, start, end = d.to_pm4py()          # the same dicts as pm4py.discover_dfg

**Order within a case** is by timestamp, ties by ``event_id`` (position in the
source). That is pm4py's order, found by reading its source (2.7.x):

- ``pm4py.read_xes`` does *not* sort: it returns events in file order (its
  ``format_dataframe`` step is off by default). ``pm4py.format_dataframe`` sorts
  by case, timestamp and original row (a stable sort), so ties keep file order.
- ``discover_dfg`` / ``discover_performance_dfg`` sort (stably) by case,
  ``start_timestamp``, timestamp; without a ``start_timestamp`` column they use
  the timestamp alone. ``get_variants`` does not sort at all and slices the frame
  as it is, assuming each case's rows are contiguous and ordered;
  ``get_start_activities``/``get_end_activities`` take the first/last row per case
  in frame order; ``get_all_case_durations`` is last minus first row's timestamp.
  On a frame read from XES or formatted by ``format_dataframe`` (the real logs are
  in timestamp order within each trace; ties are common) all of these equal ours.
- So on logs *with start timestamps* pm4py is inconsistent with itself: its DFG
  orders by start time, its variants by completion time. We order by completion
  time everywhere (so the DFG is derivable from the variants); on such logs we
  equal pm4py's DFG computed without the ``start_timestamp`` column. Likewise its
  performance DFG then measures previous completion to next *start*; ours always
  measures completion to completion (:func:`activity_times` has waiting times).
- Nothing in pm4py's DFG, variants or durations filters lifecycle transitions:
  ``start``/``schedule``/``complete`` events all count. We do the same; use
  ``Filter.event_attribute("lifecycle", ["complete"], level="event")`` to keep one.
- ``filter_variants_top_k`` breaks count ties by the variant tuple, descending;
  :func:`variants` lists variants in that order, so ``Filter.variants(top=k)``
  keeps exactly its first k rows.
- Seconds are computed as pm4py computes them (``86400 * days + seconds + 1e-6 *
  microseconds``), so case durations are equal to the last bit, not just close.

**Derived data.** :func:`derive` precomputes, per log, what no case-level filter
can change: ``ac_<id>`` (activity codes), ``va_<id>`` (one row per variant:
``variant_id, activities, codes, n_events, cases, duration_us``) and ``cv_<id>``
(one row per case: ``case_id, variant_id, n_events, first_ts, last_ts, ts_us``, the
last being the case's timestamps in order, as epoch microseconds). Unfiltered, the
frequency DFG, start/end activities and variants read only ``va_<id>``; case-level
filters become predicates on one scan of ``cv_<id>``; the performance DFG unnests
``ts_us`` beside the variant's activity codes, with no per-case sort. Logs without
derived data (or after an event-level filter) get the same answers from
``list(... ORDER BY ts, event_id)`` over the events.
"""

from __future__ import annotations

import contextlib
import html
import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa

from procestra.errors import InvalidArgumentError
from procestra.mining.filters import Filter, plan_filter
from procestra.mining.plan import FilterPlan, lifecycle_instances_sql, seconds_sql
from procestra.store import catalogue
from procestra.store.derived import derive, derive_log, drop_derived, is_derived, underive

if TYPE_CHECKING:
    import pandas as pd

    from procestra.store.home import Home

__all__ = [
    "DFG", "ActivityStats", "ActivityTimes", "ArrivalRate", "CaseDurations", "Handover", "PerformanceDFG",
    "ResourceStats", "Rework", "Variants", "activity_stats", "activity_times", "arrival_rate",
    "DottedChart", "case_durations", "derive", "derive_log", "dfg", "dotted_chart", "drop_derived", "handover",
    "performance_dfg",
    "underive",
    "resource_stats", "rework", "variants",
]



#: Whether a statistic on a log without current derived data builds it first (taking the
#: writer lock briefly). Off, statistics answer from the events with per-case sorts instead.
AUTO_DERIVE: bool = True


@contextlib.contextmanager
def _planned(workspace: Home, log: str, flt: Filter | None) -> Iterator[FilterPlan]:
    with workspace.store.read() as con:
        log_id = catalogue.log_id(con, log)
        if not AUTO_DERIVE or is_derived(con, log_id):
            yield plan_filter(con, log_id, flt)
            return
    # Loaded before derivation existed, or a load died between commit and derive: build it once.
    derive_log(workspace, log)
    with workspace.store.read() as con:
        yield plan_filter(con, catalogue.log_id(con, log), flt)


# -- results ----------------------------------------------------------------------------
def _html_table(title: str, table: pa.Table, limit: int = 20) -> str:
    head = table.slice(0, limit).to_pylist()
    cols = table.column_names
    more = f" (first {limit} of {table.num_rows:,})" if table.num_rows > limit else f" ({table.num_rows:,} rows)"

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:,.4g}"
        if isinstance(v, list):
            v = " → ".join(map(str, v))
        return "" if v is None else html.escape(str(v))

    rows = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>" for r in head)
    header = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    return f"<p><b>{html.escape(title)}</b>{more}</p><table><tr>{header}</tr>{rows}</table>"


@dataclass(frozen=True, eq=False)
class _Table:
    """A tabular result held as an immutable Arrow table."""

    table: pa.Table
    title: ClassVar[str] = ""

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()

    def to_pylist(self) -> list[dict[str, Any]]:
        """One dict per row."""
        rows: list[dict[str, Any]] = self.table.to_pylist()
        return rows

    def _repr_html_(self) -> str:
        return _html_table(self.title, self.table)


def _arrow(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(schema.names, r)) for r in rows], schema=schema)


_COUNTS = pa.schema([("activity", pa.string()), ("count", pa.int64())])


@dataclass(frozen=True, eq=False)
class DFG:
    """Directly-follows graph by frequency, with start/end activities and activity counts."""

    edges: pa.Table  # source, target, count
    start_activities: pa.Table  # activity, count
    end_activities: pa.Table
    activities: pa.Table  # events per activity
    cases: int

    def to_pandas(self) -> pd.DataFrame:
        """The edges: ``source, target, count``."""
        return self.edges.to_pandas()

    def to_pm4py(self) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
        """``(dfg, start_activities, end_activities)`` as ``pm4py.discover_dfg`` returns them."""
        e = self.edges.to_pydict()
        return (dict(zip(zip(e["source"], e["target"]), e["count"])), _as_dict(self.start_activities),
                _as_dict(self.end_activities))

    def _repr_html_(self) -> str:
        return (_html_table(f"DFG of {self.cases:,} cases: edges", self.edges)
                + _html_table("start activities", self.start_activities)
                + _html_table("end activities", self.end_activities))


def _as_dict(t: pa.Table) -> dict[str, int]:
    d = t.to_pydict()
    return dict(zip(d["activity"], d["count"]))


_AGGREGATIONS = ("mean", "median", "max", "min", "sum", "stdev")


@dataclass(frozen=True, eq=False)
class PerformanceDFG:
    """Directly-follows graph with the seconds between the two events' (completion) timestamps."""

    edges: pa.Table  # source, target, count, mean, median, min, max, total, stdev (seconds)
    start_activities: pa.Table
    end_activities: pa.Table
    cases: int

    def to_pandas(self) -> pd.DataFrame:
        return self.edges.to_pandas()

    def to_pm4py(self, aggregation: str = "all") -> tuple[dict[tuple[str, str], Any], dict[str, int], dict[str, int]]:
        """As ``pm4py.discover_performance_dfg(perf_aggregation_key=aggregation)`` (``all``: a dict per edge)."""
        if aggregation != "all" and aggregation not in _AGGREGATIONS:
            raise InvalidArgumentError(f"aggregation must be 'all' or one of {', '.join(_AGGREGATIONS)}",
                                       parameter="aggregation")
        out: dict[tuple[str, str], Any] = {}
        for r in self.edges.to_pylist():
            vals = {"mean": r["mean"], "median": r["median"], "max": r["max"], "min": r["min"],
                    "sum": r["total"], "stdev": r["stdev"] if r["stdev"] is not None else math.nan}
            out[(r["source"], r["target"])] = vals if aggregation == "all" else vals[aggregation]
        return out, _as_dict(self.start_activities), _as_dict(self.end_activities)

    def _repr_html_(self) -> str:
        return _html_table(f"performance DFG of {self.cases:,} cases (seconds)", self.edges)


@dataclass(frozen=True, eq=False)
class Variants(_Table):
    """Variants by count (desc), ties by sequence (desc): ``activities, count, share, mean_duration_s``."""

    cases: int = 0
    title: ClassVar[str] = "variants"

    def to_pandas(self) -> pd.DataFrame:
        df = self.table.to_pandas()
        df["activities"] = df["activities"].map(tuple)
        return df

    def to_pm4py(self) -> dict[tuple[str, ...], int]:
        """``{activity tuple: cases}`` as ``pm4py.get_variants`` returns it."""
        d = self.table.select(["activities", "count"]).to_pydict()
        return {tuple(a): n for a, n in zip(d["activities"], d["count"])}


@dataclass(frozen=True, eq=False)
class CaseDurations(_Table):
    """One row per case: ``case_id, start, end, duration_s`` (last minus first timestamp)."""

    title: ClassVar[str] = "case durations"

    def to_pm4py(self) -> list[float]:
        """The sorted durations, as ``pm4py.get_all_case_durations`` returns them."""
        return sorted(self.table.column("duration_s").to_pylist())

    @property
    def mean(self) -> float | None:
        import pyarrow.compute as pc

        value = pc.mean(self.table.column("duration_s")).as_py()
        return None if value is None else float(value)

    @property
    def median(self) -> float | None:
        import pyarrow.compute as pc

        return pc.quantile(self.table.column("duration_s"), q=0.5)[0].as_py() if len(self) else None


@dataclass(frozen=True, eq=False)
class DottedChart(_Table):
    """Events of a sample of cases: ``row`` (case, by start time), ``case_id, ts, activity``.

    ``cases`` is how many cases the filter kept; ``shown`` how many of them are drawn.
    """

    title: ClassVar[str] = "dotted chart"
    cases: int = 0
    shown: int = 0

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from procestra.models.render import dotted_chart_svg

        return {"image/svg+xml": dotted_chart_svg(self), "text/plain": repr(self)}


@dataclass(frozen=True, eq=False)
class ActivityStats(_Table):
    """Per activity: ``events, cases, instances, mean_service_s, median_service_s`` (service: None if unknown)."""

    title: ClassVar[str] = "activities"


@dataclass(frozen=True, eq=False)
class ResourceStats(_Table):
    """Per resource: ``events, cases, activities`` (distinct) and ``share`` of the events with a resource."""

    title: ClassVar[str] = "resources"


@dataclass(frozen=True, eq=False)
class Handover(_Table):
    """Work passed from one resource to another by consecutive events: ``source, target, count, cases``."""

    title: ClassVar[str] = "handover of work"


@dataclass(frozen=True, eq=False)
class Rework(_Table):
    """Per repeated activity: ``cases`` repeating it, ``extra`` occurrences beyond the first,
    ``cases_with_activity``."""

    title: ClassVar[str] = "rework"


@dataclass(frozen=True, eq=False)
class ActivityTimes(_Table):
    """Per activity: ``instances`` and service and waiting seconds (mean, median).

    ``basis`` says where start times came from: ``start_ts``, ``lifecycle`` (start/complete
    pairs) or ``none`` (no start information: the times are None).
    """

    basis: str = "none"
    title: ClassVar[str] = "service and waiting times"


@dataclass(frozen=True, eq=False)
class ArrivalRate(_Table):
    """Cases started per ``every`` bucket (``bucket``: local time in ``timezone``), empty buckets included."""

    every: str = "day"
    timezone: str = "UTC"
    title: ClassVar[str] = "cases started"


# -- frequency and performance DFG ---------------------------------------------------------
def _endpoints_sql(plan: FilterPlan, *, kinds: tuple[int, ...] = (0, 1, 2, 3), pad: int = 0) -> str:
    """SQL of (kind, a, b, count[, NULL * pad]) rows from the kept variants: kind 0 edges,
    1 start activities, 2 end activities, 3 events per activity."""
    v = plan.add(f"SELECT activities, cases FROM {plan.variants_rel(durations=False)}", materialized=True)
    nulls = ", NULL" * pad
    parts = {
        0: f"SELECT 0, s, t, sum(cases)::BIGINT{nulls} FROM (SELECT unnest(activities[:-2]) AS s, "
           f"unnest(activities[2:]) AS t, cases FROM {v}) GROUP BY s, t",
        1: f"SELECT 1, activities[1], NULL, sum(cases)::BIGINT{nulls} FROM {v} GROUP BY activities[1]",
        2: f"SELECT 2, activities[-1], NULL, sum(cases)::BIGINT{nulls} FROM {v} GROUP BY activities[-1]",
        3: f"SELECT 3, a, NULL, sum(cases)::BIGINT{nulls} FROM (SELECT unnest(activities) AS a, cases FROM {v}) "
           "GROUP BY a",
    }
    return " UNION ALL ".join(parts[k] for k in kinds)


def _counts(rows: list[tuple[Any, ...]], kind: int) -> pa.Table:
    picked = sorted(((r[1], int(r[3])) for r in rows if r[0] == kind), key=lambda x: (-x[1], x[0]))
    return _arrow(picked, _COUNTS)


def dfg(workspace: Home, log: str, filter: Filter | None = None) -> DFG:
    """The directly-follows graph by frequency, with start and end activities.

    Equals ``pm4py.discover_dfg`` on the same events (see the module docstring for order).

    >>> dfg(ws, "loans").to_pm4py()
    """
    with _planned(workspace, log, filter) as plan:
        rows = plan.run(_endpoints_sql(plan)).fetchall()
    edges = sorted(((r[1], r[2], int(r[3])) for r in rows if r[0] == 0), key=lambda x: (-x[2], x[0], x[1]))
    schema = pa.schema([("source", pa.string()), ("target", pa.string()), ("count", pa.int64())])
    start = _counts(rows, 1)
    return DFG(_arrow(edges, schema), start, _counts(rows, 2), _counts(rows, 3),
               int(sum(start.column("count").to_pylist())))


_PERF_SCHEMA = pa.schema([("source", pa.string()), ("target", pa.string()), ("count", pa.int64()),
                          ("mean", pa.float64()), ("median", pa.float64()), ("min", pa.float64()),
                          ("max", pa.float64()), ("total", pa.float64()), ("stdev", pa.float64())])


def performance_dfg(workspace: Home, log: str, filter: Filter | None = None) -> PerformanceDFG:
    """Per directly-follows edge: count and mean, median, min, max, total and stdev of the seconds between
    the two events' timestamps. Equals ``pm4py.discover_performance_dfg`` on logs without start timestamps.
    """
    with _planned(workspace, log, filter) as plan:
        seq = plan.seq_rel()
        key = "codes" if plan.fast else "activities"
        pairs = (f"SELECT s, t, {seconds_sql('t2 - t1')} AS d FROM (SELECT unnest({key}[:-2]) AS s, "
                 f"unnest({key}[2:]) AS t, unnest(ts_us[:-2]) AS t1, unnest(ts_us[2:]) AS t2 FROM {seq})")
        agg = (f"SELECT s, t, count(*) AS n, avg(d) AS mean, median(d) AS median, min(d) AS mn, max(d) AS mx, "
               f"sum(d) AS total, stddev_samp(d) AS sd FROM ({pairs}) GROUP BY s, t")
        if plan.fast:
            body = (f"SELECT 0, a1.activity, a2.activity, g.n, g.mean, g.median, g.mn, g.mx, g.total, g.sd "
                    f"FROM ({agg}) g JOIN {plan.ac} a1 ON a1.code = g.s JOIN {plan.ac} a2 ON a2.code = g.t")
        else:
            body = f"SELECT 0, * FROM ({agg})"
        # one statement, so that a materialised fallback sequence relation is computed once
        rows = plan.run(f"{body} UNION ALL {_endpoints_sql(plan, kinds=(1, 2), pad=6)}").fetchall()
    edges = [r[1:] for r in rows if r[0] == 0]
    edges.sort(key=lambda r: (-r[2], r[0], r[1]))
    start = _counts(rows, 1)
    return PerformanceDFG(_arrow(edges, _PERF_SCHEMA), start, _counts(rows, 2),
                          int(sum(start.column("count").to_pylist())))


# -- variants and cases ---------------------------------------------------------------
def variants(workspace: Home, log: str, filter: Filter | None = None, *, limit: int | None = None
             ) -> Variants:
    """Variants with their case count, share of cases and mean case duration (seconds).

    Sorted by count, descending; ties by the activity sequence, descending (pm4py's top-k
    order). ``limit`` keeps the first rows (shares stay relative to all kept cases).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidArgumentError(f"limit must be a whole number of at least 1, not {limit!r}", parameter="limit")
    with _planned(workspace, log, filter) as plan:
        v = plan.variants_rel(durations=True)
        table = plan.arrow(
            f"""SELECT activities, cases::BIGINT AS count, cases / sum(cases) OVER () AS share,
                   {seconds_sql('duration_us')} / cases AS mean_duration_s, sum(cases) OVER () AS __total
            FROM {v} ORDER BY cases DESC, activities DESC{f' LIMIT {int(limit)}' if limit else ''}"""
        )
    total = int(table.column("__total")[0].as_py()) if table.num_rows else 0
    return Variants(table.drop_columns(["__total"]), cases=total)


def case_durations(workspace: Home, log: str, filter: Filter | None = None) -> CaseDurations:
    """Per case: first and last timestamp and the seconds between them, by start time."""
    with _planned(workspace, log, filter) as plan:
        table = plan.arrow(
            f"""SELECT case_id, first_ts AS start, last_ts AS "end",
                   {seconds_sql('epoch_us(last_ts) - epoch_us(first_ts)')} AS duration_s
            FROM {plan.facts_rel()} ORDER BY first_ts, case_id"""
        )
    return CaseDurations(table)


def dotted_chart(workspace: Home, log: str, filter: Filter | None = None, *, max_cases: int = 300
                 ) -> DottedChart:
    """The events of at most ``max_cases`` kept cases, evenly sampled by start time, for a dotted chart.

    Sampling keeps the picture readable and the query fast on logs of millions of events.
    """
    if isinstance(max_cases, bool) or not isinstance(max_cases, int) or max_cases < 1:
        raise InvalidArgumentError(f"max_cases must be a whole number of at least 1, not {max_cases!r}",
                                   parameter="max_cases")
    with _planned(workspace, log, filter) as plan:
        total = plan.run(f"SELECT count(*) FROM {plan.facts_rel()}").fetchall()[0][0]
        step = max(1, math.ceil(total / max_cases))
        picked = plan.add(
            f"""SELECT case_id, (rn - 1) // {step} AS row FROM (
                    SELECT case_id, row_number() OVER (ORDER BY first_ts, case_id) AS rn FROM {plan.facts_rel()})
                WHERE (rn - 1) % {step} = 0""")
        table = plan.arrow(
            f"""SELECT p.row::INTEGER AS row, e.case_id, e.ts, e.activity
            FROM {plan.events_rel()} e JOIN {picked} p USING (case_id) ORDER BY p.row, e.ts, e.event_id""")
    shown = len(set(table.column("row").to_pylist())) if table.num_rows else 0
    return DottedChart(table, cases=int(total), shown=shown)


def arrival_rate(workspace: Home, log: str, filter: Filter | None = None, *,
                 every: Literal["hour", "day", "week", "month"] = "day", timezone: str = "UTC") -> ArrivalRate:
    """Cases started per hour, day, week (from Monday) or month, counted in local ``timezone``."""
    steps = {"hour": "INTERVAL 1 HOUR", "day": "INTERVAL 1 DAY", "week": "INTERVAL 7 DAY",
             "month": "INTERVAL 1 MONTH"}
    if every not in steps:
        raise InvalidArgumentError(f"every must be one of {', '.join(steps)}, not {every!r}", parameter="every")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidArgumentError(f"unknown timezone {timezone!r}; use an IANA name such as Europe/Amsterdam",
                                   parameter="timezone") from None
    with _planned(workspace, log, filter) as plan:
        tz = plan.param(timezone)
        g = plan.add(f"SELECT date_trunc('{every}', timezone({tz}, first_ts)) AS bucket, count(*) AS cases "
                     f"FROM {plan.facts_rel()} GROUP BY 1")
        table = plan.arrow(
            f"""SELECT s.bucket, coalesce(g.cases, 0)::BIGINT AS cases
            FROM (SELECT unnest(generate_series(min(bucket), max(bucket), {steps[every]})) AS bucket FROM {g}) s
            LEFT JOIN {g} g USING (bucket) ORDER BY s.bucket"""
        )
    return ArrivalRate(table, every=every, timezone=timezone)


# -- activities, resources, times --------------------------------------------------------
def _instances(plan: FilterPlan) -> tuple[str, str]:
    """A CTE of activity instances of the selection, and the basis of their start times.

    Columns: ``case_id, activity, resource, event_id, i_start, i_end, service_s, waiting_s``.
    Same rules as ``export.activity_instances``: ``start_ts`` where the log has it (one
    instance per non-start event); else lifecycle ``start``/``complete`` pairs
    (:func:`~procestra.mining.plan.lifecycle_instances_sql`); else each event, with no start time.
    Waiting: from the latest end among the case's earlier instances (by start) to this start
    (>= 0; None for a case's first instance).
    """
    has_start_ts, has_start_lc = plan.con.execute(
        f"SELECT count(start_ts) > 0, count(*) FILTER (WHERE lower(lifecycle) = 'start') > 0 FROM {plan.ev}"
    ).fetchall()[0]
    e = plan.events_rel()
    if has_start_ts:
        basis = "start_ts"
        inst = (f"SELECT case_id, activity, resource, event_id, coalesce(start_ts, ts) AS i_start, ts AS i_end "
                f"FROM {e} WHERE lifecycle IS NULL OR lower(lifecycle) = 'complete'")
    elif has_start_lc:
        basis = "lifecycle"
        inst = lifecycle_instances_sql(e)
    else:
        basis = "none"
        inst = (f"SELECT case_id, activity, resource, event_id, CAST(NULL AS TIMESTAMPTZ) AS i_start, ts AS i_end "
                f"FROM {e}")
    wait = seconds_sql("epoch_us(i_start) - prev_end_us")
    name = plan.add(
        f"""SELECT * EXCLUDE (prev_end_us), {seconds_sql('epoch_us(i_end) - epoch_us(i_start)')} AS service_s,
               CASE WHEN prev_end_us IS NULL OR i_start IS NULL THEN NULL ELSE greatest({wait}, 0) END AS waiting_s
        FROM (SELECT *, epoch_us(max(i_end) OVER (PARTITION BY case_id ORDER BY i_start, i_end, event_id
                                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) AS prev_end_us
              FROM ({inst}))""", materialized=True)
    return name, basis


def activity_stats(workspace: Home, log: str, filter: Filter | None = None) -> ActivityStats:
    """Per activity: events, cases, instances and service time (mean, median; None without start info)."""
    with _planned(workspace, log, filter) as plan:
        inst, _ = _instances(plan)
        table = plan.arrow(
            f"""SELECT c.activity, c.events, c.cases, coalesce(i.instances, 0)::BIGINT AS instances,
                   i.mean_service_s, i.median_service_s
            FROM (SELECT activity, count(*)::BIGINT AS events, count(DISTINCT case_id)::BIGINT AS cases
                  FROM {plan.events_rel()} GROUP BY activity) c
            LEFT JOIN (SELECT activity, count(*) AS instances, avg(service_s) AS mean_service_s,
                              median(service_s) AS median_service_s FROM {inst} GROUP BY activity) i
            USING (activity) ORDER BY c.events DESC, c.activity"""
        )
    return ActivityStats(table)


def activity_times(workspace: Home, log: str, filter: Filter | None = None) -> ActivityTimes:
    """Per activity: instances, service time and waiting time in seconds (mean and median).

    Needs start information: a ``start_ts`` column or lifecycle ``start``/``complete``
    events; without it the times are None and ``basis`` is ``"none"``.
    """
    with _planned(workspace, log, filter) as plan:
        inst, basis = _instances(plan)
        table = plan.arrow(
            f"""SELECT activity, count(*)::BIGINT AS instances, avg(service_s) AS mean_service_s,
                   median(service_s) AS median_service_s, avg(waiting_s) AS mean_waiting_s,
                   median(waiting_s) AS median_waiting_s
            FROM {inst} GROUP BY activity ORDER BY instances DESC, activity"""
        )
    return ActivityTimes(table, basis=basis)


def resource_stats(workspace: Home, log: str, filter: Filter | None = None) -> ResourceStats:
    """Per resource (events without one are left out): events, cases, distinct activities, share of events."""
    with _planned(workspace, log, filter) as plan:
        table = plan.arrow(
            f"""SELECT resource, count(*)::BIGINT AS events, count(DISTINCT case_id)::BIGINT AS cases,
                   count(DISTINCT activity)::BIGINT AS activities, count(*) / sum(count(*)) OVER () AS share
            FROM {plan.events_rel()} WHERE resource IS NOT NULL GROUP BY resource
            ORDER BY events DESC, resource"""
        )
    return ResourceStats(table)


def handover(workspace: Home, log: str, filter: Filter | None = None) -> Handover:
    """Handover of work: how often the resource of an event differs from that of the next event of its case.

    Pairs where either resource is missing, or both are the same person, are not handovers.
    """
    with _planned(workspace, log, filter) as plan:
        table = plan.arrow(
            f"""SELECT source, target, count(*)::BIGINT AS count, count(DISTINCT case_id)::BIGINT AS cases
            FROM (SELECT case_id, resource AS source,
                         lead(resource) OVER (PARTITION BY case_id ORDER BY ts, event_id) AS target
                  FROM {plan.events_rel()})
            WHERE source IS NOT NULL AND target IS NOT NULL AND source <> target
            GROUP BY source, target ORDER BY count DESC, source, target"""
        )
    return Handover(table)


def rework(workspace: Home, log: str, filter: Filter | None = None) -> Rework:
    """Activities done more than once within a case (counting activity instances, so a
    start/complete pair counts once): the cases and the extra occurrences."""
    with _planned(workspace, log, filter) as plan:
        inst, _ = _instances(plan)
        table = plan.arrow(
            f"""SELECT activity, count(*) FILTER (WHERE n > 1)::BIGINT AS cases, sum(n - 1)::BIGINT AS extra,
                   count(*)::BIGINT AS cases_with_activity
            FROM (SELECT case_id, activity, count(*) AS n FROM {inst} GROUP BY case_id, activity)
            GROUP BY activity HAVING count(*) FILTER (WHERE n > 1) > 0 ORDER BY cases DESC, activity"""
        )
    return Rework(table)
