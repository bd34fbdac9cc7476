"""Our filters against pm4py's filters on real logs in ../shared (skipped when absent).

pm4py reads each XES file itself (``pm4py.read_xes``) and filters its own frame; we filter
the store, from the derived tables and again from the events (the per-case sort). Both
must keep exactly the cases pm4py keeps, with the same number of events each. The filter
arguments (activities, values, times, bounds) are picked from pm4py's view of the log, and
only where pm4py keeps some cases but not all, so that every comparison can fail.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pm4py
import pytest

from procestra import Workspace
from procestra.mining.filters import Filter, filtered_events_sql, plan_filter
from procestra.mining.stats import derive_log

warnings.filterwarnings("ignore")
pytestmark = pytest.mark.shared

CASE, ACT, TS, RES = "case:concept:name", "concept:name", "time:timestamp", "org:resource"
#: Small real logs, each with a case attribute and an event attribute (not a role) to filter on,
#: where it has them. SEPSIS (one trace per variant) makes every top-k cut a tie.
LOGS = {
    "receipt": ("receipt.xes.gz", "case:channel", "org:group"),
    "repairExample": ("repairExample.xes.gz", None, "defectType"),
    "SEPSIS": ("SEPSIS_1t_per_variant.xes.gz", None, None),
}
#: Filters no argument can make selective on a log: receipt and repairExample start every
#: case with the same activity.
NOT_SELECTIVE = {"receipt": {"start", "start-exclude"}, "repairExample": {"start", "start-exclude"}, "SEPSIS": set()}

Made = tuple[Filter, pd.DataFrame]


@pytest.fixture(scope="module")
def real(shared_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, pd.DataFrame]]:
    """One workspace with every log (with its derived tables), and pm4py's own frame of each,
    read from the same file."""
    ws = Workspace.init(tmp_path_factory.mktemp("filters-real") / "ws")
    frames = {}
    for log, (file, _, _) in LOGS.items():
        ws.ingest(shared_logs / file, log=log, progress=False)
        derive_log(ws, log)
        frames[log] = pm4py.read_xes(str(shared_logs / file))
    return ws, frames


def ours(ws: Workspace, log: str, filters: dict[str, Filter]) -> dict[str, Counter[str]]:
    """Events per kept case, from each of our filters (on one read connection)."""
    out = {}
    with ws.store.read() as con:
        log_id = ws.store.log_id(con, log)
        for name, flt in filters.items():
            sql, params = filtered_events_sql(con, log_id, flt)
            rows = con.execute(f"SELECT case_id, count(*) FROM ({sql}) GROUP BY case_id", params).fetchall()
            out[name] = Counter({case: n for case, n in rows})
    return out


def per_case(df: pd.DataFrame) -> Counter[str]:
    """Events per kept case, in a frame pm4py filtered."""
    return Counter(df[CASE].astype(str).value_counts().to_dict())


def selective(df: pd.DataFrame, full: pd.DataFrame) -> bool:
    """pm4py's result keeps some cases, or some events, but not all."""
    return len(df) > 0 and (df[CASE].nunique() < full[CASE].nunique() or len(df) < len(full))


def pick(candidates: Iterable[Any], make: Callable[[Any], Made], full: pd.DataFrame) -> Made:
    """The first candidate argument (most frequent first) on which pm4py's filter is selective."""
    for candidate in candidates:
        made = make(candidate)
        if selective(made[1], full):
            return made
    raise LookupError("no selective argument")


def by_count(counts: dict[Any, int]) -> list[Any]:
    return sorted(counts, key=lambda k: (-counts[k], str(k)))


