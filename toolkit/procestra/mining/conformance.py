"""Conformance checking: how well a log and a process model agree, case by case.

:func:`conform` replays the **variants** of a log, not its cases: DuckDB computes
``list(activity ORDER BY ts, event_id)`` per case and counts them, pm4py replays one
trace per variant (token-based replay or alignments), and every result is weighted
by its variant's count. The cost grows with the number of variants, not of cases,
and the numbers equal pm4py's on the full log:

- *fitness*: ``log_fitness``, ``average_trace_fitness`` and
  ``percentage_of_fitting_traces`` exactly as ``pm4py.fitness_token_based_replay`` /
  ``pm4py.fitness_alignments`` compute them (the headline is the log fitness for
  tokens, the average trace fitness for alignments);
- *precision*: pm4py's ETConformance (tokens) or Align-ETConformance (alignments)
  with each prefix weighted by the cases that share it, which is what pm4py's
  ``precision_token_based_replay`` / ``precision_alignments`` compute on the full log
  (on a log of one trace per variant they would not: the weights would be lost);
- *generalization*: pm4py's token-based generalization, with transition firings
  weighted by variant counts; *simplicity*: pm4py's arc-degree simplicity.

Each case's result goes back to the store, so that deviations can be filtered and
counted in SQL: table ``cf_<log_id>`` (one row per case and run; ``deviations`` lists
``"skipped: X"`` / ``"inserted: Y"`` for alignments, ``"missing token before X"``,
``"remaining token before X"`` and ``"not in model: X"`` for token replay), and one
summary row per run in ``conformance_runs``. Both are written in one transaction.

>>> result = conform(ws, "loans", "loans-model@2", method="alignments")
>>> result.fitness["average_trace_fitness"], result.precision
>>> deviations(ws, "loans").explode("deviations").deviations.value_counts()
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import numbers
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from copy import copy
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pyarrow as pa

from procestra.errors import EmptyResultError, InvalidArgumentError, ModelError
from procestra.schema import table_names
from procestra.store import catalogue

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from procestra.mining.filters import Filter
    from procestra.store.home import Home

__all__ = ["ConformanceResult", "Method", "conform", "conformance_runs", "deviations", "deviations_table",
           "drop_conformance"]

Method = Literal["tokens", "alignments"]
ProgressFn = Callable[[str, int, "int | None"], None]
Variant = tuple[str, ...]

#: Variants replayed per pm4py call: small enough for a lively progress bar.
_CHUNK = 25


def deviations_table(log_id: int) -> str:
    """The name of log ``log_id``'s per-case conformance table."""
    return f"cf_{int(log_id)}"


# -- the result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConformanceResult:
    """The quality of a model against a log, from one :func:`conform` run."""

    log: str
    #: The model as given: ``name@version``, a file path, or a description.
    model: str
    method: str
    #: ``log_fitness``, ``average_trace_fitness``, ``percentage_of_fitting_traces`` (pm4py's keys).
    fitness: dict[str, float]
    precision: float | None
    generalization: float | None
    simplicity: float | None
    #: Cases and variants in the (filtered) log.
    n_cases: int
    n_variants: int
    #: Cases and variants replayed: fewer than the above when ``sampled``.
    covered_cases: int
    covered_variants: int
    sampled: bool
    seconds: float
    warnings: list[str] = field(default_factory=list)
    filter: str | None = None
    #: The run's id in ``conformance_runs`` and ``cf_<log_id>``; None when not saved.
    run_id: int | None = None
    #: Wall time per stage (variants, replay, precision, ...), for benchmarks.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def headline_fitness(self) -> float:
        """Log fitness for token replay, average trace fitness for alignments."""
        key = "log_fitness" if self.method == "tokens" else "average_trace_fitness"
        return float(self.fitness[key])

    def scores(self) -> dict[str, Any]:
        """The four quality dimensions (what ``save_model(quality=...)`` records)."""
        return {"method": self.method, "fitness": self.headline_fitness, "precision": self.precision,
                "generalization": self.generalization, "simplicity": self.simplicity,
                "log": self.log, "sampled": self.sampled}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        def f(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.4f}"

        return (f"<ConformanceResult {self.method} {self.log!r} vs {self.model!r}: fitness {f(self.headline_fitness)}, "
                f"precision {f(self.precision)}, {self.covered_cases:,}/{self.n_cases:,} cases, {self.seconds:.2f}s>")

    def _repr_html_(self) -> str:
        import html

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        rows = [("fitness", pct(self.headline_fitness)),
                *((f"&nbsp;&nbsp;{k}", pct(v)) for k, v in self.fitness.items()),
                ("precision", pct(self.precision)), ("generalization", pct(self.generalization)),
                ("simplicity", pct(self.simplicity)),
                ("cases", f"{self.covered_cases:,} of {self.n_cases:,}"),
                ("variants", f"{self.covered_variants:,} of {self.n_variants:,}"),
                ("run", "not saved" if self.run_id is None else str(self.run_id)),
                ("seconds", f"{self.seconds:.2f}")]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        warn = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        where = f" ({html.escape(self.filter)})" if self.filter else ""
        return (f"<p><b>{html.escape(self.method)}</b>: <code>{html.escape(self.log)}</code>{where} against "
                f"<code>{html.escape(self.model)}</code></p><table>{body}</table>"
                + (f"<ul>{warn}</ul>" if warn else ""))


