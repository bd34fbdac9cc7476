"""Tests for the streaming XES reader and writer (procestra.xes)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from procestra.errors import DataError, InvalidArgumentError, SourceError, SourceFormatError, TimestampError
from procestra.ingest import xes
from procestra.ingest.xes import iter_xes_batches, read_xes_log_attributes, write_xes

LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "event_logs" / "logs"


def _logs_dir() -> Path:
    if not LOGS.is_dir():
        pytest.skip(f"{LOGS} is not there")
    return LOGS


def _write(path: Path, text: str, *, compress: bool = False) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _read(path: Path, **kwargs: Any) -> pa.Table:
    tables = list(iter_xes_batches(path, **kwargs))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def _general(path: Path, batch_size: int = 100_000) -> pa.Table:
    """The same file through the general (expat) parser only."""
    tables = [xes._build(raw, str(path)) for raw in xes._Reader(str(path), batch_size).batches()]
    return pa.concat_tables(tables, promote_options="permissive")


def _uses_fast_path(path: Path) -> bool:
    try:
        list(xes._fast_batches(str(path), 100_000))
    except xes._Fallback:
        return False
    return True


def _pm4py_frame(path: Path) -> Any:
    import pm4py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pm4py.read_xes(str(path))


def _triples(case: Any, activity: Any, ts: Any) -> Counter[tuple[Any, Any, Any]]:
    """Multiset of (case, activity, timestamp as UTC epoch microseconds or None)."""
    def micros(v: Any) -> Any:
        if v is None or v != v:  # None, NaN, NaT
            return None
        return int(v.timestamp() * 1_000_000) if not hasattr(v, "value") else v.value // 1000
    return Counter(zip(case, activity, [micros(v) for v in ts], strict=True))


TYPES_XES = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xmlns="http://www.xes-standard.org/">
  <string key="concept:name" value="the log"/>
  <int key="size" value="3"/>
  <global scope="event"><string key="concept:name" value="__INVALID__"/></global>
  <classifier name="Activity" keys="concept:name"/>
  <trace>
    <string key="concept:name" value="c1"/>
    <int key="AMOUNT_REQ" value="5000"/>
    <event>
      <string key="concept:name" value="a &amp; b &lt;x&gt; &quot;q&quot; &apos;s&apos;"/>
      <date key="time:timestamp" value="2020-01-01T10:00:00.123+02:00"/>
      <int key="n" value="-42"/>
      <float key="f" value="1.5e3"/>
      <boolean key="ok" value="true"/>
      <id key="ident" value="abc"/>
      <string key="org:resource" value="Pete"/>
    </event>
    <event>
      <string key="concept:name" value="b"/>
      <date key="time:timestamp" value="2020-01-01T08:00:00Z"/>
      <boolean key="ok" value="false"/>
      <int key="n" value="7"/>
    </event>
  </trace>
  <trace>
    <string key="concept:name" value="empty trace"/>
  </trace>
  <trace>
    <string key="concept:name" value="c3"/>
    <event>
      <string key="concept:name" value="c"/>
      <date key="time:timestamp" value="2019-12-31T23:59:59-05:30"/>
    </event>
  </trace>
</log>
"""


