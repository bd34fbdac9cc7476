"""Scheduled jobs: definitions and bad input, DST, catch-up, overlap, claiming, retries, pipelines, history."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from _schedule_helpers import (
    flaky,
    kernel_killer,
    make_notebook,
    raising,
    recorder,
    sleeping,
    trivial,
)
from procestra import Workspace
from procestra.schedule.exceptions import JobError, JobNotFoundError, NotebookError, ParameterError
from procestra.schedule.executors import LocalExecutor
from procestra.schedule.jobs import add_job, fire_times, get_job, list_jobs, pause_job, resume_job
from procestra.schedule.runs import get_run, list_runs, write_history
from procestra.schedule.scheduler import Scheduler, remove_job, tick
from procestra.store import ops

U = UTC
T0 = datetime(2025, 1, 6, 0, 0, tzinfo=U)  # a Monday


@pytest.fixture(scope="module")
def nbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("schedule-nbs")
    return {
        "trivial": trivial(d / "trivial.ipynb"),
        "recorder": recorder(d / "recorder.ipynb"),
        "raising": raising(d / "raising.ipynb"),
        "sleeping": sleeping(d / "sleeping.ipynb", 2),
        "long": sleeping(d / "long.ipynb", 60),
        "killer": kernel_killer(d / "killer.ipynb"),
        "flaky": flaky(d / "flaky.ipynb", 3),
        "plain": make_notebook(d / "plain.ipynb", None, "print(1)"),
        "producer": make_notebook(d / "producer.ipynb", "region = 'north'",
                                  "from procestra.schedule.runner import record_output\nrecord_output('rows', 42)\n"
                                  "record_output('region', region)"),
        "consumer": make_notebook(d / "consumer.ipynb", "rows = 0\nupstream = None",
                                  "from procestra.schedule.runner import record_output\nrecord_output('got_rows', rows)\n"
                                  "record_output('got_upstream', upstream)"),
    }


@pytest.fixture(scope="module")
def executor():
    ex = LocalExecutor(concurrency=2)
    yield ex
    ex.close()


# -- definitions and bad input ---------------------------------------------------------------------
def test_a_job_is_stored_with_every_field(ws: Workspace, nbs: dict[str, Path]) -> None:
    from procestra.schedule.notify import Notify

    job = add_job(ws, "nightly", nbs["recorder"], cron="0 6 * * 1-5", timezone="Europe/Amsterdam",
                  parameters={"n": 2, "text": "x"}, timeout=600, retries=2, retry_backoff=30, overlap="queue",
                  catchup="all", catchup_limit=3, formats=("ipynb",), tags=("daily", "kpi"),
                  notify=Notify(webhook="http://127.0.0.1:9/hook", email=("me@example.com",), on="always"),
                  start=T0)
    got = get_job(ws, "nightly")
    assert got == job
    d = got.to_dict()
    assert d["parameters"] == {"n": 2, "text": "x"} and d["notebook"] == str(nbs["recorder"].resolve())
    assert d["notify"]["email"] == ["me@example.com"] and d["tags"] == ["daily", "kpi"]
    assert got.next_runs(2, after=T0) == [datetime(2025, 1, 6, 5, tzinfo=U), datetime(2025, 1, 7, 5, tzinfo=U)]
    assert [j.name for j in list_jobs(ws, tag="kpi")] == ["nightly"] and list_jobs(ws, tag="other") == []
    assert not pause_job(ws, "nightly").enabled and resume_job(ws, "nightly").enabled


@pytest.mark.parametrize("kwargs, error, match", [
    ({"cron": "61 * * * *"}, JobError, "invalid cron expression '61 \\* \\* \\* \\*'"),
    ({"cron": "0 6 * *"}, JobError, "invalid cron expression"),
    ({"timezone": "Mars/Olympus"}, JobError, "unknown timezone 'Mars/Olympus'"),
    ({"notebook": "missing.ipynb"}, NotebookError, "missing.ipynb: no such notebook"),
    ({"notebook": "plain", "parameters": {"x": 1}}, ParameterError, "no cell tagged 'parameters'"),
    ({"parameters": {"n": "two"}}, ParameterError, "parameter 'n' expects int"),
    ({"parameters": {"nope": 1}}, ParameterError, "unknown parameter 'nope'"),
    ({"overlap": "sometimes"}, JobError, "overlap 'sometimes'"),
    ({"catchup": "most"}, JobError, "catch-up 'most'"),
    ({"retries": -1}, JobError, "retries must be"),
    ({"timeout": 0}, JobError, "timeout must be a positive"),
    ({"formats": ("pdf",)}, JobError, "formats"),
    ({"name": "bad name!"}, JobError, "invalid job name"),
    ({"kernel": "cobol"}, NotebookError, "no Jupyter kernel named 'cobol'"),
    ({"depends_on": ("ghost",), "cron": None}, JobError, "depends on 'ghost', which is not a job"),
])
def test_bad_definitions_are_refused_and_store_nothing(ws: Workspace, nbs: dict[str, Path], kwargs: dict,
                                                       error: type, match: str) -> None:
    args = {"name": "j", "notebook": nbs["recorder"], "cron": "0 6 * * *", **kwargs}
    if args["notebook"] in ("plain", "missing.ipynb"):
        args["notebook"] = nbs["plain"] if args["notebook"] == "plain" else nbs["plain"].parent / "missing.ipynb"
    keep = add_job(ws, "keep", nbs["trivial"], cron="0 5 * * *", start=T0)  # the store exists, with one job
    with pytest.raises(error, match=match):
        add_job(ws, args.pop("name"), args.pop("notebook"), **args)
    assert list_jobs(ws) == [keep]  # nothing added, nothing changed


def test_duplicates_and_cycles_are_refused_and_leave_the_jobs_as_they_were(ws: Workspace, nbs: dict[str, Path]) -> None:
    add_job(ws, "a", nbs["trivial"], cron="0 * * * *")
    add_job(ws, "b", nbs["trivial"], depends_on=["a"])
    add_job(ws, "c", nbs["trivial"], depends_on=["b"])
    with pytest.raises(JobError, match="job 'a': already exists; pass --replace"):
        add_job(ws, "a", nbs["trivial"], cron="0 * * * *")
    with pytest.raises(JobError, match="dependency cycle: a -> c -> b -> a"):
        add_job(ws, "a", nbs["trivial"], depends_on=["c"], replace=True)
    with pytest.raises(JobError, match="dependency cycle: c -> c"):
        add_job(ws, "c", nbs["trivial"], depends_on=["c"], replace=True)
    assert get_job(ws, "a").cron == "0 * * * *" and get_job(ws, "c").depends_on == ("b",)
    with pytest.raises(JobError, match="jobs c depend on it"):
        remove_job(ws, "b")
    remove_job(ws, "c")
    with pytest.raises(JobNotFoundError, match="no job named 'c' \\(jobs: a, b\\)"):
        get_job(ws, "c")
    with pytest.raises(JobError, match="leave out --cron"):
        add_job(ws, "d", nbs["trivial"], cron="0 * * * *", depends_on=["a"])


# -- DST ---------------------------------------------------------------------------------------------
def _utc(times) -> list[str]:
    return [t.strftime("%m-%d %H:%M") for t in times]


def test_dst_europe_amsterdam() -> None:
    ams = "Europe/Amsterdam"
    # weekdays 06:00 local: 05:00 UTC in winter time, 04:00 UTC after the spring change (30 March 2025)
    assert _utc(fire_times("0 6 * * 1-5", ams, datetime(2025, 3, 27, tzinfo=U), datetime(2025, 4, 1, 12, tzinfo=U))) == [
        "03-27 05:00", "03-28 05:00", "03-31 04:00", "04-01 04:00"]
    # 02:30 does not exist on 30 March: it runs once, at the end of the gap (03:00 CEST = 01:00 UTC)
    assert _utc(fire_times("30 2 * * *", ams, datetime(2025, 3, 29, tzinfo=U), datetime(2025, 3, 31, tzinfo=U))) == [
        "03-29 01:30", "03-30 01:00"]
    # 02:30 happens twice on 26 October: a fixed-hour job runs once
    assert _utc(fire_times("30 2 * * *", ams, datetime(2025, 10, 25, tzinfo=U), datetime(2025, 10, 27, 12, tzinfo=U))) == [
        "10-25 00:30", "10-26 00:30", "10-27 01:30"]
    # an hourly job runs every real hour: 25 on the long day, 23 on the short one
    assert len(list(fire_times("0 * * * *", ams, datetime(2025, 10, 25, 22, tzinfo=U),
                               datetime(2025, 10, 26, 23, tzinfo=U)))) == 25
    assert len(list(fire_times("0 * * * *", ams, datetime(2025, 3, 29, 23, tzinfo=U),
                               datetime(2025, 3, 30, 22, tzinfo=U)))) == 23


def test_dst_america_new_york() -> None:
    ny = "America/New_York"
    assert _utc(fire_times("0 6 * * 1-5", ny, datetime(2025, 3, 6, tzinfo=U), datetime(2025, 3, 11, 12, tzinfo=U))) == [
        "03-06 11:00", "03-07 11:00", "03-10 10:00", "03-11 10:00"]
    assert _utc(fire_times("30 2 * * *", ny, datetime(2025, 3, 8, 12, tzinfo=U), datetime(2025, 3, 10, 12, tzinfo=U))) == [
        "03-09 07:00", "03-10 06:30"]
    assert _utc(fire_times("30 1 * * *", ny, datetime(2025, 11, 1, 12, tzinfo=U), datetime(2025, 11, 3, 12, tzinfo=U))) == [
        "11-02 05:30", "11-03 06:30"]
    assert _utc(fire_times("*/30 * * * *", ny, datetime(2025, 11, 2, 4, 45, tzinfo=U), datetime(2025, 11, 2, 7, tzinfo=U))) == [
        "11-02 05:00", "11-02 05:30", "11-02 06:00", "11-02 06:30", "11-02 07:00"]


def test_a_tick_across_the_spring_change_runs_at_the_new_utc_time_and_injects_it(
        ws: Workspace, nbs: dict[str, Path], executor: LocalExecutor) -> None:
    add_job(ws, "kpi", nbs["recorder"], cron="0 6 * * 1-5", timezone="Europe/Amsterdam",
            start=datetime(2025, 3, 28, 0, tzinfo=U))
    first = tick(ws, datetime(2025, 3, 28, 5, 0, 30, tzinfo=U), executor=executor)
    second = tick(ws, datetime(2025, 3, 31, 4, 1, tzinfo=U), executor=executor)
    assert [r.scheduled_for for r in first.finished + second.finished] == [
        datetime(2025, 3, 28, 5, tzinfo=U), datetime(2025, 3, 31, 4, tzinfo=U)]
    run = second.finished[0]
    assert run.status == "succeeded" and run.outputs["scheduled_for"] == "2025-03-31T04:00:00+00:00"
    assert run.outputs["run_id"] == run.run_id == "kpi-20250331T040000Z-1" and run.outputs["attempt"] == 1
    assert Path(run.output).is_file() and Path(run.html).is_file()
    assert tick(ws, datetime(2025, 3, 31, 4, 1, tzinfo=U), executor=executor).planned == []  # nothing new


# -- catch-up, overlap and claiming (planning only: no kernels) ------------------------------------------
@pytest.mark.parametrize("policy, limit, run, skipped", [("none", 10, 1, 9), ("latest", 10, 1, 9), ("all", 3, 3, 7)])
def test_catch_up_after_downtime(ws: Workspace, nbs: dict[str, Path], policy: str, limit: int, run: int,
                                 skipped: int) -> None:
    add_job(ws, "hourly", nbs["trivial"], cron="0 * * * *", catchup=policy, catchup_limit=limit, start=T0,
            overlap="allow")
    planned = Scheduler(ws).plan(T0 + timedelta(hours=10, seconds=30))
    queued = [r.scheduled_for for r in planned if r.status == "queued"]
    assert len(queued) == run and len([r for r in planned if r.status == "skipped"]) == skipped
    assert queued[-1] == T0 + timedelta(hours=10)  # the newest slot always among those run
    assert all("missed" in r.reason for r in planned if r.status == "skipped")


def test_catch_up_none_runs_nothing_late(ws: Workspace, nbs: dict[str, Path]) -> None:
    add_job(ws, "hourly", nbs["trivial"], cron="0 * * * *", catchup="none", grace=60, start=T0)
    planned = Scheduler(ws).plan(T0 + timedelta(hours=3, minutes=5))
    assert [r.status for r in planned] == ["skipped"] * 3


def test_two_schedulers_plan_and_claim_each_slot_once(ws: Workspace, nbs: dict[str, Path]) -> None:
    add_job(ws, "hourly", nbs["trivial"], cron="0 * * * *", catchup="all", start=T0, overlap="allow")
    a, b = Scheduler(ws, LocalExecutor(4)), Scheduler(ws, LocalExecutor(4))
    try:
        now = T0 + timedelta(hours=2, seconds=1)
        assert len(a.plan(now)) == 2 and b.plan(now) == []
        claimed_a, claimed_b = a.dispatch(), b.dispatch()
        assert len(claimed_a) == 2 and claimed_b == []
        while a._inflight:
            a.wait(1)
        assert {r.status for r in list_runs(ws, job="hourly")} == {"succeeded"}
    finally:
        a.close()
        b.close()


def test_overlap_skip_records_a_skipped_slot_while_a_run_is_active(ws: Workspace, nbs: dict[str, Path]) -> None:
    add_job(ws, "every", nbs["trivial"], cron="*/10 * * * *", start=T0, overlap="skip")
    s = Scheduler(ws)
    assert [r.status for r in s.plan(T0 + timedelta(minutes=10))] == ["queued"]
    second = s.plan(T0 + timedelta(minutes=20))
    assert [r.status for r in second] == ["skipped"] and "overlap" in second[0].reason


@pytest.mark.parametrize("overlap, together", [("queue", False), ("allow", True)])
def test_overlap_queue_runs_one_at_a_time_allow_runs_together(ws: Workspace, nbs: dict[str, Path], overlap: str,
                                                               together: bool) -> None:
    add_job(ws, "slow", nbs["sleeping"], cron="*/10 * * * *", start=T0, overlap=overlap, catchup="all")
    ex = LocalExecutor(2)
    try:
        result = tick(ws, T0 + timedelta(minutes=20), executor=ex)
    finally:
        ex.close()
    a, b = sorted(result.finished, key=lambda r: r.started_at)
    assert a.status == b.status == "succeeded"
    assert (b.started_at < a.ended_at) is together


# -- failures, retries, timeouts, dead kernels ------------------------------------------------------------
def test_retries_with_backoff_until_success_and_the_jobs_log(ws: Workspace, nbs: dict[str, Path],
                                                            executor: LocalExecutor) -> None:
    add_job(ws, "flaky", nbs["flaky"], cron="0 6 * * *", retries=2, retry_backoff=0.5, start=T0)
    result = tick(ws, T0 + timedelta(hours=6, seconds=5), executor=executor)
    runs = sorted(list_runs(ws, job="flaky"), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.trigger) for r in runs] == [
        (1, "failed", "schedule"), (2, "failed", "retry"), (3, "succeeded", "retry")]
    assert runs[0].error.evalue == "attempt 1 failed" and runs[0].error.cell_index == 2
    assert runs[2].outputs["attempt"] == 3
    assert (runs[2].queued_at - runs[1].ended_at).total_seconds() < 5
    assert runs[2].not_before >= runs[1].ended_at + timedelta(seconds=1.0)  # backoff doubles: 0.5 s, 1 s
    assert result.flushed > 0
    df = ws.to_pandas("jobs")
    case = df[df["case:concept:name"] == "flaky@2025-01-06T06:00:00Z"]
    acts = list(zip(case["concept:name"], case["lifecycle:transition"]))
    assert acts == [("queue", "complete"), ("run", "start"), ("run", "complete"), ("retry", "complete"),
                    ("run", "start"), ("run", "complete"), ("retry", "complete"), ("run", "start"),
                    ("run", "complete")]
    assert list(case[case["concept:name"] == "run"]["outcome"].dropna()) == ["failed", "failed", "succeeded"]


def test_failures_timeouts_and_dead_kernels_are_recorded_never_left_running(
        ws: Workspace, nbs: dict[str, Path], executor: LocalExecutor) -> None:
    add_job(ws, "raises", nbs["raising"], cron="0 6 * * *", start=T0)
    add_job(ws, "slow", nbs["long"], cron="0 6 * * *", start=T0, timeout=2)
    add_job(ws, "oom", nbs["killer"], cron="0 6 * * *", start=T0)
    tick(ws, T0 + timedelta(hours=6, seconds=1), executor=executor)
    got = {r.job: r for r in list_runs(ws)}
    assert (got["raises"].status, got["raises"].error.cell_index, got["raises"].error.ename,
            got["raises"].error.evalue) == ("failed", 3, "ValueError", "bad value 1")
    assert got["slow"].status == "timed_out" and got["slow"].error.ename == "TimeoutError"
    assert got["oom"].status == "failed" and got["oom"].error.ename == "DeadKernelError"
    assert all(Path(r.output).is_file() and Path(r.html).is_file() for r in got.values())
    assert list_runs(ws, status="running") == []


@pytest.fixture
def pids() -> Iterator[dict[str, int]]:
    """A live pid (a child sleeping until the test ends) and a dead one (a child started and waited for)."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        yield {"live": live.pid, "dead": dead.pid}
    finally:
        live.kill()
        live.wait()


