"""Scheduled notebook jobs: definitions, due slots, claiming, retries, pipelines and run history.

Jobs and runs live in the operational store (``ops.sqlite``, see :mod:`procestra.ops`).
A *slot* is one fire time of a job's cron expression in its IANA timezone (croniter
plus zoneinfo, so DST is right: a wall time skipped in spring runs at the end of the gap,
a fixed-hour job runs once in the repeated autumn hour, hourly jobs run every real hour).

- **Planning** (:meth:`Scheduler.plan`): the slots due since a job's cursor become
  ``queued`` runs, or ``skipped`` ones by the catch-up policy (``none``: only slots
  within ``grace`` of now; ``latest``: the newest due slot; ``all``: the newest
  ``catchup_limit``) and the overlap policy (``skip`` while a run of the job is active).
  A run row is unique per ``(job, scheduled_for, attempt)`` and inserted in the same
  transaction that moves the cursor, so two schedulers never plan a slot twice.
- **Claiming**: a queued run becomes ``running`` by a conditional ``UPDATE`` in a write
  transaction; only one scheduler's update can succeed. Jobs with ``overlap`` skip or
  queue run one at a time.
- **Running**: an executor (:mod:`procestra.schedule.runner`) runs the notebook; the outcome,
  failing cell, outputs and files are recorded; a failure with retries left queues the
  next attempt after an exponential backoff; the final outcome is announced
  (:mod:`procestra.notify`); dependants (``depends_on``) are queued for the same slot
  with the upstream outputs as parameters, or skipped if an upstream failed.
- **Crash safety**: runs carry their scheduler's id and a heartbeat; a scheduler that
  dies leaves runs that the next pass marks failed (``WorkerLost``) and retries.
- Every step is also an event in the ``jobs`` log of the event store, via the outbox.
"""

from __future__ import annotations

import contextlib
import html as html_mod
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from procestra.errors import InvalidArgumentError, UserError
from procestra.schedule.notify import Notify
from procestra.schedule.runner import CellError, Executor, LocalExecutor, RunResult, RunSpec
from procestra.store import ops
from procestra.store.ops import Event, from_iso, to_iso, utcnow

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "STATUSES",
    "Job",
    "JobError",
    "JobNotFoundError",
    "Run",
    "RunNotFoundError",
    "Scheduler",
    "TickResult",
    "add_job",
    "fire_times",
    "get_job",
    "get_run",
    "history_html",
    "list_jobs",
    "list_runs",
    "pause_job",
    "remove_job",
    "resume_job",
    "run_now",
    "stop_on_signals",
    "tick",
    "write_history",
]

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "skipped", "cancelled")
FINAL = frozenset({"succeeded", "failed", "timed_out", "skipped", "cancelled"})
STATUS_COLOURS = {"queued": "#6c757d", "running": "#0d6efd", "succeeded": "#198754", "failed": "#dc3545",
                  "timed_out": "#fd7e14", "skipped": "#adb5bd", "cancelled": "#6f42c1"}
OVERLAP = ("skip", "queue", "allow")
CATCHUP = ("none", "latest", "all")
FORMATS = ("ipynb", "html")
JOBS_LOG = "jobs"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TAG_RE = re.compile(r"^[\w.:-]{1,40}$")
MAX_SKIPS_RECORDED = 100  # missed slots recorded as skipped runs per job and pass; older ones are counted
_HEARTBEAT = float(os.environ.get("PROCESTRA_HEARTBEAT", "10"))
_STALE = float(os.environ.get("PROCESTRA_STALE_AFTER", "120"))
_HOST = socket.gethostname()

_MIGRATIONS: tuple[tuple[str, ...], ...] = ((
    """CREATE TABLE jobs (
        name TEXT PRIMARY KEY, notebook TEXT NOT NULL, parameters TEXT NOT NULL, cron TEXT,
        timezone TEXT NOT NULL, kernel TEXT, timeout REAL, retries INTEGER NOT NULL,
        retry_backoff REAL NOT NULL, overlap TEXT NOT NULL, catchup TEXT NOT NULL,
        catchup_limit INTEGER NOT NULL, grace REAL NOT NULL, formats TEXT NOT NULL, notify TEXT NOT NULL,
        tags TEXT NOT NULL, depends_on TEXT NOT NULL, enabled INTEGER NOT NULL, created_at TEXT NOT NULL,
        start TEXT NOT NULL, cursor TEXT NOT NULL)""",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, job TEXT NOT NULL, scheduled_for TEXT NOT NULL, attempt INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','timed_out',
                                               'skipped','cancelled')),
        trigger TEXT NOT NULL, queued_at TEXT NOT NULL, not_before TEXT, started_at TEXT, ended_at TEXT,
        worker TEXT, heartbeat_at TEXT, notebook TEXT, parameters TEXT, output TEXT, html TEXT, outputs TEXT,
        error_cell INTEGER, error_name TEXT, error_value TEXT, reason TEXT,
        UNIQUE (job, scheduled_for, attempt))""",
    "CREATE INDEX runs_by_status ON runs (status, not_before)",
    "CREATE INDEX runs_by_job ON runs (job, scheduled_for)",
),)


class JobError(UserError):
    """A job definition that cannot be stored; ``field`` names what to fix."""

    def __init__(self, message: str, *, job: str | None = None, field: str | None = None) -> None:
        super().__init__(f"job {job!r}: {message}" if job else message)
        self.job = job
        self.field = field


class JobNotFoundError(UserError):
    """A job name that is not defined in this workspace."""

    def __init__(self, name: str, known: list[str]) -> None:
        hint = f" (jobs: {', '.join(known)})" if known else " (no jobs yet; add one with `procestra schedule add`)"
        super().__init__(f"no job named {name!r}{hint}")
        self.name = name


class RunNotFoundError(UserError):
    """A run id that is not in the history."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}; list runs with `procestra runs`")
        self.run_id = run_id