def test_types_values_and_pm4py_column_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "types.xes", TYPES_XES)
    assert _uses_fast_path(path)
    table = _read(path)
    assert table.column_names == [
        "concept:name", "time:timestamp", "n", "f", "ok", "ident", "org:resource",
        "case:concept:name", "case:AMOUNT_REQ", "__row", "__trace",
    ]
    assert table.schema.field("time:timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("f").type == pa.float64()
    assert table.schema.field("ok").type == pa.bool_()
    assert table.schema.field("ident").type == pa.string()
    assert table.schema.field("case:AMOUNT_REQ").type == pa.int64()
    rows = table.to_pylist()
    assert [r["concept:name"] for r in rows] == ["a & b <x> \"q\" 's'", "b", "c"]
    assert [r["time:timestamp"] for r in rows] == [
        datetime(2020, 1, 1, 8, 0, 0, 123000, tzinfo=UTC),
        datetime(2020, 1, 1, 8, 0, tzinfo=UTC),
        datetime(2020, 1, 1, 5, 29, 59, tzinfo=UTC),
    ]
    assert [r["n"] for r in rows] == [-42, 7, None]
    assert [r["f"] for r in rows] == [1500.0, None, None]
    assert [r["ok"] for r in rows] == [True, False, None]
    assert [r["org:resource"] for r in rows] == ["Pete", None, None]
    assert [r["case:concept:name"] for r in rows] == ["c1", "c1", "c3"]
    assert [r["case:AMOUNT_REQ"] for r in rows] == [5000, 5000, None]
    assert [r["__row"] for r in rows] == [0, 1, 2]
    assert [r["__trace"] for r in rows] == [0, 0, 2]  # the empty trace keeps its index
    assert table.equals(_general(path))


def test_log_attributes_are_separate(tmp_path: Path) -> None:
    path = _write(tmp_path / "types.xes", TYPES_XES)
    assert read_xes_log_attributes(path) == {"concept:name": "the log", "size": 3}


def _one_event(attributes: str, trace: str = '<string key="concept:name" value="c"/>') -> str:
    return f"<log><trace>{trace}<event>{attributes}</event></trace></log>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-06-01T12:00:00Z", datetime(2020, 6, 1, 12, tzinfo=UTC)),
        ("2020-06-01T12:00:00+02:00", datetime(2020, 6, 1, 10, tzinfo=UTC)),
        ("2020-06-01T12:00:00-05:30", datetime(2020, 6, 1, 17, 30, tzinfo=UTC)),
        ("2020-06-01T00:30:00.5+01:00", datetime(2020, 5, 31, 23, 30, 0, 500000, tzinfo=UTC)),
        ("2020-06-01T12:00:00.123456789+00:00", datetime(2020, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2020-06-01T12:00:00", datetime(2020, 6, 1, 12, tzinfo=UTC)),  # no offset: UTC
        ("2020-06-01T12:00:00.25", datetime(2020, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)),
        ("0001-01-01T00:00:00+00:00", datetime(1, 1, 1, tzinfo=UTC)),  # outside the nanosecond range
        ("9999-12-31T23:59:59.999Z", datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_dates_convert_to_utc(tmp_path: Path, value: str, expected: datetime) -> None:
    path = _write(tmp_path / "d.xes", _one_event(f'<date key="time:timestamp" value="{value}"/>'))
    table = _read(path)
    assert table.schema.field("time:timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.column("time:timestamp").to_pylist() == [expected]


def test_mixed_offsets_and_naive_dates_in_one_column(tmp_path: Path) -> None:
    events = "".join(f'<event><date key="time:timestamp" value="{v}"/></event>'
                     for v in ("2021-03-01T10:00:00+01:00", "2021-03-01T10:00:00", "2021-03-01T10:00:00.1234Z"))
    path = _write(tmp_path / "m.xes", f"<log><trace>{events}</trace></log>")
    assert _read(path).column("time:timestamp").to_pylist() == [
        datetime(2021, 3, 1, 9, tzinfo=UTC), datetime(2021, 3, 1, 10, tzinfo=UTC),
        datetime(2021, 3, 1, 10, 0, 0, 123400, tzinfo=UTC),
    ]


def test_conflicting_types_fall_back_to_string_and_last_duplicate_wins(tmp_path: Path) -> None:
    events = ('<event><int key="x" value="1"/><string key="y" value="first"/><string key="y" value="second"/></event>'
              '<event><string key="x" value="two"/></event>'
              '<event><float key="x" value="3.5"/></event>')
    path = _write(tmp_path / "c.xes", f"<log><trace>{events}</trace></log>")
    table = _read(path)
    assert table.schema.field("x").type == pa.string()
    assert table.column("x").to_pylist() == ["1", "two", "3.5"]
    assert table.column("y").to_pylist() == ["second", None, None]
    # in separate batches (one trace each) each batch keeps its own type
    split = _write(tmp_path / "s.xes", "<log>" + events.replace("<event>", "<trace><event>").replace(
        "</event>", "</event></trace>") + "</log>")
    types = [t.schema.field("x").type for t in iter_xes_batches(split, batch_size=1)]
    assert types == [pa.int64(), pa.string(), pa.float64()]


NESTED = """<log><trace><string key="concept:name" value="c1"/>
 <string key="meta" value="m"><int key="level" value="2"/></string>
 <event>
  <string key="concept:name" value="a"/>
  <string key="p" value="pv">
    <int key="c" value="1"><float key="d" value="2.5"/></int>
    <string key="e" value="x"/>
  </string>
  <list key="L"><values><string key="x" value="first"/><int key="y" value="2"/></values></list>
  <list key="M"><date key="z" value="2020-01-01T00:00:00+01:00"/></list>
  <container key="C"><string key="k" value="v"/><list key="inner"><boolean key="b" value="true"/></list></container>
 </event>
</trace></log>"""


def test_nested_attributes_and_lists_are_flattened(tmp_path: Path) -> None:
    path = _write(tmp_path / "nested.xes", NESTED)
    assert not _uses_fast_path(path)
    [row] = _read(path).to_pylist()
    assert row == {
        "concept:name": "a", "p": "pv", "p.c": 1, "p.c.d": 2.5, "p.e": "x",
        "L.0": "first", "L.1": 2, "M.0": datetime(2019, 12, 31, 23, tzinfo=UTC),
        "C.k": "v", "C.inner.0": True,
        "case:concept:name": "c1", "case:meta": "m", "case:meta.level": 2, "__row": 0, "__trace": 0,
    }


def test_events_outside_traces_and_namespaced_tags(tmp_path: Path) -> None:
    text = ('<xes:log xmlns:xes="http://www.xes-standard.org/"><xes:event><xes:string key="concept:name" '
            'value="stray"/></xes:event><xes:trace><xes:string key="concept:name" value="c"/><xes:event>'
            '<xes:string key="concept:name" value="a"/></xes:event></xes:trace></xes:log>')
    path = _write(tmp_path / "ns.xes", text)
    assert _read(path).select(["concept:name", "case:concept:name"]).to_pylist() == [
        {"concept:name": "a", "case:concept:name": "c"}]


def test_gzip_is_detected_by_magic_bytes(tmp_path: Path) -> None:
    plain = _read(_write(tmp_path / "types.xes", TYPES_XES))
    assert _read(_write(tmp_path / "gzipped.xes", TYPES_XES, compress=True)).equals(plain)
    assert _read(_write(tmp_path / "not-gzipped.xes.gz", TYPES_XES)).equals(plain)


def test_no_events_yields_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "none.xes", '<log><trace><string key="concept:name" value="x"/></trace></log>')
    assert list(iter_xes_batches(path)) == []
    assert list(iter_xes_batches(_write(tmp_path / "bare.xes", "<log/>"))) == []


def test_batches_cover_every_event_once_in_order(tmp_path: Path) -> None:
    traces = "".join(
        f'<trace><string key="concept:name" value="c{t}"/>'
        + "".join(f'<event><string key="concept:name" value="e{t}.{e}"/></event>' for e in range(t % 4))
        + "</trace>" for t in range(40))
    path = _write(tmp_path / "many.xes", f"<log>{traces}</log>")
    whole = _read(path)
    for size in (1, 3, 7, 1000):
        tables = list(iter_xes_batches(path, batch_size=size))
        joined = pa.concat_tables(tables)
        assert joined.equals(whole)
        assert joined.column("__row").to_pylist() == list(range(whole.num_rows))
    assert whole.num_rows == sum(t % 4 for t in range(40))
    assert set(whole.column("__trace").to_pylist()) == {t for t in range(40) if t % 4}
    with pytest.raises(InvalidArgumentError):
        list(iter_xes_batches(path, batch_size=0))


def test_irregular_layout_midway_resumes_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    regular = "".join(f'<trace><string key="concept:name" value="c{t}"/><event><string key="concept:name" '
                      f'value="a"/><int key="i" value="{t}"/></event></trace>' for t in range(300))
    odd = ('<!-- a comment --><trace><string key="concept:name" value="odd"/><event>'
           "<string key='concept:name' value='single quotes'/></event></trace>")
    path = _write(tmp_path / "mixed.xes", f"<log>{regular}{odd}{regular}</log>")
    monkeypatch.setattr(xes, "_CHUNK", 1024)  # read and scan in small pieces so that the fast path
    monkeypatch.setattr(xes, "_REGION", 512)  # yields some batches before it meets the comment
    fast_rows = 0
    with pytest.raises(xes._Fallback):
        for table in xes._fast_batches(str(path), 50):
            fast_rows += table.num_rows
    assert 0 < fast_rows < 300
    tables = list(iter_xes_batches(path, batch_size=50))
    assert [t.num_rows for t in tables] == [50] * 12 + [1]
    table = pa.concat_tables(tables, promote_options="permissive")
    assert table.column("__row").to_pylist() == list(range(601))
    assert table.column("i").to_pylist() == [*range(300), None, *range(300)]
    assert table.column("concept:name")[300].as_py() == "single quotes"
    assert table.to_pylist() == _general(path, 50).to_pylist()


def _expect_error(path: Path, kind: type[Exception], *fragments: str) -> Exception:
    with pytest.raises(kind) as info:
        list(iter_xes_batches(path))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert getattr(info.value, "source", None) == str(path)
    return info.value


def test_error_empty_file(tmp_path: Path) -> None:
    _expect_error(_write(tmp_path / "empty.xes", ""), SourceFormatError, "the file is empty")
    _expect_error(_write(tmp_path / "blank.xes.gz", "  \n", compress=True), SourceFormatError, "the file is empty")


def test_error_not_xml(tmp_path: Path) -> None:
    err = _expect_error(_write(tmp_path / "log.xes", "case,activity\n1,a\n"), SourceFormatError,
                        "not an XES file", "XML parse error at line 1")
    assert err.row == 1
    (tmp_path / "bin.xes").write_bytes(bytes(range(256)))
    _expect_error(tmp_path / "bin.xes", SourceFormatError, "not an XES file")


def test_error_malformed_xml(tmp_path: Path) -> None:
    err = _expect_error(_write(tmp_path / "bad.xes", "<log>\n<trace>\n<event></trace>\n</log>"),
                        SourceFormatError, "XML parse error at line 3: mismatched tag")
    assert err.row == 3


def test_error_malformed_after_regular_traces(tmp_path: Path) -> None:
    traces = "".join(f'<trace><event><string key="concept:name" value="a{t}"/></event></trace>' for t in range(100))
    path = _write(tmp_path / "late.xes", f"<log>{traces}\n<trace><event></trace></log>")
    _expect_error(path, SourceFormatError, "mismatched tag")


def test_error_truncated_xml(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.xes", TYPES_XES[: len(TYPES_XES) // 2])
    _expect_error(path, SourceFormatError, "the file ends before the XML is complete")


def test_error_truncated_gzip(tmp_path: Path) -> None:
    body = "".join(f'<trace><string key="concept:name" value="c{t}"/><event><string key="concept:name" '
                   f'value="a"/><date key="time:timestamp" value="2020-01-01T00:00:{t % 60:02d}Z"/></event></trace>'
                   for t in range(20_000))
    data = gzip.compress(f"<log>{body}</log>".encode())
    path = tmp_path / "cut.xes.gz"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, SourceFormatError, "truncated gzip stream", "re-download or re-export")


def test_error_wrong_root(tmp_path: Path) -> None:
    path = _write(tmp_path / "pnml.xes", '<?xml version="1.0"?>\n<pnml><net/></pnml>')
    err = _expect_error(path, SourceFormatError, "root element is <pnml>, expected <log>")
    assert err.row == 2


def test_error_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.xes", SourceError, "cannot open the file")


def test_error_bad_date(tmp_path: Path) -> None:
    events = ('<event><date key="time:timestamp" value="2020-01-01T00:00:00Z"/></event>'
              '<event><date key="time:timestamp" value="yesterday"/></event>')
    err = _expect_error(_write(tmp_path / "date.xes", f"<log><trace>{events}</trace></log>"),
                        TimestampError, "invalid date value 'yesterday'")
    assert (err.row, err.column) == (1, "time:timestamp")


def test_error_bad_date_in_trace_attribute(tmp_path: Path) -> None:
    text = ('<log><trace><event/></trace><trace><date key="due" value="31/12/2020"/>'
            '<event/><event/></trace></log>')
    err = _expect_error(_write(tmp_path / "due.xes", text), TimestampError, "31/12/2020")
    assert (err.row, err.column) == (1, "case:due")


@pytest.mark.parametrize(("tag", "value"), [("int", "12x"), ("float", "one"), ("boolean", "maybe")])
def test_error_bad_numbers(tmp_path: Path, tag: str, value: str) -> None:
    path = _write(tmp_path / "n.xes", _one_event(f'<{tag} key="v" value="{value}"/>'))
    err = _expect_error(path, DataError, f"invalid {tag} value {value!r}")
    assert not isinstance(err, TimestampError)
    assert (err.row, err.column) == (0, "v")


# --------------------------------------------------------------------------- writer


def test_write_types_escaping_and_pm4py_round_trip(tmp_path: Path) -> None:
    table = pa.table({
        "case:concept:name": ["c1", "c1", "c2"],
        "concept:name": ['a<&>"\n\tx', "b", "c"],
        "time:timestamp": pa.array([0, 1_500, 86_400_000], pa.timestamp("ms", tz="Europe/Amsterdam")),
        "n": pa.array([1, None, 3], pa.int32()),
        "f": [1.5, float("inf"), None],
        "ok": [True, False, None],
        "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
        "control": ["bell\x07", "ok", "fine"],
        "case:amount": [10, 10, 5],
        "__row": [0, 1, 2],
    })
    path = tmp_path / "out.xes"
    assert write_xes(table, path) == 3
    text = path.read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<log xes.version="1.0"')
    for needle in ('<extension name="Concept" prefix="concept"', '<extension name="Time" prefix="time"',
                   '<extension name="Organizational" prefix="org"', '<extension name="Lifecycle"',
                   "<classifier ", 'value="a&lt;&amp;&gt;&quot;&#10;&#9;x"',
                   '<date key="time:timestamp" value="1970-01-01T00:00:01.500+00:00"/>',
                   '<int key="n" value="1"/>', '<float key="f" value="INF"/>', '<boolean key="ok" value="false"/>',
                   '<int key="amount" value="10"/>'):
        assert needle in text
    assert "__row" not in text and "\x07" not in text and text.count("<trace>") == 2
    back = _read(path)
    assert back.column("concept:name").to_pylist() == ['a<&>"\n\tx', "b", "c"]
    assert back.column("time:timestamp").to_pylist() == [
        datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC),
        datetime(1970, 1, 2, tzinfo=UTC)]
    assert back.column("n").to_pylist() == [1, None, 3]
    assert back.column("ok").to_pylist() == [True, False, None]
    assert back.column("case:amount").to_pylist() == [10, 10, 5]
    df = _pm4py_frame(path)
    assert list(df["case:concept:name"]) == ["c1", "c1", "c2"]
    assert list(df["concept:name"]) == ['a<&>"\n\tx', "b", "c"]
    assert list(df["cat"]) == ["x", "y", "x"]
    assert list(df["control"]) == ["bell", "ok", "fine"]


def test_write_cases_continue_across_batches_and_gzip(tmp_path: Path) -> None:
    def part(cases: list[str], acts: list[str]) -> pa.Table:
        return pa.table({"case:concept:name": cases, "concept:name": acts})
    batches = [part(["a", "a"], ["1", "2"]), part(["a", "b"], ["3", "4"]), part([], []), part(["b"], ["5"])]
    by_name = tmp_path / "out.xes.gz"
    assert write_xes(iter(batches), by_name) == 5
    assert by_name.read_bytes()[:2] == b"\x1f\x8b"
    forced = tmp_path / "forced.xes"
    write_xes(batches, forced, gzip=True)
    assert forced.read_bytes()[:2] == b"\x1f\x8b"
    plain = tmp_path / "plain.xes.gz"
    write_xes(batches, plain, gzip=False)
    assert plain.read_bytes().startswith(b"<?xml")
    table = _read(by_name)
    assert table.column("case:concept:name").to_pylist() == ["a", "a", "a", "b", "b"]
    assert table.column("__trace").to_pylist() == [0, 0, 0, 1, 1]
    assert gzip.decompress(by_name.read_bytes()).count(b"<trace>") == 2


def test_write_plain_case_column_names_the_trace(tmp_path: Path) -> None:
    table = pa.table({"case_id": ["x", "x", "y"], "concept:name": ["a", "b", "c"]})
    write_xes(table, tmp_path / "o.xes", case_column="case_id")
    back = _read(tmp_path / "o.xes")
    assert back.column("case:concept:name").to_pylist() == ["x", "x", "y"]
    assert back.column("case_id").to_pylist() == ["x", "x", "y"]
    with pytest.raises(InvalidArgumentError, match="case_column"):
        write_xes(table, tmp_path / "bad.xes", case_column="missing")
    assert not (tmp_path / "bad.xes").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "o.xes"]  # no temporary file left behind


def test_write_nothing_is_a_valid_empty_log(tmp_path: Path) -> None:
    assert write_xes([], tmp_path / "e.xes") == 0
    assert list(iter_xes_batches(tmp_path / "e.xes")) == []


# --------------------------------------------------------------------------- real logs

REAL = ["running-example.xes", "receipt.xes.gz", "helpdesk.xes.gz", "teleclaims.xes.gz", "repairExample.xes.gz",
        "reviewing.xes", "roadtraffic100traces.xes", "SEPSIS_1t_per_variant.xes.gz", "bpic2013_incidents.xes.gz",
        pytest.param("bpic2012.xes.gz", marks=pytest.mark.slow)]


def _assert_same_as_pm4py(table: pa.Table, df: Any) -> None:
    assert table.num_rows == len(df)
    assert [c for c in table.column_names if not c.startswith("__")] == list(df.columns)
    cases = table.column("case:concept:name").to_pylist()
    acts = table.column("concept:name").to_pylist()
    assert len(set(cases)) == df["case:concept:name"].nunique(dropna=False)
    assert set(acts) == set(df["concept:name"])
    assert cases == list(df["case:concept:name"])  # pm4py keeps file order, no sorting
    assert _triples(cases, acts, table.column("time:timestamp").to_pylist()) == _triples(
        df["case:concept:name"], df["concept:name"], df["time:timestamp"])


@pytest.mark.shared
@pytest.mark.parametrize("name", REAL)
def test_real_log_matches_pm4py(name: str) -> None:
    path = _logs_dir() / name
    table = _read(path)
    _assert_same_as_pm4py(table, _pm4py_frame(path))
    assert table.column("__row").to_pylist() == list(range(table.num_rows))
    assert table.equals(_general(path))  # the fast path and the general parser agree


@pytest.mark.shared
@pytest.mark.parametrize("name", ["running-example.xes", "receipt.xes.gz", "repairExample.xes.gz"])
def test_real_log_write_round_trip(tmp_path: Path, name: str) -> None:
    path = _logs_dir() / name
    out = tmp_path / "copy.xes.gz"
    assert write_xes(iter_xes_batches(path, batch_size=5_000), out) == _read(path).num_rows
    original, written = _pm4py_frame(path), _pm4py_frame(out)
    assert len(written) == len(original)
    assert list(written["case:concept:name"]) == list(original["case:concept:name"])
    assert list(written["concept:name"]) == list(original["concept:name"])
    assert (written["time:timestamp"] == original["time:timestamp"]).all()


_RSS_SCRIPT = """
import json, resource, sys
from procestra.ingest.xes import iter_xes_batches
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = sum(t.num_rows for t in iter_xes_batches(sys.argv[1]))
print(json.dumps({"rows": rows, "grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base}))
"""


@pytest.mark.shared
@pytest.mark.slow
def test_memory_stays_flat_on_a_4x_log(tmp_path: Path) -> None:
    data = gzip.decompress((_logs_dir() / "bpic2012.xes.gz").read_bytes())
    start, end = data.find(b"<trace"), data.rfind(b"</trace>") + 8
    big = tmp_path / "bpic2012x4.xes.gz"
    with gzip.open(big, "wb", compresslevel=1) as out:
        out.write(data[:start])
        for _ in range(4):
            out.write(data[start:end])
        out.write(data[end:])
    del data

    def measure(path: Path) -> dict[str, int]:
        done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path)], capture_output=True, text=True,
                              check=True)
        return json.loads(done.stdout)

    one, four = measure(_logs_dir() / "bpic2012.xes.gz"), measure(big)
    assert (one["rows"], four["rows"]) == (262_200, 4 * 262_200)
    assert four["grew_kb"] < 1.5 * one["grew_kb"] + 50_000, (one, four)