# -- progress --------------------------------------------------------------------------------
@contextlib.contextmanager
def _reporter(progress: bool | ProgressFn) -> Iterator[ProgressFn]:
    if callable(progress):
        yield progress
        return
    from procestra.progress import progress_display

    with progress_display(enabled=bool(progress)) as update:
        yield update


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


# -- variants from the store --------------------------------------------------------------------
def _events_sql(con: duckdb.DuckDBPyConnection, log_id: int, flt: Filter | None) -> tuple[str, dict[str, Any]]:
    """The events to check (columns of ``ev_<id>``) as a relation, and its named parameters."""
    if flt is None:
        return table_names(log_id)[0], {}
    from procestra.mining.filters import filtered_events_sql

    sql, params = filtered_events_sql(con, log_id, flt)
    return f"({sql})", dict(params)


# Temp tables live in the connection's memory, so a read-only connection may make them.
_CASE_VARIANTS_SQL = """
CREATE TEMP TABLE __cf_cases AS
SELECT case_id, list(activity ORDER BY ts NULLS LAST, event_id) AS v FROM {events} GROUP BY case_id
"""
# Most frequent first; ties by the sequence, descending, as pm4py's top-k variant filter.
_VARIANTS_SQL = """
CREATE TEMP TABLE __cf_variants AS
SELECT v, count(*) AS n, (row_number() OVER (ORDER BY count(*) DESC, v DESC) - 1)::INTEGER AS vid
FROM __cf_cases GROUP BY v
"""


@dataclass(frozen=True)
class _LogVariants:
    variants: list[tuple[Variant, int]]
    #: ``case_id``, ``vid`` (the index in ``variants``) for every case.
    cases: pa.Table


def _read_variants(con: duckdb.DuckDBPyConnection, log_id: int, flt: Filter | None) -> _LogVariants:
    events, params = _events_sql(con, log_id, flt)
    con.execute(_CASE_VARIANTS_SQL.format(events=events), params)
    con.execute(_VARIANTS_SQL)
    rows = con.execute("SELECT v, n FROM __cf_variants ORDER BY vid").fetchall()
    cases = con.sql("SELECT c.case_id, vs.vid FROM __cf_cases c JOIN __cf_variants vs USING (v)").to_arrow_table()
    return _LogVariants([(tuple(v), int(n)) for v, n in rows], cases)


def _variant_log(variants: Sequence[Variant]) -> Any:
    """A pm4py EventLog with one trace per variant (only ``concept:name``)."""
    from pm4py.objects.log.obj import Event, EventLog, Trace

    return EventLog([Trace([Event({"concept:name": a}) for a in v]) for v in variants])


# -- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Model:
    label: str
    net: Any
    im: Any
    fm: Any

    @property
    def activities(self) -> set[str]:
        return {str(t.label) for t in self.net.transitions if t.label is not None}