def _prepare(workspace: Home) -> None:
    ops.ensure_schema(workspace, "schedule", _MIGRATIONS)


# -- definitions -------------------------------------------------------------------------
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
            "enabled": self.enabled, "created_at": _iso(self.created_at), "start": _iso(self.start),
            "next_runs": [_iso(t) for t in self.next_runs(3)] if self.enabled else [],
        }


def _iso(value: datetime | None) -> str | None:
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
    from procestra.schedule.runner import (
        NotebookError,
        check_kernel,
        coerce_parameters,
        validate_parameters,
    )

    # Cheap checks first (no notebook machinery), then the notebook, then the stored jobs.
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise JobError(f"invalid job name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a "
                       "letter or digit", field="name")
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
    _prepare(workspace)
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
    _prepare(workspace)
    with ops.connect(workspace) as con:
        jobs = [_job_from_row(r) for r in con.execute("SELECT * FROM jobs ORDER BY name")]
    return [j for j in jobs if tag is None or tag in j.tags]


def get_job(workspace: Home, name: str) -> Job:
    """Job ``name``, or :class:`JobNotFoundError` listing the jobs."""
    _prepare(workspace)
    with ops.connect(workspace) as con:
        return _get_job(con, name)


def _get_job(con: sqlite3.Connection, name: str) -> Job:
    row = con.execute("SELECT * FROM jobs WHERE name = ?", [name]).fetchone()
    if row is None:
        raise JobNotFoundError(name, [r[0] for r in con.execute("SELECT name FROM jobs ORDER BY name")])
    return _job_from_row(row)


def pause_job(workspace: Home, name: str) -> Job:
    """Stop planning and starting runs of ``name`` (runs already going finish)."""
    _prepare(workspace)
    with ops.transaction(workspace) as con:
        _get_job(con, name)
        con.execute("UPDATE jobs SET enabled = 0 WHERE name = ?", [name])
        return _get_job(con, name)


def resume_job(workspace: Home, name: str) -> Job:
    """Plan ``name`` again from now on: slots that fell in the pause are not caught up."""
    _prepare(workspace)
    with ops.transaction(workspace) as con:
        job = _get_job(con, name)
        if not job.enabled:
            now = to_iso(utcnow())
            con.execute("UPDATE jobs SET enabled = 1, cursor = CASE WHEN cursor > ? THEN cursor ELSE ? END "
                        "WHERE name = ?", [now, now, name])
        return _get_job(con, name)


def remove_job(workspace: Home, name: str) -> None:
    """Delete job ``name``; its queued runs are cancelled, its history is kept."""
    _prepare(workspace)
    with ops.transaction(workspace) as con:
        _get_job(con, name)
        dependants = [r["name"] for r in con.execute("SELECT name, depends_on FROM jobs")
                      if name in json.loads(r["depends_on"])]
        if dependants:
            raise JobError(f"jobs {', '.join(dependants)} depend on it; remove them first", job=name,
                           field="depends_on")
        now = utcnow()
        for r in con.execute("SELECT * FROM runs WHERE job = ? AND status = 'queued'", [name]).fetchall():
            run = _run_from_row(r)
            con.execute("UPDATE runs SET status = 'cancelled', ended_at = ?, reason = ? WHERE run_id = ?",
                        [to_iso(now), "job removed", run.run_id])
            ops.emit(con, JOBS_LOG, [_event(run, "cancel", now, reason="job removed")])
        con.execute("DELETE FROM jobs WHERE name = ?", [name])


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


