"""Filters: every kind against pm4py's filters (or pandas where pm4py has none), on a
generated log, with and without the derived tables; composition, saving, bad input."""

from __future__ import annotations

import warnings
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pm4py
import pytest

from conftest import pm4py_frame
from procestra import (
    InvalidArgumentError,
    LogNotFoundError,
    LogSchema,
    UserError,
    Workspace,
)
from procestra.errors import EmptyResultError
from procestra.mining import stats
from procestra.mining.filters import Filter, filtered_events_sql, save_filtered
from procestra.mining.stats import derive_log, dfg, variants
from procestra.store.derived import is_derived

warnings.filterwarnings("ignore")

CASE = "case:concept:name"
ACT = "concept:name"
TS = "time:timestamp"
CASE_ATTRS = LogSchema(case_attributes=("amount", "channel"))


@pytest.fixture(scope="module")
def source(loan_table) -> pd.DataFrame:
    """The generated loan log without a tenth of its events (seeded), so cases start and end differently."""
    table = loan_table.to_pandas()
    return table[np.random.default_rng(0).random(len(table)) >= 0.1].reset_index(drop=True)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, source: pd.DataFrame) -> Workspace:
    """One workspace with the loan log twice: ``d`` with derived tables, ``n`` without."""
    ws = Workspace.init(tmp_path_factory.mktemp("filters") / "ws")
    for name in ("d", "n"):
        ws.ingest(source, log=name, schema=CASE_ATTRS, progress=False)
    derive_log(ws, "d")
    stats.underive(ws, "n")  # ingest derives; "n" exercises the per-case-sort path
    stats.AUTO_DERIVE = False
    yield ws
    stats.AUTO_DERIVE = True


@pytest.fixture(params=["d", "n"], ids=["derived", "windows"])
def log(request: pytest.FixtureRequest, logs: Workspace) -> str:
    with logs.store.read() as con:
        assert is_derived(con, logs.store.log_id(con, request.param)) == (request.param == "d")
    return request.param


@pytest.fixture(scope="module")
def frame(source: pd.DataFrame) -> pd.DataFrame:
    """pm4py's frame of the same events, made from the source table, not from our export."""
    return pm4py_frame(source)


def events(ws: Workspace, log: str, flt: Filter | None) -> pd.DataFrame:
    """The filtered events as (case, activity, timestamp) rows, through filtered_events_sql."""
    with ws.store.read() as con:
        sql, params = filtered_events_sql(con, ws.store.log_id(con, log), flt)
        return con.execute(f"SELECT case_id AS \"{CASE}\", activity AS \"{ACT}\", ts AS \"{TS}\" FROM ({sql})",
                           params).df()


def bag(df: pd.DataFrame) -> Counter:
    return Counter(zip(df[CASE].astype(str), df[ACT].astype(str), df[TS]))


def cases(df: pd.DataFrame) -> set[str]:
    return set(df[CASE].astype(str))


def same(ws: Workspace, log: str, flt: Filter, expected: pd.DataFrame) -> None:
    got = events(ws, log, flt)
    assert len(got) == len(expected)
    assert bag(got) == bag(expected)


# -- each kind against pm4py ------------------------------------------------------------
@pytest.mark.parametrize("mode,pm_mode", [("contained", "traces_contained"), ("intersecting", "traces_intersecting"),
                                          ("started", "traces_starting_in"), ("events", "events")])
def test_timeframe(logs, log, frame, mode, pm_mode) -> None:
    t0 = frame[TS].min() + pd.Timedelta(days=10)
    t1 = frame[TS].min() + pd.Timedelta(days=25)
    expected = pm4py.filter_time_range(frame.copy(), t0.to_pydatetime(), t1.to_pydatetime(), mode=pm_mode)
    assert 0 < len(expected) < len(frame)
    same(logs, log, Filter.timeframe(t0, t1, mode=mode), expected)
    # strings and naive datetimes are UTC
    same(logs, log, Filter.timeframe(t0.strftime("%Y-%m-%d %H:%M:%S.%f"), t1.tz_localize(None).to_pydatetime(),
                                     mode=mode), expected)