def _resolve(ws: Home, model: Any) -> _Model:
    from procestra.models.repository import LoadedModel, load_model, petri_of

    if isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_model(ws, model)
    if isinstance(model, LoadedModel):
        return _Model(model.ref, *model.petri)
    if hasattr(model, "to_petri") and hasattr(model, "miner"):  # a DiscoveryResult
        where = f" ({model.filter})" if getattr(model, "filter", None) else ""
        return _Model(f"{model.miner} model of {model.log!r}{where}", *model.to_petri())
    label = "Petri net" if isinstance(model, tuple) else type(model).__name__
    return _Model(f"(in-memory {label})", *petri_of(model))


# -- token-based replay -----------------------------------------------------------------------
def _shortest_paths(net: Any) -> Any:
    from pm4py.algo.conformance.tokenreplay.variants.token_replay import (
        TechnicalParameters,
    )
    from pm4py.objects.petri_net.utils.petri_utils import (
        get_places_shortest_path_by_hidden,
    )

    return get_places_shortest_path_by_hidden(net, TechnicalParameters.MAX_REC_DEPTH.value)


def _token_replay(variants: Sequence[Variant], model: _Model, paths: Any, report: ProgressFn, stage: str,
                  **options: Any) -> list[dict[str, Any]]:
    """pm4py's token replay of one trace per variant, in chunks (for progress), results in order.

    ``options`` go to ``token_replay.apply_log``; the defaults are those of
    ``pm4py.fitness_token_based_replay`` (remaining tokens count in fitness).
    """
    from pm4py.algo.conformance.tokenreplay.variants import token_replay

    settings = {"consider_remaining_in_fitness": True, **options}
    out: list[dict[str, Any]] = []
    report(stage, 0, len(variants))
    for chunk in _chunks(variants):
        out.extend(token_replay.apply_log(_variant_log(chunk), model.net, model.im, model.fm,
                                          places_shortest_path_by_hidden=paths, show_progress_bar=False,
                                          **settings))
        report(stage, len(out), len(variants))
    return out


def _visible_after(place: Any) -> list[str]:
    """Labels of the visible transitions a token in ``place`` can reach through silent ones."""
    labels: set[str] = set()
    seen, todo = {place}, [place]
    while todo:
        for arc in todo.pop().out_arcs:
            t = arc.target
            if t.label is not None:
                labels.add(str(t.label))
                continue
            for out in t.out_arcs:
                if out.target not in seen:
                    seen.add(out.target)
                    todo.append(out.target)
    return sorted(labels)


def _token_deviations(variant: Variant, res: dict[str, Any], model: _Model, known: set[str]) -> list[str]:
    out = [f"not in model: {a}" for a in variant if a not in known]
    for t in res["transitions_with_problems"]:
        out.append(f"missing token before {t.label if t.label is not None else f'(silent {t.name})'}")
    for place, n in res["reached_marking"].items():
        extra = int(n) - int(model.fm.get(place, 0))
        if extra > 0:
            after = _visible_after(place)
            where = " or ".join(after) if after else "the end"
            out.extend([f"remaining token before {where}"] * extra)
    return out


def _token_fitness(results: Sequence[dict[str, Any]], counts: Sequence[int]) -> dict[str, float]:
    """``pm4py...replay_fitness.variants.token_replay.evaluate`` with each variant weighted."""
    no_traces = sum(counts)
    fit = sum(n for r, n in zip(results, counts) if r["trace_is_fit"])
    sum_fitness = sum(r["trace_fitness"] * n for r, n in zip(results, counts))
    m, c, r_, p = (sum(r[k] * n for r, n in zip(results, counts))
                   for k in ("missing_tokens", "consumed_tokens", "remaining_tokens", "produced_tokens"))
    if no_traces > 0 and c > 0 and p > 0:
        return {"log_fitness": 0.5 * (1 - m / c) + 0.5 * (1 - r_ / p),
                "average_trace_fitness": float(sum_fitness) / float(no_traces),
                "percentage_of_fitting_traces": float(100.0 * fit) / float(no_traces)}
    return {"log_fitness": 0.0, "average_trace_fitness": 0.0, "percentage_of_fitting_traces": 0.0}


