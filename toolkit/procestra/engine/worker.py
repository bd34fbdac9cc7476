"""Workers: processes that advance runnable cases, many at a time, and commit their steps together.

A :class:`Worker` (``procestra worker``) claims runnable cases with a lease
(``lease_owner``/``lease_until``); the lease is renewed with every commit and checked in it,
so two workers never record steps for the same case, and a case whose worker died is taken
over when its lease runs out. Each round advances every held case by one step
(:class:`~procestra.engine.runtime.CaseRunner`); the round's steps, work items, snapshots,
case updates and run events are then written in one transaction (*group commit*), so the cost
of an fsync is shared. A step is acknowledged when that transaction commits, and the case's
next step starts only then. A handler is called with an *idempotency key* (from case, element
and occurrence) that stays the same across retries and takeovers, so its external effects can
be deduplicated. A *poison case*, one whose worker died or hung holding it ``poison`` times in a
row on the same step (taken over that many times with no step journaled in between), is not run
again: the worker that would take it over next fails it with the evidence (``procestra retry``
runs it again). Timers and retry back-offs set the case's ``wake_at``; any worker fires what
came due, also after downtime. A background thread moves run events into the event store.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.engine import events, journal
from procestra.engine.connectors import Secrets
from procestra.engine.journal import FINAL
from procestra.engine.loading import deep_recursion
from procestra.engine.runtime import CaseRunner, Pending, Runnable, runnable
from procestra.errors import InvalidArgumentError, ProcestraError
from procestra.ingest.outbox import flush_outbox
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Worker", "WorkerReport"]

log = logging.getLogger(__name__)

#: Rounds one claim of cases runs before the cases still going are let go and claimed again in turn with
#: the other runnable cases (a round gives each case at most one handler call). Cases of the usual size
#: finish within a few rounds; a case looping through its handlers can hold a worker for this many only.
ROUNDS_PER_CLAIM = 64

#: The environment variable that sets how many takeovers on the same step make a case a poison case.
POISON_ENV = "PROCESTRA_POISON_TAKEOVERS"
#: ... and its default.
POISON_TAKEOVERS = 3


def _poison_limit(value: int | None) -> int:
    """The poison limit: ``value``, else the environment's, else :data:`POISON_TAKEOVERS`; a whole number >= 1."""
    if value is None:
        text = os.environ.get(POISON_ENV, "").strip()
        if not text:
            return POISON_TAKEOVERS
        try:
            value = int(text)
        except ValueError:
            raise InvalidArgumentError(f"{POISON_ENV} must be a whole number of at least 1, not {text!r}",
                                       parameter="poison") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"poison must be a whole number of at least 1, not {value!r}", parameter="poison")
    return value


