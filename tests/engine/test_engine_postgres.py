"""procestra.engine with its operational store on a real PostgreSQL server, shared by workspaces on "several machines".

A second workspace directory stands for another machine: it shares the PostgreSQL URL
but not the files (no process models, its own event store). Workers there run the model
versions published to the store, human tasks are listed, claimed and completed from
either side, timers that came due while nothing ran fire, and the run events reach the
main workspace's DuckDB store, equal to the journal. The whole engine suite of
``test_engine.py`` (and of ``test_poison.py``) runs here again on PostgreSQL, and workers are killed with SIGKILL.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import test_engine as suite
import test_engine_crash as crash
import test_poison as poison
from test_engine import orders, timer_model, work  # noqa: F401 - orders: the suite's fixture

from conftest import run_cli, small_model
from engine_handlers import assert_closed_loop, generated_orders, subprocess_env
from procestra import Workspace, engine
from procestra.engine import TaskStateError
from procestra.errors import ModelNotFoundError
from procestra.store import ops

pytestmark = pytest.mark.postgres


def _state(ws: Workspace) -> dict[str, Any]:
    """``test_engine.state`` on PostgreSQL: everything a rejected call must not change."""
    with ops.connect(ws) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_name IN "
                                            "('cases', 'steps', 'work', 'outbox') ORDER BY table_name")]
        return {t: [tuple(r) for r in con.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables}


@pytest.fixture
def ws(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The main workspace, its operational store a fresh PostgreSQL database (it is the events home)."""
    monkeypatch.setattr(suite, "state", _state)
    main = Workspace.init(tmp_path / "ws")
    ops.set_url(main, pg_url)
    engine.list_cases(main)  # the engine's tables: on a shared store, using a model publishes it (and makes them)
    return main


@pytest.fixture
def other(tmp_path: Path, pg_url: str, ws: Workspace) -> Workspace:
    """Another machine's workspace: the same store, none of the main workspace's files."""
    away = Workspace.init(tmp_path / "other-machine")
    ops.set_url(away, pg_url)
    assert ops.events_home(away) == ops.workspace_id(ws)
    return away


# -- the engine suite again, on PostgreSQL ------------------------------------------------------------------
_SQLITE_ONLY: set[str] = set()  # every engine test also runs on PostgreSQL
for _name, _test in [*vars(suite).items(), *vars(poison).items()]:  # and the poison cases' (their SQL)
    if _name.startswith("test_") and callable(_test) and _name not in _SQLITE_ONLY:
        globals()[_name] = _test
del _name, _test