def ranked_variants(df: pd.DataFrame) -> list[tuple[tuple[str, ...], int]]:
    """pm4py's variants, most frequent first, ties by the variant descending (pm4py's top-k order)."""
    return sorted(pm4py.get_variants(df.copy()).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def specs(log: str) -> dict[str, Callable[[pd.DataFrame], Made]]:
    """Every filter to compare on ``log``, by name: ``make(df)`` gives our filter and pm4py's result."""
    _, case_attr, event_attr = LOGS[log]
    out: dict[str, Callable[[pd.DataFrame], Made]] = {}
    for exclude in (False, True):
        x = "-exclude" if exclude else ""
        out[f"start{x}"] = lambda df, ex=exclude: pick(
            by_count(pm4py.get_start_activities(df)),
            lambda a: (Filter.start_activities([a], exclude=ex), pm4py.filter_start_activities(df, [a], retain=not ex)),
            df)
        out[f"end{x}"] = lambda df, ex=exclude: pick(
            by_count(pm4py.get_end_activities(df)),
            lambda a: (Filter.end_activities([a], exclude=ex), pm4py.filter_end_activities(df, [a], retain=not ex)),
            df)
        out[f"follows{x}"] = lambda df, ex=exclude: pick(
            by_count(pm4py.discover_dfg(df)[0]),
            lambda p: (Filter.follows(*p, exclude=ex), pm4py.filter_directly_follows_relation(df, [p], retain=not ex)),
            df)
        attributes = [(ACT, "activity")] + ([(RES, "resource")] if log != "SEPSIS" else []) + \
                     ([(event_attr, event_attr)] if event_attr else [])
        for column, name in attributes:
            for level in ("case", "event"):
                out[f"{name}-{level}{x}"] = lambda df, c=column, n=name, lv=level, ex=exclude: pick(
                    by_count(df[c].dropna().value_counts().to_dict()),
                    lambda v: (Filter.event_attribute(n, [v], level=lv, exclude=ex),
                               pm4py.filter_event_attribute_values(df, c, [v], level=lv, retain=not ex)), df)
        if case_attr:
            out[f"case-attribute{x}"] = lambda df, ex=exclude: pick(
                by_count(df.drop_duplicates(CASE)[case_attr].value_counts().to_dict()),
                lambda v: (Filter.case_attribute(case_attr, [v], exclude=ex),
                           pm4py.filter_trace_attribute_values(df, case_attr, [v], retain=not ex)), df)
    for mode, pm_mode in (("contained", "traces_contained"), ("intersecting", "traces_intersecting"),
                          ("started", "traces_starting_in"), ("events", "events")):
        def frame(df: pd.DataFrame, mode: str = mode, pm_mode: str = pm_mode) -> Made:
            t0, t1 = (df[TS].quantile(q).to_pydatetime() for q in (0.3, 0.6))
            return Filter.timeframe(t0, t1, mode=mode), pm4py.filter_time_range(df, t0, t1, mode=pm_mode)  # type: ignore[arg-type]
        out[f"timeframe-{mode}"] = frame
    for k in (1, 5, 20):
        out[f"top-{k}"] = lambda df, k=k: (Filter.variants(top=k), pm4py.filter_variants_top_k(df, k))
    for share in (0.5, 0.8):
        def cover(df: pd.DataFrame, share: float = share) -> Made:
            # pm4py has no coverage filter: take its most frequent variants (its order) until
            # `share` of the cases is reached, and let pm4py keep those variants
            ranked, keep, before = ranked_variants(df), [], 0
            total = sum(n for _, n in ranked)
            for variant, n in ranked:
                if before >= share * total:
                    break
                keep.append(variant)
                before += n
            return Filter.variants(coverage=share), pm4py.filter_variants(df, keep)
        out[f"coverage-{share}"] = cover
    out["variant"] = lambda df: (Filter.variant([list(v) for v, _ in ranked_variants(df)[1:3]]),
                                 pm4py.filter_variants(df, [v for v, _ in ranked_variants(df)[1:3]]))
    out["size"] = lambda df: (Filter.case_size(min=3, max=6), pm4py.filter_case_size(df, 3, 6))

    def duration(df: pd.DataFrame) -> Made:
        d = sorted(pm4py.get_all_case_durations(df))
        lo, hi = d[len(d) // 4], d[len(d) // 2]  # exact case durations as the bounds: inclusive
        return Filter.duration(min=lo, max=hi), pm4py.filter_case_performance(df, lo, hi)
    out["duration"] = duration
    return out


@pytest.mark.parametrize("log", list(LOGS))
def test_filters_equal_pm4py_on_real_log(real: Any, log: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, frames = real
    full = frames[log]
    expected: dict[str, tuple[Filter, Counter[str]]] = {}
    not_selective = set()
    for name, make in specs(log).items():
        try:
            flt, kept = make(full.copy())
        except LookupError:
            not_selective.add(name)
            continue
        assert selective(kept, full), name
        expected[name] = (flt, per_case(kept))
    assert not_selective == NOT_SELECTIVE[log]
    for path in ("derived", "events"):
        if path == "events":  # the derived tables hidden: every filter from the events
            monkeypatch.setattr("procestra.mining.plan.is_derived", lambda con, log_id: False)
        with ws.store.read() as con:  # the plan answers from the derived tables, or not
            assert plan_filter(con, ws.store.log_id(con, log), Filter()).fast == (path == "derived")
        got = ours(ws, log, {name: flt for name, (flt, _) in expected.items()})
        wrong = {name: repr(flt) for name, (flt, want) in expected.items() if got[name] != want}
        assert not wrong, (path, wrong)


def test_lifecycle_then_case_level_chain_equals_pm4py(real: Any) -> None:
    """Event-level first (complete events only), then the parts that depend on the order of what is left."""
    ws, frames = real
    x = pm4py.filter_event_attribute_values(frames["repairExample"].copy(), "lifecycle:transition", ["complete"],
                                            level="event")
    end = by_count(pm4py.get_end_activities(x))[1]
    x = pm4py.filter_variants_top_k(pm4py.filter_end_activities(x, [end]), 3)
    flt = (Filter.event_attribute("lifecycle", ["complete"], level="event") & Filter.end_activities([end])
           & Filter.variants(top=3))
    assert selective(x, frames["repairExample"])
    assert ours(ws, "repairExample", {"chain": flt})["chain"] == per_case(x)