def _generalization(net: Any, results: Sequence[dict[str, Any]], counts: Sequence[int]) -> float:
    """pm4py's token-based generalization, each variant's transition firings weighted by its count."""
    occurrences: Counter[Any] = Counter()
    for r, n in zip(results, counts):
        for t in r["activated_transitions"]:
            occurrences[t] += n
    total = sum(1.0 / math.sqrt(k) for k in occurrences.values())
    total += sum(1 for t in net.transitions if t not in occurrences)
    return 1.0 - total / float(len(net.transitions)) if net.transitions else 1.0


# -- alignments -------------------------------------------------------------------------------
def _check_sound(model: _Model, what: str) -> None:
    from pm4py.objects.petri_net.utils.check_soundness import (
        check_easy_soundness_net_in_fin_marking,
    )

    if not check_easy_soundness_net_in_fin_marking(model.net, model.im, model.fm):
        raise ModelError(f"{what} need a sound workflow net, and {model.label} is not one (its final "
                         "marking cannot be reached); use method='tokens'")


def _align(variants: Sequence[Variant], model: _Model, report: ProgressFn) -> list[dict[str, Any] | None]:
    """pm4py's alignments of one trace per variant, as ``alignments.apply_log`` computes them."""
    from pm4py.algo.conformance.alignments.petri_net import algorithm as alignments
    from pm4py.util import exec_utils

    _check_sound(model, "alignments")
    variant = alignments.DEFAULT_VARIANT
    params: dict[Any, Any] = {}
    best_worst = exec_utils.get_variant(variant).get_best_worst_cost(model.net, model.im, model.fm,
                                                                     parameters=copy(params))
    params[alignments.Parameters.BEST_WORST_COST_INTERNAL] = best_worst
    out: list[dict[str, Any] | None] = []
    report("alignments", 0, len(variants))
    for trace in _variant_log(variants):
        out.append(alignments.apply_trace(trace, model.net, model.im, model.fm, parameters=copy(params),
                                          variant=variant))
        report("alignments", len(out), len(variants))
    return out


def _align_fitness(results: Sequence[dict[str, Any] | None], counts: Sequence[int]) -> dict[str, float]:
    """``pm4py...replay_fitness.variants.alignment_based.evaluate`` with each variant weighted."""
    pairs = [(r, n) for r, n in zip(results, counts) if r is not None]
    no_traces = sum(n for _, n in pairs)
    if no_traces == 0:
        return {"log_fitness": 0.0, "average_trace_fitness": 0.0, "percentage_of_fitting_traces": 0.0}
    fit = sum(n for r, n in pairs if r["fitness"] == 1.0)
    sum_fitness = sum(r["fitness"] * n for r, n in pairs)
    bwc = sum(r["bwc"] * n for r, n in pairs if "bwc" in r and "cost" in r)
    cost = sum(r["cost"] * n for r, n in pairs if "bwc" in r and "cost" in r)
    return {"log_fitness": 1.0 - (float(cost) / float(bwc) if bwc > 0 else 0.0),
            "average_trace_fitness": float(sum_fitness) / float(no_traces),
            "percentage_of_fitting_traces": (100.0 * float(fit)) / float(no_traces)}


def _align_deviations(variant: Variant, res: dict[str, Any] | None, known: set[str]) -> list[str]:
    if res is None:
        return ["not aligned (time limit)"]
    out = []
    for log_move, model_move in res["alignment"]:
        if model_move == ">>":
            out.append(f"inserted: {log_move}" if log_move in known else f"not in model: {log_move}")
        elif log_move == ">>" and model_move is not None:
            out.append(f"skipped: {model_move}")
    return out


# -- precision --------------------------------------------------------------------------------
def _prefixes(variants: Sequence[tuple[Variant, int]]) -> tuple[dict[Variant, set[str]], Counter[Variant]]:
    """Every proper prefix with the activities that follow it, and the cases that share it.

    ``pm4py.algo.evaluation.precision.utils.get_log_prefixes`` on the full log, but with
    tuples (pm4py joins prefixes with "," and splits them again, which breaks activity
    names that contain a comma).
    """
    follows: dict[Variant, set[str]] = {}
    counts: Counter[Variant] = Counter()
    for v, n in variants:
        for i in range(1, len(v)):
            follows.setdefault(v[:i], set()).add(v[i])
            counts[v[:i]] += n
    return follows, counts


