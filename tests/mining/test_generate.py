"""Tests for the synthetic event-log generator (procestra.generate)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pm4py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from procestra.errors import InvalidArgumentError
from procestra.mining.generate import PM4PY_COLUMNS, PROCESSES, generate_log, write_log

COLUMNS = ["case_id", "activity", "timestamp", "start_timestamp", "resource", "amount", "channel", "cost"]


@pytest.fixture(scope="module", params=["loan", "order"])
def log(request: pytest.FixtureRequest) -> tuple[str, pd.DataFrame]:
    return request.param, generate_log(20_000, seed=7, process=request.param).to_pandas()


@pytest.fixture(scope="module")
def lifecycle_log() -> pd.DataFrame:
    return generate_log(6_000, seed=3, lifecycle=True).to_pandas()


def variants(df: pd.DataFrame) -> pd.Series:
    return df.groupby("case_id", sort=False)["activity"].agg(tuple).value_counts()


# --------------------------------------------------------------------------- size and shape


@pytest.mark.parametrize("events", [10_000, 54_321])
@pytest.mark.parametrize("lifecycle", [False, True])
def test_event_count_is_at_most_events_and_within_one_percent(events: int, lifecycle: bool) -> None:
    n = generate_log(events, seed=1, lifecycle=lifecycle).num_rows
    assert events * 0.99 <= n <= events


def test_small_logs_hold_whole_cases() -> None:
    t = generate_log(500, process="order").to_pandas()
    assert 440 <= len(t) <= 500
    assert (t.groupby("case_id").activity.last() == "Close order").all()
    tiny = generate_log(1).to_pandas()
    assert tiny.case_id.nunique() == 1  # never empty: one whole case, even if longer than asked


def test_schema() -> None:
    t = generate_log(2_000)
    assert t.column_names == COLUMNS
    utc = pa.timestamp("us", tz="UTC")
    types = [pa.string(), pa.string(), utc, utc, pa.string(), pa.float64(), pa.string(), pa.float64()]
    assert [f.type for f in t.schema] == types
    assert t.column("case_id")[0].as_py() == "L000001"
    assert set(t.column("channel").to_pylist()) == {"online", "branch", "broker"}
    assert generate_log(2_000, lifecycle=True).column_names == COLUMNS[:5] + ["lifecycle"] + COLUMNS[5:]
    assert generate_log(2_000, process="order").column("case_id")[0].as_py() == "O000001"


def test_case_attributes_are_constant_per_case(log: tuple[str, pd.DataFrame]) -> None:
    _, df = log
    per_case = df.groupby("case_id")[["amount", "channel"]].nunique()
    assert (per_case == 1).all().all()
    amounts = df.groupby("case_id").amount.first()
    assert (amounts > 0).all() and amounts.max() > 5 * amounts.median()  # lognormal: long right tail
    assert (df.cost >= 0).all()


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(tmp_path) -> None:
    a, b = generate_log(5_000, seed=11), generate_log(5_000, seed=11)
    assert a.equals(b) and a.schema.metadata == b.schema.metadata
    pa_, pb = write_log(a, tmp_path / "a.parquet"), write_log(b, tmp_path / "b.parquet")
    assert pa_.read_bytes() == pb.read_bytes()
    assert write_log(a, tmp_path / "a.csv").read_bytes() == write_log(b, tmp_path / "b.csv").read_bytes()


def test_different_seeds_differ() -> None:
    a, b = generate_log(5_000, seed=1), generate_log(5_000, seed=2)
    assert not a.equals(b)
    assert a.column("timestamp")[0] != b.column("timestamp")[0]


# --------------------------------------------------------------------------- ordering and structure


def test_rows_ordered_by_case_then_time(log: tuple[str, pd.DataFrame]) -> None:
    _, df = log
    assert df.case_id.is_monotonic_increasing  # ids are zero-padded, so this is case order
    same_case = df.case_id.values[1:] == df.case_id.values[:-1]
    assert (np.diff(df.timestamp.dt.tz_convert(None).to_numpy())[same_case] >= np.timedelta64(0)).all()
    assert (df.start_timestamp <= df.timestamp).all()
    arrivals = df.groupby("case_id", sort=False).start_timestamp.first()
    assert arrivals.is_monotonic_increasing  # case ids follow arrival order


def test_every_case_starts_with_the_start_activity(log: tuple[str, pd.DataFrame]) -> None:
    name, df = log
    start = next(iter(PROCESSES[name].flow))
    assert (df.groupby("case_id").activity.first() == start).all()


def test_many_variants_but_the_main_path_is_the_top_one(log: tuple[str, pd.DataFrame]) -> None:
    name, df = log
    v = variants(df)
    assert len(v) > 50
    assert v.index[0] == PROCESSES[name].main_path
    assert v.iloc[0] / v.sum() > 0.15 and v.iloc[0] > 1.5 * v.iloc[1]


def test_noise_adds_variants() -> None:
    clean = variants(generate_log(20_000, seed=5, noise=0.0).to_pandas())
    noisy = variants(generate_log(20_000, seed=5, noise=0.2).to_pandas())
    assert len(clean) < len(noisy) / 3
    assert clean.index[0] == noisy.index[0] == PROCESSES["loan"].main_path


def test_both_orders_of_the_parallel_checks() -> None:
    df = generate_log(20_000, seed=2, noise=0.0).to_pandas()
    order = df[df.activity.isin(["Fraud check", "Document check"])].groupby("case_id").activity.first()
    shares = order.value_counts(normalize=True)
    assert 0.55 < shares["Fraud check"] < 0.97 and shares["Document check"] > 0.03


def test_rework_loops_occur() -> None:
    df = generate_log(20_000, seed=2, noise=0.0).to_pandas()
    checks = df[df.activity == "Check completeness"].groupby("case_id").size()
    assert 0.1 < (checks > 1).mean() < 0.4  # some cases go round the documents loop
    assert checks.max() <= 4  # the loop is capped


def test_resource_workload_is_skewed(log: tuple[str, pd.DataFrame]) -> None:
    _, df = log
    counts = df[df.resource.str.contains("_")].resource.value_counts()
    pools = counts.groupby(counts.index.str.rsplit("_", n=1).str[0])
    big = [c for _, c in pools if len(c) >= 5]
    assert big and all(c.iloc[0] > 2 * c.median() for c in big)  # a few people do most of the work


def test_manual_work_starts_in_business_hours() -> None:
    df = generate_log(10_000, seed=4, start="2024-01-08", noise=0.0).to_pandas()  # winter: no DST change
    local = df.start_timestamp.dt.tz_convert("Europe/Amsterdam")
    manual = df.activity.isin(["Check completeness", "Credit check", "Assess risk", "Underwriter review"])
    assert (local[manual].dt.day_of_week < 5).all()
    assert local[manual].dt.hour.between(8, 17).all()
    arrivals = df.groupby("case_id").start_timestamp.first().dt.tz_convert("Europe/Amsterdam")
    office = (arrivals.dt.day_of_week < 5) & arrivals.dt.hour.between(8, 17)
    assert 0.6 < office.mean() < 0.95  # arrivals follow office hours, with some evenings and weekends
    assert arrivals.min() >= pd.Timestamp("2024-01-08", tz="Europe/Amsterdam")


def test_start_accepts_aware_datetimes_and_dates() -> None:
    aware = generate_log(1_000, start=datetime(2024, 1, 7, 23, tzinfo=UTC))
    naive = generate_log(1_000, start="2024-01-08T00:00")
    assert aware.equals(naive)  # 23:00 UTC is midnight in Amsterdam


def test_lifecycle_pairs(lifecycle_log: pd.DataFrame) -> None:
    df = lifecycle_log
    assert set(df.lifecycle) == {"start", "complete"}
    per = df.groupby(["case_id", "activity", "lifecycle"]).size().unstack()
    assert (per["start"] == per["complete"]).all()
    starts, completes = df[df.lifecycle == "start"], df[df.lifecycle == "complete"]
    assert (starts.timestamp == starts.start_timestamp).all()
    assert starts.cost.isna().all() and completes.cost.notna().all()
    # every start row has a later (or equal) complete row of the same instance
    pairs = starts.merge(completes, on=["case_id", "activity", "start_timestamp", "resource"], suffixes=("_s", "_c"))
    assert len(pairs) >= len(starts) and (pairs.timestamp_c >= pairs.timestamp_s).all()
    same_case = df.case_id.values[1:] == df.case_id.values[:-1]
    assert (np.diff(df.timestamp.dt.tz_convert(None).to_numpy())[same_case] >= np.timedelta64(0)).all()
    assert (df.groupby("case_id").lifecycle.first() == "start").all()


# --------------------------------------------------------------------------- writing


def _read_text(path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        df = pd.read_csv(path, dtype={"case_id": str})
    else:
        df = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    for col in ("timestamp", "start_timestamp"):
        df[col] = pd.to_datetime(df[col], format="ISO8601", utc=True).dt.as_unit("us")
    return df


@pytest.mark.parametrize("name", ["log.csv", "log.jsonl", "log.json"])
@pytest.mark.parametrize("lifecycle", [False, True])
def test_text_formats_round_trip(tmp_path, name: str, lifecycle: bool) -> None:
    table = generate_log(3_000, seed=9, lifecycle=lifecycle, start="2024-03-25")  # spans the DST change
    path = write_log(table, tmp_path / name)
    got = _read_text(path, "csv" if name.endswith(".csv") else "json")
    expected = table.to_pandas()
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    first = path.read_text().splitlines()[1]
    assert "+01:00" in first or "+02:00" in first  # ISO times with the Amsterdam offset


def test_parquet_round_trip(tmp_path) -> None:
    table = generate_log(3_000, seed=9, lifecycle=True)
    path = write_log(table, str(tmp_path / "log.parquet"))
    assert pq.read_table(path).equals(table)
    pd.testing.assert_frame_equal(pd.read_parquet(path), table.to_pandas())


def test_xes_round_trip_through_pm4py(tmp_path) -> None:
    """pm4py reads the written XES back as the table: names, times (UTC, milliseconds), attributes."""
    table = generate_log(1_000, seed=9, start="2024-03-25")  # spans the DST change
    back = pm4py.read_xes(str(write_log(table, tmp_path / "log.xes.gz")))
    expected = table.to_pandas().rename(columns=PM4PY_COLUMNS)
    assert len(back) == len(expected)
    for column in ("case:concept:name", "concept:name", "org:resource", "case:channel"):
        assert back[column].astype(str).tolist() == expected[column].tolist(), column
    for column in ("time:timestamp", "start_timestamp"):
        assert (pd.to_datetime(back[column], utc=True) == expected[column]).all(), column
    assert back["case:amount"].tolist() == expected["case:amount"].tolist()
    assert back["cost"].tolist() == expected["cost"].tolist()


def test_pm4py_discovers_a_dfg() -> None:
    df = generate_log(3_000, seed=6).to_pandas().rename(columns=PM4PY_COLUMNS)
    dfg, starts, ends = pm4py.discover_dfg(df)
    assert starts == {"Submit application": df["case:concept:name"].nunique()}
    assert set(ends) == {"Close case"}
    assert dfg[("Submit application", "Check completeness")] > 0
    assert ("Fraud check", "Document check") in dfg and ("Document check", "Fraud check") in dfg


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"events": 0}, "events"),
        ({"events": 100_000_001}, "events"),
        ({"events": 10.5}, "events"),
        ({"events": True}, "events"),
        ({"process": "procurement"}, "process"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"noise": 1.0}, "noise"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"seed": -1}, "seed"),
        ({"start": "next tuesday"}, "start"),
        ({"lifecycle": "yes"}, "lifecycle"),
    ],
)
def test_bad_arguments(kwargs: dict, parameter: str) -> None:
    args = {"events": 1_000, **kwargs}
    with pytest.raises(InvalidArgumentError) as info:
        generate_log(args.pop("events"), **args)
    assert info.value.parameter == parameter


def test_unknown_process_lists_the_known_ones() -> None:
    with pytest.raises(InvalidArgumentError, match="loan, order"):
        generate_log(1_000, process="procurement")


@pytest.mark.parametrize("name", ["log.txt", "log", "missing/log.csv"])
def test_bad_paths(tmp_path, name: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        write_log(generate_log(100), tmp_path / name)
    assert info.value.parameter == "path"


def test_path_that_is_a_folder(tmp_path) -> None:
    (tmp_path / "log.csv").mkdir()
    with pytest.raises(InvalidArgumentError):
        write_log(generate_log(100), tmp_path / "log.csv")
    with pytest.raises(InvalidArgumentError) as info:
        write_log(pd.DataFrame(), tmp_path / "x.csv")  # type: ignore[arg-type]
    assert info.value.parameter == "table"