def test_timeframe_boundaries_follow_pm4py(logs, log, frame) -> None:
    # A frame that starts exactly at one case's first event and ends at another's last event.
    firsts = frame.groupby(CASE)[TS].min().sort_values()
    lasts = frame.groupby(CASE)[TS].max().sort_values()
    t0, t1 = firsts.iloc[50], lasts.iloc[300]
    for mode, pm_mode in (("contained", "traces_contained"), ("intersecting", "traces_intersecting"),
                          ("started", "traces_starting_in")):
        expected = pm4py.filter_time_range(frame.copy(), t0.to_pydatetime(), t1.to_pydatetime(), mode=pm_mode)
        assert cases(events(logs, log, Filter.timeframe(t0, t1, mode=mode))) == cases(expected), mode


@pytest.mark.parametrize("k", [1, 3, 10, 1000])
def test_variants_top_k(logs, log, frame, k) -> None:
    expected = pm4py.filter_variants_top_k(frame.copy(), k)
    same(logs, log, Filter.variants(top=k), expected)


def test_top_k_ties_broken_like_pm4py(logs, log, frame) -> None:
    counts = sorted(pm4py.get_variants(frame.copy()).values(), reverse=True)
    k = next(i for i in range(1, len(counts)) if counts[i - 1] == counts[i])  # the k-th ties with the next
    same(logs, log, Filter.variants(top=k), pm4py.filter_variants_top_k(frame.copy(), k))
    assert len(variants(logs, log, Filter.variants(top=k))) == k