# A scheduler's id is "host:pid:nonce". Documented (Scheduler.reap, ARCHITECTURE.md): a run is
# reaped when its scheduler's process is gone (checkable on this host only) or its heartbeat is
# stale (older than PROCESTRA_STALE_AFTER, 120 s); a live pid with a stale heartbeat is a pid
# reused by another process, or a scheduler that stopped beating.
@pytest.mark.parametrize("host, pid, beat, reaped", [
    ("here", "live", "fresh", False),
    ("here", "dead", "fresh", True),
    ("here", "live", "stale", True),
    ("other", "dead", "fresh", False),  # a pid of another machine says nothing here: the heartbeat decides
    ("other", "live", "stale", True),
])
def test_a_run_is_reaped_when_its_scheduler_is_gone_or_silent(ws: Workspace, nbs: dict[str, Path],
                                                              pids: dict[str, int], host: str, pid: str,
                                                              beat: str, reaped: bool) -> None:
    import socket

    add_job(ws, "j", nbs["trivial"], cron="0 6 * * *", start=T0, retries=1, retry_backoff=0)
    s = Scheduler(ws, LocalExecutor(1, warm_kernels=False))
    try:
        s.plan(T0 + timedelta(hours=6))
        name = socket.gethostname() if host == "here" else "elsewhere.invalid"
        heartbeat = datetime.now(U) - (timedelta(0) if beat == "fresh" else timedelta(hours=1))
        with ops.transaction(ws) as con:
            con.execute("UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ?",
                        [f"{name}:{pids[pid]}:x", ops.to_iso(T0), ops.to_iso(heartbeat)])
        got = [(r.status, r.error.ename) for r in s.reap()]
        history = [(r.attempt, r.status) for r in list_runs(ws, job="j")]
    finally:
        s.close()
    if reaped:
        assert got == [("failed", "WorkerLost")]
        assert history == [(2, "queued"), (1, "failed")]
    else:
        assert got == []
        assert history == [(1, "running")]