# -- runs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One attempt at one slot of a job, as the history records it."""

    run_id: str
    job: str
    scheduled_for: datetime
    attempt: int
    status: str
    trigger: str
    queued_at: datetime
    not_before: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    notebook: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    html: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: CellError | None = None
    reason: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def summary(self) -> dict[str, Any]:
        """The ``procestra runs --json`` shape."""
        return {"run": self.run_id, "job": self.job, "scheduled_for": _iso(self.scheduled_for),
                "status": self.status, "attempt": self.attempt, "output": self.output}

    def to_dict(self) -> dict[str, Any]:
        err = self.error
        return {**self.summary(), "trigger": self.trigger, "queued_at": _iso(self.queued_at),
                "not_before": _iso(self.not_before), "started_at": _iso(self.started_at),
                "ended_at": _iso(self.ended_at), "seconds": self.seconds, "worker": self.worker,
                "notebook": self.notebook, "parameters": self.parameters, "html": self.html,
                "outputs": self.outputs, "reason": self.reason,
                "error": None if err is None else {"cell": err.cell_index, "name": err.ename, "value": err.evalue}}


def _run_from_row(r: sqlite3.Row) -> Run:
    err = None
    if r["error_name"]:
        err = CellError(r["error_cell"], r["error_name"], r["error_value"] or "")
    return Run(
        run_id=r["run_id"], job=r["job"], scheduled_for=_when(r["scheduled_for"]), attempt=int(r["attempt"]),
        status=r["status"], trigger=r["trigger"], queued_at=_when(r["queued_at"]),
        not_before=from_iso(r["not_before"]), started_at=from_iso(r["started_at"]),
        ended_at=from_iso(r["ended_at"]), worker=r["worker"], notebook=r["notebook"],
        parameters=json.loads(r["parameters"] or "{}"), output=r["output"], html=r["html"],
        outputs=json.loads(r["outputs"] or "{}"), error=err, reason=r["reason"])


def _when(text: str) -> datetime:
    value = from_iso(text)
    assert value is not None
    return value


def _run_id(job: str, slot: datetime, attempt: int, *, exact: bool = False) -> str:
    stamp = slot.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ" if exact else "%Y%m%dT%H%M%SZ")
    return f"{job.replace('/', '-')}-{stamp}-{attempt}"


def _event(run: Run, activity: str, ts: datetime, *, lifecycle: str = "complete", resource: str | None = None,
           **attrs: Any) -> Event:
    return Event(case_id=f"{run.job}@{run.scheduled_for.strftime('%Y-%m-%dT%H:%M:%SZ')}", activity=activity,
                 timestamp=ts, lifecycle=lifecycle, resource=resource or run.worker or "scheduler",
                 attributes={"job": run.job, "run_id": run.run_id, "scheduled_for": _iso(run.scheduled_for),
                             "attempt": run.attempt, "trigger": run.trigger, **attrs})


def _insert_run(con: sqlite3.Connection, job: str, slot: datetime, attempt: int, status: str, trigger: str,
                now: datetime, *, notebook: str | None, parameters: dict[str, Any] | None = None,
                not_before: datetime | None = None, reason: str | None = None, worker: str | None = None,
                exact: bool = False) -> Run | None:
    """Insert one run row unless the slot's attempt exists (another scheduler got there first)."""
    run_id = _run_id(job, slot, attempt, exact=exact)
    started = to_iso(now) if status == "running" else None
    ended = to_iso(now) if status in FINAL else None
    cur = con.execute(
        "INSERT INTO runs (run_id, job, scheduled_for, attempt, status, trigger, queued_at, not_before, "
        "started_at, ended_at, worker, heartbeat_at, notebook, parameters, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [run_id, job, to_iso(slot), attempt, status, trigger, to_iso(now),
         to_iso(not_before) if not_before else None, started, ended, worker, started, notebook,
         json.dumps(parameters or {}), reason])
    if cur.rowcount != 1:
        return None
    return _run_from_row(con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone())


def list_runs(workspace: Home, *, job: str | None = None, status: str | None = None,
              limit: int | None = None) -> list[Run]:
    """The run history, newest slot first; filtered by ``job`` and ``status``."""
    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}", parameter="status")
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"limit must be at least 1, not {limit}", parameter="limit")
    _prepare(workspace)
    where, args = ops.where(("job = ?", job), ("status = ?", status))
    sql = "SELECT * FROM runs" + where
    sql += " ORDER BY scheduled_for DESC, attempt DESC, queued_at DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with ops.connect(workspace) as con:
        rows = con.execute(sql, args).fetchall()
        unknown = not rows and job is not None and not con.execute(
            "SELECT 1 FROM jobs WHERE name = ? UNION ALL SELECT 1 FROM runs WHERE job = ? LIMIT 1", [job, job]).fetchone()
        if unknown:
            raise JobNotFoundError(str(job), [r[0] for r in con.execute("SELECT name FROM jobs ORDER BY name")])
    return [_run_from_row(r) for r in rows]


def get_run(workspace: Home, run_id: str) -> Run:
    """One run by id, or :class:`RunNotFoundError`."""
    _prepare(workspace)
    with ops.connect(workspace) as con:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    return _run_from_row(row)