def _initial_escaping(model: _Model, variants: Sequence[tuple[Variant, int]]) -> tuple[int, int]:
    """pm4py's "empty prefix" term: activated and escaping transitions in the initial marking, per case."""
    from pm4py.objects.petri_net.utils.align_utils import (
        get_visible_transitions_eventually_enabled_by_marking,
    )

    n_traces = sum(n for _, n in variants)
    starts = {v[0] for v, _ in variants if v}
    enabled = {t.label for t in get_visible_transitions_eventually_enabled_by_marking(model.net, model.im)}
    return n_traces * len(enabled), n_traces * len(enabled - starts)


def _precision_tokens(model: _Model, variants: Sequence[tuple[Variant, int]], paths: Any,
                      report: ProgressFn) -> float:
    """ETConformance (pm4py's ``precision_token_based_replay``) with prefixes weighted by cases."""
    follows, counts = _prefixes(variants)
    keys = list(follows)
    replayed = _token_replay(keys, model, paths, report, "precision", consider_remaining_in_fitness=False,
                             reach_mark_through_hidden=False, stop_immediately_unfit=True,
                             walk_through_hidden_trans=True)
    sum_at, sum_ee = _initial_escaping(model, variants)
    for key, res in zip(keys, replayed):
        if res["trace_is_fit"]:
            activated = {t.label for t in res["enabled_transitions_in_marking"] if t.label is not None}
            sum_at += len(activated) * counts[key]
            sum_ee += len(activated - follows[key]) * counts[key]
    return 1 - float(sum_ee) / float(sum_at) if sum_at > 0 else 1.0


def _precision_alignments(model: _Model, variants: Sequence[tuple[Variant, int]], report: ProgressFn) -> float:
    """Align-ETConformance (pm4py's ``precision_alignments``) with prefixes weighted by cases."""
    from pm4py.algo.evaluation.precision.variants import align_etconformance as etc
    from pm4py.objects.petri_net.utils.align_utils import (
        get_visible_transitions_eventually_enabled_by_marking,
    )

    _check_sound(model, "alignment-based precision")
    follows, counts = _prefixes(variants)
    keys = list(follows)
    params = {etc.Parameters.SHOW_PROGRESS_BAR: False, etc.Parameters.MULTIPROCESSING: False}
    stops: list[Any] = []
    report("precision", 0, len(keys))
    for chunk in _chunks(keys):
        stops.extend(etc.align_fake_log_stop_marking(_variant_log(chunk), model.net, model.im, model.fm,
                                                     parameters=params))
        report("precision", len(stops), len(keys))
    markings = etc.transform_markings_from_sync_to_original_net(stops, model.net, parameters=params)
    sum_at = sum_ee = 0
    for key, found in zip(keys, markings):
        if found is None:
            continue
        activated: set[str] = set()
        for m in found:
            activated |= {t.label for t in get_visible_transitions_eventually_enabled_by_marking(model.net, m)
                          if t.label is not None}
        sum_at += len(activated) * counts[key]
        sum_ee += len(activated - follows[key]) * counts[key]
    at0, ee0 = _initial_escaping(model, variants)
    sum_at, sum_ee = sum_at + at0, sum_ee + ee0
    return 1 - float(sum_ee) / float(sum_at) if sum_at > 0 else 1.0


def _simplicity(net: Any) -> float:
    from pm4py.algo.evaluation.simplicity import algorithm as simplicity

    return float(simplicity.apply(net))


# -- conform ------------------------------------------------------------------------------------
#: pm4py's cost of one log or model move (``align_utils.STD_MODEL_LOG_MOVE_COST``); silent steps cost 1.
_MOVE_COST = 10_000


class _CaseResult(NamedTuple):
    """What every case of one variant gets in ``cf_<log_id>``."""

    fitness: float | None
    is_fit: bool
    missing_tokens: int | None
    remaining_tokens: int | None
    cost: int | None
    deviations: list[str]


def _activity_warnings(model: _Model, log_activities: set[str]) -> list[str]:
    out = []
    missing = sorted(model.activities - log_activities)
    extra = sorted(log_activities - model.activities)
    if missing:
        out.append(f"model activities not in the log: {', '.join(missing)}")
    if extra:
        out.append(f"log activities not in the model: {', '.join(extra)}")
    return out


