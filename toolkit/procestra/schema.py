"""Column roles and the canonical schema of the event store, documented in one place.

**Canonical schema.** Every log in the store has three tables (``<id>`` is the
log's integer id, never its name):

``ev_<id>``: one row per event
    ``event_id BIGINT`` (position in the source, 0-based; the tie-breaker for equal
    timestamps, as pm4py keeps the file order), ``case_id VARCHAR``,
    ``activity VARCHAR``, ``ts TIMESTAMPTZ`` (UTC; the completion time),
    ``start_ts TIMESTAMPTZ`` (optional start time), ``lifecycle VARCHAR``,
    ``resource VARCHAR``.
``ea_<id>``: the other event attributes, typed as in the source, keyed by ``event_id``.
``ca_<id>``: one row per case: ``case_id``, ``n_events``, ``first_ts``, ``last_ts``
    and the case attributes, typed as in the source (``case:`` prefix removed).

The ``logs`` table lists every log: name, source, content hash, column mapping,
load time, counts, attribute types and the last quality report; ``loads`` keeps
the history of loads. ``activity_instances`` reads lifecycle start/complete pairs
(or ``start_ts``) as one row per activity instance with start, end and duration.

In pm4py's DataFrame format (``to_pandas``) the roles are named
``case:concept:name``, ``concept:name``, ``time:timestamp``, ``start_timestamp``,
``lifecycle:transition``, ``org:resource``, and case attributes ``case:<name>``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from procestra.errors import MappingError

__all__ = ["EVENT_COLUMNS", "LogSchema", "PM4PY_NAMES", "detect_schema", "quote_ident", "table_names", "unique_names"]

#: The canonical event columns of every ``ev_<id>`` table, in order.
EVENT_COLUMNS: tuple[str, ...] = ("event_id", "case_id", "activity", "ts", "start_ts", "lifecycle", "resource")


def quote_ident(name: str) -> str:
    """Quote an SQL identifier for DuckDB (doubling embedded quotes)."""
    return '"' + str(name).replace('"', '""') + '"'


def table_names(log_id: int) -> tuple[str, str, str]:
    """The event, event-attribute and case table names of log ``log_id`` (built from the id only)."""
    log_id = int(log_id)
    return f"ev_{log_id}", f"ea_{log_id}", f"ca_{log_id}"

#: pm4py / XES column name of each role.
PM4PY_NAMES: dict[str, str] = {
    "case": "case:concept:name",
    "activity": "concept:name",
    "timestamp": "time:timestamp",
    "start_timestamp": "start_timestamp",
    "lifecycle": "lifecycle:transition",
    "resource": "org:resource",
}

# Candidate source column names per role, best first; matched after normalising
# (lower case, separators removed). The XES names come first so that a file with
# both ``concept:name`` and ``Activity`` maps the way pm4py does.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "case": ("case:concept:name", "case_id", "caseid", "case", "case_concept_name",
             "trace_id", "traceid", "case_key", "process_instance_id", "instance_id"),
    "activity": ("concept:name", "activity", "activity_name", "activityname", "activity_id",
                 "event_name", "eventname", "task", "task_name", "action", "step", "event"),
    "timestamp": ("time:timestamp", "timestamp", "complete_timestamp", "end_timestamp",
                  "completetimestamp", "endtimestamp", "end_time", "endtime", "time",
                  "datetime", "event_time", "date", "end_date"),
    "start_timestamp": ("start_timestamp", "starttimestamp", "time:start", "start_time",
                        "starttime", "start_date", "start"),
    "lifecycle": ("lifecycle:transition", "lifecycle", "transition", "lifecycle_transition",
                  "event_type"),
    "resource": ("org:resource", "resource", "user", "performer", "agent", "employee",
                 "actor", "org_resource", "resource_id", "user_id"),
}

_REQUIRED = ("case", "activity", "timestamp")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.strip().lower())


@dataclass(frozen=True)
class LogSchema:
    """Which source column plays which role. Frozen; pass it around, don't repeat names.

    >>> LogSchema(case="CaseID", activity="Task", timestamp="When")
    """

    case: str | None = None
    activity: str | None = None
    timestamp: str | None = None
    start_timestamp: str | None = None
    lifecycle: str | None = None
    resource: str | None = None
    #: Source columns that hold case attributes (columns named ``case:*`` are added automatically).
    case_attributes: tuple[str, ...] = field(default_factory=tuple)

    def roles(self) -> dict[str, str]:
        """Role -> source column, for the roles that are mapped."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k != "case_attributes" and v is not None
        }

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["case_attributes"] = list(self.case_attributes)
        return d


def detect_schema(columns: list[str], given: LogSchema | None = None, *, source: str | None = None) -> LogSchema:
    """Complete ``given`` with roles detected from ``columns``; check every mapping exists.

    Explicit mappings win; a role is auto-detected only from columns that no other
    role already uses. Raises :class:`MappingError` naming the missing column or role.
    """
    given = given or LogSchema()
    by_exact = {c: c for c in columns}
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)

    for role, col in given.roles().items():
        if col not in by_exact:
            close = [c for c in columns if _norm(c) == _norm(col)]
            hint = f"; did you mean {close[0]!r}?" if close else f"; the columns are: {', '.join(columns)}"
            raise MappingError(
                f"--{role.replace('_', '-')} names column {col!r}, which does not exist{hint}",
                source=source,
            )
    for col in given.case_attributes:
        if col not in by_exact:
            raise MappingError(
                f"case attribute column {col!r} does not exist; the columns are: {', '.join(columns)}",
                source=source,
            )

    used = set(given.roles().values())
    found: dict[str, str] = {}
    for role, candidates in _CANDIDATES.items():
        if getattr(given, role) is not None:
            continue
        for cand in candidates:
            match = by_exact.get(cand) or by_norm.get(_norm(cand))
            if match is not None and match not in used:
                found[role] = match
                used.add(match)
                break
    schema = LogSchema(**{**given.roles(), **found}, case_attributes=given.case_attributes)
    missing = [r for r in _REQUIRED if getattr(schema, r) is None]
    if missing:
        role = missing[0]
        raise MappingError(
            f"no {role.replace('_', ' ')} column found among: {', '.join(columns)}; "
            f"name it with --{role.replace('_', '-')} COLUMN",
            source=source,
        )
    return schema


def unique_names(names: list[str], *, reserved: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``names`` made unique case-insensitively (DuckDB's rule for columns), avoiding ``reserved``.

    A repeat gets a suffix: ``Activity``, ``activity`` -> ``Activity``, ``activity_2``.
    """
    seen = {r.lower() for r in reserved}
    out = []
    for n in names:
        cand, k = n, 1
        while cand.lower() in seen:
            k += 1
            cand = f"{n}_{k}"
        seen.add(cand.lower())
        out.append(cand)
    return out