# -- the scheduler ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TickResult:
    """What one pass did: runs planned (queued or skipped), runs finished, events flushed."""

    planned: list[Run]
    finished: list[Run]
    flushed: int

    def to_dict(self) -> dict[str, Any]:
        return {"planned": [r.summary() for r in self.planned], "finished": [r.to_dict() for r in self.finished],
                "flushed": self.flushed}


class Scheduler:
    """Plans due slots, claims runs, hands them to an executor and records how they end.

    Many schedulers (processes, machines) may share one workspace: planning and
    claiming are transactions on ``ops.sqlite``, so each slot runs once.
    """

    def __init__(self, workspace: Home, executor: Executor | None = None, *, worker: str | None = None) -> None:
        self.workspace = workspace
        self.executor = executor or LocalExecutor()
        self.worker = worker or f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._inflight: dict[Future[RunResult], Run] = {}
        self._last_beat = 0.0
        self.stop = threading.Event()
        _prepare(workspace)
        self.runs_dir = Path(workspace.path).resolve() / "runs" / "jobs"

    # planning ---------------------------------------------------------------------------
    def plan(self, now: datetime | None = None) -> list[Run]:
        """Turn the slots due at ``now`` into queued (or skipped) runs; returns the new runs."""
        now = now or utcnow()
        with ops.connect(self.workspace) as con:
            due = [r["name"] for r in con.execute(
                "SELECT name, cron, timezone, cursor FROM jobs WHERE enabled = 1 AND cron IS NOT NULL").fetchall()
                if next(fire_times(r["cron"], r["timezone"], _when(r["cursor"]), now), None) is not None]
        if not due:
            return []
        planned: list[Run] = []
        with ops.transaction(self.workspace) as con:
            wall = utcnow()
            for name in due:
                row = con.execute("SELECT * FROM jobs WHERE name = ? AND enabled = 1", [name]).fetchone()
                if row is None:
                    continue
                planned += self._plan_job(con, _job_from_row(row), _when(row["cursor"]), now, wall)
        return planned

    def _plan_job(self, con: sqlite3.Connection, job: Job, cursor: datetime, now: datetime,
                  wall: datetime) -> list[Run]:
        keep = max(job.catchup_limit, 1) + MAX_SKIPS_RECORDED
        slots: list[datetime] = []
        total = 0
        for t in fire_times(job.cron or "", job.timezone, cursor, now):
            total += 1
            slots.append(t)
            if len(slots) > keep:
                slots.pop(0)
            if total > 1_000_000:
                break
        if not slots:
            return []
        if job.catchup == "none":
            run = [t for t in slots if (now - t).total_seconds() <= job.grace]
        elif job.catchup == "latest":
            run = slots[-1:]
        else:
            run = slots[-job.catchup_limit:]
        busy = job.overlap == "skip" and con.execute(
            "SELECT 1 FROM runs WHERE job = ? AND status IN ('queued', 'running') LIMIT 1", [job.name]).fetchone()
        out: list[Run] = []
        events: list[Event] = []
        for t in slots:
            if t in run and not busy:
                r = _insert_run(con, job.name, t, 1, "queued", "schedule", wall, notebook=job.notebook,
                                parameters=job.parameters)
                if r:
                    events.append(_event(r, "queue", wall))
            else:
                reason = "a run of the job was still active (overlap skip)" if t in run else \
                    f"missed while no scheduler ran (catch-up {job.catchup})"
                r = _insert_run(con, job.name, t, 1, "skipped", "schedule", wall, notebook=job.notebook, reason=reason)
                if r:
                    events.append(_event(r, "skip", wall, reason=reason))
            if r:
                out.append(r)
        if total > len(slots):
            log.warning("job %s: %d older missed slots were not recorded", job.name, total - len(slots))
        con.execute("UPDATE jobs SET cursor = ? WHERE name = ? AND cursor < ?", [to_iso(now), job.name, to_iso(now)])
        ops.emit(con, JOBS_LOG, events)
        return out

    def _plan_dependants(self, con: sqlite3.Connection, upstream: str, slot: datetime, wall: datetime) -> None:
        """Queue (or skip) the jobs that depend on ``upstream`` for ``slot``, once all their upstreams are final."""
        for row in con.execute("SELECT * FROM jobs WHERE enabled = 1 AND depends_on LIKE ?",
                               [f"%{json.dumps(upstream)}%"]).fetchall():
            job = _job_from_row(row)
            if upstream not in job.depends_on:
                continue
            if con.execute("SELECT 1 FROM runs WHERE job = ? AND scheduled_for = ?", [job.name, to_iso(slot)]).fetchone():
                continue
            state = {}
            for dep in job.depends_on:
                rows = con.execute("SELECT status FROM runs WHERE job = ? AND scheduled_for = ? ORDER BY attempt",
                                   [dep, to_iso(slot)]).fetchall()
                statuses = [r[0] for r in rows]
                state[dep] = ("succeeded" if "succeeded" in statuses else
                              "pending" if not statuses or any(s in ("queued", "running") for s in statuses)
                              else statuses[-1])
            if any(s == "pending" for s in state.values()):
                continue
            bad = [d for d, s in state.items() if s != "succeeded"]
            if bad:
                reason = f"upstream {bad[0]} {state[bad[0]]}"
                r = _insert_run(con, job.name, slot, 1, "skipped", "dependency", wall, notebook=job.notebook,
                                reason=reason)
                if r:
                    ops.emit(con, JOBS_LOG, [_event(r, "skip", wall, reason=reason)])
                    self._plan_dependants(con, job.name, slot, wall)
            else:
                r = _insert_run(con, job.name, slot, 1, "queued", "dependency", wall, notebook=job.notebook,
                                parameters=job.parameters)
                if r:
                    ops.emit(con, JOBS_LOG, [_event(r, "queue", wall)])

    # claiming and running ------------------------------------------------------------------
    def free(self) -> int:
        return max(self.executor.capacity - len(self._inflight), 0)

    def dispatch(self) -> list[Run]:
        """Claim ready runs up to the executor's free capacity and start them."""
        if self.stop.is_set() or self.free() == 0:
            return []
        claimed: list[tuple[Run, Job]] = []
        with ops.transaction(self.workspace) as con:
            wall = utcnow()
            rows = con.execute(
                "SELECT r.run_id, r.job FROM runs r JOIN jobs j ON j.name = r.job WHERE r.status = 'queued' "
                "AND j.enabled = 1 AND (r.not_before IS NULL OR r.not_before <= ?) "
                "ORDER BY r.scheduled_for, r.attempt LIMIT 500", [to_iso(wall)]).fetchall()
            taken: set[str] = set()
            for r in rows:
                if len(claimed) >= self.free():
                    break
                job = _get_job(con, r["job"])
                if job.overlap != "allow" and (job.name in taken or con.execute(
                        "SELECT 1 FROM runs WHERE job = ? AND status = 'running' LIMIT 1", [job.name]).fetchone()):
                    continue
                cur = con.execute("UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ? "
                                  "WHERE run_id = ? AND status = 'queued'",
                                  [self.worker, to_iso(wall), to_iso(wall), r["run_id"]])
                if cur.rowcount != 1:
                    continue
                taken.add(job.name)
                run = _run_from_row(con.execute("SELECT * FROM runs WHERE run_id = ?", [r["run_id"]]).fetchone())
                ops.emit(con, JOBS_LOG, [_event(run, "run", wall, lifecycle="start")])
                claimed.append((run, job))
            upstream = {run.run_id: self._upstream_outputs(con, job, run.scheduled_for) for run, job in claimed}
        for run, job in claimed:
            self._submit(run, job, upstream[run.run_id])
        return [run for run, _ in claimed]

    def _upstream_outputs(self, con: sqlite3.Connection, job: Job, slot: datetime) -> dict[str, Any]:
        if not job.depends_on:
            return {}
        ups: dict[str, Any] = {}
        for dep in job.depends_on:
            row = con.execute("SELECT outputs FROM runs WHERE job = ? AND scheduled_for = ? AND status = 'succeeded' "
                              "ORDER BY attempt DESC LIMIT 1", [dep, to_iso(slot)]).fetchone()
            ups[dep] = json.loads(row[0] or "{}") if row else {}
        flat: dict[str, Any] = {}
        for outs in ups.values():
            flat.update(outs)
        return {**flat, "upstream": ups}

    def _output_path(self, run: Run) -> Path:
        return self.runs_dir / run.job / f"{run.run_id}.ipynb"

    def _submit(self, run: Run, job: Job, extra: dict[str, Any]) -> None:
        spec = RunSpec(run_id=run.run_id, notebook=job.notebook, output=str(self._output_path(run)),
                       parameters=dict(job.parameters), extra_parameters=extra, kernel=job.kernel,
                       timeout=job.timeout, html="html" in job.formats, scheduled_for=run.scheduled_for,
                       attempt=run.attempt)
        self._inflight[self.executor.submit(spec)] = run

    def wait(self, timeout: float) -> list[Run]:
        """Wait up to ``timeout`` s for in-flight runs; record those that end. Keeps heartbeats fresh."""
        finished: list[Run] = []
        if self._inflight:
            done, _ = wait(list(self._inflight), timeout=timeout, return_when=FIRST_COMPLETED)
            for fut in done:
                run = self._inflight.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - an executor failure is a failed run
                    now = utcnow()
                    result = RunResult("failed", now, now, None, None, CellError(None, type(exc).__name__, str(exc)))
                rec = self.complete(run, result)
                if rec is not None:
                    finished.append(rec)
        elif timeout > 0:
            self.stop.wait(timeout)
        self._heartbeat()
        return finished

    def _heartbeat(self, force: bool = False) -> None:
        if not self._inflight or (not force and time.monotonic() - self._last_beat < _HEARTBEAT):
            return
        self._last_beat = time.monotonic()
        ids = [r.run_id for r in self._inflight.values()]
        with ops.transaction(self.workspace) as con:
            con.execute(f"UPDATE runs SET heartbeat_at = ? WHERE worker = ? AND status = 'running' AND run_id IN "
                        f"({','.join('?' * len(ids))})", [to_iso(utcnow()), self.worker, *ids])

    def complete(self, run: Run, result: RunResult) -> Run | None:
        """Record how ``run`` ended; queue a retry or the dependants; announce a final outcome."""
        wall = utcnow()
        status = result.status if result.status in FINAL else "failed"
        err = result.error
        with ops.transaction(self.workspace) as con:
            cur = con.execute(
                "UPDATE runs SET status = ?, ended_at = ?, output = ?, html = ?, outputs = ?, error_cell = ?, "
                "error_name = ?, error_value = ? WHERE run_id = ? AND status = 'running' AND worker = ?",
                [status, to_iso(wall), result.output, result.html, json.dumps(result.outputs, default=str),
                 err.cell_index if err else None, err.ename if err else None, err.evalue if err else None,
                 run.run_id, self.worker])
            if cur.rowcount != 1:
                log.warning("run %s was taken over while it ran (its scheduler was thought dead); "
                            "its outcome %s is not recorded", run.run_id, status)
                return None
            rec = _run_from_row(con.execute("SELECT * FROM runs WHERE run_id = ?", [run.run_id]).fetchone())
            attrs: dict[str, Any] = {"outcome": status, "seconds": rec.seconds}
            if err:
                attrs.update(error_name=err.ename, error_value=err.evalue[:2000], error_cell=err.cell_index)
            ops.emit(con, JOBS_LOG, [_event(rec, "run", wall, lifecycle="complete", **attrs)])
            final = self._after(con, rec, wall)
        log.info("run %s of job %s (slot %s, attempt %d): %s%s", rec.run_id, rec.job, _iso(rec.scheduled_for),
                 rec.attempt, rec.status, f" ({err})" if err else "")
        if final:
            self._announce(rec)
        return rec

    def _after(self, con: sqlite3.Connection, rec: Run, wall: datetime) -> bool:
        """Queue a retry if one is left, else the dependants; True when ``rec`` is the slot's final outcome."""
        row = con.execute("SELECT * FROM jobs WHERE name = ?", [rec.job]).fetchone()
        job = _job_from_row(row) if row else None
        if job and rec.status in ("failed", "timed_out") and rec.attempt <= job.retries:
            delay = job.retry_backoff * (2 ** (rec.attempt - 1))
            retry = _insert_run(con, job.name, rec.scheduled_for, rec.attempt + 1, "queued", "retry", wall,
                                notebook=job.notebook, parameters=job.parameters,
                                not_before=wall + timedelta(seconds=delay))
            if retry:
                ops.emit(con, JOBS_LOG, [_event(retry, "retry", wall, delay_seconds=delay)])
                return False
        if job:
            self._plan_dependants(con, job.name, rec.scheduled_for, wall)
        return True

    def _announce(self, rec: Run) -> None:
        from procestra.schedule.notify import send

        try:
            job = get_job(self.workspace, rec.job)
        except JobNotFoundError:
            return
        if not job.notify.wants(rec.status):
            return
        payload = {**rec.to_dict(), "workspace": str(Path(self.workspace.path).resolve()),
                   "retries": job.retries}
        deliveries = send(job.notify, payload)
        with ops.transaction(self.workspace) as con:
            now = utcnow()
            ops.emit(con, JOBS_LOG, [_event(rec, "notify", now, resource=d.channel, outcome="sent" if d.ok else "failed",
                                            target=d.target, error_value=d.error) for d in deliveries])

    def reap(self) -> list[Run]:
        """Fail runs whose scheduler died (its process is gone, or its heartbeat is stale); retry them."""
        wall = utcnow()
        stale = to_iso(wall - timedelta(seconds=_STALE))
        found: list[Run] = []
        finals: list[Run] = []
        with ops.transaction(self.workspace) as con:
            for r in con.execute("SELECT * FROM runs WHERE status = 'running' AND worker <> ?", [self.worker]).fetchall():
                run = _run_from_row(r)
                host, _, rest = (run.worker or "").partition(":")
                pid = rest.partition(":")[0]
                gone = host == _HOST and pid.isdigit() and not _alive(int(pid))
                if not gone and (r["heartbeat_at"] or "") >= stale:
                    continue
                why = f"its scheduler {run.worker} stopped without finishing it"
                con.execute("UPDATE runs SET status = 'failed', ended_at = ?, error_name = 'WorkerLost', "
                            "error_value = ? WHERE run_id = ? AND status = 'running'", [to_iso(wall), why, run.run_id])
                rec = replace(run, status="failed", ended_at=wall, error=CellError(None, "WorkerLost", why))
                ops.emit(con, JOBS_LOG, [_event(rec, "run", wall, outcome="failed", error_name="WorkerLost",
                                                error_value=why)])
                if self._after(con, rec, wall):
                    finals.append(rec)
                found.append(rec)
                log.warning("run %s of job %s: %s; marked failed", run.run_id, run.job, why)
        for rec in finals:
            self._announce(rec)
        return found

    def cancel_inflight(self) -> None:
        for run in self._inflight.values():
            self.executor.cancel(run.run_id)

    # passes -------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None, *, handle_signals: bool = False) -> TickResult:
        """One pass at ``now``: plan what is due, run it (with its retries and dependants), flush events.

        With ``handle_signals``, SIGTERM or Ctrl-C cancels the runs in flight (recorded as cancelled).
        """
        with stop_on_signals(self.stop, handle_signals):
            return self._tick(now)

    def _tick(self, now: datetime | None) -> TickResult:
        self.reap()
        planned = self.plan(now)
        finished: list[Run] = []
        waiting_for: set[tuple[str, str]] = set()
        while True:
            started = self.dispatch()
            waiting_for |= {(r.job, to_iso(r.scheduled_for)) for r in started}
            if self._inflight:
                finished += self.wait(1.0)
                if self.stop.is_set():
                    finished += self._drain(0.0)
                    break
                continue
            if self.stop.is_set():
                break
            retry_at = self._next_retry(waiting_for)
            if retry_at is None:
                break
            self.stop.wait(max(0.0, min((retry_at - utcnow()).total_seconds(), 60.0)) + 0.01)
        flushed = self.flush()
        return TickResult(planned, finished, flushed)

    def _next_retry(self, slots: set[tuple[str, str]]) -> datetime | None:
        if not slots:
            return None
        with ops.connect(self.workspace) as con:
            rows = con.execute("SELECT job, scheduled_for, not_before FROM runs WHERE status = 'queued'").fetchall()
        times = [from_iso(r["not_before"]) or utcnow() for r in rows if (r["job"], r["scheduled_for"]) in slots]
        return min(times) if times else None

    def _drain(self, grace: float) -> list[Run]:
        """Let in-flight runs finish for ``grace`` s, then cancel the rest and record them."""
        finished: list[Run] = []
        deadline = time.monotonic() + grace
        while self._inflight and time.monotonic() < deadline:
            finished += self.wait(min(1.0, max(deadline - time.monotonic(), 0.0)))
        if self._inflight:
            self.cancel_inflight()
            deadline = time.monotonic() + 60
            while self._inflight and time.monotonic() < deadline:
                finished += self.wait(1.0)
        for fut, run in list(self._inflight.items()):  # an executor that cannot stop its run
            self._inflight.pop(fut)
            now = utcnow()
            rec = self.complete(run, RunResult("cancelled", now, now, None, None,
                                               CellError(None, "Cancelled", "the scheduler stopped")))
            if rec:
                finished.append(rec)
        return finished

    def flush(self) -> int:
        """Move pending events to the ``jobs`` log and rewrite the history page; returns events moved."""
        from procestra.ingest.outbox import flush_outbox

        try:
            moved = flush_outbox(self.workspace).events
        except Exception as exc:  # noqa: BLE001 - the events stay queued for the next flush
            log.warning("could not flush the outbox: %s", exc)
            moved = 0
        with contextlib.suppress(OSError):
            write_history(self.workspace)
        return moved

    def run_forever(self, *, poll: float = 1.0, stop_timeout: float = 30.0, flush_every: float = 5.0,
                    handle_signals: bool = True) -> None:
        """The daemon loop: plan, claim, run, record, every ``poll`` s until :attr:`stop` is set or SIGTERM.

        On stop, runs in flight get ``stop_timeout`` s to finish; the rest are cancelled.
        """
        last_flush = last_reap = 0.0
        with stop_on_signals(self.stop, handle_signals):
            try:
                while not self.stop.is_set():
                    if time.monotonic() - last_reap > min(_STALE / 4, 30):
                        self.reap()
                        last_reap = time.monotonic()
                    self.plan()
                    self.dispatch()
                    self.wait(poll)
                    kernels = getattr(self.executor, "kernels", None)
                    if kernels is not None:
                        kernels.prune()
                    if time.monotonic() - last_flush > flush_every:
                        self.flush()
                        last_flush = time.monotonic()
                self._drain(stop_timeout)
            finally:
                self.flush()

    def close(self) -> None:
        self.executor.close()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, enabled: bool = True) -> Iterator[None]:
    """Set ``stop`` on SIGTERM and SIGINT while inside (main thread only); the old handlers come back after."""
    previous: dict[signal.Signals, Any] = {}
    if enabled and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tick(workspace: Home, now: datetime | None = None, *, executor: Executor | None = None,
         handle_signals: bool = False) -> TickResult:
    """One scheduling pass at ``now`` (default: the current time) with a fresh :class:`Scheduler`."""
    sched = Scheduler(workspace, executor)
    try:
        return sched.tick(now, handle_signals=handle_signals)
    finally:
        if executor is None:
            sched.close()