# -- pipelines ------------------------------------------------------------------------------------------------
def test_a_pipeline_runs_after_its_upstream_succeeds_with_its_outputs(ws: Workspace, nbs: dict[str, Path],
                                                                      executor: LocalExecutor) -> None:
    add_job(ws, "ingest", nbs["producer"], cron="0 5 * * *", start=T0, parameters={"region": "south"})
    add_job(ws, "dashboard", nbs["consumer"], depends_on=["ingest"])
    add_job(ws, "broken", nbs["raising"], cron="0 5 * * *", start=T0)
    add_job(ws, "after-broken", nbs["consumer"], depends_on=["broken"])
    tick(ws, T0 + timedelta(hours=5, seconds=1), executor=executor)
    dash = list_runs(ws, job="dashboard")
    assert [(r.status, r.trigger, r.scheduled_for) for r in dash] == [
        ("succeeded", "dependency", T0 + timedelta(hours=5))]
    assert dash[0].outputs["got_rows"] == 42
    assert dash[0].outputs["got_upstream"] == {"ingest": {"rows": 42, "region": "south"}}
    assert dash[0].started_at >= list_runs(ws, job="ingest")[0].ended_at
    skipped = list_runs(ws, job="after-broken")
    assert [(r.status, r.reason) for r in skipped] == [("skipped", "upstream broken failed")]


