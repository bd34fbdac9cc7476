"""Ingest: mapping, timestamps, idempotency, transactions, quality, and the bad-input corpus."""

from __future__ import annotations

import gzip
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from procestra import (
    DataError,
    InvalidArgumentError,
    LogNotFoundError,
    LogSchema,
    MappingError,
    SourceConnectionError,
    SourceFormatError,
    TimestampError,
    UserError,
    Workspace,
)

GOOD_CSV = (
    "case_id,activity,timestamp,resource,amount\n"
    "c1,register,2024-03-01 09:00:00,ann,100\n"
    "c1,check,2024-03-01 10:30:00,bob,100\n"
    "c1,decide,2024-03-02 08:00:00,ann,100\n"
    "c2,register,2024-03-01 11:00:00,ann,250\n"
    "c2,decide,2024-03-03 12:00:00,cid,250\n"
)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def events(ws: Workspace, log: str) -> list[tuple]:
    with ws.store.read() as con:
        log_id = ws.store.log_id(con, log)
        return con.execute(
            f"SELECT case_id, activity, ts, resource FROM ev_{log_id} ORDER BY event_id"
        ).fetchall()


# -- mapping and timestamps ------------------------------------------------------------
def test_csv_autodetects_common_names_and_converts_timezone(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", GOOD_CSV)
    result = ws.ingest(src, log="a", timezone="Europe/Amsterdam")
    assert result.status == "loaded" and result.events_added == 5
    rows = events(ws, "a")
    assert rows[0] == ("c1", "register", utc(2024, 3, 1, 8, 0), "ann")  # CET = UTC+1
    info = ws.info("a")
    assert (info.events, info.cases, info.activities, info.variants) == (5, 2, 3, 2)
    assert info.mapping["resource"] == "resource"
    assert info.event_attributes == {"amount": "BIGINT"}


def test_explicit_mapping_format_and_case_attributes(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "b.csv",
                "Ticket;Step;When;Who;Priority\n"
                "T1;open;30-12-2023 23:30;ann;high\n"
                "T1;close;31-12-2023 01:15;bob;high\n")
    schema = LogSchema(case="Ticket", activity="Step", timestamp="When", resource="Who",
                       case_attributes=("Priority",))
    ws.ingest(src, log="b", schema=schema, timestamp_format="%d-%m-%Y %H:%M", timezone="America/New_York")
    assert events(ws, "b")[0] == ("T1", "open", utc(2023, 12, 31, 4, 30), "ann")
    assert ws.info("b").case_attributes == {"Priority": "VARCHAR"}
    df = ws.to_pandas("b")
    assert list(df["case:Priority"]) == ["high", "high"]


def test_detects_day_first_format_and_notes_the_guess(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "c.csv", "case,activity,time\nx,a,25/12/2023 10:00\nx,b,26/12/2023 11:00\n")
    result = ws.ingest(src, log="c")
    assert events(ws, "c")[1][2] == utc(2023, 12, 26, 11, 0)
    assert any("%d/%m/%Y" in n for n in result.quality.notes)


def test_offsets_in_values_win_over_timezone_option(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "d.csv",
                "case_id,activity,timestamp\nx,a,2024-06-01T10:00:00+02:00\nx,b,2024-06-01T10:00:00Z\n")
    ws.ingest(src, log="d", timezone="Asia/Tokyo")
    assert [r[2] for r in events(ws, "d")] == [utc(2024, 6, 1, 8), utc(2024, 6, 1, 10)]


def test_epoch_timestamps(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", "case_id,activity,timestamp\nx,a,1700000000000\nx,b,1700000060000\n")
    ws.ingest(src, log="e", timestamp_format="epoch_ms")
    assert events(ws, "e")[1][2] == datetime.fromtimestamp(1700000060, tz=UTC)


def test_dataframe_and_json_lines(ws: Workspace, tmp_path: Path) -> None:
    df = pd.DataFrame({
        "case:concept:name": ["1", "1", "2"],
        "concept:name": ["a", "b", "a"],
        "time:timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 11:00", "2024-01-02 09:00"], utc=True),
        "case:region": ["north", "north", "south"],
    })
    assert ws.ingest(df, log="frame").events == 3
    assert ws.ingest(df, log="frame").status == "unchanged"
    assert ws.info("frame").case_attributes == {"region": "VARCHAR"}
    lines = [{"case": "k", "activity": "a", "timestamp": "2024-01-01T10:00:00Z", "meta": {"channel": "web"}},
             {"case": "k", "activity": "b", "timestamp": "2024-01-01T11:00:00Z", "meta": {"channel": "app"}}]
    src = write(tmp_path / "f.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    ws.ingest(src, log="json")
    assert ws.info("json").event_attributes == {"meta.channel": "VARCHAR"}


def test_latin1_csv_is_detected(ws: Workspace, tmp_path: Path) -> None:
    text = "case_id,activity,timestamp\nx,Prüfung,2024-01-01 10:00\nx,Bestätigung,2024-01-01 11:00\n"
    src = write(tmp_path / "l.csv", text.encode("latin-1"))
    ws.ingest(src, log="latin")
    assert [r[1] for r in events(ws, "latin")] == ["Prüfung", "Bestätigung"]


def test_a_utf8_csv_with_one_latin1_row_is_an_error_naming_the_row(ws: Workspace, tmp_path: Path) -> None:
    """Before, the whole file was read as Latin-1: every other umlaut became mojibake, with exit 0."""
    rows = [f"c{i},Prüfung,2024-01-01 10:{i % 60:02d}:00" for i in range(200)]
    good = ("case_id,activity,timestamp\n" + "\n".join(rows) + "\n").encode("utf-8")
    src = write(tmp_path / "mixed.csv", good.replace(b"c150,Pr\xc3\xbcfung", b"c150,Pr\xfcfung"))
    before = ws.store.checksums()
    with pytest.raises(SourceFormatError, match=r"not valid utf-8 text: byte 0xfc on line 152") as err:
        ws.ingest(src, log="mixed")
    assert err.value.row == 151 and "--encoding" in str(err.value)
    assert ws.store.checksums() == before and "mixed" not in [i.name for i in ws.logs()]
    ws.ingest(src, log="mixed", encoding="latin-1")  # what the user says goes
    assert {r[1] for r in events(ws, "mixed")} == {"PrÃ¼fung", "Prüfung"}


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_gzipped_csv_is_read_as_its_text(ws: Workspace, tmp_path: Path, encoding: str) -> None:
    """Before, the encoding was guessed from the compressed bytes and the load failed (or garbled)."""
    import gzip

    text = "case_id,activity,timestamp\nx,Prüfung,2024-01-01 10:00\nx,Bestätigung,2024-01-01 11:00\n"
    src = write(tmp_path / "l.csv.gz", gzip.compress(text.encode(encoding)))
    ws.ingest(src, log="gz")
    assert [r[1] for r in events(ws, "gz")] == ["Prüfung", "Bestätigung"]


def test_a_header_wider_than_the_sample_is_counted_whole(ws: Workspace, tmp_path: Path) -> None:
    """Before, a 100,003-field header was read from a 64 KiB sample and reported as 8,331 fields."""
    names = ["case_id", "activity", "timestamp"] + [f"c{i}" for i in range(100_000)]
    row = ["1", "a", "2024-01-01 10:00"] + ["x"] * 99_999  # one field short
    src = write(tmp_path / "wide.csv", ",".join(names) + "\n" + ",".join(row) + "\n")
    with pytest.raises(SourceFormatError, match=r"has 100,?002 fields but the header has 100,?003"):
        ws.ingest(src, log="wide")


# -- idempotency, replace, append ------------------------------------------------------
def test_reload_is_a_noop_and_replace_and_append(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", GOOD_CSV)
    assert ws.ingest(src, log="a").status == "loaded"
    before = ws.store.checksums()
    again = ws.ingest(src, log="a")
    assert again.status == "unchanged" and "already holds" in again.message
    assert ws.store.checksums() == before

    more = write(tmp_path / "more.csv", GOOD_CSV + "c2,archive,2024-03-04 12:00:00,cid,250\n"
                 "c3,register,2024-03-05 09:00:00,ann,80\n")
    with pytest.raises(UserError, match="already exists"):
        ws.ingest(more, log="a")
    appended = ws.ingest(more, log="a", mode="append")
    assert appended.status == "appended" and appended.events_added == 2  # the 5 known events are skipped
    assert ws.info("a").events == 7 and ws.info("a").cases == 3
    assert ws.ingest(more, log="a", mode="append").status == "unchanged"
    with ws.store.read() as con:
        n_events, last = con.execute("SELECT n_events, last_ts FROM ca_1 WHERE case_id = 'c2'").fetchone()
    assert n_events == 3 and last == utc(2024, 3, 4, 12)

    replaced = ws.ingest(src, log="a", mode="replace")
    assert replaced.status == "replaced" and ws.info("a").events == 5 and ws.info("a").version == 3


def test_drop_removes_tables(ws: Workspace, tmp_path: Path) -> None:
    ws.ingest(write(tmp_path / "a.csv", GOOD_CSV), log="a")
    ws.drop("a")
    assert ws.logs() == []
    assert set(ws.store.checksums()) == {"logs", "loads"}
    with pytest.raises(LogNotFoundError):
        ws.drop("a")


# -- quality report ----------------------------------------------------------------
def test_quality_report_finds_every_kind(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "q.csv",
                "case_id,activity,timestamp\n"
                "c1,a,2024-01-01 10:00\n"
                "c1,b,2024-01-01 09:00\n"       # out of order (row 2)
                "c1,b,2024-01-01 09:00\n"       # exact duplicate (row 3)
                "c2,a,1970-01-01 00:00:05\n"    # 1970 clock, single-event case (row 4)
                ",a,2024-01-01 10:00\n"         # no case (row 5)
                "c3,,2024-01-01 10:00\n"        # no activity (row 6)
                "c3,a,\n"                       # no timestamp (row 7)
                "c4,a,2999-01-01 00:00\n"       # future, single-event case (row 8)
                "c5,a,nonsense\n")              # unparseable (row 9)
    result = ws.ingest(src, log="q", on_bad_rows="drop")
    q = result.quality
    assert q.rows_read == 9 and q.events == 5 and q.dropped == 4
    assert q.issue("missing_case").rows == (5,)
    assert q.issue("missing_activity").rows == (6,)
    assert q.issue("missing_timestamp").rows == (7,)
    assert q.issue("unparseable_timestamp").rows == (9,)
    assert q.issue("unparseable_timestamp").examples == ("nonsense",)
    assert q.issue("out_of_order").rows == (2,)
    assert q.issue("duplicates").rows == (3,)
    assert q.issue("single_event_cases").count == 2
    assert q.issue("clock_1970").rows == (4,)
    assert q.issue("clock_future").rows == (8,)
    assert "dropped 4 rows" in str(q)
    assert ws.quality("q").to_dict() == q.to_dict()


def test_progress_callback_reports_stages(ws: Workspace, tmp_path: Path) -> None:
    seen: list[str] = []
    ws.ingest(write(tmp_path / "a.csv", GOOD_CSV), log="a", progress=lambda s, d, t: seen.append(s))
    assert "reading CSV" in seen and "writing to the store" in seen


def test_failure_at_row_90000_leaves_store_unchanged(ws: Workspace, tmp_path: Path) -> None:
    ws.ingest(write(tmp_path / "a.csv", GOOD_CSV), log="a")
    before = ws.store.checksums()
    lines = ["case_id,activity,timestamp"]
    lines += [f"c{i // 10},act{i % 7},2024-01-01 {i % 24:02d}:00:00" for i in range(100_000)]
    lines[90_000] = "c9000,act3,2024-13-45 99:00:00"
    big = write(tmp_path / "big.csv", "\n".join(lines) + "\n")
    with pytest.raises(TimestampError) as err:
        ws.ingest(big, log="a", mode="append")
    assert err.value.row == 90_000 and err.value.column == "timestamp"
    assert "2024-13-45" in str(err.value)
    assert ws.store.checksums() == before
    assert not list(ws.tmp_dir.iterdir())


# -- the bad-input corpus: each fails clearly and leaves the store as it was --------------
def _xes(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<log xes.version="1.0">{body}</log>\n'


GOOD_XES = _xes(
    '<trace><string key="concept:name" value="t1"/>'
    '<event><string key="concept:name" value="a"/><date key="time:timestamp" value="2024-01-01T10:00:00Z"/></event>'
    '</trace>'
)


def _corpus(tmp: Path) -> list[tuple[str, dict, type[Exception], str]]:
    gz = gzip.compress(GOOD_XES.encode() * 50)
    pq.write_table(pa.table({"case_id": ["a", "b"], "activity": ["x", "y"], "timestamp": [True, False]}),
                   tmp / "types.parquet")
    db = tmp / "db.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (case_id TEXT, activity TEXT, ts TEXT)")
        c.execute("INSERT INTO t VALUES ('a', 'x', '2024-01-01 10:00')")
    refused = "postgresql://postgres@127.0.0.1:1/postgres"
    corpus = [
        ("empty file", {"source": write(tmp / "empty.csv", "")}, SourceFormatError, "empty"),
        ("header only", {"source": write(tmp / "header.csv", "case_id,activity,timestamp\n")}, DataError,
         "no data rows"),
        ("truncated xes.gz", {"source": write(tmp / "cut.xes.gz", gz[: len(gz) // 2])}, SourceFormatError,
         "truncated"),
        ("xes that is not xml", {"source": write(tmp / "not.xes", "this is { not xml")}, SourceFormatError,
         "XML"),
        ("xes with another root", {"source": write(tmp / "html.xes", "<html><body/></html>")},
         SourceFormatError, "log"),
        ("xes with a bad date", {"source": write(tmp / "date.xes", GOOD_XES.replace("2024-01-01T10:00:00Z",
                                                                                   "yesterday"))},
         TimestampError, "yesterday"),
        ("missing case column", {"source": write(tmp / "nocase.csv", "activity,timestamp\na,2024-01-01\n")},
         MappingError, "no case column"),
        ("mapping to a missing column", {"source": write(tmp / "ok.csv", GOOD_CSV),
                                         "schema": LogSchema(case="CaseNumber")}, MappingError, "CaseNumber"),
        ("mixed timestamp formats", {"source": write(
            tmp / "mixed.csv", "case_id,activity,timestamp\nx,a,2024-01-01 10:00\nx,b,2024-01-01 11:00\n"
            "x,c,2024-01-01 12:00\nx,d,01/02/2024 10:00\n")}, TimestampError, "mixed timestamp formats"),
        ("timestamp in an unknown zone", {"source": write(
            tmp / "zone.csv", "case_id,activity,timestamp\nx,a,2024-01-01 10:00:00 Mars/Olympus\n")},
         TimestampError, "unknown timezone 'Mars/Olympus'"),
        ("unknown --timezone", {"source": write(tmp / "ok2.csv", GOOD_CSV), "timezone": "Europe/Atlantis"},
         TimestampError, "Europe/Atlantis"),
        ("invalid utf-8 byte", {"source": write(tmp / "utf.csv", b"case_id,activity,timestamp\nx,caf\xe9 \xff\xfe,"
                                                b"2024-01-01\n"), "encoding": "utf-8"}, SourceFormatError,
         "utf-8"),
        ("ragged csv row", {"source": write(tmp / "ragged.csv", "case_id,activity,timestamp\nx,a,2024-01-01\n"
                                            "x,b,2024-01-02,extra\nx,c,2024-01-03\n")}, SourceFormatError,
         "row 2"),
        ("parquet with wrong types", {"source": tmp / "types.parquet"}, TimestampError, "BOOLEAN"),
        ("sql query that fails", {"source": f"sqlite:///{db}", "sql": "SELECT * FROM no_such_table"},
         SourceConnectionError, "no such table"),
        ("database refusing the connection", {"source": refused, "sql": "SELECT 1"}, SourceConnectionError,
         "cannot connect"),
        ("log name with quotes and semicolons", {"source": write(tmp / "ok3.csv", GOOD_CSV),
                                                 "log": "x'; DROP TABLE logs; --"}, InvalidArgumentError,
         "invalid log name"),
        ("unknown extension", {"source": write(tmp / "book.xlsx", "x")}, InvalidArgumentError, ".xlsx"),
        ("missing file", {"source": tmp / "nowhere.csv"}, SourceFormatError, "no such file"),
        ("a directory", {"source": tmp}, InvalidArgumentError, "format"),
        ("malformed json lines", {"source": write(tmp / "bad.jsonl", '{"case": "a", \n{{{\n')}, SourceFormatError,
         "JSON"),
        ("unparseable with explicit format", {"source": write(tmp / "fmt.csv", GOOD_CSV),
                                              "timestamp_format": "%d.%m.%Y"}, TimestampError, "%d.%m.%Y"),
        ("numbers as timestamps", {"source": write(tmp / "num.csv", "case_id,activity,timestamp\nx,a,17\n")},
         TimestampError, "epoch"),
        ("no activity in any row", {"source": write(tmp / "noact.csv",
                                                   "case_id,activity,timestamp\nx,,2024-01-01\n")},
         DataError, "no events left"),
        ("--sql on a file", {"source": write(tmp / "ok4.csv", GOOD_CSV), "sql": "SELECT 1"},
         InvalidArgumentError, "--sql"),
        ("database without --sql", {"source": f"sqlite:///{db}"}, InvalidArgumentError, "query"),
        ("missing sqlite file", {"source": f"sqlite:///{tmp}/none.sqlite", "sql": "SELECT 1"},
         SourceConnectionError, "no such SQLite"),
        ("nested activity", {"source": write(tmp / "nested.jsonl",
                                            '{"case": "a", "activity": [1, 2], "timestamp": "2024-01-01"}\n')},
         DataError, "plain value"),
        ("existing log, other content", {"source": write(tmp / "other.csv", GOOD_CSV.replace("ann", "zed")),
                                         "log": "base"}, UserError, "already exists"),
    ]
    return corpus


@pytest.fixture
def seeded(ws: Workspace, tmp_path: Path) -> Workspace:
    ws.ingest(write(tmp_path / "base.csv", GOOD_CSV), log="base")
    return ws


def test_bad_input_corpus(seeded: Workspace, tmp_path: Path) -> None:
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    corpus = _corpus(corpus_dir)
    assert len(corpus) >= 20
    before = seeded.store.checksums()
    failures = []
    for name, kwargs, exc_type, needle in corpus:
        kwargs = dict(kwargs)
        source = kwargs.pop("source")
        log = kwargs.pop("log", "bad")
        try:
            seeded.ingest(source, log=log, **kwargs)
        except exc_type as exc:
            message = str(exc)
            if needle.lower() not in message.lower():
                failures.append(f"{name}: message {message!r} lacks {needle!r}")
            if "\n" in message.strip():
                failures.append(f"{name}: message is not one line: {message!r}")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
        else:
            failures.append(f"{name}: loaded without an error")
        if seeded.store.checksums() != before:
            failures.append(f"{name}: the store changed")
    assert not failures, "\n".join(failures)
    assert not list(seeded.tmp_dir.iterdir()), "staging files were left behind"


def test_bad_rows_name_the_row_and_column(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "r.csv", "case_id,activity,timestamp\nx,a,2024-01-01 10:00\nx,b,2024-01-01 25:99\n")
    with pytest.raises(TimestampError) as err:
        ws.ingest(src, log="r")
    assert (err.value.row, err.value.column) == (2, "timestamp")
    assert str(err.value).startswith(f"{src}, row 2, column 'timestamp':")


def test_values_are_bound_not_formatted(ws: Workspace, tmp_path: Path) -> None:
    evil = "x' OR 1=1; DROP TABLE logs; --"
    src = write(tmp_path / "evil.csv", f'case_id,activity,timestamp\n"{evil}","{evil}",2024-01-01\n')
    ws.ingest(src, log="evil")
    assert events(ws, "evil")[0][:2] == (evil, evil)
    with pytest.raises(LogNotFoundError):
        ws.info(evil)
    assert [i.name for i in ws.logs()] == ["evil"]


# -- databases -----------------------------------------------------------------------
def test_sqlite_northwind_orders(ws: Workspace, shared_dir: Path) -> None:
    db = shared_dir / "databases" / "northwind.sqlite"
    query = """
        SELECT OrderID AS case_id, 'place order' AS activity, OrderDate AS timestamp, EmployeeID AS resource
        FROM Orders
        UNION ALL
        SELECT OrderID, 'ship order', ShippedDate, EmployeeID FROM Orders WHERE ShippedDate IS NOT NULL
    """
    result = ws.ingest(f"sqlite:///{db}", log="northwind", sql=query)
    with sqlite3.connect(db) as c:
        orders = c.execute("SELECT count(*) FROM Orders").fetchone()[0]
        shipped = c.execute("SELECT count(*) FROM Orders WHERE ShippedDate IS NOT NULL").fetchone()[0]
    assert result.events == orders + shipped and result.cases == orders
    assert ws.ingest(f"sqlite:///{db}", log="northwind", sql=query).status == "unchanged"


@pytest.mark.postgres
def test_postgres_source(ws: Workspace, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from procestra.ingest import sources

    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS claims")
        c.execute("CREATE TABLE claims (claim_id int, step text, done_at timestamptz, handler text, amount numeric, "
                  "fee numeric(8, 2))")
        c.execute(
            "INSERT INTO claims SELECT i / 4, (ARRAY['file','assess','approve','pay'])[i % 4 + 1], "
            "timestamptz '2024-01-01 00:00+01' + i * interval '1 hour', 'h' || (i % 3), i * 1.5, i * 2.25 "
            "FROM generate_series(0, 399) i"
        )
    # Batches of 50 rows: the first one's amounts have up to 3 digits (73.5), the others' 4. A numeric column is
    # typed by its declaration, not by each batch's values: numeric(p, s) is DECIMAL(p, s),
    # a numeric without a precision DOUBLE (as DuckDB's own PostgreSQL reader has it).
    monkeypatch.setattr(sources, "_BATCH_ROWS", 50)
    result = ws.ingest(postgres_url, log="claims", sql="SELECT * FROM claims ORDER BY claim_id, done_at",
                       schema=LogSchema(case="claim_id", activity="step", timestamp="done_at", resource="handler"))
    assert (result.events, result.cases) == (400, 100)
    first = events(ws, "claims")[0]
    assert first == ("0", "file", utc(2023, 12, 31, 23), "h0")
    assert ws.info("claims").event_attributes == {"amount": "DOUBLE", "fee": "DECIMAL(8,2)"}
    df = ws.to_pandas("claims")
    assert sorted(df["amount"]) == [i * 1.5 for i in range(400)]
    assert sorted(float(x) for x in df["fee"]) == [i * 2.25 for i in range(400)]
    with pytest.raises(SourceConnectionError, match="query failed"):
        ws.ingest(postgres_url, log="claims2", sql="SELECT * FROM nowhere")
    secret = postgres_url.replace("postgres@", "postgres:hunter2@").replace("/postgres", "/nodb")
    with pytest.raises(SourceConnectionError) as err:
        ws.ingest(secret, log="claims3", sql="SELECT 1")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


# -- export --------------------------------------------------------------------------
def test_export_round_trips_through_pm4py(ws: Workspace, tmp_path: Path) -> None:
    import pm4py

    ws.ingest(write(tmp_path / "a.csv", GOOD_CSV), log="a", timezone="Europe/Amsterdam")
    xes = ws.export("a", tmp_path / "a.xes")
    back = pm4py.read_xes(str(xes))
    ours = ws.to_pandas("a")
    assert len(back) == len(ours) == 5
    key = ["case:concept:name", "concept:name", "time:timestamp"]
    left = back[key].assign(**{"time:timestamp": pd.to_datetime(back["time:timestamp"], utc=True)})
    assert left.sort_values(key).values.tolist() == ours[key].sort_values(key).values.tolist()
    for ext in ("csv", "parquet", "xes.gz"):
        path = ws.export("a", tmp_path / f"out.{ext}")
        again = ws.ingest(path, log=f"again-{ext.replace('.', '-')}")
        assert (again.events, again.cases) == (5, 2)
    assert pm4py.discover_dfg(ours)[0][("register", "check")] == 1
    with pytest.raises(InvalidArgumentError, match=".docx"):
        ws.export("a", tmp_path / "out.docx")


def test_activity_instances_pair_start_and_complete(ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "lc.csv",
                "case_id,activity,timestamp,lifecycle\n"
                "x,a,2024-01-01 10:00,start\nx,a,2024-01-01 10:30,complete\n"
                "x,b,2024-01-01 11:00,start\nx,b,2024-01-01 12:00,complete\n")
    ws.ingest(src, log="lc")
    inst = ws.activity_instances("lc")
    assert list(inst["activity"]) == ["a", "b"]
    assert list(inst["duration_seconds"]) == [1800.0, 3600.0]


def test_workspace_errors(tmp_path: Path) -> None:
    from procestra import WorkspaceError

    with pytest.raises(WorkspaceError, match="procestra init"):
        Workspace(tmp_path / "nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="not a workspace"):
        Workspace.init(tmp_path / "full")


# -- the real logs in ../shared: counts equal pm4py's ---------------------------------------
REAL_XES = [
    "running-example.xes", "receipt.xes.gz", "helpdesk.xes.gz", "teleclaims.xes.gz",
    "repairExample.xes.gz", "reviewing.xes", "roadtraffic100traces.xes",
    "SEPSIS_1t_per_variant.xes.gz", "bpic2013_incidents.xes.gz",
    pytest.param("bpic2012.xes.gz", marks=pytest.mark.slow),
]


def _pm4py_counts(df: pd.DataFrame) -> tuple[int, int, int]:
    return len(df), int(df["case:concept:name"].nunique()), int(df["concept:name"].nunique())


@pytest.mark.parametrize("name", REAL_XES)
def test_real_xes_counts_equal_pm4py(ws: Workspace, shared_logs: Path, name: str) -> None:
    import pm4py

    path = shared_logs / name
    result = ws.ingest(path, log="real")
    info = ws.info("real")
    expected = _pm4py_counts(pm4py.read_xes(str(path)))
    assert (info.events, info.cases, info.activities) == expected
    assert result.quality.dropped == 0


@pytest.mark.parametrize("name", ["running-example.csv", "receipt.csv", "receipt.parquet"])
def test_real_tables_count_equal_pm4py(ws: Workspace, shared_logs: Path, name: str) -> None:
    import pm4py

    path = shared_logs / name
    df = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
    df = pm4py.format_dataframe(df, case_id="case:concept:name", activity_key="concept:name",
                                timestamp_key="time:timestamp")
    ws.ingest(path, log="real")
    info = ws.info("real")
    assert (info.events, info.cases, info.activities) == _pm4py_counts(df)


def test_interval_log_has_start_timestamps(ws: Workspace, shared_logs: Path) -> None:
    ws.ingest(shared_logs / "interval_event_log.csv", log="iv")
    inst = ws.activity_instances("iv")
    assert len(inst) == 8109 and (inst["duration_seconds"] >= 0).all()


def test_attribute_that_changes_type_after_the_sniff_sample(ws: Workspace, tmp_path: Path) -> None:
    lines = ["case_id,activity,timestamp,ticket"]
    lines += [f"c{i // 5},a{i % 5},2024-01-01 10:{i % 60:02d}:00,{i}" for i in range(40_000)]
    lines.append("c9,a1,2024-01-01 11:00:00,T-42")  # beyond DuckDB's sniff sample
    ws.ingest(write(tmp_path / "late.csv", "\n".join(lines) + "\n"), log="late")
    assert ws.info("late").event_attributes == {"ticket": "VARCHAR"}
    assert ws.info("late").events == 40_001


def test_repeated_column_names_are_made_unique_the_same_way_for_files_and_queries(
        ws: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "dup.csv", "case_id,activity,timestamp,Note,note,note_2\n"
                                      "x,a,2024-01-01 10:00,1,2,3\n")
    ws.ingest(src, log="dup")
    assert list(ws.info("dup").event_attributes) == ["Note", "note_2", "note_2_2"]
    db = tmp_path / "q.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (case_id TEXT, activity TEXT, ts TEXT, Note TEXT)")
        c.execute("INSERT INTO t VALUES ('x', 'a', '2024-01-01 10:00', 'n')")
    ws.ingest(f"sqlite:///{db}", log="q", sql="SELECT case_id, activity, ts AS timestamp, Note, Note AS note FROM t")
    assert list(ws.info("q").event_attributes) == ["Note", "note_2"]
