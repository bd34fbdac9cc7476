"""The ``procestra`` command line: a thin layer over the public API.

Conventions for every command: ``-w/--workspace`` (else ``$PROCESTRA_WORKSPACE``,
else ``./workspace``); ``--json`` prints only JSON on stdout; exit code 0 on
success, 2 on a user error (one ``error: ...`` line on stderr), 1 on any other
failure; a traceback only with ``--debug``.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import click

from procestra.errors import InvalidArgumentError, ProcestraError, UserError
from procestra.progress import progress_display
from procestra.schema import LogSchema
from procestra.workspace import Workspace, default_workspace_path

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    def __init__(self, workspace: str | None, debug: bool) -> None:
        self.workspace_arg = workspace
        self.debug = debug

    @property
    def path(self) -> Path:
        return Path(self.workspace_arg) if self.workspace_arg else default_workspace_path()

    def workspace(self) -> Workspace:
        return Workspace(self.path)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def cli_endpoint(func: F) -> F:
    """Turn Procestra errors into one ``error:`` line and an exit code; traceback with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            if debug:
                raise
            _fail(" ".join(str(exc).split("\n")), 2)
        except ProcestraError as exc:
            if debug:
                raise
            _fail(" ".join(str(exc).split("\n")), 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            if debug:
                raise
            _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-w", "--workspace", metavar="DIR", help="Workspace directory (default: $PROCESTRA_WORKSPACE or ./workspace).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="procestra")
@click.pass_context
def main(ctx: click.Context, workspace: str | None, debug: bool) -> None:
    """Procestra: mine processes from event logs, and run the processes you design."""
    ctx.obj = _State(workspace, debug)