# -- several machines ------------------------------------------------------------------------------------------
def _worker(workspace: Workspace, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "procestra.cli", "-w", str(workspace.path), "worker", "--until-idle",
           "--concurrency", "4", "--json", *extra]
    return subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_workers_in_two_workspaces_share_cases_tasks_and_the_event_store(ws: Workspace, other: Workspace) -> None:
    small_model().save(ws)
    assert not (other.models_dir / "review").exists()  # the other machine has no model files
    applicants = generated_orders(30, seed=11)
    data = [{"applicant": o["applicant"], "amount": round(o["amount"] / 10, 2)} for o in applicants]  # both branches
    cases = engine.start_cases(ws, "review", data[:-1])
    # the other machine starts a case too: the latest version, from the store
    proc = run_cli("start", "review", "--data", json.dumps(data[-1]), workspace=other.path, check=True)
    cases.append(proc.stdout.strip())
    large = {c for c, d in zip(cases, data) if d["amount"] >= 1000}
    assert 0 < len(large) < len(cases)

    # 1. only the other machine works: it runs the published model; large cases wait for a review
    first = _report(_worker(other))
    assert first["cases_completed"] == len(cases) - len(large)
    status = {c.case: c.status for c in engine.list_cases(ws)}
    assert {c for c, s in status.items() if s == "waiting"} == large

    # 2. the inbox is shared: claims and completions from either workspace, each checked once
    tasks = engine.list_tasks(other)
    assert sorted(t.case for t in tasks) == sorted(large) and tasks == engine.list_tasks(ws)
    first_task = tasks[0]
    engine.claim_task(other, first_task.task, "olga")
    with pytest.raises(TaskStateError, match="claimed by 'olga'"):
        engine.complete_task(ws, first_task.task, {"decision": "approve"}, user="mia")
    engine.complete_task(ws, first_task.task, {"decision": "approve"}, user="olga")
    with pytest.raises(TaskStateError, match="completed already, by olga"):
        engine.complete_task(other, first_task.task, {"decision": "reject"}, user="olga")
    for i, t in enumerate(tasks[1:]):
        engine.complete_task(ws if i % 2 else other, t.task, {"decision": "reject" if i % 3 else "approve"},
                             user=f"user-{i}")
    assert engine.list_tasks(ws) == []

    # 3. workers on both machines at once finish them; nothing runs twice
    reports = [_report(p) for p in [_worker(ws), _worker(other)]]
    assert sum(r["cases_completed"] for r in reports) == len(large)
    done = engine.list_cases(other)
    assert sorted(c.case for c in done) == sorted(cases) and {c.status for c in done} == {"completed"}
    with ops.connect(ws) as con:
        twice = con.execute("SELECT case_id, kind, element_id, occurrence, count(*) FROM steps "
                            "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1").fetchall()
        gaps = con.execute("SELECT count(*) FROM cases c WHERE seq != (SELECT count(*) FROM steps s "
                           "WHERE s.case_id = c.case_id)").fetchone()[0]
        runners = {r[0] for r in con.execute("SELECT DISTINCT resource FROM steps WHERE kind = 'service'")}
    assert twice == [] and gaps == 0
    assert first["worker"] in runners
    for c in done:
        steps = engine.case_history(ws, c.case)
        expected = ["fraud", "review" if c.case in large else "auto", None]
        assert [s.element for s in steps] == expected, c.case
    # 4. the run events went to the main workspace's event store only, equal to the journal: the other
    # machine's event store (Workspace.init created it) holds no log at all
    assert [log.name for log in other.logs()] == []
    assert_closed_loop(ws, "review")
    assert ops.outbox_stats(other).pending == 0