def _describe(flt: Filter | None) -> str | None:
    return None if flt is None else flt.describe()


def _check_args(method: Any, sample_variants: Any) -> None:
    if method not in ("tokens", "alignments"):
        raise InvalidArgumentError(f"method must be 'tokens' or 'alignments', not {method!r}", parameter="method")
    if sample_variants is not None and (isinstance(sample_variants, bool) or not isinstance(
            sample_variants, numbers.Integral) or sample_variants < 1):
        raise InvalidArgumentError(f"sample_variants must be a positive integer or None, not {sample_variants!r}",
                                   parameter="sample_variants")


def conform(
    ws: Home,
    log: str,
    model: Any,
    *,
    method: Method = "tokens",
    filter: Filter | None = None,
    sample_variants: int | None = None,
    progress: bool | ProgressFn = True,
    save: bool = True,
    quality: bool = True,
) -> ConformanceResult:
    """Check ``log`` (optionally filtered) against ``model``; per-case results go to the store.

    ``model`` is a saved model name (``"loans"``, ``"loans@2"``), a ``.bpmn``/``.pnml``/
    ``.ptml`` path, a :class:`~procestra.models.LoadedModel`, a discovery result, a
    ``(net, im, fm)`` triple, a process tree or a BPMN model. ``method`` is
    ``"tokens"`` (token-based replay, fast) or ``"alignments"`` (optimal alignments,
    exact deviations, far slower on models with much concurrency or many silent steps).
    ``sample_variants=N`` replays only the N most frequent variants. ``quality=False``
    skips precision, generalization and simplicity (Align-ETC precision costs about as
    much again as the alignments). ``progress`` is True/False for a progress display, or
    a callback ``(stage, done, total)``. ``save=False`` writes nothing to the store.

    Model activities missing from the log, or log activities missing from the model,
    are a ``UserWarning`` and an entry in ``result.warnings``, not an error.

    >>> conform(ws, "loans", discover(ws, "loans"), method="alignments", sample_variants=50)
    """
    _check_args(method, sample_variants)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[stage] = round(timings.get(stage, 0.0) + now - mark, 6)
        mark = now

    with _reporter(progress) as report:
        report("reading variants", 0, None)
        with ws.store.read() as con:
            log_id = catalogue.log_id(con, log)
            data = _read_variants(con, log_id, filter)
        if not data.variants:
            raise EmptyResultError(f"log {log!r} has no cases to check" if filter is None else
                                   f"no cases match the filter ({_describe(filter)}) in log {log!r}; loosen it",
                                   filter=_describe(filter))
        lap("variants")
        resolved = _resolve(ws, model)
        lap("model")
        notes = _activity_warnings(resolved, {a for v, _ in data.variants for a in v})
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        chosen = data.variants[:sample_variants] if sample_variants else data.variants
        n_cases = sum(n for _, n in data.variants)
        covered = sum(n for _, n in chosen)
        if len(chosen) < len(data.variants):
            notes.append(f"sampled: the {len(chosen):,} most frequent of {len(data.variants):,} variants, "
                         f"covering {covered:,} of {n_cases:,} cases ({100.0 * covered / n_cases:.1f}%)")
        seqs = [v for v, _ in chosen]
        counts = [n for _, n in chosen]
        known = resolved.activities
        paths = functools.cache(lambda: _shortest_paths(resolved.net))  # token replay only: not for alignments
        tokens: list[dict[str, Any]] | None = None
        per_variant: list[_CaseResult]
        if method == "tokens":
            tokens = _token_replay(seqs, resolved, paths(), report, "token replay")
            fitness = _token_fitness(tokens, counts)
            per_variant = [_CaseResult(float(r["trace_fitness"]), bool(r["trace_is_fit"]), int(r["missing_tokens"]),
                                       int(r["remaining_tokens"]), None, _token_deviations(v, r, resolved, known))
                           for v, r in zip(seqs, tokens)]
        else:
            aligned = _align(seqs, resolved, report)
            fitness = _align_fitness(aligned, counts)
            per_variant = [_CaseResult(None if r is None else float(r["fitness"]),
                                       r is not None and r["fitness"] == 1.0, None, None,
                                       None if r is None else int(r["cost"]) // _MOVE_COST,
                                       _align_deviations(v, r, known)) for v, r in zip(seqs, aligned)]
        lap("replay")
        precision = generalization = simplicity = None
        if quality:
            if method == "tokens":
                precision = _precision_tokens(resolved, chosen, paths(), report)
            else:
                precision = _precision_alignments(resolved, chosen, report)
            lap("precision")
            if tokens is None:
                tokens = _token_replay(seqs, resolved, paths(), report, "generalization")
            generalization = _generalization(resolved.net, tokens, counts)
            simplicity = _simplicity(resolved.net)
            lap("generalization")
        result = ConformanceResult(
            log=log, model=resolved.label, method=method, fitness=fitness, precision=precision,
            generalization=generalization, simplicity=simplicity, n_cases=n_cases,
            n_variants=len(data.variants), covered_cases=covered, covered_variants=len(chosen),
            sampled=len(chosen) < len(data.variants), seconds=0.0, warnings=notes, filter=_describe(filter),
            timings=timings)
        run_id = None
        if save:
            report("writing deviations", 0, None)
            run_id = _save(ws, log, result, per_variant, data.cases)
            lap("save")
    return _replace(result, run_id=run_id, seconds=round(time.perf_counter() - started, 6))