@pytest.mark.parametrize("coverage", [0.1, 0.5, 0.8, 1.0])
def test_variants_coverage(logs, log, frame, coverage) -> None:
    ranked = sorted(pm4py.get_variants(frame.copy()).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    total, before, keep = sum(n for _, n in ranked), 0, set()
    for v, n in ranked:
        if before >= coverage * total:
            break
        keep.add(v)
        before += n
    seqs = frame.groupby(CASE, sort=False)[ACT].agg(tuple)
    expected = frame[frame[CASE].isin(seqs[seqs.isin(keep)].index)]
    assert before >= coverage * total
    same(logs, log, Filter.variants(coverage=coverage), expected)


@pytest.mark.parametrize("exclude", [False, True])
def test_case_attribute(logs, log, frame, exclude) -> None:
    same(logs, log, Filter.case_attribute("channel", ["online", "broker"], exclude=exclude),
         pm4py.filter_trace_attribute_values(frame.copy(), "case:channel", ["online", "broker"], retain=not exclude))
    amounts = sorted(frame["case:amount"].unique())[:5]
    same(logs, log, Filter.case_attribute("case:amount", amounts, exclude=exclude),
         pm4py.filter_trace_attribute_values(frame.copy(), "case:amount", amounts, retain=not exclude))


@pytest.mark.parametrize("level", ["case", "event"])
@pytest.mark.parametrize("exclude", [False, True])
def test_event_attribute(logs, log, frame, level, exclude) -> None:
    for name, column, values in (("resource", "org:resource", ["system", "clerk_01"]),
                                 ("org:resource", "org:resource", ["analyst_02"]),
                                 ("activity", ACT, ["Request documents"]),
                                 ("cost", "cost", sorted(frame["cost"].unique())[:20])):
        expected = pm4py.filter_event_attribute_values(frame.copy(), column, values, level=level, retain=not exclude)
        same(logs, log, Filter.event_attribute(name, values, level=level, exclude=exclude), expected)


@pytest.mark.parametrize("exclude", [False, True])
def test_start_and_end_activities(logs, log, frame, exclude) -> None:
    same(logs, log, Filter.start_activities(["Submit application"], exclude=exclude),
         pm4py.filter_start_activities(frame.copy(), ["Submit application"], retain=not exclude))
    ends = ["Notify customer", "Reject application"]
    expected = pm4py.filter_end_activities(frame.copy(), ends, retain=not exclude)
    assert 0 < len(expected) < len(frame)
    same(logs, log, Filter.end_activities(ends, exclude=exclude), expected)


def test_duration(logs, log, frame) -> None:
    expected = pm4py.filter_case_performance(frame.copy(), 2 * 86400, 7 * 86400)
    assert 0 < len(expected) < len(frame)
    same(logs, log, Filter.duration(min=2 * 86400, max=7 * 86400), expected)
    same(logs, log, Filter.duration(min=timedelta(days=2), max=timedelta(days=7)), expected)
    # an exact case duration as the bound is inclusive
    d = pm4py.get_all_case_durations(frame.copy())[100]
    same(logs, log, Filter.duration(max=d), pm4py.filter_case_performance(frame.copy(), 0, d))
    same(logs, log, Filter.duration(min=d), pm4py.filter_case_performance(frame.copy(), d, 1e12))


def test_case_size(logs, log, frame) -> None:
    for lo, hi in ((9, 10), (4, 4), (11, 100)):
        same(logs, log, Filter.case_size(min=lo, max=hi), pm4py.filter_case_size(frame.copy(), lo, hi))
    same(logs, log, Filter.case_size(max=8), pm4py.filter_case_size(frame.copy(), 0, 8))


@pytest.mark.parametrize("pair", [("Credit check", "Fraud check"), ("Check completeness", "Request documents"),
                                  ("Check completeness", "Check completeness")])
@pytest.mark.parametrize("exclude", [False, True])
def test_follows(logs, log, frame, pair, exclude) -> None:
    expected = pm4py.filter_directly_follows_relation(frame.copy(), [pair], retain=not exclude)
    assert 0 < len(expected) < len(frame)
    same(logs, log, Filter.follows(*pair, exclude=exclude), expected)


def test_contains_and_skips(logs, log, frame) -> None:
    has = frame.groupby(CASE)[ACT].agg(lambda s: "Underwriter review" in set(s))
    same(logs, log, Filter.contains("Underwriter review"), frame[frame[CASE].isin(has[has].index)])
    same(logs, log, Filter.skips("Underwriter review"), frame[frame[CASE].isin(has[~has].index)])
    assert events(logs, log, Filter.contains("no such activity")).empty


def test_variant_sequences_equal_pm4py(logs, log, frame) -> None:
    top = list(pm4py.get_variants(frame).items())
    top.sort(key=lambda kv: -kv[1])
    one, two = list(top[0][0]), list(top[1][0])
    seq = frame.sort_values([TS], kind="stable").groupby(CASE, sort=False)[ACT].agg(tuple)
    for chosen in ([one], [one, two]):
        keep = seq[seq.isin([tuple(c) for c in chosen])].index
        same(logs, log, Filter.variant(chosen if len(chosen) > 1 else chosen[0]), frame[frame[CASE].isin(keep)])
    same(logs, log, Filter.variant(one, exclude=True), frame[~frame[CASE].isin(seq[seq == tuple(one)].index)])
    assert events(logs, log, Filter.variant(["no", "such", "variant"])).empty
    with pytest.raises(InvalidArgumentError, match="list of activity names"):
        Filter.variant([])
    with pytest.raises(InvalidArgumentError, match="non-empty list of activity names"):
        Filter.variant([["a"], [1, 2]])
    assert repr(Filter.variant(["a", "b"])) == "Filter.variant(['a', 'b'])"


# -- composition ------------------------------------------------------------------------------
def test_case_level_chain_equals_pm4py_chain(logs, log, frame) -> None:
    flt = Filter.case_size(min=8) & Filter.start_activities(["Submit application"]) & Filter.variants(top=5)
    expected = pm4py.filter_variants_top_k(
        pm4py.filter_start_activities(pm4py.filter_case_size(frame.copy(), 8, 1000), ["Submit application"]), 5)
    same(logs, log, flt, expected)


def test_event_level_then_case_level(logs, log, frame) -> None:
    flt = (Filter.event_attribute("resource", ["system"], level="event", exclude=True)
           & Filter.start_activities(["Check completeness"]) & Filter.case_size(min=6, max=7)
           & Filter.follows("Credit check", "Fraud check") & Filter.variants(top=3))
    x = pm4py.filter_event_attribute_values(frame.copy(), "org:resource", ["system"], level="event", retain=False)
    x = pm4py.filter_start_activities(x, ["Check completeness"])
    x = pm4py.filter_case_size(x, 6, 7)
    x = pm4py.filter_directly_follows_relation(x, [("Credit check", "Fraud check")])
    x = pm4py.filter_variants_top_k(x, 3)
    assert len(x)
    same(logs, log, flt, x)
    # the statistics see the recomputed variants and DFG
    assert variants(logs, log, flt).to_pm4py() == pm4py.get_variants(x)
    assert dfg(logs, log, flt).to_pm4py() == pm4py.discover_dfg(x.drop(columns=["start_timestamp"]))


def test_event_levels_and_timeframe_events_compose(logs, log, frame) -> None:
    t0, t1 = frame[TS].min() + pd.Timedelta(days=5), frame[TS].min() + pd.Timedelta(days=30)
    flt = Filter.timeframe(t0, t1, mode="events") & Filter.event_attribute("activity", ["Close case"], level="event",
                                                                            exclude=True)
    x = pm4py.filter_time_range(frame.copy(), t0.to_pydatetime(), t1.to_pydatetime(), mode="events")
    same(logs, log, flt, pm4py.filter_event_attribute_values(x, ACT, ["Close case"], level="event", retain=False))


def test_order_of_parts_matters_only_for_variants(logs, log, frame) -> None:
    a, b = Filter.variants(top=3), Filter.end_activities(["Notify customer"])
    ab, ba = events(logs, log, a & b), events(logs, log, b & a)
    assert bag(ab) == bag(pm4py.filter_end_activities(pm4py.filter_variants_top_k(frame.copy(), 3),
                                                      ["Notify customer"]))
    assert bag(ba) == bag(pm4py.filter_variants_top_k(pm4py.filter_end_activities(frame.copy(), ["Notify customer"]),
                                                      3))
    c, d = Filter.case_size(min=9), Filter.case_attribute("channel", ["online"])
    assert bag(events(logs, log, c & d)) == bag(events(logs, log, d & c))


def test_repr_and_describe() -> None:
    f = Filter.case_attribute("channel", ["web"]) & Filter.variants(top=5)
    assert repr(f) == "Filter.case_attribute('channel', ['web'], exclude=False) & Filter.variants(top=5)"
    assert f.describe() == "cases whose channel is one of ['web'], then the 5 most frequent variants"
    assert Filter().describe() == "all cases" and repr(Filter()) == "Filter()"
    assert "events whose resource is not one of ['ann']" in Filter.event_attribute(
        "resource", "ann", level="event", exclude=True).describe()
    assert Filter.duration(min=3600).describe() == "cases lasting at least 1:00:00"
    assert Filter.case_size(min=2, max=4) == Filter.case_size(min=2, max=4)  # values, hashable
    assert len({Filter.contains("a"), Filter.contains("a"), Filter.skips("a")}) == 2
    assert (Filter.contains("a") & Filter()).parts == Filter.contains("a").parts
    assert not Filter().event_level and Filter.timeframe("2024-01-01", "2024-01-02", mode="events").event_level
    assert "<code>" in f._repr_html_()


# -- injection-looking values are values ---------------------------------------------------------
EVIL = "x' OR 1=1 --"


def test_injection_looking_values(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "evil.csv"
    src.write_text(
        "case_id,activity,timestamp,resource,note,case:tag\n"
        f"c1,a,2024-01-01 10:00,ann,ok,\"{EVIL}\"\n"
        f"c1,\"{EVIL}\",2024-01-01 11:00,\"Robert'); DROP TABLE ev_1;--\",\"{EVIL}\",\"{EVIL}\"\n"
        "c2,a,2024-01-01 10:00,ann,ok,plain\n"
        "c2,b,2024-01-01 12:00,,,plain\n"
    )
    ws.ingest(src, log="evil", progress=False)
    for flt, kept in ((Filter.contains(EVIL), {"c1"}), (Filter.event_attribute("note", [EVIL]), {"c1"}),
                      (Filter.case_attribute("tag", [EVIL]), {"c1"}), (Filter.contains("a' OR '1'='1"), set()),
                      (Filter.event_attribute("resource", ["Robert'); DROP TABLE ev_1;--"]), {"c1"}),
                      (Filter.follows("a", EVIL), {"c1"}), (Filter.end_activities([EVIL]), {"c1"})):
        with ws.store.read() as con:
            sql, _ = filtered_events_sql(con, ws.store.log_id(con, "evil"), flt)
        assert EVIL not in sql and "Robert" not in sql
        assert cases(events(ws, "evil", flt)) == kept, flt
    assert ws.info("evil").events == 4  # nothing was dropped
    # None matches missing values; exclude keeps them
    assert cases(events(ws, "evil", Filter.event_attribute("resource", [None], level="case"))) == {"c2"}
    assert len(events(ws, "evil", Filter.event_attribute("note", ["ok"], level="event", exclude=True))) == 2


# -- saving a filtered view as a log --------------------------------------------------------------
def test_save_filtered_round_trip(ws: Workspace, loan_table) -> None:
    ws.ingest(loan_table, log="loans", schema=CASE_ATTRS, progress=False)
    flt = Filter.case_attribute("channel", ["online"]) & Filter.event_attribute(
        "resource", ["system"], level="event", exclude=True)
    expected = events(ws, "loans", flt)
    info = save_filtered(ws, "loans", flt, "online-manual")
    assert (info.events, info.cases) == (len(expected), expected[CASE].nunique())
    assert info.source_kind == "filter" and "online" in info.source
    assert info.case_attributes == ws.info("loans").case_attributes
    assert info.event_attributes == ws.info("loans").event_attributes
    # the copy holds exactly the kept events, with their attributes, and is derived
    copy = ws.to_pandas("online-manual")
    assert bag(copy) == bag(expected)
    assert set(copy["case:channel"]) == {"online"} and "system" not in set(copy["org:resource"])
    full = ws.to_pandas("loans")
    key = ["case:concept:name", "concept:name", "time:timestamp"]
    merged = copy.merge(full, on=key, suffixes=("", "_src"))
    assert len(merged) == len(copy) and (merged["cost"] == merged["cost_src"]).all()
    with ws.store.read() as con:
        new_id = ws.store.log_id(con, "online-manual")
        assert is_derived(con, new_id)
        n_events = con.execute(f"SELECT sum(n_events) FROM ca_{new_id}").fetchone()[0]
    assert n_events == len(copy)  # case sizes recomputed after the event-level part
    assert dfg(ws, "online-manual").to_pm4py() == dfg(ws, "loans", flt).to_pm4py()
    assert variants(ws, "online-manual").to_pm4py() == variants(ws, "loans", flt).to_pm4py()
    with pytest.raises(UserError, match="already exists"):
        save_filtered(ws, "loans", flt, "online-manual")
    with pytest.raises(InvalidArgumentError) as e:
        save_filtered(ws, "loans", flt, "bad'; name")
    assert e.value.parameter == "new_log"


def test_save_filtered_empty_and_unknown(ws: Workspace, loan_table) -> None:
    ws.ingest(loan_table, log="loans", progress=False)
    before = ws.store.checksums()
    with pytest.raises(EmptyResultError, match="keeps no events") as e:
        save_filtered(ws, "loans", Filter.contains("no such activity"), "nothing")
    assert e.value.filter == "Filter.contains('no such activity')"
    assert isinstance(e.value, UserError)
    with pytest.raises(LogNotFoundError):
        save_filtered(ws, "nope", Filter.contains("x"), "other")
    assert ws.store.checksums() == before
    assert [i.name for i in ws.logs()] == ["loans"]


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,parameter,message", [
    (lambda: Filter.case_size(min=5, max=2), "max", "range is empty"),
    (lambda: Filter.case_size(min=-1), "min", "whole number"),
    (lambda: Filter.case_size(), "min", "give min="),
    (lambda: Filter.duration(min=-1), "min", "negative"),
    (lambda: Filter.duration(min=10, max=5), "max", "range is empty"),
    (lambda: Filter.duration(min="1h"), "min", "seconds or a timedelta"),
    (lambda: Filter.variants(top=0), "top", "at least 1"),
    (lambda: Filter.variants(), "top", "exactly one"),
    (lambda: Filter.variants(top=3, coverage=0.5), "top", "exactly one"),
    (lambda: Filter.variants(coverage=80), "coverage", "fraction"),
    (lambda: Filter.variants(coverage=0), "coverage", "fraction"),
    (lambda: Filter.timeframe("2024-02-01", "2024-01-01"), "end", "after end"),
    (lambda: Filter.timeframe("yesterday", "2024-01-01"), "start", "ISO"),
    (lambda: Filter.timeframe("2024-01-01", "2024-01-02", mode="inside"), "mode", "contained"),
    (lambda: Filter.event_attribute("resource", ["a"], level="trace"), "level", "'case' or 'event'"),
    (lambda: Filter.event_attribute("resource", []), "values", "empty"),
    (lambda: Filter.start_activities([1, 2]), "activities", "names"),
    (lambda: Filter.case_attribute("", ["a"]), "name", "non-empty"),
])
def test_bad_arguments(make, parameter, message) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as e:
        make()
    assert e.value.parameter == parameter