# -- history --------------------------------------------------------------------------------------------------
def test_run_history_filters_and_page(ws: Workspace, nbs: dict[str, Path], executor: LocalExecutor) -> None:
    add_job(ws, "ok", nbs["trivial"], cron="0 6 * * *", start=T0)
    add_job(ws, "bad", nbs["raising"], cron="0 6 * * *", start=T0)
    tick(ws, T0 + timedelta(hours=6, seconds=1), executor=executor)
    assert [r.job for r in list_runs(ws, status="failed")] == ["bad"]
    run = list_runs(ws, job="ok")[0]
    assert get_run(ws, run.run_id) == run
    assert run.summary() == {"run": "ok-20250106T060000Z-1", "job": "ok", "scheduled_for": "2025-01-06T06:00:00+00:00",
                             "status": "succeeded", "attempt": 1, "output": run.output}
    page = write_history(ws).read_text()
    assert "ok-20250106T060000Z-1" in page and "ValueError: bad value 1" in page and "#dc3545" in page
    assert 'href="jobs/ok/ok-20250106T060000Z-1.html"' in page
    with pytest.raises(Exception, match="unknown status 'done'"):
        list_runs(ws, status="done")
    with pytest.raises(JobNotFoundError):
        list_runs(ws, job="nosuch")


