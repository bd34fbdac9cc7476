"""The scheduling commands end to end in real processes: shapes, bad input, daemons, SIGTERM, two daemons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from _schedule_helpers import make_notebook, raising, recorder, trivial
from conftest import run_cli
from procestra import Workspace
from procestra.schedule import Scheduler, list_runs

NOW = "2025-03-31T04:00:30Z"


@pytest.fixture(scope="module")
def nbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-nbs")
    return {"recorder": recorder(d / "recorder.ipynb"), "raising": raising(d / "raising.ipynb"),
            "trivial": trivial(d / "trivial.ipynb"), "plain": make_notebook(d / "plain.ipynb", None, "print(1)")}


def _json(proc: subprocess.CompletedProcess[str]):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _user_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], proc.stderr
    assert proc.stdout == ""


def test_schedule_tick_runs_and_history_shapes(tmp_path: Path, nbs: dict[str, Path]) -> None:
    ws = Workspace.init(tmp_path / "ws").path
    job = _json(run_cli("schedule", "add", "nightly", str(nbs["recorder"]), "--cron", "0 6 * * 1-5", "--tz",
                        "Europe/Amsterdam", "-p", "n=3", "-p", "text=__import__('os').system('touch pwned')",
                        "--retries", "2", "--tag", "kpi", "--start", "2025-03-28T00:00:00Z", "--json", workspace=ws))
    assert job["parameters"] == {"n": 3, "text": "__import__('os').system('touch pwned')"}
    assert [j["name"] for j in _json(run_cli("schedule", "list", "--json", workspace=ws))] == ["nightly"]
    tick = _json(run_cli("scheduler", "tick", "--now", NOW, "--json", workspace=ws))
    assert [r["status"] for r in tick["planned"]] == ["skipped", "queued"]
    assert [r["status"] for r in tick["finished"]] == ["succeeded"]
    runs = _json(run_cli("runs", "--json", workspace=ws))
    assert [list(r) for r in runs] == [["run", "job", "scheduled_for", "status", "attempt", "output"]] * 2
    assert runs[0] == {"run": "nightly-20250331T040000Z-1", "job": "nightly",
                       "scheduled_for": "2025-03-31T04:00:00+00:00", "status": "succeeded", "attempt": 1,
                       "output": runs[0]["output"]}
    assert Path(runs[0]["output"]).is_absolute() and Path(runs[0]["output"]).is_file()
    assert _json(run_cli("runs", "--job", "nightly", "--status", "skipped", "--json", workspace=ws))[0]["attempt"] == 1
    shown = _json(run_cli("runs", "show", runs[0]["run"], "--json", workspace=ws))
    assert shown["outputs"]["text"] == "__import__('os').system('touch pwned')" and shown["outputs"]["n"] == 3
    assert shown["outputs"]["scheduled_for"] == "2025-03-31T04:00:00+00:00" and Path(shown["html"]).is_file()
    assert not (nbs["recorder"].parent / "pwned").exists() and not Path("pwned").exists()
    show = _json(run_cli("schedule", "show", "nightly", "--json", workspace=ws))
    assert show["recent_runs"][0]["run"] == runs[0]["run"]
    page = _json(run_cli("runs", "html", "--json", workspace=ws))["path"]
    assert "nightly-20250331T040000Z-1" in Path(page).read_text()
    assert _json(run_cli("schedule", "pause", "nightly", "--json", workspace=ws)) == {"job": "nightly", "enabled": False}
    assert _json(run_cli("schedule", "resume", "nightly", "--json", workspace=ws))["enabled"] is True
    assert _json(run_cli("schedule", "remove", "nightly", "--json", workspace=ws)) == {"removed": "nightly"}
    assert run_cli("runs", "--json", "--job", "nightly", workspace=ws).returncode == 0  # history stays
    _user_error(run_cli("runs", "show", "nope", workspace=ws), "no run 'nope'")


def test_run_notebook_records_the_run_and_fails_with_exit_1(tmp_path: Path, nbs: dict[str, Path]) -> None:
    ws = Workspace.init(tmp_path / "ws").path
    ok = _json(run_cli("run-notebook", str(nbs["recorder"]), "-p", "text=print('hi'); x = \"", "--json",
                       workspace=ws))
    assert ok["status"] == "succeeded" and ok["job"] == "adhoc/recorder" and ok["outputs"]["text"] == "print('hi'); x = \""
    bad = run_cli("run-notebook", str(nbs["raising"]), "--json", workspace=ws)
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"] == {"cell": 3, "name": "ValueError",
                                                                       "value": "bad value 1"}
    assert bad.stderr.strip().splitlines()[-1].startswith("error: run adhoc-raising-")
    statuses = sorted(r["status"] for r in _json(run_cli("runs", "--json", workspace=ws)))
    assert statuses == ["failed", "succeeded"]


def test_bad_input_is_one_line_exit_2_and_stores_nothing(tmp_path: Path, nbs: dict[str, Path]) -> None:
    from procestra.schedule import add_job

    w = Workspace.init(tmp_path / "ws")
    ws, nb = w.path, str(nbs["recorder"])
    add_job(w, "a", nb, cron="0 * * * *")
    add_job(w, "b", nb, depends_on=["a"])
    before = _json(run_cli("schedule", "list", "--json", workspace=ws))
    cases = [
        (("schedule", "add", "x", nb, "--cron", "0 6 * *"), "invalid cron expression '0 6 * *'"),
        (("schedule", "add", "x", nb, "--cron", "0 6 * * *", "--tz", "Mars/Base"), "unknown timezone 'Mars/Base'"),
        (("schedule", "add", "x", str(tmp_path / "no.ipynb"), "--cron", "0 6 * * *"), "no.ipynb: no such notebook"),
        (("schedule", "add", "x", str(nbs["plain"]), "--cron", "0 6 * * *", "-p", "a=1"),
         "no cell tagged 'parameters'"),
        (("schedule", "add", "x", nb, "--cron", "0 6 * * *", "-p", "n=many"), "parameter 'n' expects int"),
        (("schedule", "add", "a", nb, "--cron", "0 6 * * *"), "job 'a': already exists"),
        (("schedule", "add", "a", nb, "--after", "b", "--replace"), "dependency cycle: a -> b -> a"),
        (("scheduler", "tick", "--now", "yesterday"), "--now 'yesterday' is not an ISO 8601 time"),
        (("scheduler", "tick", "--executor", "dask", "--address", "nowhere"), "not a Dask scheduler address"),
        (("runs", "--job", "ghost"), "no job named 'ghost'"),
    ]
    for args, text in cases:
        _user_error(run_cli(*args, workspace=ws), text)
    assert _json(run_cli("schedule", "list", "--json", workspace=ws)) == before
    assert _json(run_cli("runs", "--json", workspace=ws)) == []


# -- daemons -------------------------------------------------------------------------------------------------
def _start_daemon(ws: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    err = open(log, "wb")  # noqa: SIM115 - handed to the daemon as its stderr
    return subprocess.Popen([sys.executable, "-m", "procestra.cli", "-w", str(ws), "scheduler", "run", "--poll",
                             "0.2", *extra], stdout=subprocess.DEVNULL, stderr=err,
                            env={**os.environ, "PROCESTRA_NO_PROGRESS": "1"})


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_daemon_sigterm_lets_short_runs_finish_and_cancels_long_ones(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    short = make_notebook(tmp_path / "short.ipynb", "x = 1", "import time; time.sleep(3)")
    long = make_notebook(tmp_path / "long.ipynb", "x = 1", "import time; time.sleep(120)")
    for name, nb in (("short", short), ("long", long)):
        run_cli("schedule", "add", name, str(nb), "--cron", "* * * * * */2", workspace=ws.path, check=True)
    daemon = _start_daemon(ws.path, tmp_path / "daemon.log", "--stop-timeout", "10", "--concurrency", "2")
    try:
        _wait_for(lambda: {r.job for r in list_runs(ws, status="running")} == {"short", "long"}, 90, "both running")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=90) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    by_job = {job: [r.status for r in list_runs(ws, job=job) if r.status not in ("skipped", "queued")]
              for job in ("short", "long")}
    assert by_job["short"][0] == "succeeded", by_job
    assert by_job["long"][0] == "cancelled", by_job
    assert list_runs(ws, status="running") == []
    log = (tmp_path / "daemon.log").read_text()
    assert "stopped" in log and "Traceback" not in log
    assert "jobs" in [i.name for i in ws.logs()]  # the daemon flushed its events


DOUBLE = """import time, fcntl
time.sleep(2.5)
with open(LEDGER, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.write(scheduled_for + "\\n")
"""


def test_two_daemons_never_run_one_slot_twice(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ledger = tmp_path / "ledger.txt"
    nb = make_notebook(tmp_path / "tally.ipynb", f"LEDGER = {str(ledger)!r}", DOUBLE)
    run_cli("schedule", "add", "tally", str(nb), "--cron", "* * * * * */2", "--overlap", "allow",
            workspace=ws.path, check=True)
    daemons = [_start_daemon(ws.path, tmp_path / f"d{i}.log", "--concurrency", "1", "--stop-timeout", "60")
               for i in range(2)]
    try:
        _wait_for(lambda: ledger.exists() and len(ledger.read_text().split()) >= 5, 150, "five runs")
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        assert [d.wait(timeout=120) for d in daemons] == [0, 0]
    finally:
        for d in daemons:
            if d.poll() is None:
                d.kill()
    slots = ledger.read_text().split()
    assert max(Counter(slots).values()) == 1, Counter(slots).most_common(3)
    runs = [r for r in list_runs(ws, job="tally") if r.status == "succeeded"]
    assert len(runs) == len(slots)
    assert len({r.worker for r in runs}) == 2  # both daemons took slots
    keys = Counter((r.scheduled_for, r.attempt) for r in list_runs(ws, job="tally"))
    assert max(keys.values()) == 1


def test_a_killed_daemon_leaves_no_run_stuck_in_running_and_no_kernel(tmp_path: Path) -> None:
    import psutil

    from procestra.schedule import add_job

    ws = Workspace.init(tmp_path / "ws")
    nb = make_notebook(tmp_path / "long.ipynb", "x = 1", "import time; time.sleep(120)")
    add_job(ws, "long", nb, cron="* * * * * */2")
    daemon = _start_daemon(ws.path, tmp_path / "d.log")
    try:
        _wait_for(lambda: len(list_runs(ws, status="running")) == 1 and any(
            "ipykernel" in " ".join(c.cmdline()) for c in psutil.Process(daemon.pid).children()), 90, "a running kernel")
        kernels = [c for c in psutil.Process(daemon.pid).children() if "ipykernel" in " ".join(c.cmdline())]
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    _, alive = psutil.wait_procs(kernels, timeout=20)  # the kernel notices its parent died and exits
    assert alive == []
    reaped = Scheduler(ws).reap()
    assert [(r.status, r.error.ename) for r in reaped] == [("failed", "WorkerLost")]
    assert list_runs(ws, status="running") == []