def _replace(result: ConformanceResult, **changes: Any) -> ConformanceResult:
    from dataclasses import replace

    return replace(result, **changes)


# -- the store --------------------------------------------------------------------------------
_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS conformance_runs (
    run_id          INTEGER PRIMARY KEY,
    log_id          INTEGER,
    log             VARCHAR,
    model           VARCHAR,
    method          VARCHAR,
    filter          VARCHAR,
    fitness         DOUBLE,
    precision       DOUBLE,
    generalization  DOUBLE,
    simplicity      DOUBLE,
    n_cases         BIGINT,
    n_variants      BIGINT,
    covered_cases   BIGINT,
    covered_variants BIGINT,
    sampled         BOOLEAN,
    details         JSON,
    created_at      TIMESTAMPTZ
)
"""
_CASES_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    run_id           INTEGER,
    model            VARCHAR,
    method           VARCHAR,
    case_id          VARCHAR,
    variant          INTEGER,
    fitness          DOUBLE,
    is_fit           BOOLEAN,
    missing_tokens   INTEGER,
    remaining_tokens INTEGER,
    cost             INTEGER,
    deviations       VARCHAR[],
    created_at       TIMESTAMPTZ
)
"""
# Runs of a log that was dropped and whose id a newer log took: older than its first load ($since).
_STALE_SQL = """
SELECT run_id FROM conformance_runs
WHERE log_id = $log_id AND created_at < coalesce(CAST($since AS TIMESTAMPTZ), now())
"""
_INSERT_RUN_SQL = """
INSERT INTO conformance_runs VALUES ($run_id, $log_id, $log, $model, $method, $filter, $fitness, $precision,
    $generalization, $simplicity, $n_cases, $n_variants, $covered_cases, $covered_variants, $sampled, $details, now())
"""
_INSERT_CASES_SQL = """
INSERT INTO {table}
SELECT $run_id, $model, $method, c.case_id, c.vid, r.fitness, r.is_fit, r.missing_tokens, r.remaining_tokens,
       r.cost, r.deviations, now()
FROM __cf_case_map c JOIN __cf_results r ON r.vid = c.vid
"""


