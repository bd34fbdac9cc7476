"""Mining a log: ``variants``, ``dfg``, ``discover``, ``conform``; ``--filter`` strings to one Filter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from procestra.cli.io import State, cli_endpoint, emit_json, json_option
from procestra.errors import InvalidArgumentError

if TYPE_CHECKING:
    from procestra.mining import Filter

FILTER_HELP = (
    "Filter (repeatable, combined with AND): top=K | coverage=0.8 | case:ATTR=v1,v2 | "
    "event:ATTR=v1,v2 | start=A,B | end=A,B | contains=A | skips=A | follows=A>B | "
    "size=MIN..MAX | duration=MIN..MAX (seconds) | timeframe=START..END[@contained|intersecting|started]"
)

#: ``--filter``, repeatable; the parameter is ``filters`` (a tuple of strings for :func:`parse_filters`).
filter_option = click.option("--filter", "filters", multiple=True, help=FILTER_HELP)


def parse_filters(specs: tuple[str, ...]) -> Filter | None:
    """``--filter`` strings to one :class:`procestra.Filter` (None when there are none)."""
    result = None
    for spec in specs:
        f = _parse_filter(spec)
        result = f if result is None else result & f
    return result


def _parse_filter(spec: str) -> Filter:
    from procestra.mining import Filter

    def bad(expected: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"--filter {spec!r}: {expected}", parameter="filter")

    key, sep, value = spec.partition("=")
    key = key.strip()
    if not sep or not value:
        raise bad(f"expected KEY=VALUE; {FILTER_HELP}")
    values = [v for v in value.split(",") if v != ""]

    def span(cast: Callable[[str], Any]) -> tuple[Any, Any]:
        lo, dots, hi = value.partition("..")
        if not dots:
            raise bad("expected MIN..MAX")
        try:
            return (cast(lo) if lo else None), (cast(hi) if hi else None)
        except ValueError:
            raise bad(f"{lo!r}..{hi!r} are not numbers") from None

    try:
        if key == "top":
            return Filter.variants(top=int(value))
        if key == "coverage":
            return Filter.variants(coverage=float(value))
        if key.startswith("case:"):
            return Filter.case_attribute(key[5:], values)
        if key.startswith("event:"):
            return Filter.event_attribute(key[6:], values)
        if key == "start":
            return Filter.start_activities(values)
        if key == "end":
            return Filter.end_activities(values)
        if key == "contains":
            return Filter.contains(value)
        if key == "skips":
            return Filter.skips(value)
        if key == "follows":
            a, arrow, b = value.partition(">")
            if not arrow:
                raise bad("expected follows=A>B")
            return Filter.follows(a, b)
        if key == "size":
            lo, hi = span(int)
            return Filter.case_size(min=lo, max=hi)
        if key == "duration":
            lo, hi = span(float)
            return Filter.duration(min=lo, max=hi)
        if key == "timeframe":
            body, _, mode = value.partition("@")
            start, dots, end = body.partition("..")
            if not dots:
                raise bad("expected START..END")
            return Filter.timeframe(start, end, mode=mode or "contained")  # type: ignore[arg-type]
    except ValueError as exc:
        raise bad(str(exc)) from None
    raise bad(f"unknown filter {key!r}; {FILTER_HELP}")


@click.command()
@click.argument("log")
@filter_option
@click.option("--out", "out", help="Also draw the map: .svg, .png, .pdf or .dot.")
@click.option("--metric", type=click.Choice(["frequency", "performance"]), default="frequency", show_default=True)
@click.option("--activities", "activity_threshold", type=float, default=1.0, show_default=True,
              help="Share of activities drawn (0-1).")
@click.option("--paths", "path_threshold", type=float, default=1.0, show_default=True,
              help="Share of paths drawn (0-1).")
@json_option()
@click.pass_obj
@cli_endpoint
def dfg(state: State, log: str, filters: tuple[str, ...], out: str | None, metric: str,
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
        from procestra.models import DFG, save

        freq = stats.dfg(ws, log, flt)
        d, s, e = freq.to_pm4py()
        acts = {r["activity"]: int(r["count"]) for r in freq.activities.to_pylist()}
        perf_map = {(x["source"], x["target"]): x["mean_seconds"] for x in edges}
        written = save(DFG(d, s, e, acts, perf_map), out, metric=metric,
                       activity_threshold=activity_threshold, path_threshold=path_threshold)
    if as_json:
        data: dict[str, Any] = {"edges": edges, "start": start, "end": end}
        if written:
            data["out"] = str(written)
        emit_json(data)
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


@click.command()
@click.argument("log")
@click.option("--top", type=int, help="Only the N most frequent variants.")
@filter_option
@json_option()
@click.pass_obj
@cli_endpoint
def variants(state: State, log: str, top: int | None, filters: tuple[str, ...], as_json: bool) -> None:
    """The variants of LOG, most frequent first."""
    from procestra.mining import stats

    result = stats.variants(state.workspace(), log, parse_filters(filters), limit=top)
    rows = result.to_pylist()
    if as_json:
        emit_json([{"variant": list(r["activities"]), "count": int(r["count"])} for r in rows])
        return
    for r in rows:
        click.echo(f"{int(r['count']):>8,}  {100 * r['share']:5.1f}%  {' > '.join(r['activities'])}")


@click.command()
@click.argument("log")
@click.option("--miner", default="inductive", show_default=True,
              help="inductive | heuristics | alpha | dfg (or a registered miner).")
@click.option("--noise", "noise", type=float, default=None, help="IMf noise threshold (0-1), inductive miner.")
@click.option("--dependency", "dependency", type=float, default=None,
              help="Dependency threshold (0-1), heuristics miner.")
@filter_option
@click.option("--out", "out", required=True, help="Output: .svg .png .pdf .dot .bpmn .pnml .ptml.")
@click.option("--save", "save_as", help="Also save the model in the workspace's repository under this name.")
@json_option()
@click.pass_obj
@cli_endpoint
def discover(state: State, log: str, miner: str, noise: float | None, dependency: float | None,
             filters: tuple[str, ...], out: str, save_as: str | None, as_json: bool) -> None:
    """Discover a process model of LOG and write it to --out."""
    from procestra.mining import discover as run_discovery
    from procestra.models import save_model
    from procestra.models.render import SAVE_FORMATS
    from procestra.progress import progress_display

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
        saved = save_model(ws, save_as, result, source_log=log, filter=repr(flt) if flt else None,
                           miner=result.miner, params=dict(result.params))
    if as_json:
        data: dict[str, Any] = {"log": log, "miner": result.miner, "params": dict(result.params),
                                "out": str(written), "seconds": round(result.seconds, 3)}
        if saved is not None:
            data["saved"] = saved.to_dict()
        emit_json(data)
        return
    click.echo(f"discovered a model of {log!r} with the {result.miner} miner in {result.seconds:.2f}s")
    click.echo(f"wrote {written}")
    if saved is not None:
        click.echo(f"saved as model {saved.name!r} version {saved.version}")


def _score(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


@click.command()
@click.argument("log")
@click.argument("model")
@click.option("--method", type=click.Choice(["tokens", "alignments"]), default="tokens", show_default=True)
@filter_option
@click.option("--sample-variants", type=int, help="Replay only the N most frequent variants.")
@click.option("--no-quality", is_flag=True, help="Fitness only: skip precision, generalization, simplicity.")
@json_option()
@click.pass_obj
@cli_endpoint
def conform(state: State, log: str, model: str, method: str, filters: tuple[str, ...],
            sample_variants: int | None, no_quality: bool, as_json: bool) -> None:
    """Check LOG against MODEL (a saved model NAME[@VERSION], or a .bpmn/.pnml/.ptml file)."""
    import warnings

    from procestra.mining import conform as run_conformance

    if sample_variants is not None and sample_variants < 1:
        raise InvalidArgumentError("--sample-variants must be at least 1", parameter="sample-variants")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mismatches are reported in the result's warnings
        result = run_conformance(state.workspace(), log, model, method=method,  # type: ignore[arg-type]
                                 filter=parse_filters(filters), sample_variants=sample_variants,
                                 progress=not as_json, quality=not no_quality)
    if as_json:
        emit_json({"log": log, "model": result.model, "method": result.method,
                   "fitness": result.headline_fitness, "precision": result.precision,
                   "generalization": result.generalization, "simplicity": result.simplicity,
                   "fitness_details": result.fitness, "cases": result.n_cases, "variants": result.n_variants,
                   "covered_cases": result.covered_cases, "sampled": result.sampled,
                   "run_id": result.run_id, "warnings": result.warnings, "seconds": round(result.seconds, 3)})
        return
    click.echo(f"{result.method} conformance of {log!r} against {result.model}: "
               f"fitness {_score(result.headline_fitness)}, precision {_score(result.precision)}, "
               f"generalization {_score(result.generalization)}, simplicity {_score(result.simplicity)}")
    click.echo(f"  {result.covered_cases:,} of {result.n_cases:,} cases, {result.covered_variants:,} of "
               f"{result.n_variants:,} variants, {result.seconds:.2f}s"
               + (f"; per-case deviations saved as run {result.run_id}" if result.run_id is not None else ""))
    for w in result.warnings:
        click.echo(f"  warning: {w}")


COMMANDS = [variants, dfg, discover, conform]
