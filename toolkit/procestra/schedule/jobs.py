"""Job definitions: what to run, when (cron in an IANA zone, or after other jobs), and how.

A job names a notebook and its parameters, a cron expression in a timezone (or the jobs
it runs after: a pipeline), and its policies: timeout, retries with backoff, overlap
(``skip``, ``queue``, ``allow``), catch-up after downtime (``none``, ``latest``, ``all``),
output formats, notifications and tags. :func:`add_job` checks all of it, the notebook's
parameters included, before anything is stored.

A *slot* is one fire time of a job's cron expression in its zone (:func:`fire_times`,
croniter plus zoneinfo, so DST is right: a wall time skipped in spring runs at the end of
the gap, a fixed-hour job runs once in the repeated autumn hour, hourly jobs run every
real hour). Each job's *cursor* is the time up to which its slots are planned.

This module is the only one that reads or writes the ``jobs`` table. The functions that
take a connection (``read_job``, ``due_jobs``, ``advance_cursor``, ...) work inside the
caller's transaction, for :mod:`procestra.schedule.runs` and :mod:`procestra.schedule.scheduler`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from procestra.names import NAME_RULE, is_name, shown
from procestra.schedule.exceptions import JobError, JobNotFoundError, NotebookError
from procestra.schedule.notify import Notify
from procestra.schedule.tables import prepare
from procestra.store import ops
from procestra.store.ops import from_iso, to_iso, utcnow

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "CATCHUP",
    "FORMATS",
    "OVERLAP",
    "Job",
    "add_job",
    "fire_times",
    "get_job",
    "list_jobs",
    "pause_job",
    "resume_job",
]

OVERLAP = ("skip", "queue", "allow")
CATCHUP = ("none", "latest", "all")
FORMATS = ("ipynb", "html")
_TAG_RE = re.compile(r"^[\w.:-]{1,40}$")


@dataclass(frozen=True)
class Job:
    """A scheduled notebook: what to run, when (cron in a timezone, or after other jobs), and how."""

    name: str
    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    timezone: str = "UTC"
    kernel: str | None = None
    timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 60.0
    overlap: str = "skip"
    catchup: str = "latest"
    catchup_limit: int = 10
    grace: float = 300.0
    formats: tuple[str, ...] = FORMATS
    notify: Notify = field(default_factory=Notify)
    tags: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    enabled: bool = True
    created_at: datetime | None = None
    start: datetime | None = None

    def next_runs(self, n: int = 5, after: datetime | None = None) -> list[datetime]:
        """The next ``n`` slots after ``after`` (default now), in UTC."""
        if not self.cron:
            return []
        start = max(after or utcnow(), self.start or after or utcnow())
        out = []
        for t in fire_times(self.cron, self.timezone, start, None):
            out.append(t)
            if len(out) >= n:
                break
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "notebook": self.notebook, "parameters": self.parameters, "cron": self.cron,
            "timezone": self.timezone, "kernel": self.kernel, "timeout": self.timeout, "retries": self.retries,
            "retry_backoff": self.retry_backoff, "overlap": self.overlap, "catchup": self.catchup,
            "catchup_limit": self.catchup_limit, "grace": self.grace, "formats": list(self.formats),
            "notify": self.notify.to_dict(), "tags": list(self.tags), "depends_on": list(self.depends_on),
            "enabled": self.enabled, "created_at": iso(self.created_at), "start": iso(self.start),
            "next_runs": [iso(t) for t in self.next_runs(3)] if self.enabled else [],
        }


def iso(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 in UTC for people and JSON; None stays None."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def _job_from_row(r: sqlite3.Row) -> Job:
    return Job(
        name=r["name"], notebook=r["notebook"], parameters=json.loads(r["parameters"]), cron=r["cron"],
        timezone=r["timezone"], kernel=r["kernel"], timeout=r["timeout"], retries=int(r["retries"]),
        retry_backoff=float(r["retry_backoff"]), overlap=r["overlap"], catchup=r["catchup"],
        catchup_limit=int(r["catchup_limit"]), grace=float(r["grace"]), formats=tuple(json.loads(r["formats"])),
        notify=Notify.from_dict(json.loads(r["notify"])), tags=tuple(json.loads(r["tags"])),
        depends_on=tuple(json.loads(r["depends_on"])), enabled=bool(r["enabled"]),
        created_at=from_iso(r["created_at"]), start=from_iso(r["start"]),
    )


def _check_cron(cron: str, name: str) -> None:
    from croniter import croniter

    if not isinstance(cron, str) or not cron.strip():
        raise JobError("the cron expression is empty", job=name, field="cron")
    try:
        croniter(cron, datetime(2025, 1, 1, tzinfo=UTC))
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
        raise JobError(f"invalid cron expression {cron!r}: {str(exc).rstrip('.')}; use 5 fields (minute hour day month weekday), "
                       "e.g. '0 6 * * 1-5', with an optional 6th for seconds", job=name, field="cron") from None


def _check_timezone(tz: str, name: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise JobError(f"unknown timezone {tz!r}; use an IANA name such as Europe/Amsterdam or UTC",
                       job=name, field="timezone") from None


def add_job(
    workspace: Home,
    name: str,
    notebook: str | os.PathLike[str],
    *,
    parameters: dict[str, Any] | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    kernel: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_backoff: float = 60.0,
    overlap: str = "skip",
    catchup: str = "latest",
    catchup_limit: int = 10,
    grace: float = 300.0,
    formats: tuple[str, ...] | list[str] = FORMATS,
    notify: Notify | None = None,
    tags: tuple[str, ...] | list[str] = (),
    depends_on: tuple[str, ...] | list[str] = (),
    enabled: bool = True,
    start: datetime | None = None,
    replace: bool = False,
    coerce: bool = False,
) -> Job:
    """Define job ``name``: run ``notebook`` on ``cron`` in ``timezone``, or after ``depends_on`` succeed.

    Everything is checked before anything is stored: the name, the notebook, its
    ``parameters`` against its parameters cell, the kernel, the cron expression, the
    timezone, the policies, notification targets, and that the dependencies exist and
    form no cycle. ``start`` (default now) is when the schedule begins; ``replace``
    redefines an existing job. With ``coerce``, ``parameters`` are texts (the CLI's
    ``-p KEY=VALUE``) typed by the notebook's parameters cell.

    >>> add_job(ws, "nightly", "report.ipynb", cron="0 6 * * 1-5", timezone="Europe/Amsterdam",
    ...         parameters={"region": "north"}, retries=2, notify=Notify(email=("me@example.com",)))
    """
    from procestra.schedule.runner import check_kernel, coerce_parameters, validate_parameters  # papermill, later

    # Cheap checks first (no notebook machinery), then the notebook, then the stored jobs.
    if not is_name(name):
        raise JobError(f"invalid job name {shown(name)}: use {NAME_RULE}", field="name")
    depends = tuple(dict.fromkeys(depends_on))
    if cron is None and not depends:
        raise JobError("give a cron expression (--cron), or the jobs it runs after (--after)", job=name, field="cron")
    if cron is not None and depends:
        raise JobError("a job that runs after other jobs takes its slots from them; leave out --cron",
                       job=name, field="cron")
    if cron is not None:
        _check_cron(cron, name)
    _check_timezone(timezone, name)
    if timeout is not None and not float(timeout) > 0:
        raise JobError(f"timeout must be a positive number of seconds, not {timeout}", job=name, field="timeout")
    if not isinstance(retries, int) or not 0 <= retries <= 100:
        raise JobError(f"retries must be a whole number from 0 to 100, not {retries}", job=name, field="retries")
    if not float(retry_backoff) >= 0:
        raise JobError(f"retry backoff must be 0 or more seconds, not {retry_backoff}", job=name, field="retry_backoff")
    if overlap not in OVERLAP:
        raise JobError(f"overlap {overlap!r}: use one of {', '.join(OVERLAP)}", job=name, field="overlap")
    if catchup not in CATCHUP:
        raise JobError(f"catch-up {catchup!r}: use one of {', '.join(CATCHUP)}", job=name, field="catchup")
    if not isinstance(catchup_limit, int) or catchup_limit < 1:
        raise JobError(f"catch-up limit must be at least 1, not {catchup_limit}", job=name, field="catchup_limit")
    if not float(grace) >= 0:
        raise JobError(f"grace must be 0 or more seconds, not {grace}", job=name, field="grace")
    fmts = tuple(dict.fromkeys(formats))
    if not fmts or any(f not in FORMATS for f in fmts):
        raise JobError(f"formats {list(fmts)}: choose from {', '.join(FORMATS)}", job=name, field="formats")
    bad_tags = [t for t in tags if not isinstance(t, str) or not _TAG_RE.match(t)]
    if bad_tags:
        raise JobError(f"invalid tag {bad_tags[0]!r}: use 1-40 letters, digits, '_', '.', ':' or '-'",
                       job=name, field="tags")
    if start is not None and start.tzinfo is None:
        raise JobError("start must be a timezone-aware time", job=name, field="start")
    prepare(workspace)
    with ops.connect(workspace) as con:
        _check_graph(con, name, depends, replace)  # early, cheap; repeated inside the write below
    path = Path(notebook).expanduser()
    if not path.is_file():
        raise NotebookError("no such notebook" if not path.exists() else "not a file", path=str(path))
    if coerce and parameters:
        parameters = coerce_parameters(path, {k: str(v) for k, v in parameters.items()})
    params = validate_parameters(path, parameters or {})
    kernel_name = check_kernel(path, kernel)
    now = utcnow()
    begin = start or now
    job = Job(name=name, notebook=str(path.resolve()), parameters=params, cron=cron, timezone=timezone,
              kernel=kernel_name if kernel else None, timeout=float(timeout) if timeout is not None else None,
              retries=retries, retry_backoff=float(retry_backoff), overlap=overlap, catchup=catchup,
              catchup_limit=catchup_limit, grace=float(grace), formats=fmts, notify=notify or Notify(),
              tags=tuple(dict.fromkeys(tags)), depends_on=depends, enabled=enabled, created_at=now, start=begin)
    with ops.transaction(workspace) as con:
        _check_graph(con, name, depends, replace)
        row = (name, job.notebook, json.dumps(params), cron, timezone, job.kernel, job.timeout, retries,
               job.retry_backoff, overlap, catchup, catchup_limit, job.grace, json.dumps(list(fmts)),
               json.dumps(job.notify.to_dict()), json.dumps(list(job.tags)), json.dumps(list(depends)),
               int(enabled), to_iso(now), to_iso(begin), to_iso(begin))
        con.execute("INSERT INTO jobs VALUES (" + ",".join("?" * len(row)) + ") ON CONFLICT (name) DO UPDATE SET "
                    "notebook = excluded.notebook, parameters = excluded.parameters, cron = excluded.cron, "
                    "timezone = excluded.timezone, kernel = excluded.kernel, timeout = excluded.timeout, "
                    "retries = excluded.retries, retry_backoff = excluded.retry_backoff, overlap = excluded.overlap, "
                    "catchup = excluded.catchup, catchup_limit = excluded.catchup_limit, grace = excluded.grace, "
                    "formats = excluded.formats, notify = excluded.notify, tags = excluded.tags, "
                    "depends_on = excluded.depends_on, enabled = excluded.enabled, created_at = excluded.created_at, "
                    "start = excluded.start, cursor = excluded.cursor", row)
    return job


def _check_graph(con: sqlite3.Connection, name: str, depends: tuple[str, ...], replace: bool) -> None:
    """A new name (unless replacing), dependencies that exist, and no cycle through ``name``."""
    known = {r["name"]: json.loads(r["depends_on"]) for r in con.execute("SELECT name, depends_on FROM jobs")}
    if name in known and not replace:
        raise JobError("already exists; pass --replace to redefine it, or choose another name", job=name, field="name")
    if name in depends:
        raise JobError(f"dependency cycle: {name} -> {name}", job=name, field="depends_on")
    missing = [d for d in depends if d not in known]
    if missing:
        raise JobError(f"depends on {missing[0]!r}, which is not a job (jobs: {', '.join(sorted(known)) or 'none'})",
                       job=name, field="depends_on")
    known[name] = list(depends)
    cycle = _find_cycle(known, name)
    if cycle:
        raise JobError(f"dependency cycle: {' -> '.join(cycle)}", job=name, field="depends_on")


def _find_cycle(graph: dict[str, list[str]], start: str) -> list[str] | None:
    """A dependency path from ``start`` back to itself, if there is one."""
    path: list[str] = []

    def visit(node: str, seen: set[str]) -> list[str] | None:
        for dep in graph.get(node, []):
            if dep == start:
                return path + [node, dep]
            if dep not in seen:
                seen.add(dep)
                path.append(node)
                found = visit(dep, seen)
                path.pop()
                if found:
                    return found
        return None

    return visit(start, {start})


def list_jobs(workspace: Home, *, tag: str | None = None) -> list[Job]:
    """Every job, by name (only those tagged ``tag`` when given)."""
    prepare(workspace)
    with ops.connect(workspace) as con:
        jobs = [_job_from_row(r) for r in con.execute("SELECT * FROM jobs ORDER BY name")]
    return [j for j in jobs if tag is None or tag in j.tags]


def get_job(workspace: Home, name: str) -> Job:
    """Job ``name``, or :class:`JobNotFoundError` listing the jobs."""
    prepare(workspace)
    with ops.connect(workspace) as con:
        return read_job(con, name)


def pause_job(workspace: Home, name: str) -> Job:
    """Stop planning and starting runs of ``name`` (runs already going finish)."""
    prepare(workspace)
    with ops.transaction(workspace) as con:
        read_job(con, name)
        con.execute("UPDATE jobs SET enabled = 0 WHERE name = ?", [name])
        return read_job(con, name)


def resume_job(workspace: Home, name: str) -> Job:
    """Plan ``name`` again from now on: slots that fell in the pause are not caught up."""
    prepare(workspace)
    with ops.transaction(workspace) as con:
        job = read_job(con, name)
        if not job.enabled:
            now = to_iso(utcnow())
            con.execute("UPDATE jobs SET enabled = 1, cursor = CASE WHEN cursor > ? THEN cursor ELSE ? END "
                        "WHERE name = ?", [now, now, name])
        return read_job(con, name)


# -- slots ---------------------------------------------------------------------------------
def fire_times(cron: str, tz: str, after: datetime, until: datetime | None) -> Iterator[datetime]:
    """The fire times of ``cron`` in zone ``tz`` in ``(after, until]``, in UTC, in order.

    A wall time that occurs twice when clocks go back runs once, unless the hour field
    is ``*`` (then every real hour runs); a wall time skipped when clocks go forward
    runs at the end of the gap.
    """
    from croniter import croniter

    zone = ZoneInfo(tz)
    fields = cron.split()
    every_hour = len(fields) > 1 and fields[1] == "*"
    it = croniter(cron, after.astimezone(zone))
    last = None
    while True:
        t = it.get_next(datetime)
        if t.tzinfo is None:
            t = t.replace(tzinfo=zone)
        utc = t.astimezone(UTC)
        if until is not None and utc > until:
            return
        if last is not None and utc <= last:
            continue
        if not every_hour and _second_of_repeated(t, zone):
            continue
        last = utc
        yield utc


def _second_of_repeated(t: datetime, zone: ZoneInfo) -> bool:
    """Whether ``t`` is the later of two instants with the same wall time (clocks went back)."""
    wall = t.replace(tzinfo=None)
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return False
    return t.utcoffset() == second.utcoffset()


# -- the jobs table inside a caller's transaction ---------------------------------------------
def find_job(con: sqlite3.Connection, name: str) -> Job | None:
    """Job ``name``, or None when there is no such job."""
    row = con.execute("SELECT * FROM jobs WHERE name = ?", [name]).fetchone()
    return _job_from_row(row) if row else None


def read_job(con: sqlite3.Connection, name: str) -> Job:
    """Job ``name``, or :class:`JobNotFoundError` listing the jobs."""
    job = find_job(con, name)
    if job is None:
        raise JobNotFoundError(name, job_names(con))
    return job


def job_names(con: sqlite3.Connection) -> list[str]:
    """The names of all jobs, sorted."""
    return [r[0] for r in con.execute("SELECT name FROM jobs ORDER BY name")]


def enabled_job_names(con: sqlite3.Connection) -> list[str]:
    """The names of the jobs that are not paused."""
    return [r[0] for r in con.execute("SELECT name FROM jobs WHERE enabled = 1")]


def due_jobs(con: sqlite3.Connection, now: datetime) -> list[str]:
    """The enabled cron jobs with a slot in ``(cursor, now]``."""
    return [r["name"] for r in con.execute(
        "SELECT name, cron, timezone, cursor FROM jobs WHERE enabled = 1 AND cron IS NOT NULL").fetchall()
        if next(fire_times(r["cron"], r["timezone"], _cursor(r["cursor"]), now), None) is not None]


def enabled_job(con: sqlite3.Connection, name: str) -> tuple[Job, datetime] | None:
    """Job ``name`` and its cursor, unless it is gone or paused."""
    row = con.execute("SELECT * FROM jobs WHERE name = ? AND enabled = 1", [name]).fetchone()
    return (_job_from_row(row), _cursor(row["cursor"])) if row else None


def _cursor(text: str) -> datetime:
    value = from_iso(text)
    assert value is not None
    return value


def advance_cursor(con: sqlite3.Connection, name: str, now: datetime) -> None:
    """Mark ``name``'s slots up to ``now`` as planned (never moves the cursor back)."""
    con.execute("UPDATE jobs SET cursor = ? WHERE name = ? AND cursor < ?", [to_iso(now), name, to_iso(now)])


def dependants(con: sqlite3.Connection, upstream: str) -> list[Job]:
    """The enabled jobs that run after ``upstream``."""
    rows = con.execute("SELECT * FROM jobs WHERE enabled = 1 AND depends_on LIKE ?",
                       [f"%{json.dumps(upstream)}%"]).fetchall()
    return [job for job in map(_job_from_row, rows) if upstream in job.depends_on]


def delete_job(con: sqlite3.Connection, name: str) -> None:
    """Delete job ``name``: :class:`JobNotFoundError` if unknown, :class:`JobError` if others depend on it."""
    read_job(con, name)
    names = [r["name"] for r in con.execute("SELECT name, depends_on FROM jobs")
             if name in json.loads(r["depends_on"])]
    if names:
        raise JobError(f"jobs {', '.join(names)} depend on it; remove them first", job=name, field="depends_on")
    con.execute("DELETE FROM jobs WHERE name = ?", [name])
