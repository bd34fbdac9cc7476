"""Runs and their history: one attempt at one slot of a job, from queued to its final status.

A run row is unique per ``(job, scheduled_for, attempt)``, so a slot's attempt is inserted
once however many schedulers try (:func:`insert_run`); a queued run becomes ``running`` by
a conditional update that only one scheduler can win (:func:`claim_run`), and only the
scheduler that claimed it records how it ended (:func:`finish_run`). Runs carry their
scheduler's id and a heartbeat, so the runs of a scheduler that died can be found.

This module is the only one that reads or writes the ``runs`` table. The functions that
take a connection work inside the caller's transaction (:mod:`procestra.schedule.scheduler`);
:func:`list_runs`, :func:`get_run` and the history page (:func:`write_history`) read on
their own, and never load the notebook machinery.
"""

from __future__ import annotations

import html as html_mod
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.errors import InvalidArgumentError
from procestra.schedule import jobs
from procestra.schedule.exceptions import JobNotFoundError, RunNotFoundError
from procestra.schedule.jobs import iso
from procestra.schedule.runner import CellError, RunResult
from procestra.schedule.tables import prepare
from procestra.store import ops
from procestra.store.home import output_path
from procestra.store.ops import from_iso, to_iso, utcnow

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "FINAL",
    "STATUSES",
    "STATUS_COLOURS",
    "Run",
    "get_run",
    "history_html",
    "list_runs",
    "write_history",
]

STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "skipped", "cancelled")
FINAL = frozenset({"succeeded", "failed", "timed_out", "skipped", "cancelled"})
STATUS_COLOURS = {"queued": "#6c757d", "running": "#0d6efd", "succeeded": "#198754", "failed": "#dc3545",
                  "timed_out": "#fd7e14", "skipped": "#adb5bd", "cancelled": "#6f42c1"}


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
        return {"run": self.run_id, "job": self.job, "scheduled_for": iso(self.scheduled_for),
                "status": self.status, "attempt": self.attempt, "output": self.output}

    def to_dict(self) -> dict[str, Any]:
        err = self.error
        return {**self.summary(), "trigger": self.trigger, "queued_at": iso(self.queued_at),
                "not_before": iso(self.not_before), "started_at": iso(self.started_at),
                "ended_at": iso(self.ended_at), "seconds": self.seconds, "worker": self.worker,
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


def insert_run(con: sqlite3.Connection, job: str, slot: datetime, attempt: int, status: str, trigger: str,
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
    return read_run(con, run_id) if cur.rowcount == 1 else None


def list_runs(workspace: Home, *, job: str | None = None, status: str | None = None,
              limit: int | None = None) -> list[Run]:
    """The run history, newest slot first; filtered by ``job`` and ``status``."""
    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}", parameter="status")
    if limit is not None and limit < 1:
        raise InvalidArgumentError(f"limit must be at least 1, not {limit}", parameter="limit")
    prepare(workspace)
    where, args = ops.where(("job = ?", job), ("status = ?", status))
    sql = "SELECT * FROM runs" + where
    sql += " ORDER BY scheduled_for DESC, attempt DESC, queued_at DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with ops.connect(workspace) as con:
        rows = con.execute(sql, args).fetchall()
        if not rows and job is not None and jobs.find_job(con, job) is None and not con.execute(
                "SELECT 1 FROM runs WHERE job = ? LIMIT 1", [job]).fetchone():
            raise JobNotFoundError(job, jobs.job_names(con))
    return [_run_from_row(r) for r in rows]


def get_run(workspace: Home, run_id: str) -> Run:
    """One run by id, or :class:`RunNotFoundError`."""
    prepare(workspace)
    with ops.connect(workspace) as con:
        row = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    return _run_from_row(row)


# -- the runs table inside a caller's transaction ----------------------------------------------
def read_run(con: sqlite3.Connection, run_id: str) -> Run:
    """Run ``run_id``, which must exist."""
    return _run_from_row(con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).fetchone())


def has_active_run(con: sqlite3.Connection, job: str) -> bool:
    """Whether a run of ``job`` is queued or running."""
    return con.execute("SELECT 1 FROM runs WHERE job = ? AND status IN ('queued', 'running') LIMIT 1",
                       [job]).fetchone() is not None


def has_running_run(con: sqlite3.Connection, job: str) -> bool:
    """Whether a run of ``job`` is running."""
    return con.execute("SELECT 1 FROM runs WHERE job = ? AND status = 'running' LIMIT 1", [job]).fetchone() is not None


def slot_statuses(con: sqlite3.Connection, job: str, slot: datetime) -> list[str]:
    """The statuses of ``job``'s attempts at ``slot``, first attempt first (empty: no run yet)."""
    rows = con.execute("SELECT status FROM runs WHERE job = ? AND scheduled_for = ? ORDER BY attempt",
                       [job, to_iso(slot)]).fetchall()
    return [r[0] for r in rows]


def slot_outputs(con: sqlite3.Connection, job: str, slot: datetime) -> dict[str, Any]:
    """What the latest succeeded attempt of ``job`` at ``slot`` recorded (empty when none succeeded)."""
    row = con.execute("SELECT outputs FROM runs WHERE job = ? AND scheduled_for = ? AND status = 'succeeded' "
                      "ORDER BY attempt DESC LIMIT 1", [job, to_iso(slot)]).fetchone()
    return json.loads(row[0] or "{}") if row else {}


