"""The scheduler: plans due slots, claims runs once, runs them, records how they end; ticks and the daemon.

Jobs (:mod:`procestra.schedule.jobs`) and runs (:mod:`procestra.schedule.runs`) live in
the operational store (``ops.sqlite`` or PostgreSQL, see :mod:`procestra.store.ops`).

- **Planning** (:meth:`Scheduler.plan`): the slots due since a job's cursor become
  ``queued`` runs, or ``skipped`` ones by the catch-up policy (``none``: only slots
  within ``grace`` of now; ``latest``: the newest due slot; ``all``: the newest
  ``catchup_limit``) and the overlap policy (``skip`` while a run of the job is active).
  A run row is unique per ``(job, scheduled_for, attempt)`` and inserted in the same
  transaction that moves the cursor, so two schedulers never plan a slot twice.
- **Claiming**: a queued run becomes ``running`` by a conditional ``UPDATE`` in a write
  transaction; only one scheduler's update can succeed. Jobs with ``overlap`` skip or
  queue run one at a time.
- **Running**: an executor (:mod:`procestra.schedule.executors`) runs the notebook
  (:mod:`procestra.schedule.runner`); the outcome, failing cell, outputs and files are
  recorded; a failure with retries left queues the next attempt after an exponential
  backoff; the final outcome is announced (:mod:`procestra.schedule.notify`); dependants
  (``depends_on``) are queued for the same slot with the upstream outputs as parameters,
  or skipped if an upstream failed.
- **Crash safety**: runs carry their scheduler's id and a heartbeat; a scheduler that
  dies leaves runs that the next pass marks failed (``WorkerLost``) and retries.
- Every step is also an event in the ``jobs`` log of the event store, via the outbox.

Importing this module loads no notebook machinery (papermill, nbformat, jupyter_client,
dask): runs load it when they start.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.errors import InvalidArgumentError
from procestra.schedule import jobs, runs
from procestra.schedule.exceptions import JobNotFoundError, NotebookError
from procestra.schedule.executors import Executor, LocalExecutor, RunSpec
from procestra.schedule.jobs import Job, fire_times, iso
from procestra.schedule.notify import send
from procestra.schedule.runner import CellError, RunResult
from procestra.schedule.runs import FINAL, Run, get_run, write_history
from procestra.schedule.tables import prepare
from procestra.store import ops
from procestra.store.ops import Event, to_iso, utcnow

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "JOBS_LOG",
    "Scheduler",
    "TickResult",
    "remove_job",
    "run_now",
    "stop_on_signals",
    "tick",
]

log = logging.getLogger(__name__)

JOBS_LOG = "jobs"
MAX_SKIPS_RECORDED = 100  # missed slots recorded as skipped runs per job and pass; older ones are counted
_HEARTBEAT = float(os.environ.get("PROCESTRA_HEARTBEAT", "10"))
_STALE = float(os.environ.get("PROCESTRA_STALE_AFTER", "120"))
_HOST = socket.gethostname()


def _event(run: Run, activity: str, ts: datetime, *, lifecycle: str = "complete", resource: str | None = None,
           **attrs: Any) -> Event:
    return Event(case_id=f"{run.job}@{run.scheduled_for.strftime('%Y-%m-%dT%H:%M:%SZ')}", activity=activity,
                 timestamp=ts, lifecycle=lifecycle, resource=resource or run.worker or "scheduler",
                 attributes={"job": run.job, "run_id": run.run_id, "scheduled_for": iso(run.scheduled_for),
                             "attempt": run.attempt, "trigger": run.trigger, **attrs})


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
        prepare(workspace)
        self.runs_dir = Path(workspace.path).resolve() / "runs" / "jobs"

    # planning ---------------------------------------------------------------------------
    def plan(self, now: datetime | None = None) -> list[Run]:
        """Turn the slots due at ``now`` into queued (or skipped) runs; returns the new runs."""
        now = now or utcnow()
        with ops.connect(self.workspace) as con:
            due = jobs.due_jobs(con, now)
        if not due:
            return []
        planned: list[Run] = []
        with ops.transaction(self.workspace) as con:
            wall = utcnow()
            for name in due:
                found = jobs.enabled_job(con, name)
                if found is not None:
                    job, cursor = found
                    planned += self._plan_job(con, job, cursor, now, wall)
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
        busy = job.overlap == "skip" and runs.has_active_run(con, job.name)
        out: list[Run] = []
        events: list[Event] = []
        for t in slots:
            if t in run and not busy:
                r = runs.insert_run(con, job.name, t, 1, "queued", "schedule", wall, notebook=job.notebook,
                                    parameters=job.parameters)
                if r:
                    events.append(_event(r, "queue", wall))
            else:
                reason = "a run of the job was still active (overlap skip)" if t in run else \
                    f"missed while no scheduler ran (catch-up {job.catchup})"
                r = runs.insert_run(con, job.name, t, 1, "skipped", "schedule", wall, notebook=job.notebook,
                                    reason=reason)
                if r:
                    events.append(_event(r, "skip", wall, reason=reason))
            if r:
                out.append(r)
        if total > len(slots):
            log.warning("job %s: %d older missed slots were not recorded", job.name, total - len(slots))
        jobs.advance_cursor(con, job.name, now)
        ops.emit(con, JOBS_LOG, events)
        return out

    def _plan_dependants(self, con: sqlite3.Connection, upstream: str, slot: datetime, wall: datetime) -> None:
        """Queue (or skip) the jobs that depend on ``upstream`` for ``slot``, once all their upstreams are final."""
        for job in jobs.dependants(con, upstream):
            if runs.slot_statuses(con, job.name, slot):
                continue
            state = {}
            for dep in job.depends_on:
                statuses = runs.slot_statuses(con, dep, slot)
                state[dep] = ("succeeded" if "succeeded" in statuses else
                              "pending" if not statuses or any(s in ("queued", "running") for s in statuses)
                              else statuses[-1])
            if any(s == "pending" for s in state.values()):
                continue
            bad = [d for d, s in state.items() if s != "succeeded"]
            if bad:
                reason = f"upstream {bad[0]} {state[bad[0]]}"
                r = runs.insert_run(con, job.name, slot, 1, "skipped", "dependency", wall, notebook=job.notebook,
                                    reason=reason)
                if r:
                    ops.emit(con, JOBS_LOG, [_event(r, "skip", wall, reason=reason)])
                    self._plan_dependants(con, job.name, slot, wall)
            else:
                r = runs.insert_run(con, job.name, slot, 1, "queued", "dependency", wall, notebook=job.notebook,
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
            taken: set[str] = set()
            for run_id, name in runs.ready_runs(con, jobs.enabled_job_names(con), wall):
                if len(claimed) >= self.free():
                    break
                job = jobs.read_job(con, name)
                if job.overlap != "allow" and (job.name in taken or runs.has_running_run(con, job.name)):
                    continue
                run = runs.claim_run(con, run_id, self.worker, wall)
                if run is None:
                    continue
                taken.add(job.name)
                ops.emit(con, JOBS_LOG, [_event(run, "run", wall, lifecycle="start")])
                claimed.append((run, job))
            upstream = {run.run_id: self._upstream_outputs(con, job, run.scheduled_for) for run, job in claimed}
        for run, job in claimed:
            self._submit(run, job, upstream[run.run_id])
        return [run for run, _ in claimed]

    def _upstream_outputs(self, con: sqlite3.Connection, job: Job, slot: datetime) -> dict[str, Any]:
        if not job.depends_on:
            return {}
        ups = {dep: runs.slot_outputs(con, dep, slot) for dep in job.depends_on}
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
            runs.beat(con, self.worker, ids, utcnow())

    def complete(self, run: Run, result: RunResult) -> Run | None:
        """Record how ``run`` ended; queue a retry or the dependants; announce a final outcome."""
        wall = utcnow()
        status = result.status if result.status in FINAL else "failed"
        err = result.error
        with ops.transaction(self.workspace) as con:
            rec = runs.finish_run(con, run.run_id, self.worker, status, result, wall)
            if rec is None:
                log.warning("run %s was taken over while it ran (its scheduler was thought dead); "
                            "its outcome %s is not recorded", run.run_id, status)
                return None
            attrs: dict[str, Any] = {"outcome": status, "seconds": rec.seconds}
            if err:
                attrs.update(error_name=err.ename, error_value=err.evalue[:2000], error_cell=err.cell_index)
            ops.emit(con, JOBS_LOG, [_event(rec, "run", wall, lifecycle="complete", **attrs)])
            final = self._after(con, rec, wall)
        log.info("run %s of job %s (slot %s, attempt %d): %s%s", rec.run_id, rec.job, iso(rec.scheduled_for),
                 rec.attempt, rec.status, f" ({err})" if err else "")
        if final:
            self._announce(rec)
        return rec

    def _after(self, con: sqlite3.Connection, rec: Run, wall: datetime) -> bool:
        """Queue a retry if one is left, else the dependants; True when ``rec`` is the slot's final outcome."""
        job = jobs.find_job(con, rec.job)
        if job and rec.status in ("failed", "timed_out") and rec.attempt <= job.retries:
            delay = job.retry_backoff * (2 ** (rec.attempt - 1))
            retry = runs.insert_run(con, job.name, rec.scheduled_for, rec.attempt + 1, "queued", "retry", wall,
                                    notebook=job.notebook, parameters=job.parameters,
                                    not_before=wall + timedelta(seconds=delay))
            if retry:
                ops.emit(con, JOBS_LOG, [_event(retry, "retry", wall, delay_seconds=delay)])
                return False
        if job:
            self._plan_dependants(con, job.name, rec.scheduled_for, wall)
        return True

    def _announce(self, rec: Run) -> None:
        try:
            job = jobs.get_job(self.workspace, rec.job)
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
            for run, heartbeat in runs.running_elsewhere(con, self.worker):
                host, _, rest = (run.worker or "").partition(":")
                pid = rest.partition(":")[0]
                gone = host == _HOST and pid.isdigit() and not _alive(int(pid))
                if not gone and heartbeat >= stale:
                    continue
                why = f"its scheduler {run.worker} stopped without finishing it"
                runs.fail_lost_run(con, run.run_id, wall, why)
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
            queued = runs.queued_slots(con)
        times = [not_before or utcnow() for job, slot, not_before in queued if (job, slot) in slots]
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
    from procestra.schedule.runner import check_kernel, run_notebook, validate_parameters  # papermill, later

    path = Path(notebook).expanduser()
    if not path.is_file():
        raise NotebookError("no such notebook" if not path.exists() else "not a file", path=str(path))
    params = validate_parameters(path, parameters or {})
    check_kernel(path, kernel)
    if timeout is not None and not timeout > 0:
        raise InvalidArgumentError(f"timeout must be positive, not {timeout}", parameter="timeout")
    prepare(workspace)
    sched = Scheduler(workspace, executor=_NoExecutor())
    job = f"adhoc/{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)[:60]}"
    now = utcnow()
    with ops.transaction(workspace) as con:
        run = runs.insert_run(con, job, now, 1, "running", "manual", now, notebook=str(path.resolve()),
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


def remove_job(workspace: Home, name: str) -> None:
    """Delete job ``name``; its queued runs are cancelled, its history is kept."""
    prepare(workspace)
    with ops.transaction(workspace) as con:
        jobs.delete_job(con, name)
        now = utcnow()
        for run in runs.cancel_queued(con, name, now, "job removed"):
            ops.emit(con, JOBS_LOG, [_event(run, "cancel", now, reason="job removed")])
