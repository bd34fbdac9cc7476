"""Event logs in the workspace: ``init``, ``ingest``, ``logs``, ``info``, ``export``, ``drop``, ``generate``."""

from __future__ import annotations

import time
from typing import Any

import click

from procestra.cli.io import State, cli_endpoint, emit, emit_json, iso, json_option
from procestra.errors import InvalidArgumentError


@click.command()
@click.argument("directory", required=False)
@json_option()
@click.pass_obj
@cli_endpoint
def init(state: State, directory: str | None, as_json: bool) -> None:
    """Create a workspace in DIRECTORY (default: the -w workspace)."""
    from procestra.workspace import Workspace

    ws = Workspace.init(directory or state.path)
    emit(as_json, {"workspace": str(ws.path.resolve())}, f"workspace ready at {ws.path}")


@click.command()
@click.argument("source")
@click.option("--log", "log", required=True, help="Name of the log in the workspace.")
@click.option("--case", help="Column with the case id.")
@click.option("--activity", help="Column with the activity name.")
@click.option("--timestamp", help="Column with the (completion) timestamp.")
@click.option("--start-timestamp", help="Column with the start timestamp.")
@click.option("--resource", help="Column with the resource.")
@click.option("--lifecycle", help="Column with the lifecycle transition.")
@click.option("--case-attribute", "case_attributes", multiple=True, help="A column holding a case attribute (repeatable).")
@click.option("--timestamp-format", help="strftime format of the timestamps, or epoch / epoch_ms.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of timestamps without an offset.")
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@click.option("--encoding", help="Text encoding (default: detected).")
@click.option("--sql", help="Query to run when SOURCE is a database URL or SQLite file.")
@click.option("--replace", is_flag=True, help="Replace the log if it exists.")
@click.option("--append", is_flag=True, help="Add only events not yet in the log.")
@click.option("--on-bad-rows", type=click.Choice(["fail", "drop"]), default="fail", show_default=True,
              help="What to do with unparseable values.")
@json_option("Print the load result as JSON.")
@click.pass_obj
@cli_endpoint
def ingest(state: State, source: str, log: str, case: str | None, activity: str | None,
           timestamp: str | None, start_timestamp: str | None, resource: str | None,
           lifecycle: str | None, case_attributes: tuple[str, ...], timestamp_format: str | None,
           timezone: str, delimiter: str | None, encoding: str | None, sql: str | None,
           replace: bool, append: bool, on_bad_rows: str, as_json: bool) -> None:
    """Load SOURCE (CSV, Parquet, XES, JSON lines, or a database URL with --sql) as a log."""
    from procestra.schema import LogSchema
    from procestra.workspace import Workspace

    if replace and append:
        raise InvalidArgumentError("--replace and --append exclude each other", parameter="replace")
    if not state.path.exists():
        Workspace.init(state.path)
    ws = state.workspace()
    schema = LogSchema(case=case, activity=activity, timestamp=timestamp, start_timestamp=start_timestamp,
                       resource=resource, lifecycle=lifecycle, case_attributes=tuple(case_attributes))
    mode = "replace" if replace else "append" if append else "create"
    result = ws.ingest(source, log=log, schema=schema, mode=mode, timestamp_format=timestamp_format,
                       timezone=timezone, delimiter=delimiter, encoding=encoding, sql=sql,
                       on_bad_rows=on_bad_rows, progress=not as_json)
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(result.message)
    if result.status != "unchanged":
        click.echo("\n".join(result.quality.lines()))


@click.command("logs")
@json_option()
@click.pass_obj
@cli_endpoint
def logs_cmd(state: State, as_json: bool) -> None:
    """List the logs in the workspace."""
    infos = state.workspace().logs()
    if as_json:
        emit_json([
            {"name": i.name, "events": i.events, "cases": i.cases, "activities": i.activities,
             "variants": i.variants, "start": iso(i.start), "end": iso(i.end), "source": i.source,
             "loaded_at": iso(i.loaded_at), "version": i.version}
            for i in infos
        ])
        return
    if not infos:
        click.echo("no logs yet; load one with `procestra ingest FILE --log NAME`")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("log", "events", "cases", "activities", "variants", "from", "to", "source")
    for i in infos:
        table.add_row(i.name, f"{i.events:,}", f"{i.cases:,}", f"{i.activities:,}", f"{i.variants:,}",
                      iso(i.start) or "", iso(i.end) or "", i.source)
    Console().print(table)


