"""Run to-be models on SpiffWorkflow: the workflow class, model loading, and one case in a worker's hands.

SpiffWorkflow gives the BPMN semantics (gateways, parallel and inclusive joins, boundary
events, timers, subprocesses, call activities); conditions and scripts are evaluated in
:mod:`procestra.engine.sandbox`, never with ``eval``. Bound service tasks run through
:mod:`procestra.engine.connectors`; user tasks become work items in an inbox.

:func:`spiff` imports SpiffWorkflow once and patches what costs: state lookups read the task
dict instead of walking the tree, and state changes skip building log records nobody reads.
:func:`runnable` parses a saved model version once per process (on a PostgreSQL store shared
by several machines, the version published to the store, so a version number means one model
everywhere).

**Durable state** lives in the operational store (:mod:`procestra.engine.journal`): a
*journal* of steps per case, and a *snapshot* of the workflow taken only when a case stops
being worked on (it waits for a person, a timer or a retry), when a timer is armed, and every
:data:`SNAPSHOT_EVERY` steps. A :class:`CaseRunner` rebuilds a case by loading its snapshot and
replaying the few journal steps after it, with their recorded results (handlers are not called
again), then advances it one step at a time; what a step did waits in :class:`Pending` until the
worker commits the round (:mod:`procestra.engine.worker`). Whole-workflow JSON per task, the
usual design, is the cost this avoids.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.engine import journal
from procestra.engine.elements import ACTIVITIES, Element
from procestra.engine.exceptions import EngineError
from procestra.engine.journal import FINAL
from procestra.engine.tobe import ToBeModel
from procestra.errors import ModelNotFoundError, ProcestraError
from procestra.models.repository import ModelRef, model_info
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.engine.worker import Worker
    from procestra.store.home import Home

__all__ = ["SNAPSHOT_EVERY", "CaseRunner", "Pending", "Runnable", "runnable", "spiff"]

log = logging.getLogger(__name__)

#: A snapshot is also taken after this many journal steps of one case (bounds replay).
SNAPSHOT_EVERY = 50


# -- models: SpiffWorkflow specs and our bindings ----------------------------------------------
@dataclass
class Runnable:
    """A saved version of a to-be model, ready to run: its SpiffWorkflow specs and our bindings by element."""

    name: str
    version: int
    tobe: ToBeModel
    spec: Any
    subprocess_specs: dict[str, Any]
    elements: dict[str, Element]


@functools.lru_cache(maxsize=1)
def spiff() -> Any:
    """SpiffWorkflow's parts, imported once (0.2 s), with a fast workflow class and a serializer."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG
    from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
    from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
    from SpiffWorkflow.util.task import TaskState

    class Workflow(BpmnWorkflow):  # type: ignore[misc]
        """SpiffWorkflow's workflow with state lookups over its task dicts instead of tree walks
        (the same tasks, 2x faster), and timers fired by the engine, explicitly and journaled."""

        completed: bool

        def _every_task(self) -> Iterable[Any]:
            """Its own tasks and those inside its subprocesses and call activities, at any depth, as
            SpiffWorkflow's tree walk finds them: each subprocess keeps its tasks in a dict of its own,
            and the top workflow holds every subprocess in ``subprocesses``."""
            own: Iterable[Any] = self.tasks.values()
            if not self.subprocesses:
                return own
            return itertools.chain(own, *(sp.tasks.values() for sp in self.subprocesses.values()))

        def get_tasks(self, first_task: Any = None, **kwargs: Any) -> list[Any]:
            if first_task is None and kwargs and set(kwargs) <= {"state", "spec_name"}:
                state, name = kwargs.get("state"), kwargs.get("spec_name")
                if name is None:  # the hot case (every engine step): one attribute test per task
                    return [t for t in self._every_task() if t._state & state]
                return [t for t in self._every_task()
                        if (state is None or t._state & state) and t.task_spec.name == name]
            tasks: list[Any] = super().get_tasks(first_task, **kwargs)
            return tasks

        def update_waiting_tasks(self) -> None:
            for task in [t for t in self._every_task() if t.state == TaskState.WAITING]:
                task.task_spec._update(task)

        def is_completed(self) -> bool:
            if not self.completed:
                self.completed = not any(t.state & TaskState.NOT_FINISHED_MASK for t in self.tasks.values())
            return self.completed

        def refresh_timers(self) -> None:  # the engine fires timers itself (Runner._fire_timers)
            return None

    import SpiffWorkflow.task as spiff_task

    if not getattr(spiff_task.Task, "_procestra_quiet", False):
        # SpiffWorkflow builds a dict of logging extras on every state change, even when its
        # logger drops the record: a tenth of its run time. Build it only when it is logged.
        extras = spiff_task.Task.collect_log_extras

        def collect_log_extras(self: Any, dct: Any = None) -> dict[str, Any]:
            return extras(self, dct) if spiff_task.logger.isEnabledFor(logging.DEBUG) or \
                spiff_task.logger.isEnabledFor(logging.INFO) else {}

        set_state = spiff_task.Task._set_state

        def _set_state(self: Any, value: int) -> None:  # the same, without naming the state for a dropped record
            if spiff_task.logger.isEnabledFor(logging.INFO):
                set_state(self, value)
            elif value != self._state:
                self.last_state_change = time.time()
                self._state = value

        spiff_task.Task.collect_log_extras = collect_log_extras
        spiff_task.Task._set_state = _set_state
        spiff_task.Task._procestra_quiet = True

    config = dict(DEFAULT_CONFIG)
    config[ServiceTask] = BpmnTaskSpecConverter
    config[Workflow] = config[BpmnWorkflow]  # snapshots restore as our class
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))
    return BpmnParser, Workflow, serializer, TaskState


