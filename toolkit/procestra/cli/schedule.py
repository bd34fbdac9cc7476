"""Scheduled notebook jobs: ``schedule add|list|show|pause|resume|remove``, ``scheduler run|tick``,
``runs [show|html]`` and ``run-notebook``.

papermill and nbformat load only inside the commands that run notebooks; ``runs`` and
``schedule list`` never pay for them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from procestra.cli.io import State, cli_endpoint, emit, emit_json, emit_rows, fail, iso, json_option
from procestra.errors import InvalidArgumentError

F = TypeVar("F", bound=Callable[..., Any])


def api() -> Any:
    """``procestra.schedule``, whose names load on first use (a module ``__getattr__``).

    mypy types such names as ``object``; until the subpackage names them for type checkers
    too, the commands reach them through this untyped handle.
    """
    import procestra.schedule

    return procestra.schedule


def parse_params(pairs: tuple[str, ...], notebook: str | None) -> dict[str, Any]:
    """``-p KEY=VALUE`` pairs, typed by ``notebook``'s parameters cell (left as text when None)."""
    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"-p {pair!r}: expected KEY=VALUE", parameter="param")
        raw[key.strip()] = value
    if not raw or notebook is None:
        return dict(raw)
    from procestra.schedule.runner import coerce_parameters

    return coerce_parameters(notebook, raw)