def ready_runs(con: sqlite3.Connection, job_names: list[str], now: datetime,
               limit: int = 500) -> list[tuple[str, str]]:
    """``(run_id, job)`` of the queued runs of ``job_names`` whose backoff is over at ``now``, oldest slot first."""
    if not job_names:
        return []
    rows = con.execute(
        f"SELECT run_id, job FROM runs WHERE status = 'queued' AND job IN ({','.join('?' * len(job_names))}) "
        f"AND (not_before IS NULL OR not_before <= ?) ORDER BY scheduled_for, attempt LIMIT {int(limit)}",
        [*job_names, to_iso(now)]).fetchall()
    return [(r[0], r[1]) for r in rows]


def queued_slots(con: sqlite3.Connection) -> list[tuple[str, str, datetime | None]]:
    """``(job, scheduled_for as stored, not_before)`` of every queued run."""
    rows = con.execute("SELECT job, scheduled_for, not_before FROM runs WHERE status = 'queued'").fetchall()
    return [(r["job"], r["scheduled_for"], from_iso(r["not_before"])) for r in rows]


def claim_run(con: sqlite3.Connection, run_id: str, worker: str, now: datetime) -> Run | None:
    """Make queued run ``run_id`` running for ``worker``; None when another scheduler claimed it first."""
    cur = con.execute("UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ? "
                      "WHERE run_id = ? AND status = 'queued'", [worker, to_iso(now), to_iso(now), run_id])
    return read_run(con, run_id) if cur.rowcount == 1 else None


def beat(con: sqlite3.Connection, worker: str, run_ids: list[str], now: datetime) -> None:
    """Refresh the heartbeat of ``worker``'s running runs among ``run_ids``."""
    con.execute(f"UPDATE runs SET heartbeat_at = ? WHERE worker = ? AND status = 'running' AND run_id IN "
                f"({','.join('?' * len(run_ids))})", [to_iso(now), worker, *run_ids])


def finish_run(con: sqlite3.Connection, run_id: str, worker: str, status: str, result: RunResult,
               now: datetime) -> Run | None:
    """Record how ``worker``'s running run ended; None when it is not running for ``worker`` any more."""
    err = result.error
    cur = con.execute(
        "UPDATE runs SET status = ?, ended_at = ?, output = ?, html = ?, outputs = ?, error_cell = ?, "
        "error_name = ?, error_value = ? WHERE run_id = ? AND status = 'running' AND worker = ?",
        [status, to_iso(now), result.output, result.html, json.dumps(result.outputs, default=str),
         err.cell_index if err else None, err.ename if err else None, err.evalue if err else None,
         run_id, worker])
    return read_run(con, run_id) if cur.rowcount == 1 else None


def running_elsewhere(con: sqlite3.Connection, worker: str) -> list[tuple[Run, str]]:
    """The running runs of other schedulers than ``worker``, with their last heartbeat (as stored)."""
    rows = con.execute("SELECT * FROM runs WHERE status = 'running' AND worker <> ?", [worker]).fetchall()
    return [(_run_from_row(r), r["heartbeat_at"] or "") for r in rows]


def fail_lost_run(con: sqlite3.Connection, run_id: str, now: datetime, why: str) -> None:
    """Mark running run ``run_id`` failed with ``WorkerLost``: its scheduler stopped without finishing it."""
    con.execute("UPDATE runs SET status = 'failed', ended_at = ?, error_name = 'WorkerLost', "
                "error_value = ? WHERE run_id = ? AND status = 'running'", [to_iso(now), why, run_id])


def cancel_queued(con: sqlite3.Connection, job: str, now: datetime, reason: str) -> list[Run]:
    """Cancel ``job``'s queued runs; returns them as they were."""
    found = [_run_from_row(r) for r in
             con.execute("SELECT * FROM runs WHERE job = ? AND status = 'queued'", [job]).fetchall()]
    for run in found:
        con.execute("UPDATE runs SET status = 'cancelled', ended_at = ?, reason = ? WHERE run_id = ?",
                    [to_iso(now), reason, run.run_id])
    return found


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
            f"<tr><td>{html_mod.escape(r.job)}</td><td>{html_mod.escape(iso(r.scheduled_for) or '')}</td>"
            f'<td><span class="st" style="background:{colour}">{r.status}</span></td><td>{r.attempt}</td>'
            f"<td>{html_mod.escape(iso(r.started_at) or '')}</td><td>{secs}</td>"
            f"<td>{link(r.output, 'ipynb')} {link(r.html, 'html')}</td><td class='err'>{err}</td>"
            f"<td><code>{html_mod.escape(r.run_id)}</code></td></tr>")
    title = f"Runs of {job}" if job else "Procestra runs"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html_mod.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em}}table{{border-collapse:collapse;font-size:14px}}
td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}
.st{{color:#fff;border-radius:4px;padding:1px 6px}}.err{{max-width:40em;color:#842029}}</style></head>
<body><h1>{html_mod.escape(title)}</h1><p>{len(runs)} runs, newest first; generated {iso(utcnow())}.</p>
<table><tr><th>job</th><th>scheduled for (UTC)</th><th>status</th><th>attempt</th><th>started</th>
<th>seconds</th><th>output</th><th>error</th><th>run</th></tr>
{''.join(rows)}</table></body></html>
"""


def write_history(workspace: Home, path: str | os.PathLike[str] | None = None, *, job: str | None = None) -> Path:
    """Write :func:`history_html` to ``path`` (default ``<workspace>/runs/index.html``)."""
    if path is not None:
        target = output_path(path, parameter="out")
    else:
        target = Path(workspace.path) / "runs" / "index.html"
        target.parent.mkdir(parents=True, exist_ok=True)
    text = history_html(workspace, job=job, base=target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")  # schedulers may race
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