_models: dict[tuple[str, str, int], Runnable] = {}
_models_lock = threading.Lock()


def runnable(ws: Home, name: str, version: int | None = None) -> Runnable:
    """The saved to-be model ``name`` (latest or ``version``), parsed once per process.

    On a PostgreSQL store shared by several machines, see :func:`_shared`.
    """
    stamp = None
    if version is None:  # the latest version: known while the model's directory is unchanged
        stamp = _models_stamp(ws, name)
        cached = _latest.get((str(ws.path), name))
        if stamp is not None and cached is not None and cached[0] == stamp:
            version = cached[1]
    if version is not None:  # saved versions never change: no need to read meta.json again
        with _models_lock:
            found = _models.get((str(ws.path), name, int(version)))
        if found is not None:
            return found
    if ops.backend(ws) == "postgresql":
        return _shared(ws, name, version)
    info = model_info(ws, name, version)  # ModelNotFoundError
    if stamp is not None:  # taken before meta.json was read: a version saved since changes it
        _latest[(str(ws.path), name)] = (stamp, info.version)
    key = (str(ws.path), info.name, info.version)
    with _models_lock:
        if key in _models:
            return _models[key]
    path = Path(info.path) / "model.bpmn"
    if not path.is_file():
        raise ModelNotFoundError(f"model {info.name!r} version {info.version} has no model.bpmn: save a to-be "
                                 "model with ToBeModel.save() to run it")
    tobe = ToBeModel.load(info.ref, ws=ws)
    parser = _parser()
    parser.add_bpmn_file(str(path))
    calls: list[Runnable] = []
    for element in tobe.elements.values():  # call activities: the called models' processes
        if element.kind == "callActivity" and element.called:
            ref = ModelRef.parse(element.called)
            called = runnable(ws, ref.name, ref.version)
            calls.append(called)
            parser.add_bpmn_file(str(Path(model_info(ws, called.name, called.version).path) / "model.bpmn"))
    spec, subs = _specs(parser, tobe.process_id, info.name, info.version)
    model = Runnable(info.name, info.version, tobe, spec, subs, _elements(info.name, info.version, tobe, calls))
    with _models_lock:
        _models[key] = model
    return model


def _elements(name: str, version: int, tobe: ToBeModel, calls: list[Runnable]) -> dict[str, Element]:
    """The elements a case of the model runs on, by id: its own and those of the models it calls.

    SpiffWorkflow names a task by its element id alone, so the engine finds the binding, form
    and boundary events of a task inside a call activity by that id. An activity or boundary
    event id that the model and a model it calls (or two called models) both use is refused,
    naming both, rather than one task running with the other's binding.
    """
    looked_up = (*ACTIVITIES, "boundaryEvent")
    out: dict[str, Element] = {}
    owner: dict[str, str] = {}
    sources = [(str(ModelRef(name, version)), tobe.elements),
               *((str(ModelRef(c.name, c.version)), c.elements) for c in calls)]
    for source, elements in sources:
        for eid, e in elements.items():
            if eid not in out:
                out[eid], owner[eid] = e, source
            elif owner[eid] != source and (e.kind in looked_up or out[eid].kind in looked_up):
                raise EngineError(f"model {name!r} version {version} cannot be run: the element id {eid!r} is used "
                                  f"by {owner[eid]} and by {source}, which it calls; the engine finds a task by its "
                                  "id, so rename one of them")
    return out


