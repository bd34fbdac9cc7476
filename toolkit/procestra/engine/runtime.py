"""Run to-be models: cases with durable state, workers, human tasks, timers, and every step logged.

SpiffWorkflow gives the BPMN semantics (gateways, parallel and inclusive joins, boundary
events, timers, subprocesses, call activities); conditions and scripts are evaluated in
:mod:`procestra.sandbox`, never with ``eval``. Bound service tasks run through
:mod:`procestra.connectors`; user tasks become work items in an inbox.

**Durable state** lives in the operational store (:mod:`procestra.ops`, SQLite in WAL
mode, many writers): a *journal* of steps per case, and a *snapshot* of the workflow
taken only when a case stops being worked on (it waits for a person, a timer or a
retry), when a timer is armed, and every :data:`SNAPSHOT_EVERY` steps. A case is
rebuilt by loading its snapshot and replaying the few journal steps after it, with
their recorded results (handlers are not called again). Steps of many cases are written
in one transaction (*group commit*), so the cost of an fsync is shared; a step is
acknowledged when its transaction commits, and the case's next step starts only then.
Whole-workflow JSON per task, the usual design, is the cost this avoids.

**Workers** (:class:`Worker`, ``procestra worker``) claim runnable cases with a lease
(``lease_owner``/``lease_until``); the lease is renewed with every commit and checked in
it, so two workers never record steps for the same case, and a case whose worker died
is taken over when its lease runs out. A handler is called with an *idempotency key*
(from case, element and occurrence) that stays the same across retries and takeovers, so its
external effects can be deduplicated. Timers and retry back-offs set the case's
``wake_at``; any worker fires what came due, also after downtime.

**Closed loop**: each executed step (service, user and script tasks) goes, in the same
transaction, to the outbox as a ``start`` and a ``complete`` event (case, activity,
resource, outcome, error, attempt) for the log ``runs:<model>``, which
:func:`procestra.ops.flush_outbox` moves into the event store. :func:`conform_runs` checks
those runs against the model they ran.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.engine.exceptions import (
    CaseNotFoundError,
    CaseStateError,
    EngineError,
    TaskNotFoundError,
    TaskStateError,
)
from procestra.errors import InvalidArgumentError, ModelNotFoundError, ProcestraError
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.engine.tobe import Element, ToBeModel
    from procestra.store.home import Home

__all__ = [
    "CaseInfo",
    "CaseNotFoundError",
    "CaseStateError",
    "EngineError",
    "Step",
    "TaskNotFoundError",
    "TaskStateError",
    "WorkItem",
    "Worker",
    "WorkerReport",
    "cancel_case",
    "case_history",
    "claim_task",
    "complete_task",
    "conform_runs",
    "get_case",
    "list_cases",
    "list_tasks",
    "runs_log",
    "start_case",
    "start_cases",
]

log = logging.getLogger(__name__)

#: A snapshot is also taken after this many journal steps of one case (bounds replay).
SNAPSHOT_EVERY = 50
#: Case statuses: running (a worker may advance it), waiting (for a person or a timer),
#: and the final ones.
STATUSES = ("running", "waiting", "completed", "failed", "cancelled")
_FINAL = ("completed", "failed", "cancelled")


# -- schema -----------------------------------------------------------------------------------
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE cases (
            case_id      TEXT PRIMARY KEY,
            model        TEXT NOT NULL,
            version      INTEGER NOT NULL,
            business_key TEXT,
            status       TEXT NOT NULL,
            data         TEXT NOT NULL,
            created      TEXT NOT NULL,
            updated      TEXT NOT NULL,
            ended        TEXT,
            error        TEXT,
            seq          INTEGER NOT NULL DEFAULT 0,
            snapshot     TEXT,
            snapshot_seq INTEGER NOT NULL DEFAULT 0,
            runnable     INTEGER NOT NULL DEFAULT 1,
            wake_at      TEXT,
            lease_owner  TEXT,
            lease_until  TEXT,
            UNIQUE (model, business_key)
        )""",
        "CREATE INDEX cases_due ON cases (runnable, wake_at) WHERE status IN ('running', 'waiting')",
        "CREATE INDEX cases_model ON cases (model, status)",
        """CREATE TABLE steps (
            case_id    TEXT NOT NULL REFERENCES cases (case_id),
            seq        INTEGER NOT NULL,
            kind       TEXT NOT NULL,
            element_id TEXT,
            name       TEXT,
            occurrence INTEGER NOT NULL DEFAULT 1,
            attempt    INTEGER NOT NULL DEFAULT 1,
            resource   TEXT,
            outcome    TEXT NOT NULL,
            error      TEXT,
            data       TEXT,
            started    TEXT NOT NULL,
            ended      TEXT NOT NULL,
            PRIMARY KEY (case_id, seq),
            UNIQUE (case_id, kind, element_id, occurrence, attempt)
        )""",
        """CREATE TABLE work (
            task_id         TEXT PRIMARY KEY,
            case_id         TEXT NOT NULL REFERENCES cases (case_id),
            element_id      TEXT NOT NULL,
            name            TEXT NOT NULL,
            occurrence      INTEGER NOT NULL,
            candidate_group TEXT,
            form            TEXT NOT NULL,
            status          TEXT NOT NULL,
            assignee        TEXT,
            created         TEXT NOT NULL,
            due_at          TEXT,
            completed_at    TEXT,
            completed_by    TEXT,
            data            TEXT,
            UNIQUE (case_id, element_id, occurrence)
        )""",
        "CREATE INDEX work_open ON work (status, case_id)",
    ),
    (  # 2: which completed human tasks a worker has applied (a completion never gets lost)
        "ALTER TABLE work ADD COLUMN applied INTEGER NOT NULL DEFAULT 0",
    ),
    (  # 3: model versions published to a shared (PostgreSQL) store, for workers whose workspace lacks them
        """CREATE TABLE model_versions (
            model     TEXT NOT NULL,
            version   INTEGER NOT NULL,
            bpmn      TEXT NOT NULL,
            sha256    TEXT NOT NULL,
            called    TEXT NOT NULL,
            meta      TEXT NOT NULL,
            published TEXT NOT NULL,
            PRIMARY KEY (model, version)
        )""",
    ),
)


