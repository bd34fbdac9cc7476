"""Run to-be models on SpiffWorkflow: one case in a worker's hands.

SpiffWorkflow gives the BPMN semantics (gateways, parallel and inclusive joins, boundary
events, timers, subprocesses, call activities, messages and signals); conditions and scripts
are evaluated in :mod:`procestra.engine.sandbox`, never with ``eval``. Bound service tasks run
through :mod:`procestra.engine.connectors`; user tasks become work items in an inbox. Models are
loaded by :mod:`procestra.engine.loading` (:func:`runnable`, :func:`spiff`).

**Durable state** lives in the operational store (:mod:`procestra.engine.journal`): a
*journal* of steps per case, and a *snapshot* of the workflow taken only when a case stops
being worked on (it waits for a person, a timer, a message or a retry), when a timer is armed,
and every :data:`SNAPSHOT_EVERY` steps. A :class:`CaseRunner` rebuilds a case by loading its
snapshot and replaying the few journal steps after it, with their recorded results (handlers
are not called again), then advances it one step at a time; what a step did waits in
:class:`Pending` until the worker commits the round (:mod:`procestra.engine.worker`).
Whole-workflow JSON per task, the usual design, is the cost this avoids.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from procestra.engine import journal, waiting
from procestra.engine.elements import apply_answers
from procestra.engine.exceptions import EngineError
from procestra.engine.iospec import data_error
from procestra.engine.journal import FINAL
from procestra.engine.loading import Runnable, deep_recursion, runnable, script_engine, spiff
from procestra.errors import ProcestraError
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.engine.worker import Worker

__all__ = ["SNAPSHOT_EVERY", "CaseRunner", "Pending", "Runnable", "runnable", "spiff"]

log = logging.getLogger(__name__)

#: A snapshot is also taken after this many journal steps of one case (bounds replay).
SNAPSHOT_EVERY = 50
#: Steps (scripts, gateways, events) a case may run in one go without waiting for anything, and the seconds they
#: may take: beyond either, a loop that never ends is stopped and the case fails naming it, and the worker goes on.
ENGINE_STEPS_LIMIT = 10_000
ENGINE_SECONDS_LIMIT = 10.0


# -- running cases -----------------------------------------------------------------------------
@dataclass
class Pending:
    """What one round of one case wrote, committed with the other cases' in one transaction."""

    steps: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)  # outbox rows (ops.outbox_rows)
    work: list[tuple[Any, ...]] = field(default_factory=list)
    cancel_work: list[tuple[str, int]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # completed work items applied this round
    delivered: list[str] = field(default_factory=list)  # inbox events (messages, signals) applied this round
    #: signals the case threw, ``(name, payload)``, for the other cases waiting for them
    signals: list[tuple[str, Any]] = field(default_factory=list)
    messages: list[tuple[int, str, Any]] = field(default_factory=list)  # (step index, name, payload)


class CaseRunner:
    """One case in a worker's hands: its SpiffWorkflow workflow, rebuilt from snapshot and journal."""

    def __init__(self, worker: Worker, row: sqlite3.Row, model: Runnable, steps: list[sqlite3.Row],
                 work_done: dict[tuple[str, int], sqlite3.Row], open_work: set[tuple[str, int]],
                 inbox: list[sqlite3.Row] | None = None, waits: set[tuple[str, str]] | None = None,
                 instances: dict[str, tuple[str, int]] | None = None) -> None:
        _, Workflow, serializer, TaskState = spiff()
        self.TaskState = TaskState
        self.worker = worker
        self.case_id: str = row["case_id"]
        self.model = model
        self.log = journal.runs_log(model.name)
        self.seq: int = row["seq"]
        self.snapshot_seq: int = row["snapshot_seq"]
        self.data: dict[str, Any] = json.loads(row["data"])
        self.status = "running"
        self.error: str | None = None
        self.wake_at: datetime | None = None
        self.needs_snapshot = False
        self.done = False
        self.work_done = work_done  # completed work items not yet applied: (element, occurrence) -> row
        self.open_work = open_work  # work items that exist and are open
        self.occurrence: dict[str, int] = {}  # element -> how many times it completed
        self.attempts: dict[tuple[str, int], int] = {}  # (element, occurrence) -> failed attempts
        self.retry_at: dict[tuple[str, int], datetime] = {}
        self.loops_done: set[Any] = set()  # multi-instance and loop tasks whose data went into the case data
        self.instances = dict(instances or {})  # user task instance id -> (element, occurrence) of its work item
        self.inbox = list(inbox or [])  # messages and signals sent to the case, not yet delivered, oldest first
        self.waits_stored = waits or set()  # the messages and signals the store lists the case as waiting for
        self.pending = Pending()
        self.lost = False
        if row["snapshot"]:
            self.wf = serializer.deserialize_json(row["snapshot"])
            self.wf.script_engine = script_engine()
        else:
            self.wf = Workflow(model.spec, model.subprocess_specs, script_engine=script_engine())
            self.wf.task_tree.data.update(self.data)
        for s in steps:  # counters from the whole journal; the workflow only from the snapshot on
            self._count(s)
            if s["seq"] > self.snapshot_seq:
                self._replay(s)
        waiting.uncaught_messages(self.wf)  # thrown again by the replay: they went out when first journaled
        self.armed = {t.id for t in waiting.waiting_tasks(self.wf) if waiting.has_timer(t)}  # in the store

    # bookkeeping ---------------------------------------------------------------------------
    def _count(self, s: sqlite3.Row) -> None:
        el, occ = s["element_id"], s["occurrence"]
        if s["kind"] in ("service", "user", "script", "error", "timer", "message", "signal", "throw") and \
                s["outcome"] in ("completed", "failed", "error", "cancelled", "fired", "caught", "sent", "not delivered"):
            self.occurrence[el] = max(self.occurrence.get(el, 0), occ)
        if s["kind"] == "retry" and el is not None:  # a handler's failed attempt (a user's case retry has no element)
            self.attempts[(el, occ)] = max(self.attempts.get((el, occ), 0), s["attempt"])
            self.retry_at[(el, occ)] = journal.when(s["ended"]) + timedelta(
                seconds=json.loads(s["data"] or "{}").get("delay", 0))

    def _loop_done(self, task: Any) -> None:
        """A multi-instance or loop task that completed: its data (the output collection) becomes case data."""
        if task.has_state(self.TaskState.COMPLETED) and not _instance(task) and task.id not in self.loops_done:
            self.loops_done.add(task.id)
            self.data.update(task.data)

    def _instance_task(self, element: str, occurrence: int) -> Any:
        """The ready user task instance whose work item is ``(element, occurrence)``, if the store knows it."""
        for key, where in self.instances.items():
            if where == (element, occurrence):
                task = self.wf.get_task_from_id(uuid.UUID(key)) if _is_uuid(key) else None
                if task is not None and task.state == self.TaskState.READY:
                    return task
        return None

    def _find(self, element: str, states: int) -> Any:
        """The first task of ``element`` in ``states`` that runs itself (not a multi-instance or loop task,
        which carries its instances' element id and completes when they have)."""
        for t in self.wf.get_tasks(state=states):
            if getattr(t.task_spec, "bpmn_id", None) == element and not isinstance(t.task_spec, _loop_task()):
                return t
        return None

    def _replay(self, s: sqlite3.Row) -> None:
        """Re-apply one acknowledged step to the workflow, with its recorded result."""
        TS = self.TaskState
        kind, el = s["kind"], s["element_id"]
        self.wf.do_engine_steps()
        data = json.loads(s["data"]) if s["data"] else {}
        if kind == "user" and s["outcome"] != "completed":
            return  # a user task cancelled by its timer: replaying the timer step cancelled it again
        if kind in ("service", "user"):
            task = self._instance_task(el, s["occurrence"]) if kind == "user" else None
            task = task or self._find(el, TS.STARTED | TS.READY)
            if task is None:
                raise EngineError(f"case {self.case_id}: cannot replay step {s['seq']} ({kind} {el}): the "
                                  "task is not waiting; the journal does not fit the model version")
            task.data.update(data)
            task.complete() if task.state == TS.STARTED else task.run()
        elif kind == "timer":
            waiting.replay_timer(self.wf, el)
        elif kind in ("message", "signal") and s["outcome"] == "caught":
            waiting.deliver(self.wf, kind, data["name"], data["payload"])
        elif kind == "error":
            self._throw(el, data.get("code"), data.get("message", ""))
        # No engine steps after the step: script tasks that follow it run in the next live round,
        # where they are journaled (a dead worker may have run them without committing).

    # one round ---------------------------------------------------------------------------
    def _record(self, kind: str, element: str | None, name: str | None, outcome: str, started: datetime,
                ended: datetime, *, occurrence: int = 1, attempt: int = 1, resource: str | None = None,
                error: str | None = None, data: Any = None, event: bool = True) -> None:
        self.seq += 1
        t0, t1 = journal.iso(started), journal.iso(ended)
        self.pending.steps.append((self.case_id, self.seq, kind, element, name, occurrence, attempt, resource,
                                   outcome, error, None if data is None else journal.dumps(data), t0, t1))
        if event and name:
            attrs: dict[str, Any] = {"outcome": outcome, "attempt": attempt, "element": element or "",
                                     "model_version": self.model.version}
            if error:
                attrs["error"] = error[:2000]
            # outbox rows as ops.outbox_rows makes them, without its checks: the engine's own values
            text = json.dumps(attrs, sort_keys=True)
            self.pending.events += [
                (ops.new_event_uid(), self.log, self.case_id, name, t0, "start", resource, text),
                (ops.new_event_uid(), self.log, self.case_id, name, t1, "complete", resource, text)]

    def advance(self) -> None:
        """Run what can run now, at most one handler call; sets ``done`` when the case blocks or ends.

        Tasks inside subprocesses and call activities count like any other; the subprocess or call
        activity itself waits (STARTED) until its inside ends, and is no task to run.
        """
        from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask

        with deep_recursion(len(self.model.spec.task_specs)):  # SpiffWorkflow predicts along the chain by calls
            self._advance(SubWorkflowTask)

    def _advance(self, SubWorkflowTask: Any) -> None:
        TS = self.TaskState
        now = journal.now()
        try:
            self._engine_steps()
            # completed human tasks first: a person who finished before the SLA timer came due
            # wins, even if no worker ran in between; the timer wins only if it was due earlier
            for task in self.wf.get_tasks(state=TS.READY):
                if getattr(task.task_spec, "manual", False) and self._completed_in_time(task) and \
                        self._user_task(task):
                    return
            if self.inbox and not self._timer_first(now):  # what came first: the message or the due timer
                self._deliver(now)
                return
            if self._fire_timers(now):
                return
            if self.inbox:
                self._deliver(now)
                return
            if self.wf.is_completed():
                self._finish()
                return
            # human tasks: apply completions, open new work items
            for task in self.wf.get_tasks(state=TS.READY):
                if getattr(task.task_spec, "manual", False) and self._user_task(task):
                    return
            # service tasks: one handler call per round
            waiting_retry: list[datetime] = []
            for task in self.wf.get_tasks(state=TS.STARTED):
                if isinstance(task.task_spec, (SubWorkflowTask, _loop_task())):  # it completes when its inside ends
                    continue
                el = task.task_spec.bpmn_id
                occ = self.occurrence.get(el, 0) + 1
                due = self.retry_at.get((el, occ))
                if due is not None and due > now:
                    waiting_retry.append(due)
                    continue
                self._service_task(task, el, occ)
                return
            self._block(waiting_retry)
        except ProcestraError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - SpiffWorkflow errors: a model fault, not a worker crash
            self._fail(data_error(exc) or f"{type(exc).__name__}: {exc}")

    def _engine_steps(self) -> None:
        script_tasks: list[Any] = []
        count, last = 0, collections.deque[str](maxlen=4)
        deadline = time.monotonic() + ENGINE_SECONDS_LIMIT

        def did(task: Any) -> None:
            nonlocal count
            count += 1
            el = getattr(task.task_spec, "bpmn_id", None)
            if el and (not last or last[-1] != el):
                last.append(el)
            if count >= ENGINE_STEPS_LIMIT or (count % 256 == 0 and time.monotonic() > deadline):
                raise EngineError(f"loop limit reached at element {last[-1] if last else '?'}: the case ran "
                                  f"{count:,} steps in one go without waiting for anything (last: {' -> '.join(last)})"
                                  "; fix the loop's condition and start the case again")  # fmt: skip
            if type(task.task_spec).__name__ == "ScriptTask" or waiting.throws(task):
                script_tasks.append(task)  # a throw event that throws nothing is journaled as nothing
            elif isinstance(task.task_spec, _loop_task()):
                self._loop_done(task)

        started = journal.now()
        try:
            self.wf.do_engine_steps(did_complete_task=did)
        finally:  # scripts that ran before a failure (a later script, a gateway) are journaled with their data
            self._scripts_done(script_tasks, started, waiting.uncaught_messages(self.wf))

    def _scripts_done(self, script_tasks: list[Any], started: datetime, outgoing: list[tuple[str, Any]]) -> None:
        """Journal the scripts (with their data) and signal or message throw events that engine steps ran, in order.

        A thrown signal also goes to every other case waiting for it (with no data: the thrower's case
        data stays its own), and a message nothing in the case caught (``outgoing``) goes out with the
        thrower's data as SpiffWorkflow's payload, both queued in this round's commit; the journal step
        keeps a replay from throwing it again."""
        for task in script_tasks:
            el = task.task_spec.bpmn_id
            names = waiting.thrown_messages(task)
            if names:
                out = next(((n, payload) for n, payload in outgoing if n in names), None)
                if out is None:
                    continue  # caught inside the case: SpiffWorkflow delivered it
                outgoing.remove(out)
                occ = self.occurrence[el] = self.occurrence.get(el, 0) + 1
                self._record("throw", el, task.task_spec.bpmn_name or el, "sent", started, journal.now(),
                             occurrence=occ, resource=self.worker.name, data={"messages": [out[0]]})
                self.pending.messages.append((len(self.pending.steps) - 1, out[0], _json_value(
                    out[1], f"the message {out[0]!r} thrown at {el}")))
                continue
            signals = waiting.thrown_signals(task)
            if waiting.throws(task) and not signals:
                continue  # a none, error or escalation throw: SpiffWorkflow handled it, nothing to journal here
            occ = self.occurrence.get(el, 0) + 1
            self.occurrence[el] = occ
            if signals:
                self.pending.signals += waiting.signal_payloads(task)
                self._record("throw", el, task.task_spec.bpmn_name or el, "sent", started, journal.now(),
                             occurrence=occ, resource=self.worker.name, data={"signals": signals})
                continue
            if not _instance(task):
                self.data.update(task.data)
            self._record("script", el, task.task_spec.bpmn_name or el, "completed", started, journal.now(),
                         occurrence=occ, resource=self.worker.name, event=True)

    def _fire_timers(self, now: datetime) -> bool:
        """Fire the timers that are due (one cycle repetition each); journal each firing."""
        moved = False
        live_before = self._live_user_tasks()
        for task in waiting.waiting_tasks(self.wf):
            if not waiting.has_timer(task):
                continue
            due = waiting.timer_due(task, now)
            if due is None:  # not armed yet: arming computes its due time
                task.task_spec.event_definition.has_fired(task)
                due = waiting.timer_due(task, now)
            if task.id not in self.armed:
                self.armed.add(task.id)
                self.needs_snapshot = True  # a timer's due time must survive a crash
            if due is None or due > now:
                continue
            fired = waiting.fire_timer(task)
            if fired is None:
                continue
            moved = True
            el, journaled = fired
            if journaled:
                occ = self.occurrence.get(el, 0) + 1  # a timer in a loop, or a cycle, fires once per pass
                self.occurrence[el] = occ
                name = self.model.elements[el].name if el in self.model.elements else ""
                self._record("timer", el, name or el, "fired", now, now, occurrence=occ, resource="timer",
                             event=bool(name), data={"due": journal.iso(due)})
                self.needs_snapshot = True
        if moved:
            self._engine_steps()
            self._cancel_interrupted(live_before, now)
        return moved

    def _timer_first(self, now: datetime) -> bool:
        """Whether a timer of the case came due before the oldest message or signal in its inbox was sent."""
        sent = ops.from_iso(self.inbox[0]["created"]) or now
        dues = [d for d in (waiting.timer_due(t, now) for t in waiting.waiting_tasks(self.wf)) if d is not None]
        return bool(dues) and min(dues) <= now and min(dues) < sent

    def waits(self) -> set[tuple[str, str]]:
        """The messages and signals the case waits for now (none once it ended)."""
        return set() if self.status in FINAL else waiting.waits_of(self.wf)

    def _deliver(self, now: datetime) -> None:
        """Deliver the oldest message or signal of the case's inbox (one step); journal who caught it."""
        row = self.inbox.pop(0)
        payload = json.loads(row["payload"])
        live_before = self._live_user_tasks()
        caught = waiting.deliver(self.wf, row["kind"], row["name"], payload)
        data = {"event": row["event_id"], "name": row["name"], "payload": payload}
        self.pending.delivered.append(row["event_id"])
        if caught is None:  # the case moved on since it was sent (or its correlation differs): journaled
            self._record(row["kind"], None, f"{row['kind']} {row['name']}", "uncaught", now, now,
                         resource="events", data=data, error="no event of the case catches it now")
            return
        el, name, added = caught
        occ = self.occurrence.get(el, 0) + 1
        self.occurrence[el] = occ
        self.data.update(added)
        self._record(row["kind"], el, name, "caught", ops.from_iso(row["created"]) or now, now, occurrence=occ,
                     resource="events", data=data)
        self._engine_steps()
        self._cancel_interrupted(live_before, now, by="events")

    # human tasks: one work item per instance (a multi-instance user task has several at once) --------
    def _occ_of(self, task: Any) -> int:
        """The occurrence (work item number) of user task instance ``task``: the one its work item has, or the
        next free one. A work item kept from before instances were recorded (or whose instance the workflow
        rebuilt under a new id) is taken over by the first instance without one, oldest first."""
        key, el = str(task.id), task.task_spec.bpmn_id
        found = self.instances.get(key)
        if found is not None:
            return found[1]
        live = {str(t.id) for t in self.wf.get_tasks(state=self.TaskState.READY)}
        taken = {o for k, (e, o) in self.instances.items() if e == el and k in live}
        orphans = sorted(o for e, o in (*self.open_work, *self.work_done) if e == el and o not in taken
                         and o > self.occurrence.get(el, 0))
        if orphans:
            occ = orphans[0]
        else:
            used = [o for e, o in (*self.instances.values(), *self.open_work, *self.work_done) if e == el]
            occ = max([self.occurrence.get(el, 0), *used]) + 1
        self.instances[key] = (el, occ)
        return occ

    def _completed_in_time(self, task: Any) -> bool:
        """Whether the user task has a completed work item, done before any due timer attached to it."""
        from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

        el = task.task_spec.bpmn_id
        done = self.work_done.get((el, self._occ_of(task)))
        if done is None:
            return False
        completed = ops.from_iso(done["completed_at"]) or journal.now()
        boundaries = {e.id for e in self.model.elements.values() if e.kind == "boundaryEvent" and e.attached_to == el}
        for t in self.wf.get_tasks(state=self.TaskState.WAITING):
            if t.task_spec.bpmn_id in boundaries and isinstance(getattr(t.task_spec, "event_definition", None),
                                                                  TimerEventDefinition):
                due = waiting.timer_due(t, completed)
                if due is not None and due < completed:
                    return False
        return True

    def _user_task(self, task: Any) -> bool:
        el = task.task_spec.bpmn_id
        occ = self._occ_of(task)
        done = self.work_done.pop((el, occ), None)
        if done is not None:
            form = json.loads(done["data"] or "{}")
            apply_answers(task.data, form, task=el)
            started = ops.from_iso(done["created"]) or journal.now()
            task.run()
            self.occurrence[el] = max(self.occurrence.get(el, 0), occ)
            if not _instance(task):
                apply_answers(self.data, form, task=el)
            else:
                self._loop_done(task.parent)
            self._record("user", el, task.task_spec.bpmn_name or el, "completed", started,
                         ops.from_iso(done["completed_at"]) or journal.now(), occurrence=occ,
                         resource=done["completed_by"], data=form)
            self.pending.applied.append(done["task_id"])
            self.needs_snapshot = True
            self._engine_steps()
            return True
        if (el, occ) not in self.open_work:
            element = self.model.elements.get(el)
            human = element.human if element is not None else None
            form = [asdict(f) | {"allowed": list(f.allowed)} for f in human.fields] if human else []
            due = None
            if human is not None and human.due_seconds:
                due = journal.iso(journal.now() + timedelta(seconds=human.due_seconds))
            self.pending.work.append((f"t-{uuid.uuid4().hex[:16]}", self.case_id, el,
                                      task.task_spec.bpmn_name or el, occ,
                                      human.candidate_group if human else None, journal.dumps(form),
                                      "claimed" if human is not None and human.assignee else "open",
                                      journal.iso(journal.now()), due, human.assignee if human else None,
                                      str(task.id), journal.dumps(_own_data(task)) if _instance(task) else None))
            self.needs_snapshot = True  # the instance's id, which its work item names, must be in the store
            self.open_work.add((el, occ))
        return False

    def _service_task(self, task: Any, el: str, occ: int) -> None:
        from procestra.engine.connectors import TaskError, idempotency_key, run_handler

        element = self.model.elements.get(el)
        name = task.task_spec.bpmn_name or el
        attempt = self.attempts.get((el, occ), 0) + 1
        started = journal.now()
        handler = element.handler if element is not None else None
        if handler is None and element is not None and element.kind == "serviceTask":  # a draft: never skip it
            raise EngineError(f"service task {element.label} has no handler, so the case cannot go on: bind it "
                              f"(procestra model bind {self.model.name} {el} --python mod:func) and start new cases")
        if handler is None:  # an unbound plain task: nothing to run, it just completes
            task.complete()
            self.occurrence[el] = occ
            self._record("service", el, name, "completed", started, journal.now(), occurrence=occ,
                         resource=self.worker.name, data={})
            return
        key = idempotency_key(self.case_id, el, occ)
        try:
            result = run_handler(handler, data=dict(task.data), idempotency_key=key, attempt=attempt,
                                 workspace=self.worker.workspace, case_id=self.case_id, task_id=el, task_name=name,
                                 output_dir=self.worker.output_dir / self.case_id if handler.kind == "notebook"
                                 else None, secrets=self.worker.secrets,
                                 occurrence=occ)  # runs/tasks/<case>/<task>-<occurrence>-<attempt>.ipynb
        except TaskError as exc:
            self._handler_failed(task, element, el, occ, attempt, started, exc)
            return
        out = dict(result.data)
        task.data.update(out)
        task.complete()
        self.occurrence[el] = occ
        if not _instance(task):  # an instance's outputs reach the case through its loop or multi-instance task
            self.data.update(out)
        else:
            self._loop_done(task.parent)
        self._record("service", el, name, "completed", started, journal.now(), occurrence=occ, attempt=attempt,
                     resource=self.worker.name, data=out)

    def _handler_failed(self, task: Any, element: Any, el: str, occ: int, attempt: int, started: datetime,
                        exc: Exception) -> None:
        name = task.task_spec.bpmn_name or el
        retry = element.retry if element is not None else None
        retryable = getattr(exc, "retryable", True)
        max_attempts = retry.max_attempts if retry is not None else 1
        if retryable and attempt < max_attempts:
            delay = retry.delay(attempt) if retry is not None else 0.0
            self.attempts[(el, occ)] = attempt
            self.retry_at[(el, occ)] = journal.now() + timedelta(seconds=delay)
            self._record("retry", el, name, "failed", started, journal.now(), occurrence=occ, attempt=attempt,
                         resource=self.worker.name, error=str(exc), data={"delay": delay})
            return
        boundary = self._error_boundary(el)
        if boundary is not None:
            self.occurrence[el] = occ
            self._record("error", el, name, "error", started, journal.now(), occurrence=occ, attempt=attempt,
                         resource=self.worker.name, error=str(exc),
                         data={"code": boundary.error_code, "message": str(exc)})
            self._throw(el, boundary.error_code, str(exc))
            self.needs_snapshot = True
            self._engine_steps()
            return
        self._record("service", el, name, "failed", started, journal.now(), occurrence=occ, attempt=attempt,
                     resource=self.worker.name, error=str(exc))
        self._fail(f"task {el} {name!r} failed after {attempt} attempt(s): {exc}")

    def _error_boundary(self, el: str) -> Any:
        for e in self.model.elements.values():
            if e.kind == "boundaryEvent" and e.attached_to == el and e.event == "error":
                return e
        return None

    def _throw(self, el: str, code: str | None, message: str) -> None:
        """Throw a BPMN error from task ``el``: its error boundary event catches it."""
        from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import ErrorEventDefinition
        from SpiffWorkflow.bpmn.util.event import BpmnEvent

        task = self._find(el, self.TaskState.STARTED | self.TaskState.READY)
        target = task.workflow if task is not None else self.wf
        cls = ErrorEventDefinition  # SpiffWorkflow's own, payload-aware one if the catching boundary event has it
        for spec in (task.workflow.spec.task_specs.values() if task is not None else ()):
            d = getattr(spec, "event_definition", None)
            if isinstance(d, ErrorEventDefinition) and getattr(spec, "bpmn_id", None) == getattr(
                    self._error_boundary(el), "id", None):  # fmt: skip
                cls = type(d)
        event = BpmnEvent(cls(code or "error", code=code), payload={"error": message}, target=target)
        self.wf.catch(event)

    def _live_user_tasks(self) -> dict[str, Any]:
        return {str(t.id): t for t in self.wf.get_tasks(state=self.TaskState.READY)
                if getattr(t.task_spec, "manual", False)}

    def _cancel_interrupted(self, before: dict[str, Any], now: datetime, by: str = "timer") -> None:
        """User tasks an interrupting timer (or message, signal) just cancelled: journal them, cancel their work items.

        The cancelled instance uses up its occurrence number, so a later instance of the same
        task (sent back after an escalation) gets a work item of its own; a completion that
        came in after the timer was due is set aside (it lost), so the case does not stay busy.
        """
        after = self._live_user_tasks()
        for key, task in before.items():
            if key in after:
                continue
            el = task.task_spec.bpmn_id
            occ = self._occ_of(task)
            self.occurrence[el] = max(self.occurrence.get(el, 0), occ)
            self._record("user", el, task.task_spec.bpmn_name or el, "cancelled", now, now, occurrence=occ,
                         resource=by)
            self.pending.cancel_work.append((el, occ))
            self.open_work.discard((el, occ))
            late = self.work_done.pop((el, occ), None)
            if late is not None:
                self.pending.applied.append(late["task_id"])

    def _block(self, retry_due: list[datetime]) -> None:
        """Nothing can run now: wait for a person, a timer, a message, a signal or a retry."""
        now = journal.now()
        due = list(retry_due)
        events = waiting.waiting_tasks(self.wf)
        for task in events:
            t = waiting.timer_due(task, now)
            if t is not None:
                due.append(t)
        self.wake_at = min(due) if due else None
        humans = any(getattr(t.task_spec, "manual", False) for t in self.wf.get_tasks(state=self.TaskState.READY))
        if not due and not humans and not events:
            self._fail("the case cannot go on: no task is ready and nothing is waiting (a gateway found no true "
                       "condition and has no default flow?)")
            return
        self.status = "waiting"
        self.needs_snapshot = True
        self.done = True

    def _finish(self) -> None:
        # the case ends with the data SpiffWorkflow's end task has: what a cancelled transaction set is gone, the
        # branches are merged as at their join, and a caught error's or escalation's payload is there
        self.data = _json_data(self.wf.data, "the case's end data")
        self.status = "completed"
        self.done = True
        self._record("end", None, None, "completed", journal.now(), journal.now(), resource=self.worker.name,
                     event=False)

    def _fail(self, message: str) -> None:
        self.status = "failed"
        self.error = message
        self.done = True
        self._record("fail", None, "Case failed", "failed", journal.now(), journal.now(), resource=self.worker.name,
                     error=message)

    def wants_snapshot(self) -> bool:
        """Whether this round's commit stores a snapshot: the case stops being worked on (waits), a timer
        was armed, or :data:`SNAPSHOT_EVERY` steps passed since the last one; never for a case that ended."""
        return (self.needs_snapshot or self.seq - self.snapshot_seq >= SNAPSHOT_EVERY) and self.status not in FINAL

    def snapshot(self) -> str:
        _, _, serializer, _ = spiff()
        return str(serializer.serialize_json(self.wf))


def _json_value(value: Any, what: str) -> Any:
    """``value`` if it is JSON (a message's payload), else an :class:`EngineError` naming ``what``."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{what} carries a value that is not JSON: {exc}") from None
    return value


def _json_data(data: Any, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; an :class:`EngineError` naming the keys that are not JSON (the sandbox keeps
    case data JSON, so this is a fault to report, never a reason to keep other data quietly)."""
    if not isinstance(data, dict):
        raise EngineError(f"{what} is not a JSON object but {type(data).__name__}")
    try:
        json.dumps(data)
        return dict(data)
    except (TypeError, ValueError):
        pass  # name the keys
    bad = []
    for key, value in data.items():
        try:
            json.dumps({key: value})
        except (TypeError, ValueError):
            bad.append(f"{key!r} ({type(value).__name__})")
    raise EngineError(f"{what} holds keys or values that are not JSON: {', '.join(bad[:10])}")


def _instance(task: Any) -> bool:
    """Whether ``task`` is one instance of a multi-instance or loop activity (its data stays its own)."""
    parent = task.parent  # SpiffWorkflow's tree: the task before it, or the loop task whose instance it is
    return parent is not None and isinstance(parent.task_spec, _loop_task()) and \
        parent.task_spec.task_spec == task.task_spec.name


def _own_data(task: Any) -> dict[str, Any]:
    """What an instance's data has that its multi-instance task's has not (its element of the collection)."""
    shared = task.parent.data
    return {k: v for k, v in task.data.items() if k not in shared or shared[k] != v}


@functools.lru_cache(maxsize=1)
def _loop_task() -> Any:
    """SpiffWorkflow's base class of multi-instance and standard loop tasks (imported on first use)."""
    from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask

    return LoopTask


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
