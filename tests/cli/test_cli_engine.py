"""The engine's commands through the real ``procestra`` CLI: model validate, start, worker, cases, tasks,
complete, cancel, retry; JSON shapes and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, small_model
from procestra import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    small_model().save(Workspace.init(root))
    return root


def test_start_work_complete_and_list(ws: Path) -> None:
    assert run_cli("model", "validate", "review", workspace=ws, check=True).stdout.strip() == "review: no problems"
    small = run_cli("start", "review", "--data", '{"applicant": "A1", "amount": 500}', workspace=ws, check=True)
    large = run_cli("start", "review", "--data", '{"applicant": "A2", "amount": 5000}', "--key", "loan-2",
                    workspace=ws, check=True)
    small_id, large_id = small.stdout.strip(), large.stdout.strip()
    assert small_id.startswith("c-") and large_id.startswith("c-")
    report = json.loads(run_cli("worker", "--until-idle", "--json", workspace=ws, check=True).stdout)
    assert report["cases_completed"] == 1
    listed = json.loads(run_cli("cases", "--json", workspace=ws, check=True).stdout)
    assert sorted(listed, key=lambda c: c["case"]) == sorted([
        {"case": small_id, "model": "review", "version": 1, "status": "completed", "error": None},
        {"case": large_id, "model": "review", "version": 1, "status": "waiting", "error": None}], key=lambda c: c["case"])
    waiting = json.loads(run_cli("cases", "--status", "waiting", "--json", workspace=ws, check=True).stdout)
    assert [c["case"] for c in waiting] == [large_id]

    tasks = json.loads(run_cli("tasks", "--json", workspace=ws, check=True).stdout)
    assert len(tasks) == 1 and tasks[0]["case"] == large_id and tasks[0]["candidate_group"] == "reviewers"
    assert tasks[0]["form"][0]["name"] == "decision" and tasks[0]["overdue"] is False
    task = tasks[0]["task"]
    assert task in run_cli("tasks", workspace=ws, check=True).stdout

    bad = run_cli("complete", task, "--data", '{"decision": "maybe"}', workspace=ws)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "decision" in bad.stderr
    run_cli("complete", task, "--data", '{"decision": "approve"}', "--user", "ann", workspace=ws, check=True)
    twice = run_cli("complete", task, "--data", '{"decision": "approve"}', workspace=ws)
    assert twice.returncode == 2 and "completed already" in twice.stderr
    run_cli("worker", "--until-idle", workspace=ws, check=True)
    done = json.loads(run_cli("cases", "--status", "completed", "--json", workspace=ws, check=True).stdout)
    assert {c["case"] for c in done} == {small_id, large_id}


@pytest.mark.parametrize(("args", "message"), [
    (("start", "review", "--data", "{bad"), "--data is not valid JSON"),
    (("start", "review", "--data", '{"applicant": "A"}'), "amount: required"),
    (("start", "review", "--data", '{"applicant": "A", "amount": "lots"}'), "amount: expected a number"),
    (("start", "nope", "--data", "{}"), "no model named 'nope'"),
    (("start", "review", "--version", "9", "--data", "{}"), "version 9"),
    (("complete", "t-nope", "--data", "{}"), "no human task 't-nope'"),
    (("cancel", "c-nope"), "no case 'c-nope'"),
    (("retry", "c-nope"), "no case 'c-nope'"),
    (("model", "validate", "nope"), "no model named 'nope'"),
], ids=["json", "required", "type", "model", "version", "task", "case", "retry", "validate"])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(ws: Path, args: tuple[str, ...], message: str) -> None:
    before = run_cli("cases", "--json", workspace=ws, check=True).stdout
    proc = run_cli(*args, workspace=ws)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert run_cli("cases", "--json", workspace=ws, check=True).stdout == before  # nothing changed


def test_business_key_is_unique_and_cancel(ws: Path) -> None:
    first = run_cli("start", "review", "--data", '{"applicant": "A", "amount": 5000}', "--key", "K",
                    workspace=ws, check=True).stdout.strip()
    again = run_cli("start", "review", "--data", '{"applicant": "A", "amount": 5000}', "--key", "K", workspace=ws)
    assert again.returncode == 2 and first in again.stderr
    run_cli("worker", "--until-idle", workspace=ws, check=True)
    cancelled = json.loads(run_cli("cancel", first, "--json", workspace=ws, check=True).stdout)
    assert cancelled["status"] == "cancelled"
    assert json.loads(run_cli("tasks", "--json", workspace=ws, check=True).stdout) == []  # its task went too
    twice = run_cli("cancel", first, workspace=ws)
    assert twice.returncode == 2 and "cancelled already" in twice.stderr


def test_validate_a_broken_file(tmp_path: Path) -> None:
    m = small_model("broken")
    m.set_condition("size", "auto", None)  # a branch without condition that is not the default
    path = m.write(tmp_path / "broken.bpmn")
    proc = run_cli("model", "validate", str(path), "--json")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    problems = json.loads(proc.stdout)
    assert any(p["element"] == "size" and p["severity"] == "error" for p in problems)