def run_now(workspace: Home, notebook: str | os.PathLike[str], *, parameters: dict[str, Any] | None = None,
            kernel: str | None = None, timeout: float | None = None, html: bool = True,
            cancel: threading.Event | None = None) -> Run:
    """Run ``notebook`` now, in this process, recorded in the history as job ``adhoc/<name>``."""
    from procestra.schedule.runner import NotebookError, check_kernel, run_notebook, validate_parameters

    path = Path(notebook).expanduser()
    if not path.is_file():
        raise NotebookError("no such notebook" if not path.exists() else "not a file", path=str(path))
    params = validate_parameters(path, parameters or {})
    check_kernel(path, kernel)
    if timeout is not None and not timeout > 0:
        raise InvalidArgumentError(f"timeout must be positive, not {timeout}", parameter="timeout")
    _prepare(workspace)
    sched = Scheduler(workspace, executor=_NoExecutor())
    job = f"adhoc/{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)[:60]}"
    now = utcnow()
    with ops.transaction(workspace) as con:
        run = _insert_run(con, job, now, 1, "running", "manual", now, notebook=str(path.resolve()),
                          parameters=params, worker=sched.worker, exact=True)
        assert run is not None
        ops.emit(con, JOBS_LOG, [_event(run, "run", now, lifecycle="start")])
    try:
        result = run_notebook(path, sched._output_path(run), parameters=params, kernel=kernel, timeout=timeout,
                              html=html, scheduled_for=now, run_id=run.run_id, cancel=cancel)
    except BaseException as exc:
        end = utcnow()
        result = RunResult("cancelled" if isinstance(exc, KeyboardInterrupt) else "failed", end, end, None, None,
                           CellError(None, type(exc).__name__, str(exc)))
        sched.complete(run, result)
        sched.flush()
        raise
    rec = sched.complete(run, result)
    sched.flush()
    return rec or get_run(workspace, run.run_id)