@main.command()
@click.argument("directory", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def init(state: _State, directory: str | None, as_json: bool) -> None:
    """Create a workspace in DIRECTORY (default: the -w workspace)."""
    ws = Workspace.init(directory or state.path)
    if as_json:
        _emit_json({"workspace": str(ws.path.resolve())})
    else:
        click.echo(f"workspace ready at {ws.path}")


@main.command()
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
@click.option("--json", "as_json", is_flag=True, help="Print the load result as JSON.")
@click.pass_obj
@cli_endpoint
def ingest(state: _State, source: str, log: str, case: str | None, activity: str | None,
           timestamp: str | None, start_timestamp: str | None, resource: str | None,
           lifecycle: str | None, case_attributes: tuple[str, ...], timestamp_format: str | None,
           timezone: str, delimiter: str | None, encoding: str | None, sql: str | None,
           replace: bool, append: bool, on_bad_rows: str, as_json: bool) -> None:
    """Load SOURCE (CSV, Parquet, XES, JSON lines, or a database URL with --sql) as a log."""
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
        _emit_json(result.to_dict())
        return
    click.echo(result.message)
    if result.status != "unchanged":
        click.echo("\n".join(result.quality.lines()))


@main.command("logs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def logs_cmd(state: _State, as_json: bool) -> None:
    """List the logs in the workspace."""
    infos = state.workspace().logs()
    if as_json:
        _emit_json([
            {"name": i.name, "events": i.events, "cases": i.cases, "activities": i.activities,
             "variants": i.variants, "start": _iso(i.start), "end": _iso(i.end), "source": i.source,
             "loaded_at": _iso(i.loaded_at), "version": i.version}
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
                      _iso(i.start) or "", _iso(i.end) or "", i.source)
    Console().print(table)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@main.command()
@click.argument("log")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def info(state: _State, log: str, as_json: bool) -> None:
    """Counts, time span and mapping of LOG."""
    ws = state.workspace()
    i = ws.info(log)
    if as_json:
        d = i.to_dict()
        _emit_json({"log": i.name, **{k: d[k] for k in ("events", "cases", "activities", "variants", "start", "end")},
                    **{k: d[k] for k in d if k not in ("name", "events", "cases", "activities", "variants", "start", "end")},
                    "quality": ws.quality(log).to_dict()})
        return
    click.echo(f"log {i.name}: {i.events:,} events, {i.cases:,} cases, {i.activities:,} activities, "
               f"{i.variants:,} variants")
    click.echo(f"  from {_iso(i.start)} to {_iso(i.end)}")
    click.echo(f"  source {i.source} ({i.source_kind}), loaded {_iso(i.loaded_at)}, version {i.version}")
    roles = {k: v for k, v in i.mapping.items() if v and k != "case_attributes"}
    click.echo("  mapping " + ", ".join(f"{k}={v}" for k, v in roles.items()))
    if i.event_attributes:
        click.echo("  event attributes " + ", ".join(f"{k} ({t})" for k, t in i.event_attributes.items()))
    if i.case_attributes:
        click.echo("  case attributes " + ", ".join(f"{k} ({t})" for k, t in i.case_attributes.items()))
    click.echo("\n".join(ws.quality(log).lines()))


@main.command()
@click.argument("log")
@click.option("--to", "target", required=True, help="Output file: .xes, .xes.gz, .csv or .parquet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def export(state: _State, log: str, target: str, as_json: bool) -> None:
    """Write LOG to a file in pm4py's column names."""
    started = time.perf_counter()
    path = state.workspace().export(log, target)
    if as_json:
        _emit_json({"log": log, "path": str(path), "seconds": round(time.perf_counter() - started, 3)})
    else:
        click.echo(f"wrote {path}")


@main.command()
@click.argument("log")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def drop(state: _State, log: str, as_json: bool) -> None:
    """Remove LOG from the workspace."""
    state.workspace().drop(log)
    if as_json:
        _emit_json({"dropped": log})
    else:
        click.echo(f"dropped log {log!r}")


@main.command()
@click.option("--events", type=int, required=True, help="Number of events (about).")
@click.option("--out", "out", required=True, help="Output file: .csv, .parquet, .jsonl, .xes or .xes.gz.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--process", default="loan", show_default=True, help="Which process to play out.")
@click.option("--lifecycle", is_flag=True, help="Write start and complete events.")
@click.option("--noise", type=float, default=0.05, show_default=True, help="Share of deviating cases.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@cli_endpoint
def generate(events: int, out: str, seed: int, process: str, lifecycle: bool, noise: float, as_json: bool) -> None:
    """Write a synthetic event log, seeded and reproducible."""
    from procestra.mining.generate import generate_log, write_log

    started = time.perf_counter()
    table = generate_log(events, seed=seed, process=process, lifecycle=lifecycle, noise=noise)
    path = write_log(table, out)
    seconds = time.perf_counter() - started
    cases = len(set(table.column("case_id").to_pylist())) if table.num_rows < 2_000_000 else None
    if as_json:
        _emit_json({"path": str(path), "events": table.num_rows, "cases": cases, "seconds": round(seconds, 3)})
    else:
        click.echo(f"wrote {table.num_rows:,} events to {path} in {seconds:.2f}s")


# -- mining ---------------------------------------------------------------------------
FILTER_HELP = (
    "Filter (repeatable, combined with AND): top=K | coverage=0.8 | case:ATTR=v1,v2 | "
    "event:ATTR=v1,v2 | start=A,B | end=A,B | contains=A | skips=A | follows=A>B | "
    "size=MIN..MAX | duration=MIN..MAX (seconds) | timeframe=START..END[@contained|intersecting|started]"
)


def parse_filters(specs: tuple[str, ...]) -> Any:
    """``--filter`` strings to one :class:`procestra.Filter` (None when there are none)."""
    from procestra.mining.filters import Filter

    result = None
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not value:
            raise InvalidArgumentError(f"--filter {spec!r}: expected KEY=VALUE; {FILTER_HELP}", parameter="filter")

        def values() -> list[str]:
            return [v for v in value.split(",") if v != ""]  # noqa: B023 - called in this iteration

        def span(cast: Callable[[str], Any]) -> tuple[Any, Any]:
            lo, dots, hi = value.partition("..")  # noqa: B023 - called in this iteration
            if not dots:
                raise InvalidArgumentError(f"--filter {spec!r}: expected MIN..MAX", parameter="filter")  # noqa: B023
            try:
                return (cast(lo) if lo else None), (cast(hi) if hi else None)
            except ValueError:
                raise InvalidArgumentError(f"--filter {spec!r}: {lo!r}..{hi!r} are not numbers",  # noqa: B023
                                           parameter="filter") from None

        try:
            if key == "top":
                f = Filter.variants(top=int(value))
            elif key == "coverage":
                f = Filter.variants(coverage=float(value))
            elif key.startswith("case:"):
                f = Filter.case_attribute(key[5:], values())
            elif key.startswith("event:"):
                f = Filter.event_attribute(key[6:], values())
            elif key == "start":
                f = Filter.start_activities(values())
            elif key == "end":
                f = Filter.end_activities(values())
            elif key == "contains":
                f = Filter.contains(value)
            elif key == "skips":
                f = Filter.skips(value)
            elif key == "follows":
                a, arrow, b = value.partition(">")
                if not arrow:
                    raise InvalidArgumentError(f"--filter {spec!r}: expected follows=A>B", parameter="filter")
                f = Filter.follows(a, b)
            elif key == "size":
                lo, hi = span(int)
                f = Filter.case_size(min=lo, max=hi)
            elif key == "duration":
                lo, hi = span(float)
                f = Filter.duration(min=lo, max=hi)
            elif key == "timeframe":
                body, _, mode = value.partition("@")
                lo, dots, hi = body.partition("..")
                if not dots:
                    raise InvalidArgumentError(f"--filter {spec!r}: expected START..END", parameter="filter")
                f = Filter.timeframe(lo, hi, mode=mode or "contained")  # type: ignore[arg-type]
            else:
                raise InvalidArgumentError(f"--filter {spec!r}: unknown filter {key!r}; {FILTER_HELP}",
                                           parameter="filter")
        except ValueError as exc:
            raise InvalidArgumentError(f"--filter {spec!r}: {exc}", parameter="filter") from None
        result = f if result is None else result & f
    return result


@main.command()
@click.argument("log")
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--out", "out", help="Also draw the map: .svg, .png, .pdf or .dot.")
@click.option("--metric", type=click.Choice(["frequency", "performance"]), default="frequency", show_default=True)
@click.option("--activities", "activity_threshold", type=float, default=1.0, show_default=True,
              help="Share of activities drawn (0-1).")
@click.option("--paths", "path_threshold", type=float, default=1.0, show_default=True,
              help="Share of paths drawn (0-1).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def dfg(state: _State, log: str, filters: tuple[str, ...], out: str | None, metric: str,
        activity_threshold: float, path_threshold: float, as_json: bool) -> None:
    """The directly-follows graph of LOG: edge counts and mean times, start and end activities."""
    from procestra.mining import stats

    ws = state.workspace()
    flt = parse_filters(filters)
    perf = stats.performance_dfg(ws, log, flt)
    edges = [{"source": r["source"], "target": r["target"], "count": int(r["count"]),
              "mean_seconds": float(r["mean"]) if r["mean"] is not None else 0.0}
             for r in perf.edges.to_pylist()]
    _, start, end = perf.to_pm4py("mean")
    written = None
    if out:
        from procestra.models.render import DFG as DrawnDFG
        from procestra.models.render import save

        freq = stats.dfg(ws, log, flt)
        d, s, e = freq.to_pm4py()
        acts = {r["activity"]: int(r["count"]) for r in freq.activities.to_pylist()}
        perf_map = {(x["source"], x["target"]): x["mean_seconds"] for x in edges}
        written = save(DrawnDFG(d, s, e, acts, perf_map), out, metric=metric,
                       activity_threshold=activity_threshold, path_threshold=path_threshold)
    if as_json:
        data: dict[str, Any] = {"edges": edges, "start": start, "end": end}
        if written:
            data["out"] = str(written)
        _emit_json(data)
        return
    click.echo(f"{len(edges)} edges, {perf.cases:,} cases")
    for x in edges[:40]:
        click.echo(f"  {x['source']} -> {x['target']}: {x['count']:,} (mean {x['mean_seconds'] / 3600:.1f} h)")
    if len(edges) > 40:
        click.echo(f"  ... {len(edges) - 40} more (use --json)")
    click.echo("start: " + ", ".join(f"{k} ({v:,})" for k, v in start.items()))
    click.echo("end: " + ", ".join(f"{k} ({v:,})" for k, v in end.items()))
    if written:
        click.echo(f"wrote {written}")


@main.command()
@click.argument("log")
@click.option("--top", type=int, help="Only the N most frequent variants.")
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def variants(state: _State, log: str, top: int | None, filters: tuple[str, ...], as_json: bool) -> None:
    """The variants of LOG, most frequent first."""
    from procestra.mining import stats

    result = stats.variants(state.workspace(), log, parse_filters(filters), limit=top)
    rows = result.to_pylist()
    if as_json:
        _emit_json([{"variant": list(r["activities"]), "count": int(r["count"])} for r in rows])
        return
    for r in rows:
        click.echo(f"{int(r['count']):>8,}  {100 * r['share']:5.1f}%  {' > '.join(r['activities'])}")


@main.command()
@click.argument("log")
@click.option("--miner", default="inductive", show_default=True,
              help="inductive | heuristics | alpha | dfg (or a registered miner).")
@click.option("--noise", "noise", type=float, default=None, help="IMf noise threshold (0-1), inductive miner.")
@click.option("--dependency", "dependency", type=float, default=None,
              help="Dependency threshold (0-1), heuristics miner.")
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--out", "out", required=True, help="Output: .svg .png .pdf .dot .bpmn .pnml .ptml.")
@click.option("--save", "save_as", help="Also save the model in the workspace's repository under this name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def discover(state: _State, log: str, miner: str, noise: float | None, dependency: float | None,
             filters: tuple[str, ...], out: str, save_as: str | None, as_json: bool) -> None:
    """Discover a process model of LOG and write it to --out."""
    from procestra.mining.discover import discover as run_discovery
    from procestra.models.render import SAVE_FORMATS

    suffix = Path(out).suffix.lower()
    if suffix not in SAVE_FORMATS:
        raise InvalidArgumentError(
            f"cannot write {out!r}: use one of {', '.join(sorted(SAVE_FORMATS))}", parameter="out")
    ws = state.workspace()
    params: dict[str, Any] = {}
    if noise is not None:
        params["noise_threshold"] = noise
    if dependency is not None:
        params["dependency_threshold"] = dependency
    flt = parse_filters(filters)
    with progress_display(not as_json) as progress:
        progress(f"discovering with the {miner} miner", 0, None)
        result = run_discovery(ws, log, miner, filter=flt, **params)
        progress("writing the model", 0, None)
        written = result.save(out)
    saved = None
    if save_as:
        from procestra.models.repository import save_model

        saved = save_model(ws, save_as, result, source_log=log, filter=repr(flt) if flt else None,
                           miner=result.miner, params=dict(result.params))
    if as_json:
        data: dict[str, Any] = {"log": log, "miner": result.miner, "params": dict(result.params),
                                "out": str(written), "seconds": round(result.seconds, 3)}
        if saved is not None:
            data["saved"] = saved.to_dict()
        _emit_json(data)
        return
    click.echo(f"discovered a model of {log!r} with the {result.miner} miner in {result.seconds:.2f}s")
    click.echo(f"wrote {written}")
    if saved is not None:
        click.echo(f"saved as model {saved.name!r} version {saved.version}")


@main.command()
@click.argument("log")
@click.argument("model")
@click.option("--method", type=click.Choice(["tokens", "alignments"]), default="tokens", show_default=True)
@click.option("--filter", "filters", multiple=True, help=FILTER_HELP)
@click.option("--sample-variants", type=int, help="Replay only the N most frequent variants.")
@click.option("--no-quality", is_flag=True, help="Fitness only: skip precision, generalization, simplicity.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def conform(state: _State, log: str, model: str, method: str, filters: tuple[str, ...],
            sample_variants: int | None, no_quality: bool, as_json: bool) -> None:
    """Check LOG against MODEL (a saved model NAME[@VERSION], or a .bpmn/.pnml/.ptml file)."""
    import warnings

    from procestra.mining.conformance import conform as run_conformance

    if sample_variants is not None and sample_variants < 1:
        raise InvalidArgumentError("--sample-variants must be at least 1", parameter="sample-variants")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mismatches are reported in the result's warnings
        result = run_conformance(state.workspace(), log, model, method=method,  # type: ignore[arg-type]
                                 filter=parse_filters(filters), sample_variants=sample_variants,
                                 progress=not as_json, quality=not no_quality)
    if as_json:
        _emit_json({"log": log, "model": result.model, "method": result.method,
                    "fitness": result.headline_fitness, "precision": result.precision,
                    "generalization": result.generalization, "simplicity": result.simplicity,
                    "fitness_details": result.fitness, "cases": result.n_cases, "variants": result.n_variants,
                    "covered_cases": result.covered_cases, "sampled": result.sampled,
                    "run_id": result.run_id, "warnings": result.warnings, "seconds": round(result.seconds, 3)})
        return

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    click.echo(f"{result.method} conformance of {log!r} against {result.model}: "
               f"fitness {f(result.headline_fitness)}, precision {f(result.precision)}, "
               f"generalization {f(result.generalization)}, simplicity {f(result.simplicity)}")
    click.echo(f"  {result.covered_cases:,} of {result.n_cases:,} cases, {result.covered_variants:,} of "
               f"{result.n_variants:,} variants, {result.seconds:.2f}s"
               + (f"; per-case deviations saved as run {result.run_id}" if result.run_id is not None else ""))
    for w in result.warnings:
        click.echo(f"  warning: {w}")


@main.group()
def models() -> None:
    """The model repository in the workspace's process_models/."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def models_list(state: _State, as_json: bool) -> None:
    """List saved models (latest version of each)."""
    from procestra.models.repository import list_models

    infos = list_models(state.workspace())
    if as_json:
        _emit_json([i.to_dict() for i in infos])
        return
    if not infos:
        click.echo("no models yet; save one with `procestra discover LOG --out FILE --save NAME`")
    for i in infos:
        fit = i.quality.get("fitness")
        score = f", fitness {fit:.3f}" if isinstance(fit, float) else ""
        click.echo(f"{i.name}  v{i.version} ({i.versions} versions), {i.kind}, from {i.source_log or '-'} "
                   f"by {i.miner or '-'}{score}, {i.created:%Y-%m-%d %H:%M}")


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def models_show(state: _State, name: str, as_json: bool) -> None:
    """Show one model's metadata: NAME or NAME@VERSION."""
    from procestra.models.repository import model_info

    info = model_info(state.workspace(), name)
    d = info.to_dict()
    if as_json:
        _emit_json(d)
        return
    for k, v in d.items():
        click.echo(f"{k}: {v}")


# -- to-be models that run (engine) ---------------------------------------------------------------
@main.group("model")
def model_group() -> None:
    """To-be models: check one before running it."""


@model_group.command("validate")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def model_validate(state: _State, model: str, as_json: bool) -> None:
    """Check MODEL (a .bpmn file, or a saved NAME[@VERSION]) and list its problems by element.

    Exit code 2 when it has errors; warnings alone pass.
    """
    from procestra.engine.tobe import validate_model

    ws = state.workspace() if Path(model).suffix.lower() != ".bpmn" else None
    problems = validate_model(model, ws=ws)
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        _emit_json([p.to_dict() for p in problems])
    else:
        for p in problems:
            click.echo(str(p))
        if not problems:
            click.echo(f"{model}: no problems")
    if errors:
        _fail(f"{model} has {len(errors)} error(s); fix them before running it", 2)


def _json_option(value: str | None, parameter: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{parameter} is not valid JSON: {exc.msg} at column {exc.colno}",
                                   parameter=parameter) from None


@main.command()
@click.argument("model")
@click.option("--data", help="The case data as a JSON object.")
@click.option("--key", help="A business key, unique per model.")
@click.option("--version", type=int, help="Model version (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def start(state: _State, model: str, data: str | None, key: str | None, version: int | None, as_json: bool) -> None:
    """Start a case of MODEL; prints its id. A worker runs it."""
    from procestra.engine import get_case, start_case

    ws = state.workspace()
    case = start_case(ws, model, _json_option(data, "--data"), key=key, version=version)
    if as_json:
        _emit_json(get_case(ws, case).to_dict())
    else:
        click.echo(case)


@main.command()
@click.option("--until-idle", is_flag=True, help="Stop when no case can run now or within a second.")
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              help="Cases held at once (their steps share commits).")
@click.option("--name", help="Worker name (resource of its steps).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def worker(state: _State, until_idle: bool, concurrency: int, name: str | None, as_json: bool) -> None:
    """Run cases: automated steps, timers that come due, completed human tasks. SIGTERM stops it cleanly."""
    import signal

    from procestra.engine import Worker

    w = Worker(state.workspace(), concurrency=concurrency, name=name)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: w.stop())
    report = w.run(until_idle=until_idle)
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(f"{report.worker}: {report.steps:,} steps, {report.cases_completed:,} cases completed, "
                   f"{report.cases_failed:,} failed, in {report.seconds:.1f}s")


@main.command()
@click.option("--model", help="Only cases of this model.")
@click.option("--status", type=click.Choice(["running", "waiting", "completed", "failed", "cancelled"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def cases(state: _State, model: str | None, status: str | None, as_json: bool) -> None:
    """List cases."""
    from procestra.engine import list_cases

    found = list_cases(state.workspace(), model=model, status=status)
    if as_json:
        _emit_json([{"case": c.case, "model": c.model, "version": c.version, "status": c.status} for c in found])
        return
    if not found:
        click.echo("no cases; start one with `procestra start MODEL --data '{...}'`")
    for c in found:
        extra = f"  ({c.error})" if c.error else ""
        click.echo(f"{c.case}  {c.model} v{c.version}  {c.status:9}  {c.steps} steps  "
                   f"{c.updated:%Y-%m-%d %H:%M:%S}{extra}")


@main.command()
@click.option("--group", help="Only tasks of this candidate group.")
@click.option("--user", help="Only tasks this user may take (unclaimed or theirs).")
@click.option("--case", help="Only tasks of this case.")
@click.option("--all", "show_all", is_flag=True, help="Completed and cancelled tasks too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def tasks(state: _State, group: str | None, user: str | None, case: str | None, show_all: bool,
          as_json: bool) -> None:
    """List human tasks (open ones by default); overdue ones are marked."""
    from procestra.engine import list_tasks

    found = list_tasks(state.workspace(), status=None if show_all else "open", case=case, group=group, user=user)
    if as_json:
        _emit_json([t.to_dict() for t in found])
        return
    if not found:
        click.echo("no open human tasks")
    for t in found:
        due = f"due {t.due:%Y-%m-%d %H:%M}" if t.due else "no due time"
        flag = "  OVERDUE" if t.overdue else ""
        fields = ", ".join(f["name"] + ("*" if f.get("required") else "") for f in t.form)
        click.echo(f"{t.task}  {t.name!r}  case {t.case}  {t.status}  {t.candidate_group or '-'}  {due}{flag}"
                   f"  fields: {fields or '-'}")


@main.command()
@click.argument("task")
@click.option("--data", help="The form's values as a JSON object.")
@click.option("--user", help="Who completes it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def complete(state: _State, task: str, data: str | None, user: str | None, as_json: bool) -> None:
    """Complete human TASK with its form data; a worker then moves the case on."""
    from procestra.engine import complete_task

    item = complete_task(state.workspace(), task, _json_option(data, "--data") or {}, user=user)
    if as_json:
        _emit_json(item.to_dict())
    else:
        click.echo(f"completed {item.task} ({item.name}) of case {item.case}")


@main.command()
@click.argument("case")
@click.option("--reason", default="cancelled", help="Why (kept with the case).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def cancel(state: _State, case: str, reason: str, as_json: bool) -> None:
    """Cancel CASE: its open human tasks are cancelled and nothing runs after."""
    from procestra.engine import cancel_case

    info = cancel_case(state.workspace(), case, reason=reason)
    if as_json:
        _emit_json(info.to_dict())
    else:
        click.echo(f"cancelled {info.case}")


# -- scheduled notebook jobs ------------------------------------------------------------
def _params(pairs: tuple[str, ...], notebook: str | None) -> dict[str, Any]:
    """``-p KEY=VALUE`` pairs, typed by ``notebook``'s parameters cell (left as text when None)."""
    from procestra.schedule.runner import coerce_parameters

    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"-p {pair!r}: expected KEY=VALUE", parameter="param")
        raw[key.strip()] = value
    return coerce_parameters(notebook, raw) if raw and notebook is not None else dict(raw)


def _when(text: str | None, option: str) -> Any:
    """An ISO 8601 time from the command line (no offset means UTC)."""
    from datetime import datetime

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(f"{option} {text!r} is not an ISO 8601 time such as 2025-03-31T06:00:00+02:00",
                                   parameter=option.lstrip("-")) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _executor_options(func: F) -> F:
    for opt in reversed([
        click.option("--executor", "executor_name", default="local", show_default=True,
                     help="Where notebooks run: local (kernels on this machine) or dask."),
        click.option("--address", help="Dask scheduler address for --executor dask, e.g. tcp://10.0.0.5:8786."),
        click.option("--concurrency", type=int, help="Runs at once (local default 2; dask default: its threads)."),
    ]):
        func = opt(func)
    return func


def _make_executor(name: str, address: str | None, concurrency: int | None) -> Any:
    from procestra.schedule.executors import get_executor

    if name != "dask" and address:
        raise InvalidArgumentError("--address is only for --executor dask", parameter="address")
    return get_executor(name, address=address, concurrency=concurrency)


def _run_line(r: Any) -> str:
    secs = f" in {r.seconds:.1f}s" if r.seconds is not None else ""
    err = f": {r.error}" if r.error else (f" ({r.reason})" if r.reason else "")
    return (f"{r.run_id}  {r.job}  {_iso(r.scheduled_for)}  {r.status}  attempt {r.attempt}{secs}{err}"
            + (f"\n    {r.output}" if r.output else ""))


@main.group()
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def schedule_add(state: _State, name: str, notebook: str, cron: str | None, tz: str, params: tuple[str, ...],
                 after: tuple[str, ...], kernel: str | None, timeout: float | None, retries: int,
                 retry_backoff: float, overlap: str, catchup: str, catchup_limit: int, grace: float,
                 formats: tuple[str, ...], notify_webhook: str | None, notify_email: tuple[str, ...],
                 notify_on: str, smtp: str | None, tags: tuple[str, ...], paused: bool, start: str | None,
                 replace: bool, as_json: bool) -> None:
    """Define job NAME that runs NOTEBOOK on --cron in --tz (or --after other jobs)."""
    from procestra.schedule.jobs import add_job
    from procestra.schedule.notify import Notify

    ws = state.workspace()
    fmts = tuple(formats) or ("ipynb", "html")
    if "ipynb" not in fmts:
        fmts = ("ipynb",) + fmts
    job = add_job(ws, name, notebook, parameters=_params(params, None), coerce=True, cron=cron, timezone=tz, kernel=kernel,
                  timeout=timeout, retries=retries, retry_backoff=retry_backoff, overlap=overlap, catchup=catchup,
                  catchup_limit=catchup_limit, grace=grace, formats=fmts,
                  notify=Notify(webhook=notify_webhook, email=tuple(notify_email), on=notify_on, smtp=smtp),
                  tags=tags, depends_on=after, enabled=not paused, start=_when(start, "--start"), replace=replace)
    if as_json:
        _emit_json(job.to_dict())
        return
    when = f"on '{job.cron}' ({job.timezone})" if job.cron else f"after {', '.join(job.depends_on)}"
    click.echo(f"job {job.name!r} runs {job.notebook} {when}" + ("" if job.enabled else " (paused)"))
    nxt = job.next_runs(3)
    if nxt and job.enabled:
        click.echo("next: " + ", ".join(_iso(t) or "" for t in nxt))


@schedule.command("list")
@click.option("--tag", help="Only jobs with this tag.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def schedule_list(state: _State, tag: str | None, as_json: bool) -> None:
    """List the jobs."""
    from procestra.schedule.jobs import list_jobs

    jobs = list_jobs(state.workspace(), tag=tag)
    if as_json:
        _emit_json([j.to_dict() for j in jobs])
        return
    if not jobs:
        click.echo("no jobs yet; add one with `procestra schedule add NAME NOTEBOOK --cron '0 6 * * *'`")
    for j in jobs:
        when = f"'{j.cron}' {j.timezone}" if j.cron else f"after {', '.join(j.depends_on)}"
        nxt = j.next_runs(1)
        state_text = "paused" if not j.enabled else (f"next {_iso(nxt[0])}" if nxt else "")
        click.echo(f"{j.name}  {when}  {state_text}  {j.notebook}")


@schedule.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def schedule_show(state: _State, name: str, as_json: bool) -> None:
    """Show job NAME, its next slots and its latest runs."""
    from procestra.schedule.jobs import get_job
    from procestra.schedule.runs import list_runs

    ws = state.workspace()
    job = get_job(ws, name)
    recent = list_runs(ws, job=name, limit=5)
    if as_json:
        _emit_json({**job.to_dict(), "recent_runs": [r.summary() for r in recent]})
        return
    for k, v in job.to_dict().items():
        click.echo(f"{k}: {v}")
    for r in recent:
        click.echo("  " + _run_line(r).replace("\n", "\n  "))


def _toggle(state: _State, name: str, as_json: bool, action: str) -> None:
    from procestra import schedule as sched

    ws = state.workspace()
    if action == "remove":
        sched.remove_job(ws, name)
        data: dict[str, Any] = {"removed": name}
    else:
        job = sched.pause_job(ws, name) if action == "pause" else sched.resume_job(ws, name)
        data = {"job": job.name, "enabled": job.enabled}
    if as_json:
        _emit_json(data)
    else:
        click.echo(f"job {name!r} " + {"pause": "paused", "resume": "resumed", "remove": "removed"}[action])


@schedule.command("pause")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def schedule_pause(state: _State, name: str, as_json: bool) -> None:
    """Pause job NAME: no new runs until resumed."""
    _toggle(state, name, as_json, "pause")


@schedule.command("resume")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def schedule_resume(state: _State, name: str, as_json: bool) -> None:
    """Resume job NAME from now on (slots missed while paused do not run)."""
    _toggle(state, name, as_json, "resume")


@schedule.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def schedule_remove(state: _State, name: str, as_json: bool) -> None:
    """Remove job NAME (its run history stays)."""
    _toggle(state, name, as_json, "remove")


@main.command("run-notebook")
@click.argument("notebook")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="A notebook parameter (repeatable).")
@click.option("--kernel", help="Jupyter kernel (default: the notebook's).")
@click.option("--timeout", type=float, help="Seconds before the kernel is stopped.")
@click.option("--no-html", is_flag=True, help="Skip the HTML export.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.pass_obj
@cli_endpoint
def run_notebook_cmd(state: _State, notebook: str, params: tuple[str, ...], kernel: str | None,
                     timeout: float | None, no_html: bool, as_json: bool) -> None:
    """Run NOTEBOOK now, recorded in the run history like any run (exit 1 if it fails)."""
    import threading

    from procestra.schedule.scheduler import run_now, stop_on_signals

    ws = state.workspace()
    cancel = threading.Event()
    with stop_on_signals(cancel):  # SIGTERM or Ctrl-C stops the kernel; the run is recorded as cancelled
        run = run_now(ws, notebook, parameters=_params(params, notebook), kernel=kernel, timeout=timeout,
                      html=not no_html, cancel=cancel)
    if as_json:
        _emit_json(run.to_dict())
    else:
        click.echo(_run_line(run))
    if run.status != "succeeded":
        _fail(f"run {run.run_id} {run.status.replace('_', ' ')}" + (f": {run.error}" if run.error else ""), 1)


@main.group("runs", invoke_without_command=True)
@click.option("--job", help="Only runs of this job.")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "timed_out", "skipped",
                                             "cancelled"]), help="Only runs with this status.")
@click.option("--limit", type=int, default=None, help="At most this many (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@cli_endpoint
def runs_cmd(ctx: click.Context, job: str | None, status: str | None, limit: int | None, as_json: bool) -> None:
    """The run history, newest first (`runs show RUN` for one run, `runs html` for a page)."""
    if ctx.invoked_subcommand is not None:
        return
    from procestra.schedule.runs import list_runs

    found = list_runs(ctx.obj.workspace(), job=job, status=status, limit=limit)
    if as_json:
        _emit_json([r.summary() for r in found])
        return
    if not found:
        click.echo("no runs yet")
    for r in found:
        click.echo(_run_line(r))


@runs_cmd.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def runs_show(state: _State, run_id: str, as_json: bool) -> None:
    """Everything about one run: times, parameters, outputs, error, files."""
    from procestra.schedule.runs import get_run

    run = get_run(state.workspace(), run_id)
    d = run.to_dict()
    if as_json:
        _emit_json(d)
        return
    for k, v in d.items():
        if v not in (None, {}, []):
            click.echo(f"{k}: {v}")


@runs_cmd.command("html")
@click.option("--out", "out", help="Where to write the page (default: <workspace>/runs/index.html).")
@click.option("--job", help="Only runs of this job.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def runs_html(state: _State, out: str | None, job: str | None, as_json: bool) -> None:
    """Write the run history as an HTML page, for people who do not open Jupyter."""
    from procestra.schedule.runs import write_history

    path = write_history(state.workspace(), out, job=job)
    if as_json:
        _emit_json({"path": str(path)})
    else:
        click.echo(f"wrote {path}")


@main.group()
def scheduler() -> None:
    """The scheduler: `run` (a daemon, stops cleanly on SIGTERM) or `tick` (one pass, for cron and CI)."""


@scheduler.command("run")
@_executor_options
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between passes.")
@click.option("--stop-timeout", type=float, default=30.0, show_default=True,
              help="On SIGTERM, seconds running jobs get to finish before they are cancelled.")
@click.pass_obj
@cli_endpoint
def scheduler_run(state: _State, executor_name: str, address: str | None, concurrency: int | None, poll: float,
                  stop_timeout: float) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C; no Jupyter server needed."""
    import logging

    from procestra.schedule.scheduler import Scheduler

    if poll <= 0 or stop_timeout < 0:
        raise InvalidArgumentError("--poll must be positive and --stop-timeout not negative", parameter="poll")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    logging.getLogger("papermill").setLevel(logging.ERROR)  # runs are reported by the scheduler itself
    ws = state.workspace()
    sched = Scheduler(ws, _make_executor(executor_name, address, concurrency))
    click.echo(f"scheduler {sched.worker} running on {ws.path} with the {executor_name} executor "
               f"({sched.executor.capacity} at once); stop with SIGTERM", err=True)
    try:
        sched.run_forever(poll=poll, stop_timeout=stop_timeout)
    finally:
        sched.close()
    click.echo(f"scheduler {sched.worker} stopped", err=True)


@scheduler.command("tick")
@click.option("--now", "now", help="The time to act at (ISO 8601; default: now).")
@_executor_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def scheduler_tick(state: _State, now: str | None, executor_name: str, address: str | None,
                   concurrency: int | None, as_json: bool) -> None:
    """One pass: run what is due at --now (with retries and dependants), then exit."""
    from procestra.schedule.scheduler import tick

    ws = state.workspace()
    executor = _make_executor(executor_name, address, concurrency)
    try:
        result = tick(ws, _when(now, "--now"), executor=executor, handle_signals=True)
    finally:
        executor.close()
    if as_json:
        _emit_json(result.to_dict())
        return
    queued = sum(1 for r in result.planned if r.status == "queued")
    click.echo(f"planned {len(result.planned)} runs ({queued} queued, {len(result.planned) - queued} skipped); "
               f"finished {len(result.finished)}")
    for r in result.finished:
        click.echo(_run_line(r))


# -- the operational store ------------------------------------------------------------------
@main.group("ops")
def ops_group() -> None:
    """The operational store: SQLite in the workspace, or a PostgreSQL server that workers on several machines share."""


@ops_group.command("url")
@click.argument("url", required=False)
@click.option("--sqlite", "use_sqlite", is_flag=True, help="Go back to the workspace's own SQLite store.")
@click.option("--events-home", is_flag=True,
              help="Make this workspace the one whose event store receives the shared store's run events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def ops_url(state: _State, url: str | None, use_sqlite: bool, events_home: bool, as_json: bool) -> None:
    """Show or set the operational store: a postgresql://user:password@host/db URL, or --sqlite.

    The URL is checked by connecting and kept in <workspace>/ops.url ($PROCESTRA_OPS_URL
    wins over it); the password is never printed.
    """
    from procestra.store import ops

    if url is not None and use_sqlite:
        raise InvalidArgumentError("give a URL or --sqlite, not both", parameter="url")
    ws = state.workspace()
    if use_sqlite:
        if events_home:
            raise InvalidArgumentError("--events-home is for a PostgreSQL store; a SQLite store is this "
                                       "workspace's own", parameter="events_home")
        here = ops.set_url(ws, None)
    elif url is not None:
        here = ops.set_url(ws, url, events_home=True if events_home else None)
    else:
        here = ops.location(ws)
        if events_home:
            if here.backend != "postgresql":
                raise InvalidArgumentError("--events-home is for a PostgreSQL store; set one with "
                                           "`procestra ops url postgresql://...` first", parameter="events_home")
            ops.claim_events_home(ws)
    info: dict[str, Any] = here.to_dict()
    info["workspace"] = ops.workspace_id(ws)
    try:
        info["events_home"] = ops.events_home(ws)
    except ProcestraError as exc:  # the server is down: still show where the store is
        info["events_home"], info["error"] = None, str(exc)
    if (url is not None or use_sqlite) and here.source == "$" + ops.OPS_URL_ENV:
        click.echo(f"note: ${ops.OPS_URL_ENV} is set and wins over {ws.path / ops.OPS_URL_FILE}", err=True)
    if as_json:
        _emit_json(info)
        return
    click.echo(f"{here.backend}: {here.location}  (from {here.source})")
    if here.backend == "postgresql":
        home = info["events_home"]
        mine = " (this workspace)" if home == info["workspace"] else ""
        home = home or "no workspace yet (run `procestra ops url --events-home` in one)"
        click.echo(f"run events go to: {home}{mine}")
    if "error" in info:
        click.echo(f"but: {info['error']}")


@ops_group.command("flush")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@cli_endpoint
def ops_flush(state: _State, as_json: bool) -> None:
    """Move queued run and job events from the operational store into the event store now."""
    from procestra.ingest.outbox import flush_outbox

    result = flush_outbox(state.workspace())
    if as_json:
        _emit_json(result.to_dict())
    elif result.skipped:
        click.echo(f"nothing flushed: {result.skipped}")
    else:
        failed = f", {result.failed:,} rejected (see the outbox)" if result.failed else ""
        click.echo(f"flushed {result.events:,} events in {result.batches} batches{failed}")


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: click's usage errors become one ``error:`` line, exit 2."""
    try:
        main.main(args=argv, prog_name="procestra", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 1)
    except click.ClickException as exc:
        _fail(" ".join(exc.format_message().split("\n")) + " (see --help)", 2)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    run()
