"""Running to-be models: ``start``, ``worker``, ``cases``, ``tasks``, ``complete``, ``cancel``, ``retry``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from procestra.cli.io import State, cli_endpoint, emit, emit_json, emit_rows, json_option, parse_json

if TYPE_CHECKING:
    from procestra.engine import CaseInfo, WorkItem


@click.command()
@click.argument("model")
@click.option("--data", help="The case data as a JSON object.")
@click.option("--key", help="A business key, unique per model.")
@click.option("--version", type=int, help="Model version (default: the latest).")
@json_option()
@click.pass_obj
@cli_endpoint
def start(state: State, model: str, data: str | None, key: str | None, version: int | None, as_json: bool) -> None:
    """Start a case of MODEL; prints its id. A worker runs it."""
    from procestra.engine import get_case, start_case

    ws = state.workspace()
    case = start_case(ws, model, parse_json(data, "--data"), key=key, version=version)
    if as_json:
        emit_json(get_case(ws, case).to_dict())
    else:
        click.echo(case)


@click.command()
@click.option("--until-idle", is_flag=True, help="Stop when no case can run now or within a second.")
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              help="Cases held at once (their steps share commits).")
@click.option("--name", help="Worker name (resource of its steps).")
@click.option("--stop-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds a SIGTERM waits for the round in progress; then a handler still running is abandoned "
                   "(its steps run again elsewhere) and the worker exits 1.")
@json_option()
@click.pass_obj
@cli_endpoint
def worker(state: State, until_idle: bool, concurrency: int, name: str | None, stop_timeout: float,
           as_json: bool) -> None:
    """Run cases: automated steps, timers that come due, completed human tasks. SIGTERM stops it cleanly."""
    import signal

    from procestra.engine import Worker

    w = Worker(state.workspace(), concurrency=concurrency, name=name)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: w.stop(within=stop_timeout))
    report = w.run(until_idle=until_idle)
    emit(as_json, report.to_dict(),
         f"{report.worker}: {report.steps:,} steps, {report.cases_completed:,} cases completed, "
         f"{report.cases_failed:,} failed, in {report.seconds:.1f}s")


@click.command()
@click.option("--model", help="Only cases of this model.")
@click.option("--status", type=click.Choice(["running", "waiting", "completed", "failed", "cancelled"]))
@json_option()
@click.pass_obj
@cli_endpoint
def cases(state: State, model: str | None, status: str | None, as_json: bool) -> None:
    """List cases."""
    from procestra.engine import list_cases

    found = list_cases(state.workspace(), model=model, status=status)
    emit_rows(as_json, found, lambda c: {"case": c.case, "model": c.model, "version": c.version, "status": c.status,
                                       "error": c.error},
              _case_line, "no cases; start one with `procestra start MODEL --data '{...}'`")


def _case_line(c: CaseInfo) -> str:
    extra = f"  ({c.error})" if c.error else ""
    return f"{c.case}  {c.model} v{c.version}  {c.status:9}  {c.steps} steps  {c.updated:%Y-%m-%d %H:%M:%S}{extra}"


@click.command()
@click.option("--group", help="Only tasks of this candidate group.")
@click.option("--user", help="Only tasks this user may take (unclaimed or theirs).")
@click.option("--case", help="Only tasks of this case.")
@click.option("--all", "show_all", is_flag=True, help="Completed and cancelled tasks too.")
@json_option()
@click.pass_obj
@cli_endpoint
def tasks(state: State, group: str | None, user: str | None, case: str | None, show_all: bool,
          as_json: bool) -> None:
    """List human tasks (open ones by default); overdue ones are marked."""
    from procestra.engine import list_tasks

    found = list_tasks(state.workspace(), status=None if show_all else "open", case=case, group=group, user=user)
    emit_rows(as_json, found, lambda t: t.to_dict(), _task_line, "no open human tasks")


def _task_line(t: WorkItem) -> str:
    due = f"due {t.due:%Y-%m-%d %H:%M}" if t.due else "no due time"
    flag = "  OVERDUE" if t.overdue else ""
    fields = ", ".join(f["name"] + ("*" if f.get("required") else "") for f in t.form)
    return (f"{t.task}  {t.name!r}  case {t.case}  {t.status}  {t.candidate_group or '-'}  {due}{flag}"
            f"  fields: {fields or '-'}" + (f"  (case {t.case_status}: {t.case_error})" if t.case_error else ""))


@click.command()
@click.argument("task")
@click.option("--data", help="The form's values as a JSON object, by field name; a dotted name as it is "
              "('{\"person.dog_friendly\": true}' sets dog_friendly inside the case data's person).")
@click.option("--user", help="Who completes it.")
@json_option()
@click.pass_obj
@cli_endpoint
def complete(state: State, task: str, data: str | None, user: str | None, as_json: bool) -> None:
    """Complete human TASK with its form data; a worker then moves the case on."""
    from procestra.engine import complete_task

    item = complete_task(state.workspace(), task, parse_json(data, "--data") or {}, user=user)
    emit(as_json, item.to_dict(), f"completed {item.task} ({item.name}) of case {item.case}")


@click.command()
@click.argument("case")
@click.option("--reason", default="cancelled", help="Why (kept with the case).")
@json_option()
@click.pass_obj
@cli_endpoint
def cancel(state: State, case: str, reason: str, as_json: bool) -> None:
    """Cancel CASE: its open human tasks are cancelled and nothing runs after."""
    from procestra.engine import cancel_case

    info = cancel_case(state.workspace(), case, reason=reason)
    emit(as_json, info.to_dict(), f"cancelled {info.case}")


@click.command()
@click.argument("case")
@click.option("--user", help="Who retries it (kept in its journal).")
@json_option()
@click.pass_obj
@cli_endpoint
def retry(state: State, case: str, user: str | None, as_json: bool) -> None:
    """Run failed poison CASE again from where it stopped; a worker then moves it on."""
    from procestra.engine import retry_case

    info = retry_case(state.workspace(), case, user=user)
    emit(as_json, info.to_dict(), f"retried {info.case}: {info.status} again")


COMMANDS = [start, worker, cases, tasks, complete, cancel, retry]
