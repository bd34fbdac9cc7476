"""The engine's tables in the operational store, and every statement on them.

``cases`` holds one row per case (status, data, lease, wake-up time, last snapshot, takeovers);
``steps`` is the journal, one row per acknowledged step, unique per case, element,
occurrence and attempt; ``work`` holds human tasks; ``deliveries`` the messages and signals
sent to cases (applied once, in the round that journals their catch); ``waits`` the messages
and signals each case waits for now (kept by workers, read by senders); ``model_versions``
the model versions published to a shared (PostgreSQL) store. This module is their one owner: the case and task
API (:mod:`~procestra.engine.cases`), model loading (:mod:`~procestra.engine.runtime`) and
workers (:mod:`~procestra.engine.worker`) go through the functions below, each on a
connection or transaction its caller holds (``ops.connect``, ``ops.transaction`` or a
worker's own connection), so several statements share one transaction where they must.
The SQL is SQLite's; ``ops`` translates it for PostgreSQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from procestra.store import ops

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "FINAL",
    "STATUSES",
    "broadcast",
    "cancel",
    "case_key_holder",
    "case_row",
    "case_rows",
    "case_steps",
    "claim_cases",
    "claim_work",
    "complete_work",
    "deliver",
    "dumps",
    "fail_case",
    "held_cases",
    "insert_cases",
    "iso",
    "journals",
    "last_step",
    "latest_published",
    "new_case_id",
    "new_event_id",
    "now",
    "pending_events",
    "poison_case",
    "prepare",
    "publish",
    "published",
    "release_cases",
    "renew_leases",
    "retry_case",
    "runnable_soon",
    "runs_log",
    "running_case",
    "step_events",
    "stopped_case",
    "takeover_history",
    "waiting_for",
    "when",
    "work_row",
    "work_rows",
    "write_round",
]

#: Case statuses: running (a worker may advance it), waiting (for a person or a timer),
#: and the final ones.
STATUSES = ("running", "waiting", "completed", "failed", "cancelled")
FINAL = ("completed", "failed", "cancelled")

Row = sqlite3.Row
Connection = sqlite3.Connection

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
    (  # 4: messages and signals sent to cases (delivered by a worker, once), and what each case waits for
        """CREATE TABLE deliveries (
            event_id TEXT PRIMARY KEY,
            case_id  TEXT NOT NULL REFERENCES cases (case_id),
            kind     TEXT NOT NULL,
            name     TEXT NOT NULL,
            payload  TEXT NOT NULL,
            created  TEXT NOT NULL,
            applied  INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX deliveries_pending ON deliveries (case_id) WHERE applied = 0",
        """CREATE TABLE waits (
            case_id TEXT NOT NULL REFERENCES cases (case_id),
            kind    TEXT NOT NULL,
            name    TEXT NOT NULL,
            PRIMARY KEY (case_id, kind, name)
        )""",
        "CREATE INDEX waits_event ON waits (kind, name)",
    ),
    (  # 5: the user task instance a work item is for (a multi-instance user task has several at once), and
        # the instance's own data (its element of the collection)
        "ALTER TABLE work ADD COLUMN instance TEXT",
        "ALTER TABLE work ADD COLUMN instance_data TEXT",
    ),
    (  # 6: poison cases: how many times in a row the case was taken over from a worker that died or hung holding
        # it with no step journaled in between (at journal position ``takeover_seq``), and by whom (``takeover_log``)
        "ALTER TABLE cases ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE cases ADD COLUMN takeover_seq INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE cases ADD COLUMN takeover_log TEXT",
    ),
)



def prepare(ws: Home) -> None:
    """The engine's tables, migrated to the latest version, in the workspace's operational store."""
    ops.ensure_schema(ws, "engine", _MIGRATIONS)
    ops.prepare(ws)


def runs_log(model: str) -> str:
    """The event log the runs of ``model`` are written to."""
    return f"runs:{model}"


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return ops.to_iso(t)


def when(text: str) -> datetime:
    """The datetime of a timestamp column that is never NULL (``created``, ``updated``, ``started``, ``ended``)."""
    value = ops.from_iso(text)
    assert value is not None, "a NOT NULL timestamp column held NULL"
    return value