def parse_when(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time from the command line (no offset means UTC)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(f"{option} {text!r} is not an ISO 8601 time such as 2025-03-31T06:00:00+02:00",
                                   parameter=option.lstrip("-")) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def executor_options(func: F) -> F:
    """``--executor``, ``--address``, ``--concurrency``: where notebooks run (see :func:`make_executor`)."""
    for opt in reversed([
        click.option("--executor", "executor_name", default="local", show_default=True,
                     help="Where notebooks run: local (kernels on this machine) or dask."),
        click.option("--address", help="Dask scheduler address for --executor dask, e.g. tcp://10.0.0.5:8786."),
        click.option("--concurrency", type=int, help="Runs at once (local default 2; dask default: its threads)."),
    ]):
        func = opt(func)
    return func


def make_executor(name: str, address: str | None, concurrency: int | None) -> Any:
    from procestra.schedule.executors import get_executor

    if name != "dask" and address:
        raise InvalidArgumentError("--address is only for --executor dask", parameter="address")
    return get_executor(name, address=address, concurrency=concurrency)


def run_line(r: Any) -> str:
    """One run in one line (its output file on a second)."""
    secs = f" in {r.seconds:.1f}s" if r.seconds is not None else ""
    err = f": {r.error}" if r.error else (f" ({r.reason})" if r.reason else "")
    return (f"{r.run_id}  {r.job}  {iso(r.scheduled_for)}  {r.status}  attempt {r.attempt}{secs}{err}"
            + (f"\n    {r.output}" if r.output else ""))


# -- schedule ------------------------------------------------------------------------------------------
@click.group()
def schedule() -> None:
    """Scheduled notebook jobs: add, list, show, pause, resume, remove."""


@schedule.command("add")
@click.argument("name")
@click.argument("notebook")
@click.option("--cron", help="Cron expression, e.g. '0 6 * * 1-5' (optional 6th field: seconds).")
@click.option("--tz", "tz", default="UTC", show_default=True, help="IANA timezone of the cron expression.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A notebook parameter (repeatable), typed by the notebook's parameters cell.")
@click.option("--after", "after", multiple=True, metavar="JOB",
              help="Run after JOB succeeds, for the same slot, with its outputs as parameters (repeatable).")
@click.option("--kernel", help="Jupyter kernel (default: the notebook's).")
@click.option("--timeout", type=float, help="Seconds a run may take before its kernel is stopped.")
@click.option("--retries", type=int, default=0, show_default=True, help="Retries after a failure or timeout.")
@click.option("--retry-backoff", type=float, default=60.0, show_default=True,
              help="Seconds before the first retry; doubles each time.")
@click.option("--overlap", type=click.Choice(["skip", "queue", "allow"]), default="skip", show_default=True,
              help="When a slot comes while a run is active.")
@click.option("--catchup", type=click.Choice(["none", "latest", "all"]), default="latest", show_default=True,
              help="Which missed slots run after downtime.")
@click.option("--catchup-limit", type=int, default=10, show_default=True, help="At most this many for --catchup all.")
@click.option("--grace", type=float, default=300.0, show_default=True,
              help="Seconds late a slot may start and still count as on time (--catchup none).")
@click.option("--format", "formats", multiple=True, type=click.Choice(["ipynb", "html"]),
              help="Output formats (default both; the .ipynb is always kept).")
@click.option("--notify-webhook", help="POST the outcome as JSON to this URL.")
@click.option("--notify-email", multiple=True, help="Mail the outcome to this address (repeatable).")
@click.option("--notify-on", type=click.Choice(["failure", "success", "always"]), default="failure",
              show_default=True)
@click.option("--smtp", metavar="HOST:PORT", help="Mail server (default: $PROCESTRA_SMTP_HOST/PORT).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--paused", is_flag=True, help="Define it paused.")
@click.option("--start", help="When the schedule begins (ISO 8601; default now).")
@click.option("--replace", is_flag=True, help="Redefine an existing job.")
@json_option()
@click.pass_obj
@cli_endpoint
def schedule_add(state: State, name: str, notebook: str, cron: str | None, tz: str, params: tuple[str, ...],
                 after: tuple[str, ...], kernel: str | None, timeout: float | None, retries: int,
                 retry_backoff: float, overlap: str, catchup: str, catchup_limit: int, grace: float,
                 formats: tuple[str, ...], notify_webhook: str | None, notify_email: tuple[str, ...],
                 notify_on: str, smtp: str | None, tags: tuple[str, ...], paused: bool, start: str | None,
                 replace: bool, as_json: bool) -> None:
    """Define job NAME that runs NOTEBOOK on --cron in --tz (or --after other jobs)."""
    sched = api()
    ws = state.workspace()
    fmts = tuple(formats) or ("ipynb", "html")
    if "ipynb" not in fmts:
        fmts = ("ipynb",) + fmts
    notify = sched.Notify(webhook=notify_webhook, email=tuple(notify_email), on=notify_on, smtp=smtp)
    job = sched.add_job(ws, name, notebook, parameters=parse_params(params, None), coerce=True, cron=cron,
                        timezone=tz, kernel=kernel, timeout=timeout, retries=retries, retry_backoff=retry_backoff,
                        overlap=overlap, catchup=catchup, catchup_limit=catchup_limit, grace=grace, formats=fmts,
                        notify=notify, tags=tags, depends_on=after, enabled=not paused,
                        start=parse_when(start, "--start"), replace=replace)
    if as_json:
        emit_json(job.to_dict())
        return
    when = f"on '{job.cron}' ({job.timezone})" if job.cron else f"after {', '.join(job.depends_on)}"
    click.echo(f"job {job.name!r} runs {job.notebook} {when}" + ("" if job.enabled else " (paused)"))
    nxt = job.next_runs(3)
    if nxt and job.enabled:
        click.echo("next: " + ", ".join(iso(t) or "" for t in nxt))


@schedule.command("list")
@click.option("--tag", help="Only jobs with this tag.")
@json_option()
@click.pass_obj
@cli_endpoint
def schedule_list(state: State, tag: str | None, as_json: bool) -> None:
    """List the jobs."""
    jobs = api().list_jobs(state.workspace(), tag=tag)
    emit_rows(as_json, jobs, lambda j: j.to_dict(), _job_line,
              "no jobs yet; add one with `procestra schedule add NAME NOTEBOOK --cron '0 6 * * *'`")


def _job_line(j: Any) -> str:
    when = f"'{j.cron}' {j.timezone}" if j.cron else f"after {', '.join(j.depends_on)}"
    nxt = j.next_runs(1)
    state_text = "paused" if not j.enabled else (f"next {iso(nxt[0])}" if nxt else "")
    return f"{j.name}  {when}  {state_text}  {j.notebook}"


@schedule.command("show")
@click.argument("name")
@json_option()
@click.pass_obj
@cli_endpoint
def schedule_show(state: State, name: str, as_json: bool) -> None:
    """Show job NAME, its next slots and its latest runs."""
    sched = api()
    ws = state.workspace()
    job = sched.get_job(ws, name)
    recent = sched.list_runs(ws, job=name, limit=5)
    if as_json:
        emit_json({**job.to_dict(), "recent_runs": [r.summary() for r in recent]})
        return
    for k, v in job.to_dict().items():
        click.echo(f"{k}: {v}")
    for r in recent:
        click.echo("  " + run_line(r).replace("\n", "\n  "))


def _job_action(action: str, done: str, doc: str) -> None:
    """``schedule pause|resume|remove NAME``: one command each, one body for the three."""

    @schedule.command(action, help=doc)
    @click.argument("name")
    @json_option()
    @click.pass_obj
    @cli_endpoint
    def command(state: State, name: str, as_json: bool) -> None:
        sched = api()
        ws = state.workspace()
        if action == "remove":
            sched.remove_job(ws, name)
            data: dict[str, Any] = {"removed": name}
        else:
            job = (sched.pause_job if action == "pause" else sched.resume_job)(ws, name)
            data = {"job": job.name, "enabled": job.enabled}
        emit(as_json, data, f"job {name!r} {done}")


_job_action("pause", "paused", "Pause job NAME: no new runs until resumed.")
_job_action("resume", "resumed", "Resume job NAME from now on (slots missed while paused do not run).")
_job_action("remove", "removed", "Remove job NAME (its run history stays).")


# -- one notebook now ---------------------------------------------------------------------------------
@click.command("run-notebook")
@click.argument("notebook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="A notebook parameter (repeatable).")
@click.option("--kernel", help="Jupyter kernel (default: the notebook's).")
@click.option("--timeout", type=float, help="Seconds before the kernel is stopped.")
@click.option("--no-html", is_flag=True, help="Skip the HTML export.")
@json_option("Print the run as JSON.")
@click.pass_obj
@cli_endpoint
def run_notebook_cmd(state: State, notebook: str, params: tuple[str, ...], kernel: str | None,
                     timeout: float | None, no_html: bool, as_json: bool) -> None:
    """Run NOTEBOOK now, recorded in the run history like any run (exit 1 if it fails)."""
    import threading

    from procestra.schedule.scheduler import stop_on_signals

    ws = state.workspace()
    cancel = threading.Event()
    with stop_on_signals(cancel):  # SIGTERM or Ctrl-C stops the kernel; the run is recorded as cancelled
        run = api().run_now(ws, notebook, parameters=parse_params(params, notebook), kernel=kernel,
                            timeout=timeout, html=not no_html, cancel=cancel)
    emit(as_json, run.to_dict(), run_line(run))
    if run.status != "succeeded":
        fail(f"run {run.run_id} {run.status.replace('_', ' ')}" + (f": {run.error}" if run.error else ""), 1)


# -- the run history ----------------------------------------------------------------------------------
@click.group("runs", invoke_without_command=True)
@click.option("--job", help="Only runs of this job.")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "timed_out", "skipped",
                                             "cancelled"]), help="Only runs with this status.")
