"""Statistics equal pm4py's on generated and real logs, with and without derived tables;
the other statistics equal independent pandas computations."""

from __future__ import annotations

import itertools
import math
import warnings
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
    Workspace,
    stats,
)
from procestra.mining.filters import Filter
from procestra.mining.generate import generate_log
from procestra.store.derived import is_derived

warnings.filterwarnings("ignore")

CASE, ACT, TS, RES = "case:concept:name", "concept:name", "time:timestamp", "org:resource"


def without_start(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without ``start_timestamp``: pm4py's DFG orders by it when present, its
    variants never do; we order by completion time everywhere (see stats' docstring)."""
    if "start_timestamp" not in df.columns:
        return df.copy()
    out = df.drop(columns=["start_timestamp"])
    out.attrs = {}
    return out


def assert_perf_close(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for edge, m in ours.items():
        for k in ("mean", "median", "min", "max", "sum", "stdev"):
            a, b = m[k], float(theirs[edge][k])
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (edge, k)


def assert_equals_pm4py(ws: Workspace, log: str, frame: pd.DataFrame, flt: Filter | None = None) -> None:
    """DFG, start/end activities, variants, case durations and performance DFG equal pm4py's."""
    plain = without_start(frame)
    d = stats.dfg(ws, log, flt)
    assert d.to_pm4py() == pm4py.discover_dfg(plain.copy())
    assert d.cases == frame[CASE].nunique()
    assert stats.variants(ws, log, flt).to_pm4py() == pm4py.get_variants(frame.copy())
    assert stats.case_durations(ws, log, flt).to_pm4py() == pm4py.get_all_case_durations(plain.copy())
    perf, start, end = stats.performance_dfg(ws, log, flt).to_pm4py()
    theirs, t_start, t_end = pm4py.discover_performance_dfg(plain.copy())
    assert_perf_close(perf, theirs)
    assert (start, end) == (t_start, t_end)


# -- generated logs ---------------------------------------------------------------------
@pytest.mark.parametrize("derived", [False, True], ids=["windows", "derived"])
def test_generated_log_equals_pm4py(ws: Workspace, loan_table, derived: bool, monkeypatch) -> None:
    ws.ingest(loan_table, log="loans", progress=False)
    if derived:
        stats.derive_log(ws, "loans")
    else:
        stats.underive(ws, "loans")
        monkeypatch.setattr(stats, "AUTO_DERIVE", False)
    with ws.store.read() as con:
        assert is_derived(con, ws.store.log_id(con, "loans")) == derived
    assert_equals_pm4py(ws, "loans", pm4py_frame(loan_table))


def test_generated_lifecycle_log_equals_pm4py(ws: Workspace) -> None:
    table = generate_log(8_000, seed=5, process="order", lifecycle=True, noise=0.2)
    ws.ingest(table, log="orders", progress=False)
    stats.derive_log(ws, "orders")
    frame = pm4py_frame(table)
    assert set(frame["lifecycle:transition"]) == {"start", "complete"}  # both count, as in pm4py
    assert_equals_pm4py(ws, "orders", frame)
    # keeping only complete events equals pm4py's lifecycle filter, then its DFG
    flt = Filter.event_attribute("lifecycle", ["complete"], level="event")
    kept = pm4py.filter_event_attribute_values(frame.copy(), "lifecycle:transition", ["complete"], level="event")
    assert_equals_pm4py(ws, "orders", kept, flt)


def test_filtered_statistics_equal_pm4py_on_filtered_frame(ws: Workspace, loan_table) -> None:
    ws.ingest(loan_table, log="loans", progress=False)
    stats.derive_log(ws, "loans")
    frame = pm4py_frame(loan_table)
    flt = Filter.case_size(min=9, max=11) & Filter.variants(top=8)
    kept = pm4py.filter_variants_top_k(pm4py.filter_case_size(frame.copy(), 9, 11), 8)
    assert_equals_pm4py(ws, "loans", kept, flt)


def test_variants_order_share_and_durations(ws: Workspace, loan_table) -> None:
    ws.ingest(loan_table, log="loans", progress=False)
    stats.derive_log(ws, "loans")
    frame = pm4py_frame(loan_table)
    v = stats.variants(ws, "loans").to_pandas()
    ranked = sorted(pm4py.get_variants(frame.copy()).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    assert [tuple(a) for a in v["activities"]] == [a for a, _ in ranked]  # pm4py's top-k order
    assert list(v["count"]) == [n for _, n in ranked]
    assert math.isclose(v["share"].sum(), 1.0) and v["share"].iloc[0] == v["count"].iloc[0] / frame[CASE].nunique()
    durations = frame.groupby(CASE)[TS].agg(lambda s: (s.max() - s.min()).total_seconds())
    seqs = frame.groupby(CASE, sort=False)[ACT].agg(tuple)
    expected = durations.groupby(seqs).mean()
    for acts, mean in zip(v["activities"], v["mean_duration_s"]):
        assert math.isclose(mean, expected[tuple(acts)], rel_tol=1e-9)
    top = stats.variants(ws, "loans", limit=3)
    assert len(top) == 3 and top.cases == frame[CASE].nunique()
    assert top.to_pandas()["share"].tolist() == v["share"].head(3).tolist()


def test_stale_derived_data_is_never_used(ws: Workspace, loan_table, monkeypatch) -> None:
    """A load that died between its commit and derive() leaves stale tables that are never used."""
    ws.ingest(loan_table, log="loans", progress=False)
    with monkeypatch.context() as m:
        m.setattr(stats, "derive_log", lambda workspace, log: None)  # the process "dies" after commit
        replacement = generate_log(3_000, seed=9).to_pandas()
        ws.ingest(replacement, log="loans", mode="replace", progress=False)
        more = generate_log(1_000, seed=10).to_pandas()
        more["case_id"] = "X" + more["case_id"]
        ws.ingest(more, log="loans", mode="append", progress=False)
    with ws.store.read() as con:
        assert not is_derived(con, ws.store.log_id(con, "loans"))
    frame = pm4py_frame(pd.concat([replacement, more], ignore_index=True))
    assert frame[CASE].str.startswith("X").any()
    monkeypatch.setattr(stats, "AUTO_DERIVE", False)
    assert_equals_pm4py(ws, "loans", frame)  # answered from the events
    monkeypatch.setattr(stats, "AUTO_DERIVE", True)
    assert_equals_pm4py(ws, "loans", frame)  # the first statistic rebuilt the derived data
    with ws.store.read() as con:
        assert is_derived(con, ws.store.log_id(con, "loans"))


# -- the real logs in ../shared ----------------------------------------------------------------
REAL = [
    "running-example.xes", "receipt.xes.gz", "helpdesk.xes.gz", "teleclaims.xes.gz", "repairExample.xes.gz",
    "reviewing.xes", "roadtraffic100traces.xes", "SEPSIS_1t_per_variant.xes.gz", "bpic2013_incidents.xes.gz",
    "running-example.csv", "receipt.csv", "receipt.parquet", "interval_event_log.csv",
    pytest.param("bpic2012.xes.gz", marks=pytest.mark.slow),
]


def pm4py_read(path: Path) -> pd.DataFrame:
    if path.suffix in (".csv", ".parquet"):
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        extra = {"start_timestamp_key": "start_timestamp"} if "start_timestamp" in df.columns else {}
        return pm4py.format_dataframe(df, case_id=CASE, activity_key=ACT, timestamp_key=TS, **extra)
    return pm4py.read_xes(str(path))


@pytest.mark.parametrize("name", REAL)
def test_real_log_equals_pm4py(ws: Workspace, shared_logs: Path, name: str) -> None:
    path = shared_logs / name
    ws.ingest(path, log="real", progress=False)
    frame = pm4py_read(path)
    assert_equals_pm4py(ws, "real", frame)  # from the events (no derived tables yet)
    stats.derive_log(ws, "real")
    assert_equals_pm4py(ws, "real", frame)  # from the derived tables


def test_pm4py_dfg_orders_by_start_time_when_it_can(shared_logs: Path) -> None:
    """Why we compare DFGs without ``start_timestamp``: with it, pm4py's own DFG and
    variants disagree on the interval log, so no single order can equal both."""
    frame = pm4py_read(shared_logs / "interval_event_log.csv")
    from_variants: dict[tuple[str, str], int] = {}
    for seq, n in pm4py.get_variants(frame.copy()).items():
        for edge in itertools.pairwise(seq):
            from_variants[edge] = from_variants.get(edge, 0) + n
    assert pm4py.discover_dfg(frame.copy())[0] != from_variants
    assert pm4py.discover_dfg(without_start(frame))[0] == from_variants


# -- the other statistics, against pandas (service and waiting times: test_times.py) ------------------
@pytest.fixture
def loans(ws: Workspace, loan_table) -> tuple[Workspace, pd.DataFrame]:
    ws.ingest(loan_table, log="loans", schema=LogSchema(case_attributes=("amount", "channel")), progress=False)
    stats.derive_log(ws, "loans")
    return ws, pm4py_frame(loan_table)


def test_activity_stats(loans) -> None:
    ws, frame = loans
    got = stats.activity_stats(ws, "loans").to_pandas().set_index("activity")
    g = frame.groupby(ACT)
    assert got["events"].to_dict() == g.size().to_dict()
    assert got["cases"].to_dict() == g[CASE].nunique().to_dict()
    assert got["instances"].to_dict() == g.size().to_dict()  # one instance per event with a start time
    assert got["events"].is_monotonic_decreasing


def test_resource_stats_and_handover(loans) -> None:
    ws, frame = loans
    got = stats.resource_stats(ws, "loans").to_pandas().set_index("resource")
    g = frame.groupby(RES)
    assert got["events"].to_dict() == g.size().to_dict()
    assert got["cases"].to_dict() == g[CASE].nunique().to_dict()
    assert got["activities"].to_dict() == g[ACT].nunique().to_dict()
    assert math.isclose(got["share"].sum(), 1.0)
    h = stats.handover(ws, "loans").to_pandas()
    nxt = frame.groupby(CASE)[RES].shift(-1)
    pairs = pd.DataFrame({"source": frame[RES], "target": nxt, CASE: frame[CASE]}).dropna()
    pairs = pairs[pairs["source"] != pairs["target"]]
    expected = pairs.groupby(["source", "target"]).agg(count=(CASE, "size"), cases=(CASE, "nunique"))
    assert h.set_index(["source", "target"]).sort_index().equals(expected.sort_index().astype("int64"))
    assert h["count"].is_monotonic_decreasing


def test_rework(loans) -> None:
    ws, frame = loans
    got = stats.rework(ws, "loans").to_pandas().set_index("activity")
    n = frame.groupby([CASE, ACT]).size()
    rep = n[n > 1]
    assert got["cases"].to_dict() == rep.groupby(level=ACT).size().to_dict()
    assert got["cases"].to_dict() == pm4py.get_rework_cases_per_activity(frame.copy())
    assert got["extra"].to_dict() == (rep - 1).groupby(level=ACT).sum().to_dict()
    assert got["cases_with_activity"].to_dict() == n.groupby(level=ACT).size()[got.index].to_dict()


@pytest.mark.parametrize("every,freq", [("day", "D"), ("week", "W-SUN"), ("hour", "h")])
def test_arrival_rate(loans, every, freq) -> None:
    ws, frame = loans
    got = stats.arrival_rate(ws, "loans", every=every, timezone="Europe/Amsterdam").to_pandas()
    firsts = frame.groupby(CASE)[TS].min().dt.tz_convert("Europe/Amsterdam").dt.tz_localize(None)
    buckets = firsts.dt.to_period(freq).dt.start_time if every == "week" else firsts.dt.floor(freq)
    counts = buckets.value_counts().sort_index()
    full = counts.reindex(pd.date_range(counts.index.min(), counts.index.max(),
                                        freq="7D" if every == "week" else freq), fill_value=0)
    assert list(got["cases"]) == list(full) and sum(got["cases"]) == frame[CASE].nunique()
    assert list(pd.to_datetime(got["bucket"])) == list(full.index)


def test_case_durations(loans) -> None:
    ws, frame = loans
    d = stats.case_durations(ws, "loans")
    df = d.to_pandas()
    assert len(df) == frame[CASE].nunique() and df["start"].is_monotonic_increasing
    assert d.to_pm4py() == pm4py.get_all_case_durations(without_start(frame))
    assert math.isclose(d.mean, float(np.mean(d.to_pm4py())))
    assert d.median == float(np.median(d.to_pm4py()))
    short = stats.case_durations(ws, "loans", Filter.duration(max=86400))
    assert (short.to_pandas()["duration_s"] <= 86400).all() and 0 < len(short) < len(d)


def test_empty_results(loans) -> None:
    ws, _ = loans
    nothing = Filter.skips("Submit application")
    for fn in (stats.activity_stats, stats.activity_times, stats.resource_stats, stats.handover, stats.rework,
               stats.arrival_rate, stats.case_durations, stats.variants):
        assert len(fn(ws, "loans", nothing)) == 0, fn.__name__
    p = stats.performance_dfg(ws, "loans", nothing)
    assert p.to_pm4py() == ({}, {}, {}) and p.cases == 0
    assert stats.case_durations(ws, "loans", nothing).mean is None


def test_results_display_and_convert(loans) -> None:
    ws, _ = loans
    d = stats.dfg(ws, "loans")
    assert "<table>" in d._repr_html_() and "Submit application" in d._repr_html_()
    assert list(d.to_pandas().columns) == ["source", "target", "count"]
    assert d.to_pandas()["count"].is_monotonic_decreasing
    p = stats.performance_dfg(ws, "loans")
    mean = p.to_pm4py("mean")[0]
    assert all(isinstance(v, float) for v in mean.values())
    with pytest.raises(InvalidArgumentError):
        p.to_pm4py("average")
    v = stats.variants(ws, "loans")
    assert isinstance(v.to_pandas()["activities"].iloc[0], tuple) and "→" in v._repr_html_()
    for r in (stats.activity_stats(ws, "loans"), stats.handover(ws, "loans"), stats.arrival_rate(ws, "loans")):
        assert "<table>" in r._repr_html_() and len(r.to_pylist()) == len(r) == r.to_arrow().num_rows
    with pytest.raises(AttributeError):
        v.table = None  # type: ignore[misc]  # results are frozen


def test_bad_arguments(loans) -> None:
    ws, _ = loans
    with pytest.raises(LogNotFoundError):
        stats.dfg(ws, "nope")
    with pytest.raises(InvalidArgumentError) as e:
        stats.arrival_rate(ws, "loans", every="year")  # type: ignore[arg-type]
    assert e.value.parameter == "every"
    with pytest.raises(InvalidArgumentError) as e:
        stats.arrival_rate(ws, "loans", timezone="Mars/Olympus")
    assert e.value.parameter == "timezone"
    with pytest.raises(InvalidArgumentError) as e:
        stats.variants(ws, "loans", limit=0)
    assert e.value.parameter == "limit"


def test_derive_in_callers_transaction_rolls_back(ws: Workspace, loan_table) -> None:
    """derive() writes nothing of its own: a caller's rollback removes its tables too."""
    ws.ingest(loan_table, log="loans", progress=False)
    stats.underive(ws, "loans")
    before = ws.store.checksums()
    with ws.store.write() as con:
        con.execute("BEGIN TRANSACTION")
        stats.derive(con, ws.store.log_id(con, "loans"))
        con.execute("ROLLBACK")
    assert ws.store.checksums() == before
    with ws.store.read() as con:
        assert not is_derived(con, ws.store.log_id(con, "loans"))


def test_dotted_chart_samples_cases_evenly(ws: Workspace, loan_table) -> None:
    ws.ingest(loan_table, log="loan")
    durations = stats.case_durations(ws, "loan").to_pandas()
    chart = stats.dotted_chart(ws, "loan", max_cases=40)
    t = chart.to_pandas()
    assert chart.cases == len(durations) and chart.shown == t["row"].nunique() <= 40
    # rows follow start time; each row holds one whole case in time order
    firsts = t.groupby("row")["ts"].min()
    assert firsts.is_monotonic_increasing
    assert (t.groupby("row")["case_id"].nunique() == 1).all()
    case = t[t["row"] == 0]["case_id"].iloc[0]
    assert case == durations.iloc[0]["case_id"]
    assert len(t[t["row"] == 0]) == (loan_table.column("case_id").to_numpy(zero_copy_only=False) == case).sum()
    all_cases = stats.dotted_chart(ws, "loan", max_cases=10**9)
    assert all_cases.shown == all_cases.cases
    from procestra.mining.filters import Filter

    empty = stats.dotted_chart(ws, "loan", Filter.case_size(min=10**6))
    assert empty.cases == 0 and len(empty) == 0
    assert "<svg" in empty._repr_mimebundle_()["image/svg+xml"]
    with pytest.raises(InvalidArgumentError, match="max_cases"):
        stats.dotted_chart(ws, "loan", max_cases=0)
