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
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import InvalidArgumentError, ProcestraError, UserError
from .progress import progress_display
from .schema import LogSchema
from .workspace import Workspace, default_workspace_path

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
        except Exception as exc:  # noqa: BLE001 - the last line of defence
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
    from .generate import generate_log, write_log

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
    from .filters import Filter

    result = None
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or not value:
            raise InvalidArgumentError(f"--filter {spec!r}: expected KEY=VALUE; {FILTER_HELP}", parameter="filter")

        def values() -> list[str]:
            return [v for v in value.split(",") if v != ""]

        def span(cast: Callable[[str], Any]) -> tuple[Any, Any]:
            lo, dots, hi = value.partition("..")
            if not dots:
                raise InvalidArgumentError(f"--filter {spec!r}: expected MIN..MAX", parameter="filter")
            try:
                return (cast(lo) if lo else None), (cast(hi) if hi else None)
            except ValueError:
                raise InvalidArgumentError(f"--filter {spec!r}: {lo!r}..{hi!r} are not numbers",
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
    from . import stats

    ws = state.workspace()
    flt = parse_filters(filters)
    perf = stats.performance_dfg(ws, log, flt)
    edges = [{"source": r["source"], "target": r["target"], "count": int(r["count"]),
              "mean_seconds": float(r["mean"]) if r["mean"] is not None else 0.0}
             for r in perf.edges.to_pylist()]
    _, start, end = perf.to_pm4py("mean")
    written = None
    if out:
        from .render import DFG as DrawnDFG
        from .render import save

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
    from . import stats

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
    from .discover import discover as run_discovery
    from .render import SAVE_FORMATS

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
        from .models import save_model

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

    from .conformance import conform as run_conformance

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
    from .models import list_models

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
    from .models import model_info

    info = model_info(state.workspace(), name)
    d = info.to_dict()
    if as_json:
        _emit_json(d)
        return
    for k, v in d.items():
        click.echo(f"{k}: {v}")


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