def test_unknown_attributes_and_wrong_types(logs) -> None:
    with pytest.raises(InvalidArgumentError) as e:
        events(logs, "d", Filter.case_attribute("colour", ["red"]))
    assert "'colour'" in str(e.value) and "amount, channel" in str(e.value) and e.value.parameter == "name"
    with pytest.raises(InvalidArgumentError) as e:
        events(logs, "n", Filter.event_attribute("colour", ["red"]))
    assert "'colour'" in str(e.value) and "activity, lifecycle, resource, cost" in str(e.value)
    with pytest.raises(InvalidArgumentError, match="not a valid DOUBLE") as e:
        events(logs, "d", Filter.event_attribute("cost", [EVIL]))
    assert e.value.parameter == "values"
    with pytest.raises(InvalidArgumentError, match="Filter"):
        events(logs, "d", "activity = 'a'")  # type: ignore[arg-type]
    with pytest.raises(LogNotFoundError):
        dfg(logs, "nope", Filter.contains("a"))


def test_empty_selection_gives_empty_statistics(logs, log) -> None:
    nothing = Filter.contains("no such activity")
    d = dfg(logs, log, nothing)
    assert d.to_pm4py() == ({}, {}, {}) and d.cases == 0
    v = variants(logs, log, nothing)
    assert len(v) == 0 and v.cases == 0 and v.to_pm4py() == {}
    assert dfg(logs, log, Filter.event_attribute("activity", ["x"], level="event")).cases == 0


def test_case_ids(logs, log, frame) -> None:
    some = sorted(frame[CASE].astype(str).unique())[:7]
    same(logs, log, Filter.cases(some), frame[frame[CASE].astype(str).isin(some)])
    same(logs, log, Filter.cases(some, exclude=True), frame[~frame[CASE].astype(str).isin(some)])
    same(logs, log, Filter.event_attribute("activity", ["Credit check"], level="event") & Filter.cases(some),
         frame[frame[CASE].astype(str).isin(some) & (frame[ACT] == "Credit check")])
    assert events(logs, log, Filter.cases([])).empty
    with pytest.raises(InvalidArgumentError, match="list of case ids"):
        Filter.cases("c1")