@dataclass
class WorkerReport:
    """What a worker did until it stopped."""

    worker: str
    steps: int = 0
    cases_completed: int = 0
    cases_failed: int = 0
    rounds: int = 0
    commits: int = 0
    lost_leases: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Worker:
    """Advances runnable cases of a workspace: claims them with a lease, runs their steps,
    commits steps of many cases together, and fires timers when they come due.

    ``concurrency`` is how many cases one worker holds at once (their steps interleave and
    share commits). Several workers (processes, machines sharing the workspace) can run
    together; a case is only ever in one worker's hands. ``poison`` is how many takeovers of a case on
    the same step make it a poison case (default ``PROCESTRA_POISON_TAKEOVERS``, else 3).
    """

    def __init__(self, ws: Home, *, name: str | None = None, concurrency: int = 64, lease: float = 30.0,
                 poll: float = 0.2, flush_every: float = 5.0, poison: int | None = None) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be a whole number of at least 1, not {concurrency!r}",
                                       parameter="concurrency")
        if name is not None and (not name.strip() or any(ch in name for ch in "\t\r\n")):
            raise InvalidArgumentError(f"a worker's name must be non-empty text on one line, not {name!r}",
                                       parameter="name")
        self.poison = _poison_limit(poison)
        self.workspace = ws
        self.name = name or f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.concurrency = concurrency
        self.lease = float(lease)
        self.poll = float(poll)
        self.flush_every = float(flush_every)
        self.report = WorkerReport(self.name)
        self._stop = threading.Event()
        self._finished = threading.Event()  # run() returned: a stop's watchdog has nothing to do
        self._watchdog: threading.Thread | None = None
        self._con: sqlite3.Connection | None = None
        self._held: set[str] = set()  # cases in hand, whose leases the renewer thread extends
        self.output_dir = Path(ws.path) / "runs" / "tasks"
        self.secrets = Secrets(ws)
        journal.prepare(ws)

    def stop(self, *, within: float | None = None) -> None:
        """Ask :meth:`run` to return after the current round (signal handlers call this).

        With ``within`` (a worker process's SIGTERM, ``procestra worker --stop-timeout``): if the round is
        still running that many seconds later (a handler that hangs), it is abandoned uncommitted, the
        leases of the cases held are released and the process exits with status 1. Nothing of the round
        was acknowledged, so the next worker runs its steps again, with the same idempotency keys."""
        self._stop.set()
        if within is not None and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._abandon_after, args=(float(within),), daemon=True,
                                              name=f"{self.name}-stop")
            self._watchdog.start()

    def _abandon_after(self, seconds: float) -> None:
        if self._finished.wait(seconds):
            return
        held = sorted(self._held)
        try:
            with ops.transaction(self.workspace) as con:  # its own connection: the main thread is stuck
                journal.release_cases(con, held, self.name)
        except ProcestraError as exc:  # the leases then run out as after a crash
            log.error("%s: could not release the leases of %d cases: %s", self.name, len(held), exc)
        sys.stderr.write(f"error: worker {self.name} stopped after {seconds:g} s with a handler still running; "
                         f"its round was abandoned and its {len(held)} cases released\n")
        sys.stderr.flush()
        os._exit(1)

    # one connection for the worker's life: opening and closing (a WAL checkpoint) per round costs
    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._con is None:  # SQLite, or the PostgreSQL wrapper with the same surface (ops.connect)
            self._con = ops.open_connection(self.workspace, ops.lock_timeout())
        try:
            yield self._con
        except sqlite3.OperationalError as exc:  # busy, or a lost server connection: the next round reconnects
            self._close()
            raise ops.busy_or_error(ops.display_location(self.workspace), exc, ops.lock_timeout()) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as con, ops.write(con):
            yield con

    @staticmethod
    def _route(con: Any, case_id: str, pending: Pending, starters: dict[str, list[Runnable]], stamp: str) -> None:
        """Send the messages the case threw out of itself (in the round's commit, after its waits are stored);
        its throw steps say where each went, and one that reached nothing is logged (the thrower goes on, as in
        SpiffWorkflow, where the application gets it)."""
        for index, name, payload in pending.messages:
            d, refused = events.route_thrown(con, case_id, name, payload, starters.get(name, []), stamp)
            step = pending.steps[index]
            reached = bool(d.delivered or d.started)
            where = {"messages": [name], "delivered": list(d.delivered), "started": list(d.started)}
            journal.note_step(con, case_id, step[1], "sent" if reached else "not delivered",
                              {**where, "refused": refused} if refused else where)
            if not reached:
                log.warning("case %s threw the message %r at %s: no case waits for it and no model starts with it%s",
                            case_id, name, step[3], f" ({'; '.join(refused)})" if refused else "")

    def _close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None

    def run(self, *, until_idle: bool = False, max_seconds: float | None = None) -> WorkerReport:
        """Work until stopped (or, with ``until_idle``, until no case is runnable now or soon).

        Run events go to the event store from a background thread every ``flush_every``
        seconds (DuckDB works outside Python's lock), and once more at the end. A worker that runs
        until stopped (a worker process) first takes what is loaded by then (modules, SpiffWorkflow's
        classes) out of the cyclic collector's sweeps (``gc.freeze``): they live as long as the process,
        and every collection no longer walks them (about 9 % more cases per second).
        """
        if not until_idle:
            gc.collect()
            gc.freeze()
        t0 = time.monotonic()
        done = threading.Event()

        def flusher() -> None:
            while not done.wait(self.flush_every):
                self._flush()

        def renewer() -> None:  # a long handler (a notebook) must not lose its case's lease
            while not done.wait(self.lease / 3):
                self._renew_leases()

        thread = threading.Thread(target=flusher, name="procestra-flusher", daemon=True)
        thread.start()
        keeper = threading.Thread(target=renewer, name="procestra-lease", daemon=True)
        keeper.start()
        try:
            while not self._stop.is_set():
                if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                    break
                try:
                    worked = self.run_once()
                    if not worked and until_idle and not self._due_soon():
                        break
                except ops.OpsError as exc:
                    if not getattr(exc, "transient", False):
                        raise
                    # the store is locked or its server restarts: the leases keep our cases, try again
                    log.warning("%s: the operational store is not available (%s); retrying", self.name, exc)
                    self._close()
                    worked = False
                if not worked:
                    self._stop.wait(self.poll)
        finally:
            done.set()
            thread.join()
            keeper.join()
            self._flush()
            self._close()
            self.report.seconds = time.monotonic() - t0
            self._finished.set()
        return self.report

    def _flush(self) -> None:
        try:
            flush_outbox(self.workspace)
        except ProcestraError as exc:  # the store is busy: the next flush sends them
            log.warning("could not flush run events yet: %s", exc)

    def _due_soon(self, horizon: float = 1.0) -> bool:
        """Whether some case becomes runnable within ``horizon`` seconds (a retry back-off, a timer)."""
        soon = journal.iso(journal.now() + timedelta(seconds=horizon))
        with self._connection() as con:
            return journal.runnable_soon(con, soon)

    # claiming --------------------------------------------------------------------------------
    def _claim(self, limit: int) -> list[sqlite3.Row]:
        """Lease runnable cases. The poison cases among them are failed in the same transaction; a *suspect*
        (taken over, with no step journaled since) is run alone, the others let go again: if it hangs or kills
        this worker too, only it is taken over once more, so a case that hangs never drags others into poison."""
        now = journal.now()
        with self._transaction() as con:
            rows = journal.claim_cases(con, self.name, journal.iso(now + timedelta(seconds=self.lease)),
                                       journal.iso(now), limit)
            poisoned = [r for r in rows if r["takeovers"] >= self.poison]
            for row in poisoned:
                self._poison(con, row, now)
            rows = [r for r in rows if r["takeovers"] < self.poison]
            suspects = [r for r in rows if r["takeovers"] > 0 and r["takeover_seq"] == r["seq"]]
            if suspects:  # rows are oldest first
                journal.release_cases(con, [r["case_id"] for r in rows if r is not suspects[0]], self.name)
                rows = suspects[:1]
        self.report.cases_failed += len(poisoned)
        return rows

    def _poison(self, con: sqlite3.Connection, row: sqlite3.Row, now: Any) -> None:
        """Fail a case taken over :attr:`poison` times on the same step, with the evidence: the workers that held
        it and when, and the last step it journaled (it hung or died on the step after)."""
        case, stamp = row["case_id"], journal.iso(now)
        history = journal.takeover_history(row["takeover_log"])
        last = journal.last_step(con, case)
        at = None if last is None else {"seq": last["seq"], "kind": last["kind"], "element": last["element_id"],
                                        "name": last["name"], "ended": last["ended"]}
        where = "before its first step" if last is None else f"after step {last['seq']} (" + " ".join(
            str(x) for x in (last["kind"], last["element_id"], last["name"]) if x) + ")"
        holders = ", ".join(dict.fromkeys(h["held_by"] for h in history))
        message = (f"poison case: its worker died or hung holding it {len(history)} times in a row {where} "
                   f"(held by {holders}); `procestra retry {case}` runs it again")
        journal.poison_case(con, case, row["seq"] + 1, self.name, message,
                            {"takeovers": history, "last_step": at, "limit": self.poison}, stamp)
        ops.emit(con, journal.runs_log(row["model"]),
                 journal.step_events(case, "Case failed", now, self.name, "failed", message))
        log.error("%s: case %s %s", self.name, case, message)

    def _load(self, rows: list[sqlite3.Row]) -> list[CaseRunner]:
        runners = []
        models: dict[str, Runnable] = {}
        for row in rows:
            try:
                models[row["case_id"]] = runnable(self.workspace, row["model"], row["version"])
            except ProcestraError as exc:
                self._fail_case(row, str(exc))
        listening = [cid for cid, m in models.items() if m.listens]
        with self._connection() as con:  # the journals and work items of the whole batch in two queries
            steps_of, work_of = journal.journals(con, list(models))
            inbox_of, waits_of = journal.pending_events(con, listening) if listening else ({}, {})
        for row in rows:
            cid = row["case_id"]
            if cid not in models:
                continue
            try:
                steps = steps_of.get(cid, [])
                work = work_of.get(cid, [])
                applied = {(s["element_id"], s["occurrence"]) for s in steps if s["kind"] == "user"}
                done = {(w["element_id"], w["occurrence"]): w for w in work
                        if w["status"] == "completed" and not w["applied"]
                        and (w["element_id"], w["occurrence"]) not in applied}
                open_ = {(w["element_id"], w["occurrence"]) for w in work if w["status"] in ("open", "claimed")}
                instances = {w["instance"]: (w["element_id"], w["occurrence"]) for w in work if w["instance"]}
                with deep_recursion(len(models[cid].spec.task_specs)):  # SpiffWorkflow rebuilds by calls
                    runners.append(CaseRunner(self, row, models[cid], steps, done, open_, inbox_of.get(cid),
                                              waits_of.get(cid), instances))
            except ProcestraError as exc:
                self._fail_case(row, str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. a snapshot this SpiffWorkflow cannot read
                self._fail_case(row, f"the case cannot be rebuilt from its snapshot and journal: "
                                     f"{type(exc).__name__}: {exc}")
        return runners

    def _fail_case(self, row: sqlite3.Row, message: str) -> None:
        with self._transaction() as con:
            journal.fail_case(con, row["case_id"], self.name, message, journal.iso(journal.now()))

    def run_once(self) -> bool:
        """Claim a batch of runnable cases and run them until each blocks or ends; False if none."""
        rows = self._claim(self.concurrency)
        if not rows:
            return False
        active = self._load(rows)
        self._held = {r.case_id for r in active}
        rounds = 0
        while active:
            if rounds == ROUNDS_PER_CLAIM:  # fair: cases still going are let go, and claimed again in turn with the
                self._let_go(active)  # others (oldest update first), so a long or looping case starves nobody
                return True
            rounds += 1
            self.report.rounds += 1
            for r in active:
                r.advance()
            try:
                self._commit(active)
            except ops.OpsBusyError as exc:  # the store stayed locked: these cases are claimed again later
                log.warning("%s: could not store a round (%s); its cases will be run again", self.name, exc)
                return True
            active = [r for r in active if not r.done and not r.lost]
            self._held = {r.case_id for r in active}
        return True

    def _let_go(self, runners: list[CaseRunner]) -> None:
        """Release the leases of cases still going after a claim's rounds (their state is in the store)."""
        self._held = set()
        with self._transaction() as con:
            journal.release_cases(con, [r.case_id for r in runners], self.name)

    def _renew_leases(self) -> None:
        """Extend the leases of the cases this worker holds (its own connection: another thread)."""
        held = list(self._held)
        if not held:
            return
        until = journal.iso(journal.now() + timedelta(seconds=self.lease))
        try:
            with ops.transaction(self.workspace) as con:
                journal.renew_leases(con, held, self.name, until)
        except ProcestraError as exc:  # the next renewal, or the round's commit, tries again
            log.warning("%s: could not renew leases: %s", self.name, exc)

    def _commit(self, runners: list[CaseRunner]) -> None:
        """One transaction for the round: steps, events, work items and case rows of every runner.

        Everything is encoded before the transaction opens, so the write lock that all
        workers share is held only for the inserts. A runner whose lease was taken over (it
        ran out) or whose case was cancelled meanwhile is dropped, with what it did this round.
        """
        now = journal.now()
        stamp, lease_until = journal.iso(now), journal.iso(now + timedelta(seconds=self.lease))
        plans = []
        for r in runners:
            snap = r.snapshot() if r.wants_snapshot() else None
            if r.done:
                case = journal.stopped_case(r.case_id, r.status, journal.dumps(r.data), r.seq, stamp, r.error,
                                            journal.iso(r.wake_at) if r.wake_at else None)
            else:
                case = journal.running_case(r.case_id, journal.dumps(r.data), r.seq, stamp, lease_until)
            now_waits = r.waits() if r.model.listens else None
            plans.append((r, snap, case, r.pending.events, now_waits if now_waits != r.waits_stored else None))
        ids = [r.case_id for r in runners]
        thrown_out = {name for r, *_ in plans for _, name, _ in r.pending.messages}
        starters = events.starters_of(self.workspace, thrown_out) if thrown_out else {}
        try:
            with self._transaction() as con:
                updates: dict[str, list[tuple[Any, ...]]] = {}
                outbox: list[tuple[Any, ...]] = []
                steps: list[tuple[Any, ...]] = []
                work: list[tuple[Any, ...]] = []
                snaps: list[tuple[Any, ...]] = []
                applied: list[tuple[str]] = []
                cancel: list[tuple[str, str, int]] = []  # work items whose task a timer interrupted
                ended: list[tuple[str]] = []  # cases that ended: their open work items go
                delivered: list[tuple[str]] = []
                thrown: list[tuple[str, list[tuple[str, Any]]]] = []  # signals cases threw: to the others waiting for them
                waits: dict[str, set[tuple[str, str]]] = {}
                mine = journal.held_cases(con, ids, self.name)
                for r, snap, case, out_rows, new_waits in plans:
                    if r.case_id not in mine:
                        r.lost = True  # taken over (our lease ran out) or cancelled: drop this round
                        self.report.lost_leases += 1
                        continue
                    p = r.pending
                    steps += p.steps
                    work += p.work
                    cancel += [(r.case_id, el, occ) for el, occ in p.cancel_work]
                    if snap is not None:
                        snaps.append((snap, r.seq, r.case_id))
                    applied += [(task_id,) for task_id in p.applied]
                    delivered += [(event_id,) for event_id in p.delivered]
                    if p.signals:
                        thrown.append((r.case_id, p.signals))
                    if new_waits is not None:
                        waits[r.case_id] = new_waits
                    updates.setdefault(case[0], []).append(case[1])
                    if r.status in FINAL and (p.work or r.open_work or r.work_done):
                        ended.append((r.case_id,))
                    outbox += out_rows
                journal.write_round(con, steps=steps, work=work, snapshots=snaps, cancel=cancel, ended=ended,
                                    applied=applied, updates=updates, delivered=delivered, waits=waits)
                for sender, signals in thrown:
                    journal.broadcast(con, sender, signals, stamp)
                for r, *_ in plans:
                    if r.pending.messages and not r.lost:
                        self._route(con, r.case_id, r.pending, starters, stamp)
                ops.emit_rows(con, outbox)
        except ProcestraError:
            for r in runners:  # nothing of this round was stored: reload these cases from the store
                r.lost = True
            raise
        for r, snap, _, _, new_waits in plans:
            if r.lost:
                continue
            if new_waits is not None:
                r.waits_stored = new_waits
            self.report.steps += len(r.pending.steps)
            if snap is not None:
                r.snapshot_seq, r.needs_snapshot = r.seq, False
            if r.done and r.status == "completed":
                self.report.cases_completed += 1
            elif r.done and r.status in FINAL:
                self.report.cases_failed += 1
            r.pending = Pending()
        self.report.commits += 1