def new_case_id() -> str:
    """A new case id, ``c-`` + creation time (ms) + 48 random bits: cases started together sit
    together in the journal's indexes, so a round's commit touches few pages."""
    return f"c-{time.time_ns() // 1_000_000:012x}{os.urandom(6).hex()}"


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


# -- cases ----------------------------------------------------------------------------------------
_INSERT_CASE = ("INSERT INTO cases (case_id, model, version, business_key, status, data, created, updated) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)")


def insert_cases(con: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """New running cases: ``(case_id, model, version, business_key, data, created, updated)`` each
    (``sqlite3.IntegrityError`` for a business key used twice)."""
    if len(rows) == 1:
        con.execute(_INSERT_CASE, rows[0])
    else:
        con.executemany(_INSERT_CASE, rows)


def case_key_holder(con: Connection, model: str, key: str | None) -> str | None:
    """The case of ``model`` with business key ``key``, if any."""
    row = con.execute("SELECT case_id FROM cases WHERE model = ? AND business_key = ?", (model, key)).fetchone()
    return None if row is None else str(row["case_id"])


def case_row(con: Connection, case: str) -> Row | None:
    row: Row | None = con.execute("SELECT * FROM cases WHERE case_id = ?", (case,)).fetchone()
    return row


def case_rows(con: Connection, *, model: str | None = None, status: str | None = None) -> list[Row]:
    """Cases, oldest first, optionally of one ``model`` and one ``status``."""
    where, args = ops.where(("model = ?", model), ("status = ?", status))
    return list(con.execute("SELECT * FROM cases" + where + " ORDER BY created, case_id", args).fetchall())


def case_steps(con: Connection, case: str) -> list[Row]:
    """The journal of ``case``, in order."""
    return list(con.execute("SELECT * FROM steps WHERE case_id = ? ORDER BY seq", (case,)).fetchall())


def cancel(con: Connection, case: str, seq: int, reason: str, user: str | None, stamp: str) -> None:
    """Journal step ``seq`` of ``case`` as its cancellation, end it, and cancel its open human tasks."""
    con.execute("INSERT INTO steps (case_id, seq, kind, outcome, error, resource, started, ended) "
                "VALUES (?, ?, 'cancel', 'cancelled', ?, ?, ?, ?)", (case, seq, reason, user, stamp, stamp))
    con.execute("UPDATE cases SET status = 'cancelled', seq = ?, updated = ?, ended = ?, error = ?, "
                "runnable = 0, lease_owner = NULL, lease_until = NULL WHERE case_id = ?",
                (seq, stamp, stamp, reason, case))
    con.execute("UPDATE work SET status = 'cancelled' WHERE case_id = ? AND status IN ('open', 'claimed')", (case,))
    con.execute("DELETE FROM waits WHERE case_id = ?", (case,))


# -- human tasks ----------------------------------------------------------------------------------
_WORK_SELECT = ("SELECT w.*, c.model AS model, c.data AS case_data, c.status AS case_status, c.error AS case_error "
                "FROM work w JOIN cases c USING (case_id)")


def work_rows(con: Connection, *, status: str | None, case: str | None, group: str | None,
              user: str | None) -> list[Row]:  # fmt: skip
    """Human tasks with their case's model and data, oldest first: ``status`` "open" includes claimed ones."""
    where, args = ops.where(("w.status IN ('open', 'claimed')" if status == "open" else "w.status = ?", status),
                            ("w.case_id = ?", case), ("w.candidate_group = ?", group),
                            ("(w.assignee IS NULL OR w.assignee = ?)", user))
    return list(con.execute(_WORK_SELECT + where + " ORDER BY w.created, w.task_id", args).fetchall())


def work_row(con: Connection, task: str) -> Row | None:
    row: Row | None = con.execute(_WORK_SELECT + " WHERE w.task_id = ?", (task,)).fetchone()
    return row


def claim_work(con: Connection, task: str, user: str) -> None:
    con.execute("UPDATE work SET status = 'claimed', assignee = ? WHERE task_id = ?", (user, task))


def complete_work(con: Connection, task: str, case: str, stamp: str, by: str | None, data: str) -> None:
    """Mark the human task completed with its form data, and make its case runnable (a worker applies it)."""
    con.execute("UPDATE work SET status = 'completed', completed_at = ?, completed_by = ?, data = ? "
                "WHERE task_id = ?", (stamp, by, data, task))
    con.execute("UPDATE cases SET runnable = 1, wake_at = NULL, updated = ? WHERE case_id = ? AND status IN "
                "('running', 'waiting')", (stamp, case))


# -- workers --------------------------------------------------------------------------------------
def runnable_soon(con: Connection, before: str) -> bool:
    """Whether some case is runnable, or becomes runnable before ``before`` (a retry back-off, a timer)."""
    row = con.execute("SELECT count(*) FROM cases WHERE status IN ('running', 'waiting') AND runnable = 1 "
                      "AND (wake_at IS NULL OR wake_at <= ?)", (before,)).fetchone()
    return bool(row[0])


#: A claim that takes a case over: its lease ran out in another worker's hands (a free case has no owner).
_TAKEOVER = "lease_owner IS NOT NULL AND lease_owner <> ?"
#: ... with no step journaled since the last takeover (the same step killed or hung its worker again).
_AGAIN = "takeovers > 0 AND takeover_seq = seq"


def claim_cases(con: Connection, owner: str, lease_until: str, stamp: str, limit: int) -> list[Row]:
    """Lease up to ``limit`` runnable cases (free, expired or already ``owner``'s) to ``owner``, oldest first.

    A case taken over from another worker counts the takeover in ``takeovers`` (from 1 again when a step was
    journaled since the last one) and appends ``previous owner, its lease's end, owner, stamp`` (tab-separated
    lines) to ``takeover_log``: see :func:`takeover_history`."""
    rows = con.execute(
        f"UPDATE cases SET takeovers = CASE WHEN {_TAKEOVER} THEN (CASE WHEN {_AGAIN} THEN takeovers + 1 ELSE 1 END)"
        " ELSE takeovers END,"
        f" takeover_log = CASE WHEN {_TAKEOVER} THEN (CASE WHEN {_AGAIN} THEN coalesce(takeover_log, '') ELSE '' END)"
        " || lease_owner || ? || lease_until || ? ELSE takeover_log END,"
        f" takeover_seq = CASE WHEN {_TAKEOVER} THEN seq ELSE takeover_seq END,"
        " lease_owner = ?, lease_until = ? WHERE case_id IN ("
        " SELECT case_id FROM cases WHERE status IN ('running', 'waiting') AND runnable = 1"
        " AND (wake_at IS NULL OR wake_at <= ?) AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)"
        " ORDER BY updated LIMIT ?) RETURNING *",
        (owner, owner, "\t", f"\t{owner}\t{stamp}\n", owner, owner, lease_until, stamp, stamp, owner,
         limit)).fetchall()
    rows.sort(key=lambda r: (r["updated"], r["case_id"]))  # RETURNING has no order: oldest first
    return list(rows)


def step_events(case: str, name: str, at: datetime, resource: str | None, outcome: str,
                error: str | None = None) -> list[ops.Event]:
    """The run events of a step the engine journals outside a worker's round (a poison case's failure, a
    retry): a start and a complete, with the attributes a worker's steps have."""
    attrs: dict[str, Any] = {"outcome": outcome, "attempt": 1, "element": ""}
    if error:
        attrs["error"] = error[:2000]
    return [ops.Event(case, name, at, lifecycle, resource, attrs) for lifecycle in ("start", "complete")]


def release_cases(con: Connection, cases: Sequence[str], owner: str) -> None:
    """Let go of ``cases`` ``owner`` leased and will not run now (free for any worker; their takeovers kept)."""
    if cases:
        con.execute(f"UPDATE cases SET lease_owner = NULL, lease_until = NULL WHERE case_id IN "
                    f"({','.join('?' * len(cases))}) AND lease_owner = ?", [*cases, owner])


def takeover_history(log: str | None) -> list[dict[str, str]]:
    """The takeovers a case's ``takeover_log`` lists: which worker held it, until when, who took it over and when."""
    names = ("held_by", "lease_until", "taken_over_by", "at")
    return [dict(zip(names, line.split("\t"), strict=True)) for line in (log or "").splitlines() if line]


def last_step(con: Connection, case: str) -> Row | None:
    """The last journaled step of ``case``, if any."""
    row: Row | None = con.execute("SELECT * FROM steps WHERE case_id = ? ORDER BY seq DESC LIMIT 1",
                                  (case,)).fetchone()
    return row


def poison_case(con: Connection, case: str, seq: int, owner: str, message: str, evidence: Any, stamp: str) -> list[str]:
    """Fail ``case`` as a poison case: journal step ``seq`` of kind ``poison`` with the ``evidence``, end the case
    (its snapshot kept, for :func:`retry_case`), close its open human tasks; the ids of the tasks closed."""
    closed = [str(r[0]) for r in con.execute("SELECT task_id FROM work WHERE case_id = ? AND status IN "
                                             "('open', 'claimed') ORDER BY task_id", (case,)).fetchall()]
    con.execute("INSERT INTO steps (case_id, seq, kind, name, outcome, error, resource, data, started, ended) "
                "VALUES (?, ?, 'poison', 'Case failed', 'failed', ?, ?, ?, ?, ?)",
                (case, seq, message, owner, dumps({**evidence, "closed_tasks": closed}), stamp, stamp))
    con.execute("UPDATE cases SET status = 'failed', seq = ?, updated = ?, ended = ?, error = ?, runnable = 0, "
                "lease_owner = NULL, lease_until = NULL WHERE case_id = ?", (seq, stamp, stamp, message, case))
    con.execute("UPDATE work SET status = 'cancelled' WHERE case_id = ? AND status IN ('open', 'claimed')", (case,))
    con.execute("DELETE FROM waits WHERE case_id = ?", (case,))
    return closed


def retry_case(con: Connection, case: str, seq: int, user: str | None, reopen: Sequence[str], stamp: str) -> None:
    """Journal step ``seq`` of ``case`` as a retry by ``user`` and make the case running and runnable again, its
    takeovers forgotten and the human tasks its failure closed (``reopen``) open again."""
    con.execute("INSERT INTO steps (case_id, seq, kind, name, outcome, resource, data, started, ended) "
                "VALUES (?, ?, 'retry', 'Case retried', 'retried', ?, ?, ?, ?)",
                (case, seq, user, dumps({"reopened_tasks": list(reopen)}), stamp, stamp))
    con.execute("UPDATE cases SET status = 'running', seq = ?, updated = ?, ended = NULL, error = NULL, runnable = 1, "
                "wake_at = NULL, lease_owner = NULL, lease_until = NULL, takeovers = 0, takeover_seq = 0, "
                "takeover_log = NULL WHERE case_id = ?", (seq, stamp, case))
    con.executemany("UPDATE work SET status = CASE WHEN assignee IS NULL THEN 'open' ELSE 'claimed' END "
                    "WHERE task_id = ? AND status = 'cancelled'", [(t,) for t in reopen])


def journals(con: Connection, cases: Sequence[str]) -> tuple[dict[str, list[Row]], dict[str, list[Row]]]:
    """The steps (in order) and the work items of ``cases``, by case: two queries per 500 cases."""
    steps_of: dict[str, list[Row]] = {}
    work_of: dict[str, list[Row]] = {}
    for i in range(0, len(cases), 500):
        ids = list(cases[i:i + 500])
        marks = ",".join("?" * len(ids))
        for s in con.execute(f"SELECT * FROM steps WHERE case_id IN ({marks}) ORDER BY case_id, seq", ids):
            steps_of.setdefault(s["case_id"], []).append(s)
        for w in con.execute(f"SELECT * FROM work WHERE case_id IN ({marks})", ids):
            work_of.setdefault(w["case_id"], []).append(w)
    return steps_of, work_of


def pending_events(con: Connection, cases: Sequence[str]) -> tuple[dict[str, list[Row]], dict[str, set[tuple[str, str]]]]:
    """The messages and signals sent to ``cases`` and not yet delivered (oldest first), and what the
    store lists each as waiting for, by case (for cases of models that catch messages or signals)."""
    inbox: dict[str, list[Row]] = {}
    waits: dict[str, set[tuple[str, str]]] = {}
    for i in range(0, len(cases), 500):
        ids = list(cases[i:i + 500])
        marks = ",".join("?" * len(ids))
        for r in con.execute(f"SELECT * FROM deliveries WHERE applied = 0 AND case_id IN ({marks}) "
                             "ORDER BY created, event_id", ids):
            inbox.setdefault(r["case_id"], []).append(r)
        for r in con.execute(f"SELECT case_id, kind, name FROM waits WHERE case_id IN ({marks})", ids):
            waits.setdefault(r["case_id"], set()).add((r["kind"], r["name"]))
    return inbox, waits


def fail_case(con: Connection, case: str, owner: str, message: str, stamp: str) -> None:
    """End ``case`` as failed, if ``owner`` still holds it."""
    con.execute("UPDATE cases SET status = 'failed', error = ?, updated = ?, ended = ?, runnable = 0, "
                "lease_owner = NULL, lease_until = NULL WHERE case_id = ? AND lease_owner = ?",
                (message, stamp, stamp, case, owner))


def renew_leases(con: Connection, cases: Sequence[str], owner: str, until: str) -> None:
    con.execute(f"UPDATE cases SET lease_until = ? WHERE case_id IN ({','.join('?' * len(cases))}) "
                "AND lease_owner = ?", [until, *cases, owner])


def held_cases(con: Connection, cases: Sequence[str], owner: str) -> set[str]:
    """Which of ``cases`` ``owner`` still holds, and that have not ended (cancelled meanwhile)."""
    return {row[0] for row in con.execute(
        f"SELECT case_id FROM cases WHERE case_id IN ({','.join('?' * len(cases))}) AND lease_owner = ? "
        "AND status IN ('running', 'waiting')", [*cases, owner]).fetchall()}


#: A human task completed, or a message or signal sent, while a worker held the case must not be
#: lost: it keeps the case runnable (complete_work and deliver could not wake it under the lease).
_PENDING_HUMAN = ("(EXISTS (SELECT 1 FROM work w WHERE w.case_id = cases.case_id AND "
                  "w.status = 'completed' AND w.applied = 0) OR EXISTS (SELECT 1 FROM deliveries d "
                  "WHERE d.case_id = cases.case_id AND d.applied = 0))")


def stopped_case(case: str, status: str, data: str, seq: int, stamp: str, error: str | None,
                 wake_at: str | None) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    """The update of a case a worker lets go of (it waits or has ended): ``(sql, parameters)`` for
    :func:`write_round`."""
    final = status in FINAL
    sql = ("UPDATE cases SET status = ?, data = ?, seq = ?, updated = ?, ended = ?, error = ?, "
           f"runnable = CASE WHEN ? = 0 AND {_PENDING_HUMAN} THEN 1 ELSE ? END, "
           f"wake_at = CASE WHEN ? = 0 AND {_PENDING_HUMAN} THEN NULL ELSE ? END, "
           "lease_owner = NULL, lease_until = NULL"
           + (", snapshot = NULL" if final else "") + " WHERE case_id = ?")
    return sql, (status, data, seq, stamp, stamp if final else None, error, int(final),
                 0 if final else (1 if wake_at is not None else 0), int(final), wake_at, case)


def running_case(case: str, data: str, seq: int, stamp: str, lease_until: str) -> tuple[str, tuple[Any, ...]]:
    """The update of a case a worker goes on with (its lease renewed): ``(sql, parameters)``."""
    return ("UPDATE cases SET status = 'running', data = ?, seq = ?, updated = ?, lease_until = ? "
            "WHERE case_id = ?", (data, seq, stamp, lease_until, case))


def write_round(con: Connection, *, steps: Sequence[tuple[Any, ...]], work: Sequence[tuple[Any, ...]],
                snapshots: Sequence[tuple[Any, ...]], cancel: Sequence[tuple[str, str, int]],
                ended: Sequence[tuple[str]], applied: Sequence[tuple[str]],
                updates: Mapping[str, Sequence[tuple[Any, ...]]], delivered: Sequence[tuple[str]] = (),
                waits: Mapping[str, set[tuple[str, str]]] | None = None) -> None:  # fmt: skip
    """What one round of a worker's cases did, one statement per shape for all of them: journal
    ``steps``, new ``work`` items, ``snapshots`` ``(snapshot, seq, case)``, work items a timer
    interrupted ``(case, element, occurrence)``, open work of ``ended`` cases, completed work
    items ``applied``, the case ``updates`` (:func:`stopped_case`, :func:`running_case`), the messages
    and signals ``delivered`` (event ids) and the new ``waits`` of the cases whose waits changed."""
    con.executemany("INSERT INTO steps (case_id, seq, kind, element_id, name, occurrence, attempt, "
                    "resource, outcome, error, data, started, ended) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", steps)
    if work:
        con.executemany("INSERT INTO work (task_id, case_id, element_id, name, occurrence, "
                        "candidate_group, form, status, created, due_at, assignee, instance, instance_data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", work)
    if snapshots:
        con.executemany("UPDATE cases SET snapshot = ?, snapshot_seq = ? WHERE case_id = ?", snapshots)
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
    if delivered:
        con.executemany("UPDATE deliveries SET applied = 1 WHERE event_id = ?", delivered)
    if waits:
        con.executemany("DELETE FROM waits WHERE case_id = ?", [(c,) for c in waits])
        con.executemany("INSERT INTO waits (case_id, kind, name) VALUES (?, ?, ?)",
                        [(c, kind, name) for c, pairs in waits.items() for kind, name in sorted(pairs)])


# -- messages and signals -------------------------------------------------------------------------
def waiting_for(con: Connection, kind: str, name: str) -> list[Row]:
    """The running or waiting cases that wait for the message or signal ``name`` (with their data), oldest first."""
    return list(con.execute(
        "SELECT c.case_id, c.model, c.data FROM waits w JOIN cases c USING (case_id) WHERE w.kind = ? AND "
        "w.name = ? AND c.status IN ('running', 'waiting') ORDER BY c.created, c.case_id", (kind, name)).fetchall())


def note_step(con: Connection, case_id: str, seq: int, outcome: str, data: Any) -> None:
    """Set the outcome and data of a step written in this transaction (where a thrown message went)."""
    con.execute("UPDATE steps SET outcome = ?, data = ? WHERE case_id = ? AND seq = ?",
                (outcome, dumps(data), case_id, seq))


def new_event_id() -> str:
    """A new id of a message or signal sent to a case: ``e-`` + time + randomness (sorts by time)."""
    return f"e-{time.time_ns() // 1000:014x}{os.urandom(6).hex()}"


def broadcast(con: Connection, sender: str, signals: Sequence[tuple[str, Any]], stamp: str) -> None:
    """Queue each signal a case threw, ``(name, payload)``, for every other running case waiting for it (the
    payload is no data, ``{}``, unless the signal's SpiffWorkflow payload expression gave one)."""
    rows = [(new_event_id(), r["case_id"], "signal", name, dumps(payload), stamp)
            for name, payload in signals for r in waiting_for(con, "signal", name) if r["case_id"] != sender]
    if rows:
        deliver(con, rows)


def deliver(con: Connection, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None:
    """Queue messages or signals ``(event_id, case_id, kind, name, payload, created)`` for their cases,
    and make the cases runnable now (a worker delivers them)."""
    con.executemany("INSERT INTO deliveries (event_id, case_id, kind, name, payload, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany("UPDATE cases SET runnable = 1, wake_at = NULL, updated = ? WHERE case_id = ? AND status IN "
                    "('running', 'waiting')", [(r[5], r[1]) for r in rows])


# -- model versions on a shared store -------------------------------------------------------------
def latest_published(con: Connection, model: str) -> int | None:
    row = con.execute("SELECT max(version) FROM model_versions WHERE model = ?", (model,)).fetchone()
    return None if row[0] is None else int(row[0])


def published(con: Connection, model: str, version: int) -> Row | None:
    """The published ``bpmn``, its ``sha256`` and the versions it ``called`` (JSON), if published."""
    row: Row | None = con.execute("SELECT bpmn, sha256, called FROM model_versions WHERE model = ? AND version = ?",
                                  (model, version)).fetchone()
    return row


def publish(con: Connection, model: str, version: int, bpmn: str, sha256: str, called: str, meta: str,
            stamp: str) -> str:  # fmt: skip
    """Publish a model version unless one of that number is there already; the ``sha256`` published."""
    con.execute("INSERT INTO model_versions (model, version, bpmn, sha256, called, meta, published) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, version) DO NOTHING",
                (model, version, bpmn, sha256, called, meta, stamp))
    return str(con.execute("SELECT sha256 FROM model_versions WHERE model = ? AND version = ?",
                           (model, version)).fetchone()[0])