class _NoExecutor:
    name = "none"
    capacity = 0

    def submit(self, spec: RunSpec) -> Future[RunResult]:  # pragma: no cover - never called
        raise RuntimeError("run_now runs in process")

    def cancel(self, run_id: str) -> None:
        pass

    def close(self) -> None:
        pass


# -- the history page --------------------------------------------------------------------------
def history_html(workspace: Home, *, job: str | None = None, limit: int = 500, base: Path | None = None) -> str:
    """The run history as one self-contained HTML page (status colours, links to the outputs)."""
    runs = list_runs(workspace, job=job, limit=limit)
    root = base or Path(workspace.path) / "runs"

    def link(path: str | None, label: str) -> str:
        if not path:
            return ""
        try:
            href = os.path.relpath(path, root)
        except ValueError:
            href = path
        return f'<a href="{html_mod.escape(href)}">{label}</a>'

    rows = []
    for r in runs:
        colour = STATUS_COLOURS.get(r.status, "#000")
        err = html_mod.escape(str(r.error)) if r.error else html_mod.escape(r.reason or "")
        secs = f"{r.seconds:.1f}" if r.seconds is not None else ""
        rows.append(
            f"<tr><td>{html_mod.escape(r.job)}</td><td>{html_mod.escape(_iso(r.scheduled_for) or '')}</td>"
            f'<td><span class="st" style="background:{colour}">{r.status}</span></td><td>{r.attempt}</td>'
            f"<td>{html_mod.escape(_iso(r.started_at) or '')}</td><td>{secs}</td>"
            f"<td>{link(r.output, 'ipynb')} {link(r.html, 'html')}</td><td class='err'>{err}</td>"
            f"<td><code>{html_mod.escape(r.run_id)}</code></td></tr>")
    title = f"Runs of {job}" if job else "Procestra runs"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html_mod.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}}table{{border-collapse:collapse;font-size:14px}}
td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
.st{{color:#fff;border-radius:4px;padding:1px 6px}}.err{{max-width:40em;color:#842029}}</style></head>
<body><h1>{html_mod.escape(title)}</h1><p>{len(runs)} runs, newest first; generated {_iso(utcnow())}.</p>
<table><tr><th>job</th><th>scheduled for (UTC)</th><th>status</th><th>attempt</th><th>started</th>
<th>seconds</th><th>output</th><th>error</th><th>run</th></tr>
{''.join(rows)}</table></body></html>
"""


def write_history(workspace: Home, path: str | os.PathLike[str] | None = None, *, job: str | None = None) -> Path:
    """Write :func:`history_html` to ``path`` (default ``<workspace>/runs/index.html``)."""
    target = Path(path) if path is not None else Path(workspace.path) / "runs" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = history_html(workspace, job=job, base=target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")  # schedulers may race
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