def test_a_timer_that_came_due_while_nothing_ran_fires_on_another_machine(ws: Workspace, other: Workspace,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_TEST_EFFECTS", str(tmp_path / "effects.sqlite"))  # one effects file for both
    timer_model("PT2S").save(ws)
    case = engine.start_case(ws, "waits", {})
    assert work(ws).steps == 1  # First ran; the timer is armed and stored; nothing due within a second
    info = engine.get_case(other, case)
    assert info.status == "waiting" and info.wake_at is not None
    time.sleep(max(0.0, (info.wake_at - ops.utcnow()).total_seconds()) + 0.3)  # no worker runs meanwhile
    assert engine.get_case(other, case).status == "waiting"
    work(other)  # a worker on the other machine, started after the due time, fires it
    steps = engine.case_history(ws, case)
    assert [(s.kind, s.element) for s in steps] == [("service", "Activity_first"), ("timer", "Event_wait"),
                                                   ("service", "Activity_second"), ("end", None)]
    assert steps[1].started >= info.wake_at and engine.get_case(ws, case).status == "completed"
    assert_closed_loop(ws, "waits")


def test_a_version_differing_between_machines_runs_as_published(ws: Workspace, other: Workspace,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    small_model().save(ws)
    first = engine.start_case(ws, "review", {"applicant": "a", "amount": 10})  # publishes version 1
    changed = small_model()
    changed.declare("region", "string", required=True)
    changed.save(other)  # the other machine's own version 1: not the one cases run on
    with caplog.at_level(logging.WARNING, logger="procestra.engine"):
        second = engine.start_case(other, "review", {"applicant": "b", "amount": 20})  # no region: as published
    assert "the published one runs" in caplog.text
    work(other)
    assert [engine.get_case(ws, c).status for c in (first, second)] == ["completed", "completed"]
    with ops.connect(ws) as con:
        assert con.execute("SELECT count(*) FROM model_versions").fetchone()[0] == 1


def test_an_unknown_model_is_a_clear_error_on_a_machine_without_files(ws: Workspace, other: Workspace) -> None:
    proc = run_cli("start", "nothere", "--data", "{}", workspace=other.path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no model named 'nothere'")
    small_model().save(ws)
    engine.start_case(ws, "review", {"applicant": "a", "amount": 10})
    with pytest.raises(ModelNotFoundError, match="has no version 7"):
        engine.start_case(ws, "review", {"applicant": "a", "amount": 10}, version=7)
    assert len(engine.list_cases(other)) == 1


# -- SIGKILL on PostgreSQL -------------------------------------------------------------------------------------
KILLS = int(os.environ.get("PROCESTRA_PG_CRASH_KILLS") or 10)
CASES = 40


def test_workers_on_two_machines_killed_at_random_lose_nothing_and_repeat_nothing(
        ws: Workspace, other: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash test of test_engine_crash.py, smaller, with one worker slot per workspace."""
    monkeypatch.setenv("ENGINE_TEST_EFFECTS", str(tmp_path / "effects.sqlite"))  # one effects ledger for both
    run = crash.kill_workers_at_random(ws, [ws, other], tmp_path, kills=KILLS, cases=CASES)
    summary = crash.check_crash_run(ws, run, CASES)
    import engine_handlers

    assert len({c["pid"] for c in engine_handlers.calls(ws)}) >= 2
    print(f"\nPostgreSQL crash test: {summary}")


# -- the scheduler on PostgreSQL -----------------------------------------------------------------------------------
def test_the_scheduler_adds_and_ticks_a_job_on_postgresql(ws: Workspace, tmp_path: Path, python3_kernel: None) -> None:
    from _schedule_helpers import recorder
    from procestra.schedule.jobs import add_job, get_job, pause_job, resume_job
    from procestra.schedule.runs import list_runs

    notebook = recorder(tmp_path / "recorder.ipynb")
    add_job(ws, "nightly", notebook, cron="0 6 * * 1-5", timezone="Europe/Amsterdam", parameters={"n": 3},
            start=datetime(2025, 3, 28, tzinfo=UTC))
    add_job(ws, "nightly", notebook, cron="0 6 * * 1-5", timezone="Europe/Amsterdam", parameters={"n": 4},
            start=datetime(2025, 3, 28, tzinfo=UTC), replace=True)  # the upsert
    assert get_job(ws, "nightly").parameters == {"n": 4}
    assert pause_job(ws, "nightly").enabled is False
    assert resume_job(ws, "nightly").enabled is True
    with ops.connect(ws) as con:  # resuming moved the cursor to now (the larger): a CASE both SQLs understand
        assert con.execute("SELECT cursor FROM jobs").fetchone()[0] >= ops.to_iso(ops.utcnow() - timedelta(minutes=5))
    add_job(ws, "nightly", notebook, cron="0 6 * * 1-5", timezone="Europe/Amsterdam", parameters={"n": 4},
            start=datetime(2025, 3, 28, tzinfo=UTC), replace=True)
    tick = json.loads(run_cli("scheduler", "tick", "--now", "2025-03-31T04:00:30Z", "--json",
                              workspace=ws.path, check=True).stdout)
    assert [r["status"] for r in tick["planned"]] == ["skipped", "queued"]
    assert [r["status"] for r in tick["finished"]] == ["succeeded"]
    assert [(r.status, r.attempt) for r in list_runs(ws)] == [("succeeded", 1), ("skipped", 1)]
    assert not ops.ops_path(ws).exists()  # it all went to PostgreSQL
    assert ws.info("jobs").events > 0  # and the job events into the event store


def test_a_message_reaches_its_waiting_case_through_a_worker_on_another_machine(ws: Workspace,
                                                                                other: Workspace) -> None:
    from test_messages import orders_model

    orders_model().save(ws)
    a17 = engine.start_case(ws, "orders", {"order": "A-17"})
    a18 = engine.start_case(ws, "orders", {"order": "A-18"})
    engine.Worker(other, poll=0.05).run(until_idle=True, max_seconds=60)
    assert [engine.get_case(ws, c).status for c in (a17, a18)] == ["waiting", "waiting"]
    with pytest.raises(engine.NotDeliveredError):
        engine.send_message(other, "Payment received", correlate={"order": "B-1"})
    assert engine.send_message(other, "Payment received", correlate={"order": "A-17"},
                               data={"paid": 7}).delivered == (a17,)
    engine.Worker(other, poll=0.05).run(until_idle=True, max_seconds=60)
    info = engine.get_case(ws, a17)
    assert (info.status, info.data["paid"]) == ("completed", 7)
    assert [(s.kind, s.element) for s in engine.case_history(ws, a17)][1] == ("message", "Event_paid")
    assert engine.get_case(ws, a18).status == "waiting"
    assert not ops.ops_path(ws).exists()  # deliveries and waits went to PostgreSQL