# -- input limits: nesting depth and element size, also inside gzip bombs ----------------------------
_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<log xes.version="1.0"><trace><string key="concept:name" '
         'value="c1"/><event><string key="concept:name" value="a"/><date key="time:timestamp" '
         'value="2024-01-01T10:00:00Z"/>')
_TAIL = "</event></trace></log>\n"

_LIMITED_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))  # ulimit -v 2 GiB: the bombs needed more
from procestra.errors import SourceFormatError
from procestra.ingest.xes import iter_xes_batches
try:
    print(sum(t.num_rows for t in iter_xes_batches(sys.argv[1])))
except SourceFormatError as exc:
    print("refused:", exc)
"""


def _limited(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", _LIMITED_SCRIPT, str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_deep_nesting_in_a_gzip_bomb_is_refused_naming_the_event_within_memory(tmp_path: Path) -> None:
    """Before: a 3.2 KB .xes.gz of 40,000 nested containers peaked at 1.77 GB (quadratic keys)."""
    n = 40_000
    bomb = _write(tmp_path / "deep.xes.gz", _HEAD + '<container key="k">' * n + "</container>" * n + _TAIL,
                  compress=True)
    assert bomb.stat().st_size < 10_000
    out = _limited(bomb)
    assert out.startswith("refused:") and "nested deeper than 64 levels in event 1" in out, out


def test_thousands_of_nested_strings_are_refused_at_once(tmp_path: Path) -> None:
    """Before: 5,000 nested strings (175 KB) took 41 s."""
    body = "".join(f'<string key="s{i}" value="v">' for i in range(5000)) + "</string>" * 5000
    out = _limited(_write(tmp_path / "strings.xes", _HEAD + body + _TAIL))
    assert out.startswith("refused:") and "nested deeper than 64 levels in event 1" in out, out


def test_an_attribute_over_the_size_limit_is_refused_naming_the_event(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(xes, "MAX_ATTRIBUTE_BYTES", 1000)
    ok = '<event><string key="concept:name" value="b"/><date key="time:timestamp" value="2024-01-01T11:00:00Z"/>'
    big = _HEAD.replace("<event>", ok + "</event><event>", 1).replace('value="a"', 'value="' + "x" * 5000 + '"')
    for compress in (False, True):  # the fast path hands it to the general parser, which words the error
        with pytest.raises(SourceFormatError, match=r"the value of attribute 'concept:name' of 5,000 bytes in event 2 "
                                                    r"is over the limit of 1,000 bytes"):
            _read(_write(tmp_path / f"big{compress}.xes", big + _TAIL, compress=compress))


def test_nesting_up_to_the_limit_still_loads(tmp_path: Path) -> None:
    body = '<container key="k">' * 63 + '<string key="leaf" value="v"/>' + "</container>" * 63
    table = _read(_write(tmp_path / "ok.xes", _HEAD + body + _TAIL))
    assert table.column("k." * 63 + "leaf").to_pylist() == ["v"]
