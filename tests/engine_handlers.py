"""Python handlers for the engine tests, bound as ``engine_handlers:<name>`` (tests/ is on sys.path),
the checks the engine tests share (the closed loop: run events against the journal), and a
local HTTP server for the connector tests.

Every handler returns at once (but :func:`slow_effect` and :func:`hang_while_flagged`). Handlers record their calls in the
SQLite file ``<workspace>/effects.sqlite`` (or ``$ENGINE_TEST_EFFECTS``):

- ``calls``: one row per call (idempotency key, case, task, attempt, pid, time), so tests can
  see retries, attempt numbers, which process ran what, and repeats;
- ``effects``: one row per idempotency key (``INSERT OR IGNORE``), the pattern a handler
  uses to deduplicate an external effect however often it is called (not :func:`slow_effect`,
  whose calls the crash test checks for the engine's own deduplication).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from procestra import engine
from procestra.engine.connectors import TaskContext, TaskError
from procestra.ingest.outbox import flush_outbox
from procestra.store import ops

_SCHEMA = (
    ("CREATE TABLE IF NOT EXISTS calls (rowid INTEGER PRIMARY KEY, idempotency_key TEXT, case_id TEXT, task TEXT, "
     "attempt INTEGER, pid INTEGER, at REAL)"),
    ("CREATE TABLE IF NOT EXISTS effects (idempotency_key TEXT PRIMARY KEY, case_id TEXT, task TEXT, "
     "first_attempt INTEGER)"),
)


def effects_path(workspace: Any) -> Path:
    """The effects file of a workspace (or ``$ENGINE_TEST_EFFECTS``)."""
    env = os.environ.get("ENGINE_TEST_EFFECTS")
    return Path(env) if env else Path(getattr(workspace, "path", workspace)) / "effects.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = FULL")
    for sql in _SCHEMA:
        con.execute(sql)
    return con


def _record(ctx: TaskContext, *, effect: bool) -> None:
    con = _connect(effects_path(ctx.workspace))
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO calls (idempotency_key, case_id, task, attempt, pid, at) VALUES (?, ?, ?, ?, ?, ?)",
                    (ctx.idempotency_key, ctx.case_id, ctx.task_id, ctx.attempt, os.getpid(), time.time()))
        if effect:
            con.execute("INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?)",
                        (ctx.idempotency_key, ctx.case_id, ctx.task_id, ctx.attempt))
        con.execute("COMMIT")
    finally:
        con.close()


def calls(workspace: Any) -> list[dict[str, Any]]:
    """Every recorded handler call, in order."""
    path = effects_path(workspace)
    if not path.exists():
        return []
    con = _connect(path)
    try:
        cur = con.execute("SELECT idempotency_key, case_id, task, attempt, pid, at FROM calls ORDER BY rowid")
        return [dict(zip(("key", "case", "task", "attempt", "pid", "at"), r)) for r in cur.fetchall()]
    finally:
        con.close()


def effects(workspace: Any) -> list[dict[str, Any]]:
    """The deduplicated effects: one per idempotency key."""
    path = effects_path(workspace)
    if not path.exists():
        return []
    con = _connect(path)
    try:
        cur = con.execute("SELECT idempotency_key, case_id, task, first_attempt FROM effects ORDER BY rowid")
        return [dict(zip(("key", "case", "task", "attempt"), r)) for r in cur.fetchall()]
    finally:
        con.close()


# -- handlers -----------------------------------------------------------------------------------
def score(ctx: TaskContext) -> dict[str, Any]:
    """A score from the amount: amount / 100."""
    return {"score": float(ctx.data.get("amount", 0)) / 100}


def noop(ctx: TaskContext) -> dict[str, Any]:
    """Nothing to do (the benchmark's handlers)."""
    return {}


def branch_a(ctx: TaskContext) -> dict[str, Any]:
    """One branch of a parallel split."""
    _record(ctx, effect=True)
    return {"a_done": True, "a_pid": os.getpid()}


def branch_b(ctx: TaskContext) -> dict[str, Any]:
    """The other branch of a parallel split."""
    _record(ctx, effect=True)
    return {"b_done": True}


def route_a(ctx: TaskContext) -> dict[str, Any]:
    """Inclusive gateway branch taken when ``amount > 10``."""
    return {"took_a": True}


def route_b(ctx: TaskContext) -> dict[str, Any]:
    """Inclusive gateway branch taken when ``risky``."""
    return {"took_b": True}


def approve(ctx: TaskContext) -> dict[str, Any]:
    """The automatic path of an exclusive gateway."""
    return {"decision": "auto"}


def flaky(ctx: TaskContext) -> dict[str, Any]:
    """Fails (retryable) while ``attempt <= failures`` (case data); records every call."""
    _record(ctx, effect=False)
    failures = int(ctx.data.get("failures") or 0)
    if ctx.attempt <= failures:
        raise TaskError(f"service down (attempt {ctx.attempt} of {failures} failing)", retryable=True)
    return {"flaky_ok": True}


def effect(ctx: TaskContext) -> dict[str, Any]:
    """An external effect, deduplicated by the idempotency key; every call is recorded too."""
    _record(ctx, effect=True)
    return {"effect_done": True}


def effect_once_then_fail(ctx: TaskContext) -> dict[str, Any]:
    """Records the effect, then fails on the first attempt (the effect must not repeat on retry)."""
    _record(ctx, effect=True)
    if ctx.attempt == 1:
        raise TaskError("flaky after the effect", retryable=True)
    return {"effect_done": True}


def slow_effect(ctx: TaskContext) -> dict[str, Any]:
    """Records the call (in ``calls`` only: it deduplicates nothing), then takes ``delay_ms`` (case data)
    milliseconds, so a kill can land between call and commit. The crash test checks the engine's own
    deduplication on these calls: a repeat only for a step the journal had not acknowledged."""
    _record(ctx, effect=False)
    time.sleep(float(ctx.data.get("delay_ms") or 0) / 1000)
    return {f"{ctx.task_id}_done": True}


class JsonApi(BaseHTTPRequestHandler):
    """The request handler of a test's local HTTP server (:func:`http_server`): quiet, with JSON replies."""

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free loopback port, served by a thread while in the block: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def subprocess_env() -> dict[str, str]:
    """The environment for worker subprocesses: this directory on PYTHONPATH, so they import this module."""
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PROCESTRA_NO_PROGRESS": "1"}


def generated_orders(n: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Case data for ``n`` cases from the project's generator: applicant, amount and channel of generated cases."""
    from procestra.mining.generate import generate_log

    table = generate_log(n * 12, seed=seed)
    seen: dict[str, dict[str, Any]] = {}
    for row in table.select(["case_id", "amount", "channel"]).to_pylist():
        if row["case_id"] not in seen and row["amount"] is not None:
            seen[row["case_id"]] = {"applicant": row["case_id"], "amount": float(row["amount"]),
                                    "channel": row["channel"]}
    orders = list(seen.values())
    if len(orders) < n:
        raise ValueError(f"the generator made {len(orders)} cases, fewer than {n}")
    return orders[:n]


# -- the closed loop ----------------------------------------------------------------------------------
def run_events(ws: Any, model: str) -> Counter[tuple[Any, ...]]:
    """The events of ``runs:<model>`` in the event store, as comparable tuples."""
    import pandas as pd

    df = ws.to_pandas(engine.runs_log(model))
    for column in ("org:resource", "outcome", "attempt", "error"):
        if column not in df.columns:
            df[column] = None
    df = df.astype(object).where(df.notna(), None)
    out: Counter[tuple[Any, ...]] = Counter()
    for r in df.to_dict("records"):
        attempt = r["attempt"]
        out[(r["case:concept:name"], r["concept:name"], r["lifecycle:transition"],
             pd.Timestamp(r["time:timestamp"]).to_pydatetime(), r["org:resource"], r["outcome"],
             None if attempt is None else int(attempt), r["error"])] += 1
    return out


def journal_events(ws: Any, model: str) -> Counter[tuple[Any, ...]]:
    """The events the journal says there must be: a start and a complete per named step, a complete per cancel."""
    out: Counter[tuple[Any, ...]] = Counter()
    for case in engine.list_cases(ws, model=model):
        for s in engine.case_history(ws, case.case):
            error = s.error[:2000] if s.error else None
            if s.kind == "cancel":
                out[(case.case, "Case cancelled", "complete", s.ended, s.resource, "cancelled", None, error)] += 1
            elif s.name and s.kind != "end":
                for lifecycle, ts in (("start", s.started), ("complete", s.ended)):
                    out[(case.case, s.name, lifecycle, ts, s.resource, s.outcome, s.attempt, error)] += 1
    return out


def assert_closed_loop(ws: Any, model: str) -> None:
    """After a flush, the runs log holds exactly the journal's events, and each task step has start + complete."""
    flush_outbox(ws)
    assert ops.outbox_stats(ws).pending == 0
    events, expected = run_events(ws, model), journal_events(ws, model)
    assert events == expected, (f"only in the events: {events - expected}\n"
                                f"only in the journal: {expected - events}")
    for case in engine.list_cases(ws, model=model):
        for s in engine.case_history(ws, case.case):
            if s.kind in ("service", "user", "script"):
                pair = [e for e in events if e[0] == case.case and e[1] == s.name and e[3] in (s.started, s.ended)]
                assert sorted(e[2] for e in pair) == ["complete", "start"], (s, pair)




def complete_open_review(ctx: TaskContext) -> dict[str, Any]:
    """A person completing the case's open human task while a worker holds the case (a race, made deterministic)."""
    from procestra import Workspace

    ws = Workspace(ctx.workspace)
    done = []
    for item in engine.list_tasks(ws, case=ctx.case_id):
        engine.complete_task(ws, item.task, {"decision": "yes"}, user="colleague")
        done.append(item.element)
    return {"completed_meanwhile": done}


def effect_or_die(ctx: TaskContext) -> dict[str, Any]:
    """:func:`effect`, but the worker process "dies" (KeyboardInterrupt) the first time ``n == die_at``."""
    _record(ctx, effect=True)
    if ctx.data.get("n") == ctx.data.get("die_at"):
        con = _connect(effects_path(ctx.workspace))
        try:
            count = con.execute("SELECT count(*) FROM calls WHERE idempotency_key = ?",
                                (ctx.idempotency_key,)).fetchone()[0]
        finally:
            con.close()
        if count == 1:
            raise KeyboardInterrupt("the worker dies after the effect, before its step is committed")
    return {"effect_done": True}


def hang_while_flagged(ctx: TaskContext) -> dict[str, Any]:
    """Records the call; while the file ``<workspace>/hang-<case>`` exists, announces the hang in
    ``<workspace>/hanging-<pid>`` and hangs (a test kills the worker); else returns at once."""
    _record(ctx, effect=False)
    root = Path(ctx.workspace)
    if (root / f"hang-{ctx.case_id}").exists():
        (root / f"hanging-{os.getpid()}").write_text(ctx.case_id)
        time.sleep(600)
    return {"hang_done": True}


def stop_process(proc: Any, timeout: float = 10) -> None:
    """SIGTERM a test's subprocess, and SIGKILL it if it has not exited within ``timeout`` seconds."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_task_model(name: str, task_id: str, task_name: str, *, start_id: str = "StartEvent_1",
                   end_id: str = "EndEvent_1") -> Any:
    """A to-be model: start -> one task bound to :func:`effect` (output ``effect_done``) -> end."""
    from procestra.engine.connectors import python
    from procestra.engine.tobe import ToBeModel

    m = ToBeModel(name)
    start = m.add_event("start", id=start_id)
    task = m.add_task(task_name, id=task_id, after=start)
    m.bind(task, python("engine_handlers:effect", outputs=["effect_done"]))
    m.add_event("end", id=end_id, after=task)
    return m


def count_up(ctx: TaskContext) -> dict[str, Any]:
    """One more: a handler a loop in the model calls again and again (fair rounds)."""
    return {"n": int(ctx.data.get("n", 0)) + 1}