def _parser() -> Any:
    BpmnParser, _, _, _ = spiff()
    return BpmnParser()


def _specs(parser: Any, process_id: str, name: str, version: int) -> tuple[Any, Any]:
    """The workflow spec and subprocess specs ``parser`` read, or an :class:`EngineError` naming the version."""
    try:
        return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)
    except Exception as exc:  # SpiffWorkflow's ValidationException and friends
        raise EngineError(f"model {name!r} version {version} cannot be run: {exc}") from exc


_latest: dict[tuple[str, str], tuple[Any, int]] = {}  # (workspace, model) -> (directory stamp, latest version)


def _models_stamp(ws: Home, name: str) -> Any:
    """When ``name``'s directory last changed (saving a version renames a new ``v<N>`` into it)."""
    try:
        st = (Path(ws.models_dir) / name).stat()
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_mtime_ns)


_shared_bpmn: dict[tuple[str, str, int], bytes] = {}


def _shared(ws: Home, name: str, version: int | None) -> Runnable:
    """:func:`_model` on a shared store: the workspace's saved version, published to the store's
    ``model_versions`` on first use so that every machine runs the very same model, else (a
    worker on another machine) the published copy. A version number means one model on every
    machine: a local version that differs from the published one of that number is not run
    (the published one is, with a warning), so cases never change model between machines.
    """
    journal.prepare(ws)
    try:
        info = model_info(ws, name, version)
    except ModelNotFoundError as exc:
        info, missing = None, exc
        if "@" in name:  # "name@3", checked by model_info
            ref = ModelRef.parse(name)
            name, version = ref.name, ref.version
    if info is not None:
        name = info.name
    with ops.connect(ws) as con:
        if info is None and version is None:
            version = journal.latest_published(con, name)
        v = info.version if info is not None else version
        stored = None if v is None else journal.published(con, name, v)
    if info is None and stored is None:
        raise missing
    assert v is not None
    key = (str(ws.path), name, int(v))
    with _models_lock:
        if key in _models:
            return _models[key]
    if info is not None:
        path = Path(info.path) / "model.bpmn"
        if not path.is_file():
            raise ModelNotFoundError(f"model {name!r} version {v} has no model.bpmn: save a to-be model with "
                                     "ToBeModel.save() to run it")
        bpmn = path.read_bytes()
        if stored is not None and stored["sha256"] != hashlib.sha256(bpmn).hexdigest():
            log.warning("model %r version %s of %s differs from the version %s published to the shared operational "
                        "store %s by another workspace; the published one runs. Save your model as a new version "
                        "(and copy process_models/%s/ to the other workspaces) to run it", name, v, ws.path, v,
                        ops.display_location(ws), name)
            info = None
    if info is None:
        assert stored is not None
        bpmn = stored["bpmn"].encode("utf-8")
    digest = hashlib.sha256(bpmn).hexdigest()
    tobe = ToBeModel.from_xml(bpmn, source=str(ModelRef(name, v)))
    tobe.name = name
    parser = _parser()
    parser.add_bpmn_str(bpmn, filename=str(ModelRef(name, v)))
    pinned = json.loads(stored["called"]) if stored is not None else {}
    called_refs: dict[str, str] = {}
    calls: list[Runnable] = []
    for element in tobe.elements.values():  # call activities: the versions the publisher resolved
        if element.kind == "callActivity" and element.called:
            ref = ModelRef.parse(pinned.get(element.called) or element.called)
            called = runnable(ws, ref.name, ref.version)
            calls.append(called)
            called_refs[element.called] = str(ModelRef(called.name, called.version))
            text = _shared_bpmn.get((str(ws.path), called.name, called.version))
            if text is None:  # parsed before this process used the shared store
                text = (Path(model_info(ws, called.name, called.version).path) / "model.bpmn").read_bytes()
            parser.add_bpmn_str(text, filename=called_refs[element.called])
    spec, subs = _specs(parser, tobe.process_id, name, v)
    if stored is None:  # publish it, before any case of it can be stored
        assert info is not None
        meta = Path(info.path) / "meta.json"
        with ops.transaction(ws) as con:
            theirs = journal.publish(con, name, v, bpmn.decode("utf-8"), digest, journal.dumps(called_refs),
                                     meta.read_text(encoding="utf-8") if meta.is_file() else "{}",
                                     journal.iso(journal.now()))
        if theirs != digest:  # another workspace published a different one meanwhile: that one runs
            return _shared(ws, name, v)
    model = Runnable(name, int(v), tobe, spec, subs, _elements(name, int(v), tobe, calls))
    with _models_lock:
        _shared_bpmn[key] = bpmn
        _models[key] = model
    return model