def _prepare(ws: Home) -> None:
    ops.ensure_schema(ws, "engine", _MIGRATIONS)
    ops.prepare(ws)


def runs_log(model: str) -> str:
    """The event log the runs of ``model`` are written to."""
    return f"runs:{model}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return ops.to_iso(t)


def _case_id() -> str:
    """A new case id, ``c-`` + creation time (ms) + 48 random bits: cases started together sit
    together in the journal's indexes, so a round's commit touches few pages."""
    return f"c-{time.time_ns() // 1_000_000:012x}{os.urandom(6).hex()}"


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


# -- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseInfo:
    """One case: where it is and its data."""

    case: str
    model: str
    version: int
    status: str
    business_key: str | None
    data: dict[str, Any]
    created: datetime
    updated: datetime
    ended: datetime | None = None
    error: str | None = None
    steps: int = 0
    wake_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("created", "updated", "ended", "wake_at"):
            d[k] = None if d[k] is None else d[k].isoformat()
        return d


@dataclass(frozen=True)
class WorkItem:
    """A human task in the inbox."""

    task: str
    case: str
    model: str
    element: str
    name: str
    status: str
    candidate_group: str | None
    assignee: str | None
    form: list[dict[str, Any]]
    created: datetime
    due: datetime | None
    completed_at: datetime | None = None
    completed_by: str | None = None
    data: dict[str, Any] | None = None
    case_data: dict[str, Any] = field(default_factory=dict)

    @property
    def overdue(self) -> bool:
        return self.status in ("open", "claimed") and self.due is not None and self.due < _now()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("created", "due", "completed_at"):
            d[k] = None if d[k] is None else d[k].isoformat()
        d["overdue"] = self.overdue
        return d


@dataclass(frozen=True)
class Step:
    """One journal entry of a case."""

    case: str
    seq: int
    kind: str
    element: str | None
    name: str | None
    occurrence: int
    attempt: int
    resource: str | None
    outcome: str
    error: str | None
    data: dict[str, Any] | None
    started: datetime
    ended: datetime


# -- models: SpiffWorkflow specs and our bindings ----------------------------------------------
@dataclass
class _Model:
    name: str
    version: int
    tobe: ToBeModel
    spec: Any
    subprocess_specs: dict[str, Any]
    elements: dict[str, Element]