_COUNTS = ("events", "cases", "activities", "variants", "start", "end")


@click.command()
@click.argument("log")
@json_option()
@click.pass_obj
@cli_endpoint
def info(state: State, log: str, as_json: bool) -> None:
    """Counts, time span and mapping of LOG."""
    ws = state.workspace()
    i = ws.info(log)
    if as_json:
        d = i.to_dict()
        emit_json({"log": i.name, **{k: d[k] for k in _COUNTS},
                   **{k: d[k] for k in d if k != "name" and k not in _COUNTS},
                   "quality": ws.quality(log).to_dict()})
        return
    click.echo(f"log {i.name}: {i.events:,} events, {i.cases:,} cases, {i.activities:,} activities, "
               f"{i.variants:,} variants")
    click.echo(f"  from {iso(i.start)} to {iso(i.end)}")
    click.echo(f"  source {i.source} ({i.source_kind}), loaded {iso(i.loaded_at)}, version {i.version}")
    roles = {k: v for k, v in i.mapping.items() if v and k != "case_attributes"}
    click.echo("  mapping " + ", ".join(f"{k}={v}" for k, v in roles.items()))
    if i.event_attributes:
        click.echo("  event attributes " + ", ".join(f"{k} ({t})" for k, t in i.event_attributes.items()))
    if i.case_attributes:
        click.echo("  case attributes " + ", ".join(f"{k} ({t})" for k, t in i.case_attributes.items()))
    click.echo("\n".join(ws.quality(log).lines()))


@click.command()
@click.argument("log")
@click.option("--to", "target", required=True, help="Output file: .xes, .xes.gz, .csv or .parquet.")
@json_option()
@click.pass_obj
@cli_endpoint
def export(state: State, log: str, target: str, as_json: bool) -> None:
    """Write LOG to a file in pm4py's column names."""
    started = time.perf_counter()
    path = state.workspace().export(log, target)
    emit(as_json, {"log": log, "path": str(path), "seconds": round(time.perf_counter() - started, 3)},
         f"wrote {path}")


@click.command()
@click.argument("log")
@json_option()
@click.pass_obj
@cli_endpoint
def drop(state: State, log: str, as_json: bool) -> None:
    """Remove LOG from the workspace."""
    state.workspace().drop(log)
    emit(as_json, {"dropped": log}, f"dropped log {log!r}")


@click.command()
@click.option("--events", type=int, required=True, help="Number of events (about).")
@click.option("--out", "out", required=True, help="Output file: .csv, .parquet, .jsonl, .xes or .xes.gz.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--process", default="loan", show_default=True, help="Which process to play out.")
@click.option("--lifecycle", is_flag=True, help="Write start and complete events.")
@click.option("--noise", type=float, default=0.05, show_default=True, help="Share of deviating cases.")
@json_option()
@cli_endpoint
def generate(events: int, out: str, seed: int, process: str, lifecycle: bool, noise: float, as_json: bool) -> None:
    """Write a synthetic event log, seeded and reproducible."""
    from procestra.mining.generate import generate_log, write_log

    started = time.perf_counter()
    table = generate_log(events, seed=seed, process=process, lifecycle=lifecycle, noise=noise)
    path = write_log(table, out)
    seconds = time.perf_counter() - started
    cases = len(set(table.column("case_id").to_pylist())) if table.num_rows < 2_000_000 else None
    data: dict[str, Any] = {"path": str(path), "events": table.num_rows, "cases": cases, "seconds": round(seconds, 3)}
    emit(as_json, data, f"wrote {table.num_rows:,} events to {path} in {seconds:.2f}s")


COMMANDS = [init, ingest, logs_cmd, info, export, drop, generate]