@functools.lru_cache(maxsize=1)
def _script_engine() -> Any:
    from procestra.engine.sandbox import SandboxScriptEngine

    return SandboxScriptEngine()


# -- running cases -----------------------------------------------------------------------------
@dataclass
class Pending:
    """What one round of one case wrote, committed with the other cases' in one transaction."""

    steps: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)  # outbox rows (ops.outbox_rows)
    work: list[tuple[Any, ...]] = field(default_factory=list)
    cancel_work: list[tuple[str, int]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # completed work items applied this round


class CaseRunner:
    """One case in a worker's hands: its SpiffWorkflow workflow, rebuilt from snapshot and journal."""

    def __init__(self, worker: Worker, row: sqlite3.Row, model: Runnable, steps: list[sqlite3.Row],
                 work_done: dict[tuple[str, int], sqlite3.Row], open_work: set[tuple[str, int]]) -> None:
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
        self.pending = Pending()
        self.lost = False
        if row["snapshot"]:
            self.wf = serializer.deserialize_json(row["snapshot"])
            self.wf.script_engine = _script_engine()
        else:
            self.wf = Workflow(model.spec, model.subprocess_specs, script_engine=_script_engine())
            self.wf.task_tree.data.update(self.data)
        for s in steps:  # counters from the whole journal; the workflow only from the snapshot on
            self._count(s)
            if s["seq"] > self.snapshot_seq:
                self._replay(s)

    # bookkeeping ---------------------------------------------------------------------------
    def _count(self, s: sqlite3.Row) -> None:
        el, occ = s["element_id"], s["occurrence"]
        if s["kind"] in ("service", "user", "script", "error", "timer") and \
                s["outcome"] in ("completed", "failed", "error", "cancelled", "fired"):
            self.occurrence[el] = max(self.occurrence.get(el, 0), occ)
        if s["kind"] == "retry":
            self.attempts[(el, occ)] = max(self.attempts.get((el, occ), 0), s["attempt"])
            self.retry_at[(el, occ)] = journal.when(s["ended"]) + timedelta(
                seconds=json.loads(s["data"] or "{}").get("delay", 0))

    def _find(self, element: str, states: int) -> Any:
        for t in self.wf.get_tasks(state=states):
            if getattr(t.task_spec, "bpmn_id", None) == element:
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
            task = self._find(el, TS.STARTED | TS.READY)
            if task is None:
                raise EngineError(f"case {self.case_id}: cannot replay step {s['seq']} ({kind} {el}): the "
                                  "task is not waiting; the journal does not fit the model version")
            task.data.update(data)
            task.complete() if task.state == TS.STARTED else task.run()
        elif kind == "timer":
            task = self._find(el, TS.WAITING)
            if task is not None:
                task._set_internal_data(event_fired=True)
                task.task_spec._update(task)
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
            if self._fire_timers(now):
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
                if isinstance(task.task_spec, SubWorkflowTask):  # runs its inside; completes when that ends
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
            self._fail(f"{type(exc).__name__}: {exc}")

    def _engine_steps(self) -> None:
        script_tasks: list[Any] = []

        def did(task: Any) -> None:
            if type(task.task_spec).__name__ == "ScriptTask":
                script_tasks.append(task)

        started = journal.now()
        self.wf.do_engine_steps(did_complete_task=did)
        for task in script_tasks:
            el = task.task_spec.bpmn_id
            occ = self.occurrence.get(el, 0) + 1
            self.occurrence[el] = occ
            self.data.update(task.data)
            self._record("script", el, task.task_spec.bpmn_name or el, "completed", started, journal.now(),
                         occurrence=occ, resource=self.worker.name, event=True)

    def _fire_timers(self, now: datetime) -> bool:
        from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

        fired = False
        live_before = self._live_user_tasks()
        for task in self.wf.get_tasks(state=self.TaskState.WAITING):
            evdef = getattr(task.task_spec, "event_definition", None)
            if not isinstance(evdef, TimerEventDefinition):
                continue
            armed = task._get_internal_data("event_value") is not None
            if evdef.has_fired(task):  # also arms it (computes its due time) the first time
                task.task_spec._update(task)
                el = task.task_spec.bpmn_id
                occ = self.occurrence.get(el, 0) + 1  # a timer in a loop fires once per pass
                self.occurrence[el] = occ
                self._record("timer", el, task.task_spec.bpmn_name or el, "fired", now, now, occurrence=occ,
                             resource="timer", event=bool(task.task_spec.bpmn_name))
                self.needs_snapshot = True
                fired = True
            elif not armed:
                self.needs_snapshot = True  # a timer's due time must survive a crash
        if fired:
            self._engine_steps()
            self._cancel_interrupted(live_before, now)
        return fired

    def _completed_in_time(self, task: Any) -> bool:
        """Whether the user task has a completed work item, done before any due timer attached to it."""
        from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

        el = task.task_spec.bpmn_id
        done = self.work_done.get((el, self.occurrence.get(el, 0) + 1))
        if done is None:
            return False
        completed = ops.from_iso(done["completed_at"]) or journal.now()
        boundaries = {e.id for e in self.model.elements.values() if e.kind == "boundaryEvent" and e.attached_to == el}
        for t in self.wf.get_tasks(state=self.TaskState.WAITING):
            if t.task_spec.bpmn_id in boundaries and isinstance(getattr(t.task_spec, "event_definition", None),
                                                                  TimerEventDefinition):
                value = t._get_internal_data("event_value")
                if value is not None and _timer_due(value) < completed:
                    return False
        return True

    def _user_task(self, task: Any) -> bool:
        el = task.task_spec.bpmn_id
        occ = self.occurrence.get(el, 0) + 1
        done = self.work_done.pop((el, occ), None)
        if done is not None:
            form = json.loads(done["data"] or "{}")
            task.data.update(form)
            started = ops.from_iso(done["created"]) or journal.now()
            task.run()
            self.occurrence[el] = occ
            self.data.update(form)
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
                                      journal.iso(journal.now()), due, human.assignee if human else None))
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
                                 output_dir=self.worker.output_dir, secrets=self.worker.secrets)
        except TaskError as exc:
            self._handler_failed(task, element, el, occ, attempt, started, exc)
            return
        out = dict(result.data)
        task.data.update(out)
        task.complete()
        self.occurrence[el] = occ
        self.data.update(out)
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
        event = BpmnEvent(ErrorEventDefinition(code or "error", code=code), payload={"error": message},
                          target=target)
        self.wf.catch(event)

    def _live_user_tasks(self) -> dict[str, Any]:
        return {t.task_spec.bpmn_id: t for t in self.wf.get_tasks(state=self.TaskState.READY)
                if getattr(t.task_spec, "manual", False)}

    def _cancel_interrupted(self, before: dict[str, Any], now: datetime) -> None:
        """User tasks an interrupting timer just cancelled: journal them, cancel their work items.

        The cancelled instance uses up its occurrence number, so a later instance of the same
        task (sent back after an escalation) gets a work item of its own; a completion that
        came in after the timer was due is set aside (it lost), so the case does not stay busy.
        """
        after = self._live_user_tasks()
        for el, task in before.items():
            if el in after and after[el] is task:
                continue
            occ = self.occurrence.get(el, 0) + 1
            self.occurrence[el] = occ
            self._record("user", el, task.task_spec.bpmn_name or el, "cancelled", now, now, occurrence=occ,
                         resource="timer")
            self.pending.cancel_work.append((el, occ))
            self.open_work.discard((el, occ))
            late = self.work_done.pop((el, occ), None)
            if late is not None:
                self.pending.applied.append(late["task_id"])

    def _block(self, retry_due: list[datetime]) -> None:
        """Nothing can run now: wait for a person, a timer or a retry."""
        from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

        due = list(retry_due)
        for task in self.wf.get_tasks(state=self.TaskState.WAITING):
            if isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition):
                value = task._get_internal_data("event_value")
                if value is not None:
                    due.append(_timer_due(value))
        self.wake_at = min(due) if due else None
        humans = any(getattr(t.task_spec, "manual", False) for t in self.wf.get_tasks(state=self.TaskState.READY))
        if not due and not humans:
            self._fail("the case cannot go on: no task is ready and nothing is waiting (a gateway found no true "
                       "condition and has no default flow?)")
            return
        self.status = "waiting"
        self.needs_snapshot = True
        self.done = True

    def _finish(self) -> None:
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


def _timer_due(value: Any) -> datetime:
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    t: datetime
    try:
        t = TimerEventDefinition.get_datetime(str(value))
    except Exception:  # noqa: BLE001 - a date timer's raw expression
        t = TimerEventDefinition.parse_time_or_duration(str(value))
    return t if t.tzinfo else t.replace(tzinfo=UTC)