@click.option("--limit", type=int, default=None, help="At most this many (newest first).")
@json_option()
@click.pass_context
@cli_endpoint
def runs_cmd(ctx: click.Context, job: str | None, status: str | None, limit: int | None, as_json: bool) -> None:
    """The run history, newest first (`runs show RUN` for one run, `runs html` for a page)."""
    if ctx.invoked_subcommand is not None:
        return
    found = api().list_runs(ctx.obj.workspace(), job=job, status=status, limit=limit)
    emit_rows(as_json, found, lambda r: r.summary(), run_line, "no runs yet")


@runs_cmd.command("show")
@click.argument("run_id", metavar="RUN")
@json_option()
@click.pass_obj
@cli_endpoint
def runs_show(state: State, run_id: str, as_json: bool) -> None:
    """Everything about one run: times, parameters, outputs, error, files."""
    d = api().get_run(state.workspace(), run_id).to_dict()
    emit(as_json, d, (f"{k}: {v}" for k, v in d.items() if v not in (None, {}, [])))


@runs_cmd.command("html")
@click.option("--out", "out", help="Where to write the page (default: <workspace>/runs/index.html).")
@click.option("--job", help="Only runs of this job.")
@json_option()
@click.pass_obj
@cli_endpoint
def runs_html(state: State, out: str | None, job: str | None, as_json: bool) -> None:
    """Write the run history as an HTML page, for people who do not open Jupyter."""
    path = api().write_history(state.workspace(), out, job=job)
    emit(as_json, {"path": str(path)}, f"wrote {path}")


# -- the scheduler ------------------------------------------------------------------------------------
@click.group()
def scheduler() -> None:
    """The scheduler: `run` (a daemon, stops cleanly on SIGTERM) or `tick` (one pass, for cron and CI)."""


@scheduler.command("run")
@executor_options
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between passes.")
@click.option("--stop-timeout", type=float, default=30.0, show_default=True,
              help="On SIGTERM, seconds running jobs get to finish before they are cancelled.")
@click.pass_obj
@cli_endpoint
def scheduler_run(state: State, executor_name: str, address: str | None, concurrency: int | None, poll: float,
                  stop_timeout: float) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C; no Jupyter server needed."""
    import logging

    if poll <= 0 or stop_timeout < 0:
        raise InvalidArgumentError("--poll must be positive and --stop-timeout not negative", parameter="poll")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    logging.getLogger("papermill").setLevel(logging.ERROR)  # runs are reported by the scheduler itself
    ws = state.workspace()
    sched = api().Scheduler(ws, make_executor(executor_name, address, concurrency))
    click.echo(f"scheduler {sched.worker} running on {ws.path} with the {executor_name} executor "
               f"({sched.executor.capacity} at once); stop with SIGTERM", err=True)
    try:
        sched.run_forever(poll=poll, stop_timeout=stop_timeout)
    finally:
        sched.close()
    click.echo(f"scheduler {sched.worker} stopped", err=True)


@scheduler.command("tick")
@click.option("--now", "now", help="The time to act at (ISO 8601; default: now).")
@executor_options
@json_option()
@click.pass_obj
@cli_endpoint
def scheduler_tick(state: State, now: str | None, executor_name: str, address: str | None,
                   concurrency: int | None, as_json: bool) -> None:
    """One pass: run what is due at --now (with retries and dependants), then exit."""
    ws = state.workspace()
    executor = make_executor(executor_name, address, concurrency)
    try:
        result = api().tick(ws, parse_when(now, "--now"), executor=executor, handle_signals=True)
    finally:
        executor.close()
    if as_json:
        emit_json(result.to_dict())
        return
    queued = sum(1 for r in result.planned if r.status == "queued")
    click.echo(f"planned {len(result.planned)} runs ({queued} queued, {len(result.planned) - queued} skipped); "
               f"finished {len(result.finished)}")
    for r in result.finished:
        click.echo(run_line(r))


COMMANDS = [schedule, scheduler, runs_cmd, run_notebook_cmd]