# -- Dask ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_address():
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_dask_executor_runs_jobs_on_a_real_local_cluster(ws: Workspace, nbs: dict[str, Path],
                                                         dask_address: str) -> None:
    import threading

    from procestra.schedule.executors import DaskExecutor, RunSpec, get_executor

    ex = get_executor("dask", address=dask_address)
    assert isinstance(ex, DaskExecutor) and ex.capacity == 2
    try:
        add_job(ws, "remote", nbs["recorder"], cron="0 * * * *", catchup="all", start=T0, overlap="allow",
                parameters={"n": 5})
        add_job(ws, "remote-slow", nbs["long"], cron="30 1 * * *", start=T0, timeout=2)
        tick(ws, T0 + timedelta(hours=2, seconds=1), executor=ex)
        runs = {(r.job, r.scheduled_for.hour): r for r in list_runs(ws)}
        ok = runs[("remote", 2)]
        assert ok.status == "succeeded" and ok.outputs["n"] == 5 and ok.outputs["run_id"] == ok.run_id
        assert Path(ok.output).is_file() and Path(ok.html).is_file()
        assert str(ws.path) in ok.output  # written into the workspace by the scheduler, not by the worker
        assert runs[("remote", 1)].status == "succeeded"
        assert runs[("remote-slow", 1)].status == "timed_out"
        # a cancel reaches the run on the worker
        fut = ex.submit(RunSpec("cancel-me", str(nbs["long"]), str(ws.path / "runs" / "c.ipynb")))
        threading.Timer(3.0, ex.cancel, args=("cancel-me",)).start()
        assert fut.result(timeout=120).status == "cancelled"
    finally:
        ex.close()


