"""Filters over a log, compiled to DuckDB SQL with bound parameters; nothing goes through pandas.

A :class:`Filter` is a frozen, composable value. ``a & b`` applies ``a`` and then
``b`` to what ``a`` kept (only the variant filters and event-level filters make the
order matter: "the top 5 variants of the cases that start with A" differs from
"the cases among the top 5 variants that start with A").

>>> f = Filter.case_attribute("channel", ["web"]) & Filter.variants(top=5)
>>> f.describe()
"cases whose channel is one of ['web'], then the 5 most frequent variants"
>>> stats.dfg(ws, "loans", f)

**Case-level** parts keep whole cases: time frame, variants, case attributes,
event attributes at ``level="case"``, start/end activities, duration, size,
directly-follows paths, contains/skips. **Event-level** parts keep events (event
attributes at ``level="event"``, ``Filter.timeframe(mode="events")``); cases left
without events disappear, and whatever depends on order (start/end activity,
variant, directly-follows pairs, first/last time) is recomputed from the kept
events, in the same order as everywhere: timestamp, then ``event_id``.

**Speed.** :func:`procestra.stats.derive` stores, per log, the variant of each case
and its ordered timestamps (``va_<id>``, ``cv_<id>``, ``ac_<id>``). Case-level
filters never change a case's variant, so while only case-level parts have run, they
become predicates on one scan of ``cv_<id>`` (case attributes and event attributes
through a semi-join on ``case_id``); after an event-level part, or for a log without
derived data, the plan aggregates the events with ``list(... ORDER BY ts, event_id)``
instead. Both give identical results (tested).

**Boundaries** follow pm4py's filters: time frames are inclusive, except
``intersecting``, which pm4py defines strictly (first < end and last > start);
durations and sizes are inclusive; top-k ties are broken by the variant sequence,
descending, as ``pm4py.filter_variants_top_k`` does. Naive datetimes are UTC.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from procestra.errors import EmptyResultError, InvalidArgumentError
from procestra.mining.plan import CASE_FACTS, FilterPlan, seconds_sql
from procestra.schema import EVENT_COLUMNS, quote_ident, table_names
from procestra.store import catalogue
from procestra.store.derived import derived_tables

if TYPE_CHECKING:
    from procestra.store.catalogue import LogInfo
    from procestra.store.home import Home

__all__ = ["Filter", "filtered_events_sql", "plan_filter", "save_filtered"]


# -- argument checks ----------------------------------------------------------------------
def _values(values: Any, parameter: str) -> tuple[Any, ...]:
    if isinstance(values, (str, bytes, int, float, bool, date)) or values is None:
        values = (values,)
    try:
        out = tuple(values)
    except TypeError:
        raise InvalidArgumentError(f"{parameter} must be a value or a list of values, not {values!r}",
                                   parameter=parameter) from None
    if not out:
        raise InvalidArgumentError(f"{parameter} is empty; give at least one value", parameter=parameter)
    return out


def _activities(values: Any, parameter: str = "activities") -> tuple[str, ...]:
    out = _values(values, parameter)
    for v in out:
        if not isinstance(v, str):
            raise InvalidArgumentError(f"activities are names (strings), not {v!r}", parameter=parameter)
    return out


def _utc(value: Any, parameter: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidArgumentError(f"{parameter}={value!r} is not an ISO date or timestamp "
                                       "(e.g. 2024-01-31 or 2024-01-31 12:00:00+01:00)",
                                       parameter=parameter) from None
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{parameter} must be a datetime, date or ISO string, not {value!r}",
                                   parameter=parameter)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seconds(value: Any, parameter: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise InvalidArgumentError(f"{parameter} must be seconds or a timedelta, not {value!r}",
                                   parameter=parameter)
    if value < 0:
        raise InvalidArgumentError(f"{parameter} must not be negative, got {value!r}", parameter=parameter)
    return float(value)


def _range(lo: Any, hi: Any, what: str) -> None:
    if lo is None and hi is None:
        raise InvalidArgumentError(f"give min=, max= or both for the {what}", parameter="min")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgumentError(f"the {what} range is empty: min {lo} is above max {hi}", parameter="max")


def _level(level: str) -> str:
    if level not in ("case", "event"):
        raise InvalidArgumentError(f"level must be 'case' or 'event', not {level!r}", parameter="level")
    return level


# -- the parts of a filter --------------------------------------------------------------
@dataclass(frozen=True)
class _Part:
    """One step of a filter. ``apply`` adds its SQL to a plan."""

    @property
    def event_level(self) -> bool:
        """Whether the step keeps or drops single events rather than whole cases."""
        return False

    def apply(self, plan: FilterPlan) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class _TimeFrame(_Part):
    start: datetime
    end: datetime
    mode: str

    @property
    def event_level(self) -> bool:
        return self.mode == "events"

    def apply(self, plan: FilterPlan) -> None:
        a, b = plan.param(self.start), plan.param(self.end)
        if self.mode == "events":
            plan.keep_events(f"e.ts >= {a} AND e.ts <= {b}")
            return
        cond = {
            "contained": f"first_ts >= {a} AND last_ts <= {b}",
            "intersecting": f"first_ts < {b} AND last_ts > {a}",
            "started": f"first_ts >= {a} AND first_ts <= {b}",
        }[self.mode]
        plan.keep_facts(cond)

    def describe(self) -> str:
        what = {"contained": "cases contained in", "intersecting": "cases intersecting",
                "started": "cases started in", "events": "events in"}[self.mode]
        return f"{what} [{self.start.isoformat()}, {self.end.isoformat()}]"

    def __repr__(self) -> str:
        return f"Filter.timeframe({self.start.isoformat()!r}, {self.end.isoformat()!r}, mode={self.mode!r})"


@dataclass(frozen=True)
class _Variants(_Part):
    top: int | None
    coverage: float | None

    def apply(self, plan: FilterPlan) -> None:
        v = plan.variants_rel()
        order = "cases DESC, activities DESC"
        if self.top is not None:
            kept = plan.add(f"SELECT activities FROM {v} ORDER BY {order} LIMIT {int(self.top)}")
        else:
            kept = plan.add(
                f"SELECT activities FROM (SELECT activities, coalesce(sum(cases) OVER (ORDER BY {order} "
                f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before, sum(cases) OVER () AS total "
                f"FROM {v}) WHERE before < {plan.param(float(self.coverage or 0))} * total"
            )
        plan.keep_variants(f"activities IN (SELECT activities FROM {kept})")

    def describe(self) -> str:
        if self.top is not None:
            return f"the {self.top} most frequent variants"
        return f"the most frequent variants covering {self.coverage:.0%} of cases"

    def __repr__(self) -> str:
        return f"Filter.variants(top={self.top})" if self.top is not None else \
            f"Filter.variants(coverage={self.coverage})"


@dataclass(frozen=True)
class _CaseAttribute(_Part):
    name: str
    values: tuple[Any, ...]
    exclude: bool

    def apply(self, plan: FilterPlan) -> None:
        col, typ = plan.case_attribute(self.name)
        cond = plan.member(f"c.{quote_ident(col)}", typ, self.values, self.exclude, self.name)
        plan.keep_cases(f"SELECT c.case_id FROM {plan.ca} c WHERE {cond}")

    def describe(self) -> str:
        return f"cases whose {self.name} is {'not ' if self.exclude else ''}one of {list(self.values)!r}"

    def __repr__(self) -> str:
        return f"Filter.case_attribute({self.name!r}, {list(self.values)!r}, exclude={self.exclude})"


@dataclass(frozen=True)
class _EventAttribute(_Part):
    name: str
    values: tuple[Any, ...]
    level: str
    exclude: bool

    @property
    def event_level(self) -> bool:
        return self.level == "event"

    def apply(self, plan: FilterPlan) -> None:
        col, typ, in_ea = plan.event_attribute(self.name)
        if in_ea:  # a semi-join on the matching attribute rows, not a join of every event
            match = plan.member(f"a.{quote_ident(col)}", typ, self.values, False, self.name)
            hit = f"e.event_id IN (SELECT a.event_id FROM {plan.ea} a WHERE {match})"
        else:
            hit = plan.member(f"e.{col}", typ, self.values, False, self.name)
        if self.level == "event":
            plan.keep_events(f"NOT ({hit})" if self.exclude else hit)
            return
        hits = f"SELECT e.case_id FROM {plan.events if plan.events is not None else plan.ev} e WHERE {hit}"
        if self.exclude:
            plan.keep_cases(f"SELECT case_id FROM {plan.facts_rel()} WHERE case_id NOT IN ({hits})")
        else:
            plan.keep_cases(hits)

    def describe(self) -> str:
        which = f"whose {self.name} is {'not ' if self.exclude and self.level == 'event' else ''}" \
                f"one of {list(self.values)!r}"
        if self.level == "event":
            return f"events {which}"
        return f"cases {'without' if self.exclude else 'with'} an event {which}"

    def __repr__(self) -> str:
        return (f"Filter.event_attribute({self.name!r}, {list(self.values)!r}, level={self.level!r}, "
                f"exclude={self.exclude})")


@dataclass(frozen=True)
class _Endpoint(_Part):
    which: str  # "start" or "end"
    activities: tuple[str, ...]
    exclude: bool

    def apply(self, plan: FilterPlan) -> None:
        idx = "1" if self.which == "start" else "-1"
        names = ", ".join(plan.param(a) for a in self.activities)
        cond = f"activities[{idx}] IN ({names})"
        plan.keep_variants(f"NOT ({cond})" if self.exclude else cond)

    def describe(self) -> str:
        verb = "starting" if self.which == "start" else "ending"
        return f"cases {'not ' if self.exclude else ''}{verb} with one of {list(self.activities)!r}"

    def __repr__(self) -> str:
        return f"Filter.{self.which}_activities({list(self.activities)!r}, exclude={self.exclude})"


@dataclass(frozen=True)
class _Duration(_Part):
    min: float | None
    max: float | None

    def apply(self, plan: FilterPlan) -> None:
        # Compared in pm4py's float seconds, so bounds taken from pm4py's durations behave alike.
        d = seconds_sql("epoch_us(last_ts) - epoch_us(first_ts)")
        conds = ([f"{d} >= {plan.param(self.min)}"] if self.min is not None else []) + \
                ([f"{d} <= {plan.param(self.max)}"] if self.max is not None else [])
        plan.keep_facts(" AND ".join(conds))

    def describe(self) -> str:
        lo = "" if self.min is None else f"at least {timedelta(seconds=self.min)}"
        hi = "" if self.max is None else f"at most {timedelta(seconds=self.max)}"
        return f"cases lasting {' and '.join(x for x in (lo, hi) if x)}"

    def __repr__(self) -> str:
        return f"Filter.duration(min={self.min!r}, max={self.max!r})"


@dataclass(frozen=True)
class _Size(_Part):
    min: int | None
    max: int | None

    def apply(self, plan: FilterPlan) -> None:
        conds = ([f"n_events >= {int(self.min)}"] if self.min is not None else []) + \
                ([f"n_events <= {int(self.max)}"] if self.max is not None else [])
        plan.keep_facts(" AND ".join(conds))

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"cases with {self.min} to {self.max} events"
        return f"cases with at least {self.min} events" if self.max is None else \
            f"cases with at most {self.max} events"

    def __repr__(self) -> str:
        return f"Filter.case_size(min={self.min}, max={self.max})"


@dataclass(frozen=True)
class _Follows(_Part):
    source: str
    target: str
    exclude: bool

    def apply(self, plan: FilterPlan) -> None:
        a, b = plan.param(self.source), plan.param(self.target)
        cond = f"len(list_filter(range(1, len(activities)), lambda i: activities[i] = {a} " \
               f"AND activities[i + 1] = {b})) > 0"
        plan.keep_variants(f"NOT ({cond})" if self.exclude else cond)

    def describe(self) -> str:
        return f"cases where {self.source!r} is {'never ' if self.exclude else ''}directly followed by {self.target!r}"

    def __repr__(self) -> str:
        return f"Filter.follows({self.source!r}, {self.target!r}, exclude={self.exclude})"


@dataclass(frozen=True)
class _Contains(_Part):
    activity: str
    exclude: bool

    def apply(self, plan: FilterPlan) -> None:
        cond = f"list_contains(activities, {plan.param(self.activity)})"
        plan.keep_variants(f"NOT {cond}" if self.exclude else cond)

    def describe(self) -> str:
        return f"cases {'skipping' if self.exclude else 'containing'} {self.activity!r}"

    def __repr__(self) -> str:
        return f"Filter.{'skips' if self.exclude else 'contains'}({self.activity!r})"


@dataclass(frozen=True)
class _VariantIs(_Part):
    sequences: tuple[tuple[str, ...], ...]
    exclude: bool

    def apply(self, plan: FilterPlan) -> None:
        alts = ", ".join(f"CAST({plan.param(list(seq))} AS VARCHAR[])" for seq in self.sequences)
        cond = f"activities IN ({alts})"
        plan.keep_variants(f"NOT ({cond})" if self.exclude else cond)

    def describe(self) -> str:
        shown = "; ".join(" → ".join(seq) for seq in self.sequences[:3])
        more = f" and {len(self.sequences) - 3} more" if len(self.sequences) > 3 else ""
        return f"cases {'not ' if self.exclude else ''}following the variant(s) {shown}{more}"

    def __repr__(self) -> str:
        seqs = [list(s) for s in self.sequences]
        arg = seqs[0] if len(seqs) == 1 else seqs
        return f"Filter.variant({arg!r}{', exclude=True' if self.exclude else ''})"


@dataclass(frozen=True)
class _CaseIds(_Part):
    ids: tuple[str, ...]
    exclude: bool

    def apply(self, plan: FilterPlan) -> None:
        listed = f"SELECT unnest(CAST({plan.param(list(self.ids))} AS VARCHAR[])) AS case_id"
        if self.exclude:
            kept = plan.kept_cases() or f"SELECT case_id FROM {plan.ca}"
            plan.keep_cases(f"SELECT case_id FROM ({kept}) k WHERE case_id NOT IN ({listed})")
        else:
            plan.keep_cases(listed)

    def describe(self) -> str:
        return f"{'all but ' if self.exclude else ''}{len(self.ids)} chosen case(s)"

    def __repr__(self) -> str:
        shown = list(self.ids[:5]) + (["..."] if len(self.ids) > 5 else [])
        return f"Filter.cases({shown!r}{', exclude=True' if self.exclude else ''})"


# -- the public filter value -------------------------------------------------------------
@dataclass(frozen=True)
class Filter:
    """A selection of cases and events of a log; combine with ``&`` (left to right).

    ``Filter()`` keeps everything. Build one with the class methods below and pass
    it to any statistic, to :func:`filtered_events_sql` or to :func:`save_filtered`.

    >>> Filter.timeframe("2024-01-01", "2024-02-01") & Filter.case_size(min=3)
    """

    parts: tuple[_Part, ...] = ()

    def __and__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return Filter(self.parts + other.parts)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def __repr__(self) -> str:
        return " & ".join(repr(p) for p in self.parts) if self.parts else "Filter()"

    def describe(self) -> str:
        """The filter in words, steps in order."""
        return ", then ".join(p.describe() for p in self.parts) if self.parts else "all cases"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code><br><i>{html.escape(self.describe())}</i>"

    @property
    def event_level(self) -> bool:
        """Whether some part keeps or drops single events (rather than whole cases)."""
        return any(p.event_level for p in self.parts)

    # constructors ----------------------------------------------------------------------
    @classmethod
    def timeframe(cls, start: Any, end: Any, mode: Literal["contained", "intersecting", "started", "events"]
                  = "contained") -> Filter:
        """Cases ``contained`` in [start, end], ``intersecting`` it, ``started`` in it; or the ``events`` in it."""
        if mode not in ("contained", "intersecting", "started", "events"):
            raise InvalidArgumentError(
                f"mode must be contained, intersecting, started or events, not {mode!r}", parameter="mode")
        a, b = _utc(start, "start"), _utc(end, "end")
        if a > b:
            raise InvalidArgumentError(f"the time frame is empty: start {a} is after end {b}", parameter="end")
        return cls((_TimeFrame(a, b, mode),))

    @classmethod
    def variants(cls, top: int | None = None, *, coverage: float | None = None) -> Filter:
        """The ``top`` most frequent variants, or the most frequent ones covering ``coverage`` (0-1] of cases."""
        if (top is None) == (coverage is None):
            raise InvalidArgumentError("give exactly one of top= or coverage=", parameter="top")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 1 <= top < 2**63):
            raise InvalidArgumentError(f"top must be a whole number of at least 1 and below 2**63, not {top!r}",
                                       parameter="top")
        if coverage is not None and (isinstance(coverage, bool) or not isinstance(coverage, (int, float))
                                     or not 0 < coverage <= 1):
            raise InvalidArgumentError(
                f"coverage must be a fraction in (0, 1] (0.8 means 80% of cases), not {coverage!r}",
                parameter="coverage")
        return cls((_Variants(top, None if coverage is None else float(coverage)),))

    @classmethod
    def cases(cls, ids: Any, *, exclude: bool = False) -> Filter:
        """The cases whose id is one of ``ids`` (or, with ``exclude``, all others)."""
        if isinstance(ids, str) or not hasattr(ids, "__iter__"):
            raise InvalidArgumentError(f"ids must be a list of case ids, not {ids!r}", parameter="ids")
        return cls((_CaseIds(tuple(str(i) for i in ids), bool(exclude)),))

    @classmethod
    def variant(cls, sequences: Any, *, exclude: bool = False) -> Filter:
        """Cases whose activity sequence is ``sequences`` (one list of activities, or a list of such lists).

        >>> Filter.variant(["Submit", "Check", "Approve"])
        """
        if isinstance(sequences, (list, tuple)) and sequences and all(isinstance(a, str) for a in sequences):
            sequences = [sequences]
        if not isinstance(sequences, (list, tuple)) or not sequences:
            raise InvalidArgumentError("sequences must be a list of activity names, or a non-empty list of such "
                                       f"lists, not {sequences!r}", parameter="sequences")
        out: list[tuple[str, ...]] = []
        for seq in sequences:
            if not isinstance(seq, (list, tuple)) or not seq or not all(isinstance(a, str) and a for a in seq):
                raise InvalidArgumentError(f"a variant is a non-empty list of activity names, not {seq!r}",
                                           parameter="sequences")
            out.append(tuple(seq))
        return cls((_VariantIs(tuple(out), bool(exclude)),))

    @classmethod
    def case_attribute(cls, name: str, values: Any, *, exclude: bool = False) -> Filter:
        """Cases whose case attribute ``name`` is (or with ``exclude``, is not) one of ``values``; None = missing."""
        return cls((_CaseAttribute(_name(name), _values(values, "values"), bool(exclude)),))

    @classmethod
    def event_attribute(cls, name: str, values: Any, *, level: Literal["case", "event"] = "case",
                        exclude: bool = False) -> Filter:
        """Event attribute ``name`` (or the role ``activity``, ``resource``, ``lifecycle``) in ``values``.

        ``level="case"`` keeps the cases having such an event (``exclude``: having none);
        ``level="event"`` keeps just those events (``exclude``: all other events).
        """
        return cls((_EventAttribute(_name(name), _values(values, "values"), _level(level), bool(exclude)),))

    @classmethod
    def start_activities(cls, activities: Any, *, exclude: bool = False) -> Filter:
        """Cases whose first activity is one of ``activities``."""
        return cls((_Endpoint("start", _activities(activities), bool(exclude)),))

    @classmethod
    def end_activities(cls, activities: Any, *, exclude: bool = False) -> Filter:
        """Cases whose last activity is one of ``activities``."""
        return cls((_Endpoint("end", _activities(activities), bool(exclude)),))

    @classmethod
    def duration(cls, min: float | timedelta | None = None, max: float | timedelta | None = None) -> Filter:
        """Cases lasting (last minus first timestamp) between ``min`` and ``max`` seconds, inclusive."""
        lo, hi = _seconds(min, "min"), _seconds(max, "max")
        _range(lo, hi, "duration")
        return cls((_Duration(lo, hi),))

    @classmethod
    def case_size(cls, min: int | None = None, max: int | None = None) -> Filter:
        """Cases with between ``min`` and ``max`` events, inclusive."""
        for p, v in (("min", min), ("max", max)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63):
                raise InvalidArgumentError(f"{p} must be a whole number of events (0 to {2**63 - 1:,}), not {v!r}",
                                           parameter=p)
        _range(min, max, "case size")
        return cls((_Size(min, max),))

    @classmethod
    def follows(cls, source: str, target: str, *, exclude: bool = False) -> Filter:
        """Cases in which ``source`` is directly followed by ``target`` (``exclude``: never)."""
        a, b = _activities(source, "source")[0], _activities(target, "target")[0]
        return cls((_Follows(a, b, bool(exclude)),))

    @classmethod
    def contains(cls, activity: str) -> Filter:
        """Cases with at least one ``activity`` event."""
        return cls((_Contains(_activities(activity, "activity")[0], False),))

    @classmethod
    def skips(cls, activity: str) -> Filter:
        """Cases without any ``activity`` event."""
        return cls((_Contains(_activities(activity, "activity")[0], True),))


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"an attribute name must be a non-empty string, not {name!r}",
                                   parameter="name")
    return name


# -- compilation ---------------------------------------------------------------------------
def plan_filter(con: duckdb.DuckDBPyConnection, log_id: int, flt: Filter | None) -> FilterPlan:
    """Compile ``flt`` (None: everything) against log ``log_id``."""
    if flt is not None and not isinstance(flt, Filter):
        raise InvalidArgumentError(f"filter must be a procestra Filter, not {type(flt).__name__}",
                                   parameter="filter")
    plan = FilterPlan(con, log_id)
    for part in (flt.parts if flt else ()):
        part.apply(plan)
    return plan


def filtered_events_sql(con: duckdb.DuckDBPyConnection, log_id: int, flt: Filter | None
                        ) -> tuple[str, dict[str, Any]]:
    """The filtered events relation (columns of ``ev_<id>``) as SQL and its named parameters.

    >>> sql, params = filtered_events_sql(con, log_id, Filter.contains("Approve"))
    >>> con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
    """
    plan = plan_filter(con, log_id, flt)
    return plan.sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {plan.events_rel()}"), plan.params


# -- saving a filtered log ---------------------------------------------------------------
def save_filtered(workspace: Home, log: str, flt: Filter, new_log: str) -> LogInfo:
    """Copy the events, attributes and cases that ``flt`` keeps from ``log`` into a new log.

    One write transaction: the new log appears whole or not at all. Event ids (source
    positions) are kept, so ordering ties resolve as in the source log. Raises
    :class:`EmptyResultError` when nothing is kept.

    >>> save_filtered(ws, "loans", Filter.variants(top=10), "loans-top10")
    """
    from procestra.ingest.quality import QualityReport
    from procestra.schema import LogSchema
    from procestra.store.derived import derive

    catalogue.validate_log_name(new_log, parameter="new_log")
    store = workspace.store
    with store.write() as con:
        con.execute("BEGIN TRANSACTION")
        src_id = catalogue.log_id(con, log)
        if catalogue.find(con, new_log) is not None:
            raise InvalidArgumentError(f"log {new_log!r} already exists; drop it first or choose another name",
                                       parameter="new_log")
        sql, params = filtered_events_sql(con, src_id, flt)
        con.execute(f"CREATE OR REPLACE TEMP TABLE __kept AS {sql}", params)
        events = con.execute("SELECT count(*) FROM __kept").fetchall()[0][0]
        if not events:
            raise EmptyResultError(f"the filter keeps no events of log {log!r}: {flt.describe()}",
                                   filter=repr(flt))
        new_id = catalogue.next_log_id(con)
        ev, ea, ca = table_names(new_id)
        _, sea, sca = table_names(src_id)
        for t in (*table_names(new_id), *derived_tables(new_id)):
            con.execute(f"DROP TABLE IF EXISTS {t}")  # leftovers of a dropped log with this id
        con.execute(f"CREATE TABLE {ev} AS SELECT * FROM __kept ORDER BY event_id")
        con.execute(f"CREATE TABLE {ea} AS SELECT * FROM {sea} WHERE event_id IN (SELECT event_id FROM __kept) "
                    "ORDER BY event_id")
        con.execute(
            f"""CREATE TABLE {ca} AS SELECT c.case_id, f.n_events, f.first_ts, f.last_ts,
                   c.* EXCLUDE ({', '.join(CASE_FACTS)})
            FROM {sca} c JOIN (SELECT case_id, count(*) AS n_events, min(ts) AS first_ts, max(ts) AS last_ts,
                                      min(event_id) AS first_id FROM __kept GROUP BY case_id) f USING (case_id)
            ORDER BY f.first_id"""
        )
        con.execute("DROP TABLE __kept")
        derive(con, new_id)
        src = catalogue.log_row(con, log)
        mapping = json.loads(src["mapping"]) if src["mapping"] else {}
        fields = {k: v for k, v in mapping.items() if k in LogSchema.__dataclass_fields__}
        schema = LogSchema(**{**fields, "case_attributes": tuple(mapping.get("case_attributes") or ())})
        content_hash = hashlib.sha256(f"{src['content_hash']}|{flt!r}".encode()).hexdigest()
        cases, acts = con.execute(f"SELECT count(DISTINCT case_id), count(DISTINCT activity) FROM {ev}").fetchall()[0]
        source = f"log {log!r} filtered: {flt.describe()}"
        quality = QualityReport(rows_read=int(events), events=int(events), cases=int(cases), activities=int(acts),
                                notes=[f"filtered from log {log!r} with {flt!r}"])
        options = {"filtered_from": log, "filter": repr(flt)}
        catalogue.write_entry(con, catalogue.LogEntry(
            log_id=new_id, name=new_log, version=1, source=source, source_kind="filter",
            content_hash=content_hash, mapping=schema.to_json(), options=options, quality=quality.to_dict()))
        catalogue.record_load(con, catalogue.LoadRecord(
            log_id=new_id, version=1, mode="filtered", source=source, content_hash=content_hash,
            options_hash=hashlib.sha256(repr(flt).encode()).hexdigest()[:16], rows_read=int(events),
            events_added=int(events)))
        con.execute("COMMIT")
    return catalogue.info(workspace.store, new_log)
