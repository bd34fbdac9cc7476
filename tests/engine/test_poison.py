"""Poison cases (issue 14): a case whose step hangs or kills its worker is taken over by the next worker
when the lease runs out; taken over ``PROCESTRA_POISON_TAKEOVERS`` (3) times on the same step it is failed
with the evidence instead of killing workers for ever, the cases held with it complete, and
``procestra retry`` runs it again once its cause is gone.

Real worker processes are SIGKILLed while the hanging handler (``engine_handlers:hang_while_flagged``) holds
the case; the checks are on the store, the journal and the real ``procestra`` command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import engine_handlers
from engine_handlers import subprocess_env
from procestra import Workspace, engine
from procestra.engine import journal
from procestra.engine.connectors import python
from procestra.engine.tobe import FormField, ToBeModel
from procestra.errors import InvalidArgumentError
from procestra.store import ops

LEASE = 1.0


def hang_model(ws: Workspace) -> None:
    """start -> Prepare (records its call) -> Work (hangs while ``<ws>/hang-<case>`` exists) -> end."""
    m = ToBeModel("hangs")
    start = m.add_event("start", id="StartEvent_1")
    prepare = m.add_task("Prepare", id="Activity_prepare", after=start)
    m.bind(prepare, python("engine_handlers:effect", outputs=["effect_done"]))
    work = m.add_task("Work", id="Activity_work", after=prepare)
    m.bind(work, python("engine_handlers:hang_while_flagged", outputs=["hang_done"]))
    m.add_event("end", id="EndEvent_1", after=work)
    m.save(ws)


def _spawn(ws: Workspace, name: str, log: Path) -> subprocess.Popen[bytes]:
    code = (f"from procestra import Workspace, engine\nws = Workspace({str(ws.path)!r})\n"
            f"engine.Worker(ws, name={name!r}, lease={LEASE}, poll=0.05, flush_every=0.5).run()")
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", code], env=subprocess_env(), stdout=out, stderr=out)


def _wait_hanging(ws: Workspace, proc: subprocess.Popen[bytes], log: Path) -> Path:
    """Wait until the worker process hangs in the handler; the marker file it wrote."""
    marker = ws.path / f"hanging-{proc.pid}"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker never reached the hanging handler"
        time.sleep(0.05)
    return marker


def _kill_when_hanging(ws: Workspace, proc: subprocess.Popen[bytes], log: Path) -> str:
    """Wait until the worker hangs in the handler, SIGKILL it; the case it hung on."""
    marker = _wait_hanging(ws, proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return marker.read_text()


def test_a_case_that_kills_its_workers_is_failed_as_poison_and_retry_runs_it_again(ws: Workspace, tmp_path: Path,
                                                                                     cli: Any) -> None:
    hang_model(ws)
    good = [engine.start_case(ws, "hangs", {}) for _ in range(2)]
    bad = engine.start_case(ws, "hangs", {})
    good += [engine.start_case(ws, "hangs", {}) for _ in range(2)]
    (ws.path / f"hang-{bad}").touch()
    log = tmp_path / "workers.log"
    for name in ("w0", "w1", "w2"):  # each holds the case when it hangs, dies, and the next one takes it over
        assert _kill_when_hanging(ws, _spawn(ws, name, log), log) == bad
    report = engine.Worker(ws, name="w3", lease=LEASE, poll=0.05).run(until_idle=True)
    assert report.cases_failed == 1
    info = engine.get_case(ws, bad)
    assert info.status == "failed" and info.error is not None and info.error.startswith("poison case: ")
    assert "3 times in a row after step 1 (service Activity_prepare Prepare)" in info.error
    assert "(held by w0, w1, w2)" in info.error
    # the cases held with it in the first worker's batch complete: a suspect runs alone
    assert {c: engine.get_case(ws, c).status for c in good} == {c: "completed" for c in good}
    calls = [c for c in engine_handlers.calls(ws) if c["case"] == bad and c["task"] == "Activity_work"]
    assert len(calls) == 3  # w0, w1, w2 hung in it; w3 did not run it
    steps = engine.case_history(ws, bad)
    assert [(s.kind, s.element, s.outcome) for s in steps] == [("service", "Activity_prepare", "completed"),
                                                                ("poison", None, "failed")]
    evidence = steps[-1].data
    assert evidence is not None and steps[-1].resource == "w3" and steps[-1].error == info.error
    assert [(t["held_by"], t["taken_over_by"]) for t in evidence["takeovers"]] == [("w0", "w1"), ("w1", "w2"),
                                                                                  ("w2", "w3")]
    assert all(t["lease_until"] < t["at"] for t in evidence["takeovers"])  # each lease had run out
    assert evidence["last_step"]["element"] == "Activity_prepare" and evidence["limit"] == 3
    with ops.connect(ws) as con:
        row = journal.case_row(con, bad)
    assert row is not None and row["lease_owner"] is None and row["runnable"] == 0

    # `procestra cases --status failed` says why; retry refuses a case that has not failed
    proc = cli("cases", "--status", "failed", "--json", workspace=ws.path)
    assert proc.returncode == 0, proc.stderr
    assert [(r["case"], r["error"]) for r in json.loads(proc.stdout)] == [(bad, info.error)]
    proc = cli("cases", "--status", "failed", workspace=ws.path)
    assert proc.returncode == 0 and "poison case: " in proc.stdout
    proc = cli("retry", good[0], workspace=ws.path)
    assert proc.returncode == 2 and good[0] in proc.stderr and "completed" in proc.stderr

    (ws.path / f"hang-{bad}").unlink()  # the cause is gone
    proc = cli("retry", bad, "--user", "ops", "--json", workspace=ws.path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["case"], out["status"], out["error"]) == (bad, "running", None)
    proc = cli("retry", bad, workspace=ws.path)
    assert proc.returncode == 2 and bad in proc.stderr and "running" in proc.stderr
    engine.Worker(ws, name="w4", lease=LEASE, poll=0.05).run(until_idle=True)
    info = engine.get_case(ws, bad)
    assert (info.status, info.data.get("hang_done")) == ("completed", True)
    steps = engine.case_history(ws, bad)
    assert [(s.kind, s.element, s.outcome, s.resource) for s in steps[1:]] == [
        ("poison", None, "failed", "w3"), ("retry", None, "retried", "ops"),
        ("service", "Activity_work", "completed", "w4"), ("end", None, "completed", "w4")]
    with ops.connect(ws) as con:
        row = journal.case_row(con, bad)
    assert row is not None and (row["takeovers"], row["takeover_log"]) == (0, None)
    engine_handlers.assert_closed_loop(ws, "hangs")


def _claim(ws: Workspace, owner: str) -> list[Any]:
    """Claim as ``owner`` with a lease that has already run out (the owner 'dies' at once)."""
    past = journal.iso(journal.now().replace(year=2000))
    with ops.transaction(ws) as con:
        return journal.claim_cases(con, owner, past, journal.iso(journal.now()), 10)


def test_takeovers_count_only_on_the_same_step(ws: Workspace) -> None:
    hang_model(ws)
    case = engine.start_case(ws, "hangs", {})
    [row] = _claim(ws, "a")  # a free case: no takeover
    assert (row["takeovers"], row["takeover_log"]) == (0, None)
    [row] = _claim(ws, "a")  # its own expired lease again: no takeover
    assert row["takeovers"] == 0
    [row] = _claim(ws, "b")
    assert (row["takeovers"], journal.takeover_history(row["takeover_log"])[0]["held_by"]) == (1, "a")
    [row] = _claim(ws, "c")
    assert row["takeovers"] == 2 and [t["held_by"] for t in journal.takeover_history(row["takeover_log"])] == ["a", "b"]
    with ops.transaction(ws) as con:  # a step journaled: progress, so the next takeover counts from 1 again
        con.execute("UPDATE cases SET seq = seq + 1 WHERE case_id = ?", (case,))
    [row] = _claim(ws, "d")
    assert row["takeovers"] == 1 and [t["held_by"] for t in journal.takeover_history(row["takeover_log"])] == ["c"]


def test_a_failed_case_that_is_not_poison_is_not_retried(ws: Workspace) -> None:
    hang_model(ws)
    case = engine.start_case(ws, "hangs", {})
    with ops.transaction(ws) as con:
        journal.fail_case(con, case, "nobody", "task failed", journal.iso(journal.now()))
        con.execute("UPDATE cases SET status = 'failed', error = 'task failed' WHERE case_id = ?", (case,))
    with pytest.raises(engine.CaseStateError, match=f"case {case} failed \\(task failed\\), not as a poison case"):
        engine.retry_case(ws, case)
    assert engine.get_case(ws, case).status == "failed"


def test_a_bad_poison_limit_is_a_user_error(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESTRA_POISON_TAKEOVERS", "many")
    with pytest.raises(InvalidArgumentError, match="PROCESTRA_POISON_TAKEOVERS must be a whole number"):
        engine.Worker(ws)
    monkeypatch.setenv("PROCESTRA_POISON_TAKEOVERS", "5")
    assert engine.Worker(ws).poison == 5 and engine.Worker(ws, poison=2).poison == 2
    with pytest.raises(InvalidArgumentError, match="poison must be"):
        engine.Worker(ws, poison=0)
    with pytest.raises(InvalidArgumentError, match="on one line"):
        engine.Worker(ws, name="a\tb")


def test_a_poison_case_closes_its_human_tasks_and_retry_opens_them_again(ws: Workspace, cli: Any) -> None:
    m = ToBeModel("review")
    start = m.add_event("start", id="StartEvent_1")
    review = m.add_task("Review", id="Activity_review", after=start)
    m.human(review, [FormField("ok", "boolean")])
    m.add_event("end", id="EndEvent_1", after=review)
    m.save(ws)
    case = engine.start_case(ws, "review", {})
    engine.Worker(ws, poll=0.05).run(until_idle=True)
    [task] = engine.list_tasks(ws, case=case)
    with ops.transaction(ws) as con:  # runnable while it waits (as when a timer comes due)
        con.execute("UPDATE cases SET runnable = 1 WHERE case_id = ?", (case,))
    for owner in ("a", "b", "c"):  # held by a, b, c in turn, each dying before a step: 2 takeovers
        _claim(ws, owner)
    assert not engine.Worker(ws, name="d", poll=0.05).run_once()  # the 3rd takeover: failed, not run
    info = engine.get_case(ws, case)
    assert info.status == "failed" and info.error is not None and "held by a, b, c" in info.error
    [closed] = engine.list_tasks(ws, case=case, status=None)
    assert (closed.task, closed.status, closed.case_status, closed.case_error) == (task.task, "cancelled", "failed",
                                                                                  info.error)
    proc = cli("tasks", "--all", "--case", case, workspace=ws.path)
    assert proc.returncode == 0 and f"(case failed: {info.error})" in proc.stdout
    assert engine.case_history(ws, case)[-1].data["closed_tasks"] == [task.task]
    assert engine.retry_case(ws, case, user="ops").status == "running"
    [again] = engine.list_tasks(ws, case=case)
    assert (again.task, again.status, again.case_error) == (task.task, "open", None)
    engine.complete_task(ws, task.task, {"ok": True})
    engine.Worker(ws, poll=0.05).run(until_idle=True)
    assert engine.get_case(ws, case).status == "completed"
    engine_handlers.assert_closed_loop(ws, "review")


def test_sigterm_stops_a_worker_stuck_in_a_handler_within_its_stop_timeout(ws: Workspace, tmp_path: Path) -> None:
    """Before, a worker in a handler that does not return ignored SIGTERM (it only stopped after the round)
    and needed SIGKILL. With --stop-timeout it abandons the round uncommitted, releases its cases and exits 1;
    the next worker runs the step again with the same idempotency key, counted as no takeover."""
    hang_model(ws)
    case = engine.start_case(ws, "hangs", {})
    (ws.path / f"hang-{case}").touch()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "procestra.cli.main", "-w", str(ws.path), "worker",
                                 "--name", "stuck", "--stop-timeout", "1"], env=subprocess_env(), stdout=out,
                                stderr=out)  # fmt: skip
    _wait_hanging(ws, proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1, log.read_text()[-3000:]
    lines = [x for x in log.read_text().splitlines() if x.startswith("error: ")]
    assert lines and "stopped after 1 s with a handler still running" in lines[-1]
    with ops.connect(ws) as con:
        row = con.execute("SELECT lease_owner, takeovers, status FROM cases WHERE case_id = ?", (case,)).fetchone()
    assert (row["lease_owner"], row["takeovers"], row["status"]) == (None, 0, "running")
    assert [s.element for s in engine.case_history(ws, case)] == ["Activity_prepare"]  # the hung step: not acknowledged
    (ws.path / f"hang-{case}").unlink()
    engine.Worker(ws, name="next", poll=0.05).run(until_idle=True)
    assert engine.get_case(ws, case).status == "completed"
    calls = [c for c in engine_handlers.calls(ws) if c["task"] == "Activity_work"]
    assert len(calls) == 2 and calls[0]["key"] == calls[1]["key"]  # run again, with the same idempotency key
