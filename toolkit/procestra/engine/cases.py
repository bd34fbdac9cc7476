"""Cases and human tasks: start, read, list, cancel and retry cases; the inbox of human tasks; a case's history.

A case runs a saved version of a to-be model and stays on it; :func:`start_case` checks its data
against the model's declared case data and leaves it to a worker (:class:`~procestra.engine.Worker`).
Human tasks are rows in the ``work`` table: :func:`complete_task` checks the data against the
task's form and makes the case runnable, and a worker applies it. Each executed step goes, in the
transaction that journals it, to the outbox as a ``start`` and a ``complete`` event for the log
``runs:<model>`` (:func:`runs_log`), which :func:`procestra.ingest.outbox.flush_outbox` moves into
the event store; :func:`conform_runs` checks those runs against the model they ran.

>>> case = start_case(ws, "loan-to-be", {"applicant": "A-1", "amount": 4000}, key="APP-1")
>>> Worker(ws).run(until_idle=True)
>>> [t.name for t in list_tasks(ws, case=case)]
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from procestra.engine import journal
from procestra.engine.elements import FormField, HumanTask, apply_answers
from procestra.engine.exceptions import CaseNotFoundError, CaseStateError, TaskNotFoundError, TaskStateError
from procestra.engine.journal import FINAL, STATUSES, runs_log
from procestra.engine.runtime import Runnable, runnable
from procestra.errors import InvalidArgumentError
from procestra.ingest.outbox import flush_outbox
from procestra.mining.conformance import conform
from procestra.mining.filters import Filter
from procestra.models.repository import ModelRef
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "CaseInfo",
    "Step",
    "WorkItem",
    "cancel_case",
    "case_history",
    "claim_task",
    "complete_task",
    "conform_runs",
    "get_case",
    "list_cases",
    "list_tasks",
    "retry_case",
    "runs_log",
    "start_case",
    "start_cases",
]


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
    #: A multi-instance task's instance: its own data (the element of the collection it is for).
    instance_data: dict[str, Any] = field(default_factory=dict)
    #: The case's status, and why it failed or was cancelled (a poison case's task is closed with its case).
    case_status: str = "running"
    case_error: str | None = None

    @property
    def overdue(self) -> bool:
        return self.status in ("open", "claimed") and self.due is not None and self.due < journal.now()

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


# -- cases ----------------------------------------------------------------------------------------
def start_cases(ws: Home, model: str, data: list[Mapping[str, Any]], *, keys: list[str | None] | None = None,
                version: int | None = None) -> list[str]:
    """Start one case per item of ``data`` in one transaction (all or none); returns their ids.

    Each item is checked as in :func:`start_case`; an error names the item by position.
    """
    if not isinstance(data, list):
        raise InvalidArgumentError("data must be a list of case data objects", parameter="data")
    if keys is not None and len(keys) != len(data):
        raise InvalidArgumentError(f"keys has {len(keys)} items for {len(data)} cases", parameter="keys")
    m = runnable(ws, model, version)
    rows = []
    now = journal.iso(journal.now())
    for i, item in enumerate(data):
        try:
            checked = _case_data(m, item)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"case {i + 1} of {len(data)}: {exc}", parameter="data") from None
        rows.append((journal.new_case_id(), m.name, m.version, keys[i] if keys else None,
                     journal.dumps(checked), now, now))
    journal.prepare(ws)
    try:
        with ops.transaction(ws) as con:
            journal.insert_cases(con, rows)
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


def _case_data(m: Runnable, data: Mapping[str, Any] | str | None) -> dict[str, Any]:
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
    m = runnable(ws, model, version)
    data = _case_data(m, data)
    journal.prepare(ws)
    case_id = journal.new_case_id()
    now = journal.iso(journal.now())
    try:
        with ops.transaction(ws) as con:
            journal.insert_cases(con, [(case_id, m.name, m.version, key, journal.dumps(data), now, now)])
    except sqlite3.IntegrityError:
        with ops.connect(ws) as con:
            holder = journal.case_key_holder(con, m.name, key)
        raise CaseStateError(f"model {m.name!r} already has a case with business key {key!r}: "
                             f"{holder or '?'}") from None
    return case_id


def _check_case_data(m: Runnable, data: dict[str, Any]) -> None:
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
                    created=journal.when(row["created"]), updated=journal.when(row["updated"]),
                    ended=ops.from_iso(row["ended"]), error=row["error"], steps=row["seq"],
                    wake_at=ops.from_iso(row["wake_at"]))


def get_case(ws: Home, case: str) -> CaseInfo:
    """The case ``case``; :class:`CaseNotFoundError` if there is none."""
    journal.prepare(ws)
    with ops.connect(ws) as con:
        row = journal.case_row(con, case)
    if row is None:
        raise CaseNotFoundError(f"no case {case!r}; `procestra cases` lists them")
    return _case(row)


def list_cases(ws: Home, *, model: str | None = None, status: str | None = None) -> list[CaseInfo]:
    """Cases, oldest first, optionally of one ``model`` and one ``status``."""
    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"status must be one of {', '.join(STATUSES)}, not {status!r}",
                                   parameter="status")
    journal.prepare(ws)
    with ops.connect(ws) as con:
        return [_case(r) for r in journal.case_rows(con, model=model, status=status)]


def case_history(ws: Home, case: str) -> list[Step]:
    """The journal of ``case``: every acknowledged step, in order."""
    get_case(ws, case)
    with ops.connect(ws) as con:
        rows = journal.case_steps(con, case)
    return [Step(case=r["case_id"], seq=r["seq"], kind=r["kind"], element=r["element_id"], name=r["name"],
                 occurrence=r["occurrence"], attempt=r["attempt"], resource=r["resource"], outcome=r["outcome"],
                 error=r["error"], data=json.loads(r["data"]) if r["data"] else None,
                 started=journal.when(r["started"]), ended=journal.when(r["ended"]))
            for r in rows]


def cancel_case(ws: Home, case: str, *, reason: str = "cancelled", user: str | None = None) -> CaseInfo:
    """Cancel a case that has not ended: its open human tasks are cancelled and no step runs after."""
    info = get_case(ws, case)
    now = journal.now()
    with ops.transaction(ws) as con:
        row = journal.case_row(con, case)
        assert row is not None  # cases are never deleted
        if row["status"] in FINAL:
            raise CaseStateError(f"case {case} has {row['status']} already; only running or waiting cases can be "
                                 "cancelled")
        seq = row["seq"] + 1
        journal.cancel(con, case, seq, reason, user, journal.iso(now))
        ops.emit(con, runs_log(info.model), [ops.Event(case, "Case cancelled", now, "complete", user,
                                                        {"outcome": "cancelled", "error": reason})])
    return get_case(ws, case)


def retry_case(ws: Home, case: str, *, user: str | None = None) -> CaseInfo:
    """Run a poison case again (:class:`~procestra.engine.Worker`): it goes back to running from where it stopped
    (its snapshot and journal), its takeovers forgotten and the human tasks its failure closed open again.

    Only a poison case can be retried: a case failed by its handler's error journaled that failure, and
    replaying it would not run the task again; :class:`CaseStateError` for that or a case that has not failed.
    """
    info = get_case(ws, case)
    now = journal.now()
    with ops.transaction(ws) as con:
        row = journal.case_row(con, case)
        assert row is not None  # cases are never deleted
        last = journal.last_step(con, case)
        if row["status"] != "failed":
            raise CaseStateError(f"case {case} is {row['status']}, not failed; only a failed poison case can be "
                                 "retried")
        if last is None or last["kind"] != "poison":
            raise CaseStateError(f"case {case} failed ({row['error']}), not as a poison case; only poison cases "
                                 "can be retried")
        reopen = json.loads(last["data"] or "{}").get("closed_tasks", [])
        journal.retry_case(con, case, row["seq"] + 1, user, reopen, journal.iso(now))
        ops.emit(con, runs_log(info.model), journal.step_events(case, "Case retried", now, user, "retried"))
    return get_case(ws, case)


# -- the inbox --------------------------------------------------------------------------------
def _work(row: sqlite3.Row) -> WorkItem:
    return WorkItem(task=row["task_id"], case=row["case_id"], model=row["model"], element=row["element_id"],
                    name=row["name"], status=row["status"], candidate_group=row["candidate_group"],
                    assignee=row["assignee"], form=json.loads(row["form"]), created=journal.when(row["created"]),
                    due=ops.from_iso(row["due_at"]), completed_at=ops.from_iso(row["completed_at"]),
                    completed_by=row["completed_by"], data=json.loads(row["data"]) if row["data"] else None,
                    case_data=json.loads(row["case_data"]),
                    instance_data=json.loads(row["instance_data"]) if row["instance_data"] else {},
                    case_status=row["case_status"], case_error=row["case_error"])


def list_tasks(ws: Home, *, status: str | None = "open", case: str | None = None, group: str | None = None,
               user: str | None = None) -> list[WorkItem]:
    """Human tasks, oldest first: ``status`` open (default; claimed ones too), completed, cancelled, or None (all)."""
    if status not in (None, "open", "claimed", "completed", "cancelled"):
        raise InvalidArgumentError(f"status must be open, claimed, completed or cancelled, not {status!r}",
                                   parameter="status")
    journal.prepare(ws)
    with ops.connect(ws) as con:
        return [_work(r) for r in journal.work_rows(con, status=status, case=case, group=group, user=user)]


def _get_work(con: sqlite3.Connection, task: str) -> sqlite3.Row:
    row = journal.work_row(con, task)
    if row is None:
        raise TaskNotFoundError(f"no human task {task!r}; `procestra tasks` lists the open ones")
    return row


def claim_task(ws: Home, task: str, user: str) -> WorkItem:
    """Claim an open task for ``user`` (claiming one's own claim again is fine)."""
    if not isinstance(user, str) or not user.strip():
        raise InvalidArgumentError("claiming needs a user name", parameter="user")
    journal.prepare(ws)
    with ops.transaction(ws) as con:
        row = _get_work(con, task)
        if row["status"] not in ("open", "claimed"):
            raise TaskStateError(f"task {task} is {row['status']}; only open tasks can be claimed")
        if row["status"] == "claimed" and row["assignee"] != user:
            raise TaskStateError(f"task {task} is claimed by {row['assignee']!r}")
        journal.claim_work(con, task, user)
        return _work(_get_work(con, task))


def complete_task(ws: Home, task: str, data: Mapping[str, Any] | str | None = None, *,
                  user: str | None = None, case: str | None = None) -> WorkItem:
    """Complete a human task with the form ``data``; a worker then moves its case on.

    ``data`` maps each field's name to its answer; a dotted name is given as it is (``{"person.dog_friendly":
    true}``, not nested) and sets that key inside the nested case data, keeping the object's other keys.
    The data is checked against the task's form (:class:`~procestra.engine.exceptions.FormError` lists
    every field that is wrong); completing twice, a cancelled task, someone else's claim,
    or (with ``case``) a task of another case raises :class:`TaskStateError`. Nothing
    changes on any error.
    """
    form = _json(data, "task data")
    journal.prepare(ws)
    with ops.connect(ws) as con:
        row = _get_work(con, task)
    m = runnable(ws, row["model"], _case_version(ws, row["case_id"]))
    element = m.elements.get(row["element_id"])
    human = element.human if element is not None else None
    checked = (human or HumanTask()).check(form if form is not None else {}, task=f"{row['element_id']} "
                                                                              f"{row['name']!r}")
    if any("." in k for k in checked):  # a path into nested data: each object on the way must be one
        seen = {**get_case(ws, row["case_id"]).data, **json.loads(row["instance_data"] or "{}")}
        apply_answers(seen, checked, task=f"{row['element_id']} {row['name']!r}")
    now = journal.iso(journal.now())
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
        journal.complete_work(con, task, row["case_id"], now, user or row["assignee"], journal.dumps(checked))
        return _work(_get_work(con, task))


def _case_version(ws: Home, case: str) -> int:
    return get_case(ws, case).version


# -- the closed loop -----------------------------------------------------------------------------
def conform_runs(ws: Home, model: str, version: int | None = None, **options: Any) -> Any:
    """Conformance of the runs of ``model`` (log ``runs:<model>``) against the version they ran.

    Uses the completed cases of that version (latest by default) and their executed steps
    only (the ``complete`` events of successful attempts, and of tasks that ended in their
    error boundary), so retries and failed attempts do not count as extra activities. Flushes pending run events into the event store first.
    """
    flush_outbox(ws)
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
    return conform(ws, runs_log(model), str(ModelRef(model, version)), filter=flt, **options)