def test_scheduler_tick_cli_with_the_dask_executor(tmp_path: Path, nbs: dict[str, Path], dask_address: str) -> None:
    from conftest import run_cli

    ws = Workspace.init(tmp_path / "ws")
    add_job(ws, "remote", nbs["recorder"], cron="0 6 * * *", start=datetime(2025, 3, 30, tzinfo=U))
    proc = run_cli("scheduler", "tick", "--now", "2025-03-30T06:00:05Z", "--executor", "dask", "--address",
                   dask_address, "--json", workspace=ws.path)
    assert proc.returncode == 0, proc.stderr
    finished = json.loads(proc.stdout)["finished"]
    assert [(r["status"], r["outputs"]["run_id"]) for r in finished] == [("succeeded", "remote-20250330T060000Z-1")]


def test_dask_executor_needs_a_reachable_address() -> None:
    from procestra import InvalidArgumentError
    from procestra.schedule.executors import get_executor

    with pytest.raises(InvalidArgumentError, match="needs --address"):
        get_executor("dask")
    with pytest.raises(InvalidArgumentError, match="not a Dask scheduler address"):
        get_executor("dask", address="localhost:1")
    with pytest.raises(InvalidArgumentError, match="unknown executor 'k8s'"):
        get_executor("k8s")


def test_run_history_widget_colours_links_filters_and_closes(ws: Workspace, nbs: dict[str, Path],
                                                            executor: LocalExecutor) -> None:
    from procestra.widgets import RunHistory

    add_job(ws, "ok", nbs["trivial"], cron="0 6 * * *", start=T0)
    add_job(ws, "bad", nbs["raising"], cron="0 6 * * *", start=T0)
    tick(ws, T0 + timedelta(hours=6, seconds=1), executor=executor)
    view = RunHistory(ws)
    assert len(view.runs) == 2 and "procestra-status-failed" in view.table.value and "#dc3545" in view.table.value
    assert "ValueError: bad value 1" in view.table.value and ".html" in view.table.value
    assert "succeeded</span> 1" in view.summary.value
    view.status_picker.value = "failed"
    assert [r.job for r in view.runs] == ["bad"]
    view.run_picker.value = view.runs[0].run_id
    assert "bad value 1" in view.details.value
    view.status_picker.value = "(all)"
    view.job_picker.value = "ok"
    assert [r.job for r in view.runs] == ["ok"] and "procestra-status-failed" not in view.table.value
    assert "application/vnd.jupyter.widget-view+json" in view._repr_mimebundle_()
    view.close()
    assert view.table.comm is None