def _save(ws: Home, log: str, result: ConformanceResult, per_variant: Sequence[_CaseResult],
          cases: pa.Table) -> int:
    """Write the run's summary and one row per covered case, in one transaction; the run id."""
    types = {"fitness": pa.float64(), "is_fit": pa.bool_(), "missing_tokens": pa.int32(),
             "remaining_tokens": pa.int32(), "cost": pa.int32(), "deviations": pa.list_(pa.string())}
    results = pa.table({"vid": pa.array(range(len(per_variant)), pa.int32()),
                        **{k: pa.array([getattr(r, k) for r in per_variant], t) for k, t in types.items()}})
    details = {"fitness": result.fitness, "warnings": result.warnings, "timings": result.timings}
    with ws.store.write() as con:
        con.execute("BEGIN TRANSACTION")
        log_id = catalogue.log_id(con, log)
        table = deviations_table(log_id)
        con.execute(_RUNS_DDL)
        con.execute(_CASES_DDL.format(table=table))
        since = catalogue.first_loaded_at(con, log_id)
        stale = [r[0] for r in con.execute(_STALE_SQL, {"log_id": log_id, "since": since}).fetchall()]
        if stale:
            con.execute(f"DELETE FROM {table} WHERE list_contains($ids, run_id)", {"ids": stale})
            con.execute("DELETE FROM conformance_runs WHERE list_contains($ids, run_id)", {"ids": stale})
        run_id = int(con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM conformance_runs").fetchall()[0][0])
        con.register("__cf_case_map", cases)
        con.register("__cf_results", results)
        common = {"run_id": run_id, "model": result.model, "method": result.method}
        con.execute(_INSERT_CASES_SQL.format(table=table), common)
        con.execute(_INSERT_RUN_SQL, {
            **common, "log_id": log_id, "log": log, "filter": result.filter, "fitness": result.headline_fitness,
            "precision": result.precision, "generalization": result.generalization,
            "simplicity": result.simplicity, "n_cases": result.n_cases, "n_variants": result.n_variants,
            "covered_cases": result.covered_cases, "covered_variants": result.covered_variants,
            "sampled": result.sampled, "details": json.dumps(details)})
        con.execute("COMMIT")
        con.unregister("__cf_case_map")
        con.unregister("__cf_results")
    return run_id


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
                            "AND table_name = ?", [name]).fetchall()[0][0])


def drop_conformance(con: duckdb.DuckDBPyConnection, log_id: int) -> None:
    """Remove log ``log_id``'s runs and per-case table; for ``Workspace.drop``, inside its transaction."""
    con.execute(f"DROP TABLE IF EXISTS {deviations_table(log_id)}")
    if _has_table(con, "conformance_runs"):
        con.execute("DELETE FROM conformance_runs WHERE log_id = ?", [int(log_id)])


# Runs of this log (not of a dropped log that had the same id), newest first.
_LOG_RUNS_SQL = """
SELECT * FROM conformance_runs
WHERE log_id = $log_id AND created_at >= coalesce(CAST($since AS TIMESTAMPTZ), now())
ORDER BY run_id DESC
"""


def conformance_runs(ws: Home, log: str) -> pd.DataFrame:
    """The conformance runs on ``log``, newest first: model, method, scores, counts, time."""
    import pandas as pd

    with ws.store.read() as con:
        log_id = catalogue.log_id(con, log)
        if not _has_table(con, "conformance_runs"):
            return pd.DataFrame(columns=["run_id", "log_id", "log", "model", "method", "filter", "fitness",
                                         "precision", "generalization", "simplicity", "n_cases", "n_variants",
                                         "covered_cases", "covered_variants", "sampled", "details", "created_at"])
        since = catalogue.first_loaded_at(con, log_id)
        return con.execute(_LOG_RUNS_SQL, {"log_id": log_id, "since": since}).df()


def deviations(ws: Home, log: str, run_id: int | None = None) -> pd.DataFrame:
    """One row per case of a conformance run on ``log`` (the latest run unless ``run_id``).

    Columns: ``run_id, model, method, case_id, variant, fitness, is_fit,
    missing_tokens, remaining_tokens, cost, deviations, created_at``. In SQL the same
    rows are in ``cf_<log_id>`` (see :func:`deviations_table`), e.g.
    ``SELECT unnest(deviations) AS d, count(*) FROM cf_1 WHERE run_id = 3 GROUP BY d``.
    """
    runs = conformance_runs(ws, log)
    if runs.empty:
        raise InvalidArgumentError(f"no conformance run on log {log!r} yet; run conform(ws, {log!r}, model) first",
                                   parameter="run_id")
    known = [int(r) for r in runs["run_id"]]
    if run_id is None:
        run_id = known[0]
    elif run_id not in known:
        raise InvalidArgumentError(f"no conformance run {run_id!r} on log {log!r} (runs: "
                                   f"{', '.join(map(str, sorted(known)))})", parameter="run_id")
    with ws.store.read() as con:
        table = deviations_table(catalogue.log_id(con, log))
        return con.execute(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY case_id", [int(run_id)]).df()