@functools.lru_cache(maxsize=1)
def _spiff() -> Any:
    """SpiffWorkflow's parts, imported once (0.2 s), with a fast workflow class and a serializer."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG
    from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
    from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
    from SpiffWorkflow.util.task import TaskState

    class Workflow(BpmnWorkflow):  # type: ignore[misc]
        """SpiffWorkflow's workflow with state lookups over its task dict instead of tree walks
        (the same tasks, 2x faster), and timers fired by the engine, explicitly and journaled."""

        def get_tasks(self, first_task: Any = None, **kwargs: Any) -> list[Any]:
            if first_task is None and kwargs and set(kwargs) <= {"state", "spec_name"}:
                state, name = kwargs.get("state"), kwargs.get("spec_name")
                if name is None:  # the hot case (every engine step): one attribute test per task
                    return [t for t in self.tasks.values() if t._state & state]
                return [t for t in self.tasks.values()
                        if (state is None or t._state & state) and t.task_spec.name == name]
            return super().get_tasks(first_task, **kwargs)

        def update_waiting_tasks(self) -> None:
            for task in [t for t in self.tasks.values() if t.state == TaskState.WAITING]:
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


_models: dict[tuple[str, str, int], _Model] = {}
_models_lock = threading.Lock()


def _model(ws: Home, name: str, version: int | None = None) -> _Model:
    """The saved to-be model ``name`` (latest or ``version``), parsed once per process.

    On a PostgreSQL store shared by several machines, see :func:`_shared_model`.
    """
    from procestra.engine.tobe import ToBeModel
    from procestra.models.repository import model_info

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
        return _shared_model(ws, name, version)
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
    tobe = ToBeModel.load(f"{info.name}@{info.version}", ws=ws)
    parser = _parser()
    parser.add_bpmn_file(str(path))
    for element in tobe.elements.values():  # call activities: the called models' processes
        if element.kind == "callActivity" and element.called:
            called = _model(ws, *_split(element.called))
            parser.add_bpmn_file(str(Path(model_info(ws, called.name, called.version).path) / "model.bpmn"))
    spec, subs = _specs(parser, tobe.process_id, info.name, info.version)
    model = _Model(info.name, info.version, tobe, spec, subs, dict(tobe.elements))
    with _models_lock:
        _models[key] = model
    return model


def _parser() -> Any:
    BpmnParser, _, _, _ = _spiff()
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


def _shared_model(ws: Home, name: str, version: int | None) -> _Model:
    """:func:`_model` on a shared store: the workspace's saved version, published to the store's
    ``model_versions`` on first use so that every machine runs the very same model, else (a
    worker on another machine) the published copy. A version number means one model on every
    machine: a local version that differs from the published one of that number is not run
    (the published one is, with a warning), so cases never change model between machines.
    """
    import hashlib

    from procestra.engine.tobe import ToBeModel
    from procestra.models.repository import model_info

    _prepare(ws)
    try:
        info = model_info(ws, name, version)
    except ModelNotFoundError as exc:
        info, missing = None, exc
        if "@" in name:  # "name@3", checked by model_info
            name, version = _split(name)
    if info is not None:
        name = info.name
    with ops.connect(ws) as con:
        if info is None and version is None:
            version = con.execute("SELECT max(version) FROM model_versions WHERE model = ?", (name,)).fetchone()[0]
        v = info.version if info is not None else version
        stored = None if v is None else con.execute(
            "SELECT bpmn, sha256, called FROM model_versions WHERE model = ? AND version = ?", (name, v)).fetchone()
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
    tobe = ToBeModel.from_xml(bpmn, source=f"{name}@{v}")
    tobe.name = name
    parser = _parser()
    parser.add_bpmn_str(bpmn, filename=f"{name}@{v}")
    pinned = json.loads(stored["called"]) if stored is not None else {}
    called_refs: dict[str, str] = {}
    for element in tobe.elements.values():  # call activities: the versions the publisher resolved
        if element.kind == "callActivity" and element.called:
            called = _model(ws, *_split(pinned.get(element.called) or element.called))
            called_refs[element.called] = f"{called.name}@{called.version}"
            text = _shared_bpmn.get((str(ws.path), called.name, called.version))
            if text is None:  # parsed before this process used the shared store
                text = (Path(model_info(ws, called.name, called.version).path) / "model.bpmn").read_bytes()
            parser.add_bpmn_str(text, filename=called_refs[element.called])
    spec, subs = _specs(parser, tobe.process_id, name, v)
    if stored is None:  # publish it, before any case of it can be stored
        assert info is not None
        meta = Path(info.path) / "meta.json"
        with ops.transaction(ws) as con:
            con.execute("INSERT INTO model_versions (model, version, bpmn, sha256, called, meta, published) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, version) DO NOTHING",
                        (name, v, bpmn.decode("utf-8"), digest, _dumps(called_refs),
                         meta.read_text(encoding="utf-8") if meta.is_file() else "{}", _iso(_now())))
            theirs = con.execute("SELECT sha256 FROM model_versions WHERE model = ? AND version = ?",
                                 (name, v)).fetchone()[0]
        if theirs != digest:  # another workspace published a different one meanwhile: that one runs
            return _shared_model(ws, name, v)
    model = _Model(name, int(v), tobe, spec, subs, dict(tobe.elements))
    with _models_lock:
        _shared_bpmn[key] = bpmn
        _models[key] = model
    return model


def _split(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition("@")
    return name, int(version) if version else None


@functools.lru_cache(maxsize=1)
def _script_engine() -> Any:
    from procestra.engine.sandbox import SandboxScriptEngine

    return SandboxScriptEngine()


# -- starting and reading cases ------------------------------------------------------------------
def start_cases(ws: Home, model: str, data: list[Mapping[str, Any]], *, keys: list[str | None] | None = None,
                version: int | None = None) -> list[str]:
    """Start one case per item of ``data`` in one transaction (all or none); returns their ids.

    Each item is checked as in :func:`start_case`; an error names the item by position.
    """
    if not isinstance(data, list):
        raise InvalidArgumentError("data must be a list of case data objects", parameter="data")
    if keys is not None and len(keys) != len(data):
        raise InvalidArgumentError(f"keys has {len(keys)} items for {len(data)} cases", parameter="keys")
    m = _model(ws, model, version)
    rows = []
    now = _iso(_now())
    for i, item in enumerate(data):
        try:
            checked = _case_data(m, item)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"case {i + 1} of {len(data)}: {exc}", parameter="data") from None
        rows.append((_case_id(), m.name, m.version, keys[i] if keys else None,
                     _dumps(checked), now, now))
    _prepare(ws)
    try:
        with ops.transaction(ws) as con:
            con.executemany("INSERT INTO cases (case_id, model, version, business_key, status, data, created, "
                            "updated) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)", rows)
    except sqlite3.IntegrityError:
        raise CaseStateError(f"a business key in keys is used twice, or already by a case of {m.name!r}; "
                             "nothing was started") from None
    return [r[0] for r in rows]


def _json(data: Any, what: str) -> Any:
    """``data`` parsed when it is JSON text (``what`` names it in the error), else as given."""
    if not isinstance(data, str):
        return data
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                                   f"{exc.colno}", parameter="data") from None


def _case_data(m: _Model, data: Mapping[str, Any] | str | None) -> dict[str, Any]:
    data = _json(data, "case data")
    if data is not None and not isinstance(data, Mapping):
        raise InvalidArgumentError(f"case data must be a JSON object, not {type(data).__name__}", parameter="data")
    out = dict(data or {})
    if not all(isinstance(k, str) for k in out):
        raise InvalidArgumentError("case data must be a JSON object with text keys", parameter="data")
    _check_case_data(m, out)
    return out


def start_case(ws: Home, model: str, data: Mapping[str, Any] | str | None = None, *,
               key: str | None = None, version: int | None = None) -> str:
    """Start a case of ``model`` (latest version, or ``version``) with case ``data``; returns its id.

    ``data`` is checked against the model's declared case data (names, types, required,
    allowed values). ``key`` is a business key, unique per model: starting a second case
    with the same key raises :class:`CaseStateError` naming the first. A worker runs it.
    """
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise InvalidArgumentError(f"the business key must be non-empty text, not {key!r}", parameter="key")
    m = _model(ws, model, version)
    data = _case_data(m, data)
    _prepare(ws)
    case_id = _case_id()
    now = _iso(_now())
    try:
        with ops.transaction(ws) as con:
            con.execute("INSERT INTO cases (case_id, model, version, business_key, status, data, created, updated) "
                        "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                        (case_id, m.name, m.version, key, _dumps(data), now, now))
    except sqlite3.IntegrityError:
        with ops.connect(ws) as con:
            row = con.execute("SELECT case_id FROM cases WHERE model = ? AND business_key = ?",
                              (m.name, key)).fetchone()
        raise CaseStateError(f"model {m.name!r} already has a case with business key {key!r}: "
                             f"{row['case_id'] if row else '?'}") from None
    return case_id


def _check_case_data(m: _Model, data: dict[str, Any]) -> None:
    from procestra.engine.elements import FormField

    problems: list[str] = []
    for var in m.tobe.variables.values():
        if var.name not in data or data[var.name] is None:
            if var.required:
                problems.append(f"{var.name}: required")
            continue
        kind = {"any": None, "object": None, "list": None}.get(var.type, var.type)
        value = data[var.name]
        if var.type == "object" and not isinstance(value, dict):
            problems.append(f"{var.name}: expected an object, got {value!r}")
        elif var.type == "list" and not isinstance(value, list):
            problems.append(f"{var.name}: expected a list, got {value!r}")
        elif kind is not None:
            try:
                FormField(var.name, type=kind, allowed=var.allowed).coerce(value)
            except ValueError as exc:
                problems.append(f"{var.name}: {exc}")
        elif var.allowed and value not in var.allowed:
            problems.append(f"{var.name}: {value!r} is not one of {', '.join(map(repr, var.allowed))}")
    if problems:
        raise InvalidArgumentError(f"case data does not fit model {m.name!r} version {m.version}: "
                                   + "; ".join(problems), parameter="data")


def _case(row: sqlite3.Row) -> CaseInfo:
    return CaseInfo(case=row["case_id"], model=row["model"], version=row["version"], status=row["status"],
                    business_key=row["business_key"], data=json.loads(row["data"]),
                    created=ops.from_iso(row["created"]), updated=ops.from_iso(row["updated"]),
                    ended=ops.from_iso(row["ended"]), error=row["error"], steps=row["seq"],
                    wake_at=ops.from_iso(row["wake_at"]))  # type: ignore[arg-type]


def get_case(ws: Home, case: str) -> CaseInfo:
    """The case ``case``; :class:`CaseNotFoundError` if there is none."""
    _prepare(ws)
    with ops.connect(ws) as con:
        row = con.execute("SELECT * FROM cases WHERE case_id = ?", (case,)).fetchone()
    if row is None:
        raise CaseNotFoundError(f"no case {case!r}; `procestra cases` lists them")
    return _case(row)


def list_cases(ws: Home, *, model: str | None = None, status: str | None = None) -> list[CaseInfo]:
    """Cases, oldest first, optionally of one ``model`` and one ``status``."""
    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"status must be one of {', '.join(STATUSES)}, not {status!r}",
                                   parameter="status")
    _prepare(ws)
    where, args = ops.where(("model = ?", model), ("status = ?", status))
    sql = "SELECT * FROM cases" + where + " ORDER BY created, case_id"
    with ops.connect(ws) as con:
        return [_case(r) for r in con.execute(sql, args).fetchall()]


def case_history(ws: Home, case: str) -> list[Step]:
    """The journal of ``case``: every acknowledged step, in order."""
    get_case(ws, case)
    with ops.connect(ws) as con:
        rows = con.execute("SELECT * FROM steps WHERE case_id = ? ORDER BY seq", (case,)).fetchall()
    return [Step(case=r["case_id"], seq=r["seq"], kind=r["kind"], element=r["element_id"], name=r["name"],
                 occurrence=r["occurrence"], attempt=r["attempt"], resource=r["resource"], outcome=r["outcome"],
                 error=r["error"], data=json.loads(r["data"]) if r["data"] else None,
                 started=ops.from_iso(r["started"]), ended=ops.from_iso(r["ended"]))  # type: ignore[arg-type]
            for r in rows]


def cancel_case(ws: Home, case: str, *, reason: str = "cancelled", user: str | None = None) -> CaseInfo:
    """Cancel a case that has not ended: its open human tasks are cancelled and no step runs after."""
    info = get_case(ws, case)
    now = _now()
    with ops.transaction(ws) as con:
        row = con.execute("SELECT status, seq, model FROM cases WHERE case_id = ?", (case,)).fetchone()
        if row["status"] in _FINAL:
            raise CaseStateError(f"case {case} has {row['status']} already; only running or waiting cases can be "
                                 "cancelled")
        seq = row["seq"] + 1
        con.execute("INSERT INTO steps (case_id, seq, kind, outcome, error, resource, started, ended) "
                    "VALUES (?, ?, 'cancel', 'cancelled', ?, ?, ?, ?)",
                    (case, seq, reason, user, _iso(now), _iso(now)))
        con.execute("UPDATE cases SET status = 'cancelled', seq = ?, updated = ?, ended = ?, error = ?, "
                    "runnable = 0, lease_owner = NULL, lease_until = NULL WHERE case_id = ?",
                    (seq, _iso(now), _iso(now), reason, case))
        con.execute("UPDATE work SET status = 'cancelled' WHERE case_id = ? AND status IN ('open', 'claimed')",
                    (case,))
        ops.emit(con, runs_log(info.model), [ops.Event(case, "Case cancelled", now, "complete", user,
                                                        {"outcome": "cancelled", "error": reason})])
    return get_case(ws, case)


# -- the inbox --------------------------------------------------------------------------------
def _work(row: sqlite3.Row) -> WorkItem:
    return WorkItem(task=row["task_id"], case=row["case_id"], model=row["model"], element=row["element_id"],
                    name=row["name"], status=row["status"], candidate_group=row["candidate_group"],
                    assignee=row["assignee"], form=json.loads(row["form"]), created=ops.from_iso(row["created"]),
                    due=ops.from_iso(row["due_at"]), completed_at=ops.from_iso(row["completed_at"]),
                    completed_by=row["completed_by"], data=json.loads(row["data"]) if row["data"] else None,
                    case_data=json.loads(row["case_data"]))  # type: ignore[arg-type]


_WORK_SELECT = ("SELECT w.*, c.model AS model, c.data AS case_data FROM work w JOIN cases c USING (case_id)")


def list_tasks(ws: Home, *, status: str | None = "open", case: str | None = None, group: str | None = None,
               user: str | None = None) -> list[WorkItem]:
    """Human tasks, oldest first: ``status`` open (default; claimed ones too), completed, cancelled, or None (all)."""
    if status not in (None, "open", "claimed", "completed", "cancelled"):
        raise InvalidArgumentError(f"status must be open, claimed, completed or cancelled, not {status!r}",
                                   parameter="status")
    _prepare(ws)
    where, args = ops.where(("w.status IN ('open', 'claimed')" if status == "open" else "w.status = ?", status),
                            ("w.case_id = ?", case), ("w.candidate_group = ?", group),
                            ("(w.assignee IS NULL OR w.assignee = ?)", user))
    sql = _WORK_SELECT + where + " ORDER BY w.created, w.task_id"
    with ops.connect(ws) as con:
        return [_work(r) for r in con.execute(sql, args).fetchall()]


def _get_work(con: sqlite3.Connection, task: str) -> sqlite3.Row:
    row = con.execute(_WORK_SELECT + " WHERE w.task_id = ?", (task,)).fetchone()
    if row is None:
        raise TaskNotFoundError(f"no human task {task!r}; `procestra tasks` lists the open ones")
    return row


def claim_task(ws: Home, task: str, user: str) -> WorkItem:
    """Claim an open task for ``user`` (claiming one's own claim again is fine)."""
    if not isinstance(user, str) or not user.strip():
        raise InvalidArgumentError("claiming needs a user name", parameter="user")
    _prepare(ws)
    with ops.transaction(ws) as con:
        row = _get_work(con, task)
        if row["status"] not in ("open", "claimed"):
            raise TaskStateError(f"task {task} is {row['status']}; only open tasks can be claimed")
        if row["status"] == "claimed" and row["assignee"] != user:
            raise TaskStateError(f"task {task} is claimed by {row['assignee']!r}")
        con.execute("UPDATE work SET status = 'claimed', assignee = ? WHERE task_id = ?", (user, task))
        return _work(_get_work(con, task))


def complete_task(ws: Home, task: str, data: Mapping[str, Any] | str | None = None, *,
                  user: str | None = None, case: str | None = None) -> WorkItem:
    """Complete a human task with the form ``data``; a worker then moves its case on.

    The data is checked against the task's form (:class:`procestra.refine.FormError` lists
    every field that is wrong); completing twice, a cancelled task, someone else's claim,
    or (with ``case``) a task of another case raises :class:`TaskStateError`. Nothing
    changes on any error.
    """
    data = _json(data, "task data")
    _prepare(ws)
    with ops.connect(ws) as con:
        row = _get_work(con, task)
    m = _model(ws, row["model"], _case_version(ws, row["case_id"]))
    element = m.elements.get(row["element_id"])
    human = element.human if element is not None else None
    from procestra.engine.tobe import HumanTask

    checked = (human or HumanTask()).check(data if data is not None else {}, task=f"{row['element_id']} "
                                                                              f"{row['name']!r}")
    now = _iso(_now())
    with ops.transaction(ws) as con:
        row = _get_work(con, task)  # again, inside the transaction
        if case is not None and row["case_id"] != case:
            raise TaskStateError(f"task {task} belongs to case {row['case_id']}, not to case {case}")
        if row["status"] == "completed":
            raise TaskStateError(f"task {task} was completed already, by {row['completed_by'] or 'someone'} at "
                                 f"{row['completed_at']}")
        if row["status"] == "cancelled":
            raise TaskStateError(f"task {task} was cancelled (its case ended, or its SLA escalated it)")
        if row["status"] == "claimed" and user is not None and row["assignee"] != user:
            raise TaskStateError(f"task {task} is claimed by {row['assignee']!r}, not by {user!r}")
        con.execute("UPDATE work SET status = 'completed', completed_at = ?, completed_by = ?, data = ? "
                    "WHERE task_id = ?", (now, user or row["assignee"], _dumps(checked), task))
        con.execute("UPDATE cases SET runnable = 1, wake_at = NULL, updated = ? WHERE case_id = ? AND status IN "
                    "('running', 'waiting')", (now, row["case_id"]))
        return _work(_get_work(con, task))


def _case_version(ws: Home, case: str) -> int:
    return get_case(ws, case).version


# -- running cases -----------------------------------------------------------------------------
@dataclass
class _Pending:
    """What one round of one case wrote, committed with the other cases' in one transaction."""

    steps: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)  # outbox rows (ops.outbox_rows)
    work: list[tuple[Any, ...]] = field(default_factory=list)
    cancel_work: list[tuple[str, int]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # completed work items applied this round


class _Runner:
    """One case in a worker's hands: its SpiffWorkflow workflow, rebuilt from snapshot and journal."""

    def __init__(self, worker: Worker, row: sqlite3.Row, model: _Model, steps: list[sqlite3.Row],
                 work_done: dict[tuple[str, int], sqlite3.Row], open_work: set[tuple[str, int]]) -> None:
        _, Workflow, serializer, TaskState = _spiff()
        self.TaskState = TaskState
        self.worker = worker
        self.case_id: str = row["case_id"]
        self.model = model
        self.log = runs_log(model.name)
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
        self.pending = _Pending()
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
            self.retry_at[(el, occ)] = ops.from_iso(s["ended"]) + timedelta(
                seconds=json.loads(s["data"] or "{}").get("delay", 0))  # type: ignore[operator]

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
        t0, t1 = _iso(started), _iso(ended)
        self.pending.steps.append((self.case_id, self.seq, kind, element, name, occurrence, attempt, resource,
                                   outcome, error, None if data is None else _dumps(data), t0, t1))
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
        """Run what can run now, at most one handler call; sets ``done`` when the case blocks or ends."""
        TS = self.TaskState
        now = _now()
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

        started = _now()
        self.wf.do_engine_steps(did_complete_task=did)
        for task in script_tasks:
            el = task.task_spec.bpmn_id
            occ = self.occurrence.get(el, 0) + 1
            self.occurrence[el] = occ
            self.data.update(task.data)
            self._record("script", el, task.task_spec.bpmn_name or el, "completed", started, _now(),
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
        completed = ops.from_iso(done["completed_at"]) or _now()
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
            started = ops.from_iso(done["created"]) or _now()
            task.run()
            self.occurrence[el] = occ
            self.data.update(form)
            self._record("user", el, task.task_spec.bpmn_name or el, "completed", started,
                         ops.from_iso(done["completed_at"]) or _now(), occurrence=occ,
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
                due = _iso(_now() + timedelta(seconds=human.due_seconds))
            self.pending.work.append((f"t-{uuid.uuid4().hex[:16]}", self.case_id, el,
                                      task.task_spec.bpmn_name or el, occ,
                                      human.candidate_group if human else None, _dumps(form), "open",
                                      _iso(_now()), due))
            self.open_work.add((el, occ))
        return False

    def _service_task(self, task: Any, el: str, occ: int) -> None:
        from procestra.engine.connectors import TaskError, idempotency_key, run_handler

        element = self.model.elements.get(el)
        name = task.task_spec.bpmn_name or el
        attempt = self.attempts.get((el, occ), 0) + 1
        started = _now()
        handler = element.handler if element is not None else None
        if handler is None:  # an unbound plain task: nothing to run, it just completes
            task.complete()
            self.occurrence[el] = occ
            self._record("service", el, name, "completed", started, _now(), occurrence=occ,
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
        self._record("service", el, name, "completed", started, _now(), occurrence=occ, attempt=attempt,
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
            self.retry_at[(el, occ)] = _now() + timedelta(seconds=delay)
            self._record("retry", el, name, "failed", started, _now(), occurrence=occ, attempt=attempt,
                         resource=self.worker.name, error=str(exc), data={"delay": delay})
            return
        boundary = self._error_boundary(el)
        if boundary is not None:
            self.occurrence[el] = occ
            self._record("error", el, name, "error", started, _now(), occurrence=occ, attempt=attempt,
                         resource=self.worker.name, error=str(exc),
                         data={"code": boundary.error_code, "message": str(exc)})
            self._throw(el, boundary.error_code, str(exc))
            self.needs_snapshot = True
            self._engine_steps()
            return
        self._record("service", el, name, "failed", started, _now(), occurrence=occ, attempt=attempt,
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
        self._record("end", None, None, "completed", _now(), _now(), resource=self.worker.name, event=False)

    def _fail(self, message: str) -> None:
        self.status = "failed"
        self.error = message
        self.done = True
        self._record("fail", None, "Case failed", "failed", _now(), _now(), resource=self.worker.name,
                     error=message)

    def snapshot(self) -> str:
        _, _, serializer, _ = _spiff()
        return serializer.serialize_json(self.wf)


def _timer_due(value: Any) -> datetime:
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    try:
        t = TimerEventDefinition.get_datetime(str(value))
    except Exception:  # noqa: BLE001 - a date timer's raw expression
        t = TimerEventDefinition.parse_time_or_duration(str(value))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


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
    together; a case is only ever in one worker's hands.
    """

    def __init__(self, ws: Home, *, name: str | None = None, concurrency: int = 64, lease: float = 30.0,
                 poll: float = 0.2, flush_every: float = 5.0) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be a whole number of at least 1, not {concurrency!r}",
                                       parameter="concurrency")
        self.workspace = ws
        self.name = name or f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.concurrency = concurrency
        self.lease = float(lease)
        self.poll = float(poll)
        self.flush_every = float(flush_every)
        self.report = WorkerReport(self.name)
        self._stop = threading.Event()
        self._con: sqlite3.Connection | None = None
        self._held: set[str] = set()  # cases in hand, whose leases the renewer thread extends
        self.output_dir = Path(ws.path) / "runs" / "tasks"
        from procestra.engine.connectors import Secrets

        self.secrets = Secrets(ws)
        _prepare(ws)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current round (signal handlers call this)."""
        self._stop.set()

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

    def _close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None

    def run(self, *, until_idle: bool = False, max_seconds: float | None = None) -> WorkerReport:
        """Work until stopped (or, with ``until_idle``, until no case is runnable now or soon).

        Run events go to the event store from a background thread every ``flush_every``
        seconds (DuckDB works outside Python's lock), and once more at the end.
        """
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
        return self.report

    def _flush(self) -> None:
        try:
            ops.flush_outbox(self.workspace)
        except ProcestraError as exc:  # the store is busy: the next flush sends them
            log.warning("could not flush run events yet: %s", exc)

    def _due_soon(self, horizon: float = 1.0) -> bool:
        """Whether some case becomes runnable within ``horizon`` seconds (a retry back-off, a timer)."""
        soon = _iso(_now() + timedelta(seconds=horizon))
        with self._connection() as con:
            row = con.execute("SELECT count(*) FROM cases WHERE status IN ('running', 'waiting') AND runnable = 1 "
                              "AND (wake_at IS NULL OR wake_at <= ?)", (soon,)).fetchone()
        return bool(row[0])

    # claiming --------------------------------------------------------------------------------
    def _claim(self, limit: int) -> list[sqlite3.Row]:
        now = _now()
        with self._transaction() as con:
            rows = con.execute(
                "UPDATE cases SET lease_owner = ?, lease_until = ? WHERE case_id IN ("
                " SELECT case_id FROM cases WHERE status IN ('running', 'waiting') AND runnable = 1"
                " AND (wake_at IS NULL OR wake_at <= ?) AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
                " ORDER BY updated LIMIT ?) RETURNING *",
                (self.name, _iso(now + timedelta(seconds=self.lease)), _iso(now), _iso(now), self.name,
                 limit)).fetchall()
        rows.sort(key=lambda r: (r["updated"], r["case_id"]))  # RETURNING has no order: oldest first
        return rows

    def _load(self, rows: list[sqlite3.Row]) -> list[_Runner]:
        runners = []
        steps_of: dict[str, list[sqlite3.Row]] = {}
        work_of: dict[str, list[sqlite3.Row]] = {}
        with self._connection() as con:
            # the journals and work items of the whole batch in two queries (per 500 cases)
            for i in range(0, len(rows), 500):
                ids = [row["case_id"] for row in rows[i:i + 500]]
                marks = ",".join("?" * len(ids))
                for s in con.execute(f"SELECT * FROM steps WHERE case_id IN ({marks}) ORDER BY case_id, seq", ids):
                    steps_of.setdefault(s["case_id"], []).append(s)
                for w in con.execute(f"SELECT * FROM work WHERE case_id IN ({marks})", ids):
                    work_of.setdefault(w["case_id"], []).append(w)
        for row in rows:
            cid = row["case_id"]
            try:
                model = _model(self.workspace, row["model"], row["version"])
                steps = steps_of.get(cid, [])
                work = work_of.get(cid, [])
                applied = {(s["element_id"], s["occurrence"]) for s in steps if s["kind"] == "user"}
                done = {(w["element_id"], w["occurrence"]): w for w in work
                        if w["status"] == "completed" and not w["applied"]
                        and (w["element_id"], w["occurrence"]) not in applied}
                open_ = {(w["element_id"], w["occurrence"]) for w in work if w["status"] in ("open", "claimed")}
                runners.append(_Runner(self, row, model, steps, done, open_))
            except ProcestraError as exc:
                self._fail_case(row, str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. a snapshot this SpiffWorkflow cannot read
                self._fail_case(row, f"the case cannot be rebuilt from its snapshot and journal: "
                                     f"{type(exc).__name__}: {exc}")
        return runners

    def _fail_case(self, row: sqlite3.Row, message: str) -> None:
        now = _iso(_now())
        with self._transaction() as con:
            con.execute("UPDATE cases SET status = 'failed', error = ?, updated = ?, ended = ?, runnable = 0, "
                        "lease_owner = NULL, lease_until = NULL WHERE case_id = ? AND lease_owner = ?",
                        (message, now, now, row["case_id"], self.name))

    def run_once(self) -> bool:
        """Claim a batch of runnable cases and run them until each blocks or ends; False if none."""
        rows = self._claim(self.concurrency)
        if not rows:
            return False
        active = self._load(rows)
        self._held = {r.case_id for r in active}
        while active:
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

    def _renew_leases(self) -> None:
        """Extend the leases of the cases this worker holds (its own connection: another thread)."""
        held = list(self._held)
        if not held:
            return
        until = _iso(_now() + timedelta(seconds=self.lease))
        try:
            with ops.transaction(self.workspace) as con:
                con.execute(f"UPDATE cases SET lease_until = ? WHERE case_id IN ({','.join('?' * len(held))}) "
                            "AND lease_owner = ?", [until, *held, self.name])
        except ProcestraError as exc:  # the next renewal, or the round's commit, tries again
            log.warning("%s: could not renew leases: %s", self.name, exc)

    def _commit(self, runners: list[_Runner]) -> None:
        """One transaction for the round: steps, events, work items and case rows of every runner.

        Everything is encoded before the transaction opens, so the write lock that all
        workers share is held only for the inserts. A runner whose lease was taken over (it
        ran out) or whose case was cancelled meanwhile is dropped, with what it did this round.
        """
        now = _now()
        stamp, lease_until = _iso(now), _iso(now + timedelta(seconds=self.lease))
        plans = []
        for r in runners:
            p = r.pending
            final = r.status in _FINAL
            snap = (r.snapshot() if (r.needs_snapshot or r.seq - r.snapshot_seq >= SNAPSHOT_EVERY) and not final
                    else None)
            if r.done:
                # a human task completed while we held the case must not be lost: it keeps the case
                # runnable now (complete_task could not wake it while our lease was on it)
                pending_human = ("EXISTS (SELECT 1 FROM work w WHERE w.case_id = cases.case_id AND "
                                 "w.status = 'completed' AND w.applied = 0)")
                case = ("UPDATE cases SET status = ?, data = ?, seq = ?, updated = ?, ended = ?, error = ?, "
                        f"runnable = CASE WHEN ? = 0 AND {pending_human} THEN 1 ELSE ? END, "
                        f"wake_at = CASE WHEN ? = 0 AND {pending_human} THEN NULL ELSE ? END, "
                        "lease_owner = NULL, lease_until = NULL"
                        + (", snapshot = NULL" if final else "") + " WHERE case_id = ?",
                        (r.status, _dumps(r.data), r.seq, stamp, stamp if final else None, r.error,
                         int(final), 0 if final else (1 if r.wake_at is not None else 0),
                         int(final), _iso(r.wake_at) if r.wake_at else None, r.case_id))
            else:
                case = ("UPDATE cases SET status = 'running', data = ?, seq = ?, updated = ?, lease_until = ? "
                        "WHERE case_id = ?", (_dumps(r.data), r.seq, stamp, lease_until, r.case_id))
            plans.append((r, snap, case, p.events))
        ids = [r.case_id for r in runners]
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
                mine = {row[0] for row in con.execute(
                    f"SELECT case_id FROM cases WHERE case_id IN ({','.join('?' * len(ids))}) AND lease_owner = ? "
                    "AND status IN ('running', 'waiting')", [*ids, self.name]).fetchall()}
                for r, snap, case, events in plans:
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
                    updates.setdefault(case[0], []).append(case[1])
                    if r.status in _FINAL and (p.work or r.open_work or r.work_done):
                        ended.append((r.case_id,))
                    outbox += events
                # one statement per shape, for all cases of the round
                con.executemany("INSERT INTO steps (case_id, seq, kind, element_id, name, occurrence, attempt, "
                                "resource, outcome, error, data, started, ended) VALUES "
                                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", steps)
                if work:
                    con.executemany("INSERT INTO work (task_id, case_id, element_id, name, occurrence, "
                                    "candidate_group, form, status, created, due_at) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", work)
                if snaps:
                    con.executemany("UPDATE cases SET snapshot = ?, snapshot_seq = ? WHERE case_id = ?", snaps)
                if cancel:
                    con.executemany("UPDATE work SET status = 'cancelled' WHERE case_id = ? AND element_id = ? AND "
                                    "occurrence = ? AND status IN ('open', 'claimed')", cancel)
                if ended:
                    con.executemany("UPDATE work SET status = 'cancelled' WHERE case_id = ? AND status IN "
                                    "('open', 'claimed')", ended)
                if applied:
                    con.executemany("UPDATE work SET applied = 1 WHERE task_id = ?", applied)
                for sql, rows in updates.items():
                    con.executemany(sql, rows)
                ops.emit_rows(con, outbox)
        except ProcestraError:
            for r in runners:  # nothing of this round was stored: reload these cases from the store
                r.lost = True
            raise
        for r, snap, _, _ in plans:
            if r.lost:
                continue
            self.report.steps += len(r.pending.steps)
            if snap is not None:
                r.snapshot_seq, r.needs_snapshot = r.seq, False
            if r.done and r.status == "completed":
                self.report.cases_completed += 1
            elif r.done and r.status in _FINAL:
                self.report.cases_failed += 1
            r.pending = _Pending()
        self.report.commits += 1


# -- the closed loop -----------------------------------------------------------------------------
def conform_runs(ws: Home, model: str, version: int | None = None, **options: Any) -> Any:
    """Conformance of the runs of ``model`` (log ``runs:<model>``) against the version they ran.

    Uses the completed cases of that version (latest by default) and their executed steps
    only (the ``complete`` events of successful attempts, and of tasks that ended in their
    error boundary), so retries and failed attempts do not count as extra activities. Flushes pending run events into the event store first.
    """
    from procestra.mining.conformance import conform
    from procestra.mining.filters import Filter

    ops.flush_outbox(ws)
    cases = list_cases(ws, model=model)
    if version is None:
        version = max((c.version for c in cases), default=None)
    if version is None:
        raise CaseNotFoundError(f"model {model!r} has no cases yet: start some and run a worker first")
    done = [c.case for c in cases if c.version == version and c.status == "completed"]
    if not done:
        raise CaseNotFoundError(f"no case of {model!r} version {version} has completed yet")
    flt = (Filter.event_attribute("lifecycle", ["complete"], level="event")
           & Filter.event_attribute("outcome", ["completed", "error"], level="event") & Filter.cases(done))
    return conform(ws, runs_log(model), f"{model}@{version}", filter=flt, **options)

