"""The catalogue's counts: written when a load commits, read without scanning the events.

``info`` and ``logs`` read events, cases, activities and variants from the ``logs`` row;
these tests check the variant count against one made from the events after every kind
of write, that a store from before the ``variants`` column still reads (and gets the
column on its next write), and that listing the logs opens one read connection.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
import pm4py
import pytest

from conftest import pm4py_frame
from procestra import Filter, Workspace, save_filtered
from procestra.mining.generate import generate_log
from procestra.store import events


def _variants(table: Any) -> int:
    """The variant count pm4py makes of a generator's table (not of our export)."""
    return len(pm4py.get_variants(pm4py_frame(table)))


def _logs_columns(ws: Workspace) -> list[str]:
    con = duckdb.connect(str(ws.store.path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'logs' ORDER BY ordinal_position").fetchall()]
    finally:
        con.close()


def test_variant_count_after_create_replace_append_and_save_filtered(ws: Workspace) -> None:
    first = generate_log(300, seed=1)
    ws.ingest(first, log="loans")
    assert ws.info("loans").variants == _variants(first) > 1

    second = generate_log(500, seed=2, process="order")
    ws.ingest(second, log="loans", mode="replace")
    assert ws.info("loans").variants == _variants(second)

    # same case ids, later events: the appended events join existing cases and change their variants
    before = ws.info("loans")
    third = generate_log(400, seed=3, process="order")
    ws.ingest(third, log="loans", mode="append")
    after = ws.info("loans")
    both = pd.concat([second.to_pandas(), third.to_pandas()], ignore_index=True)
    assert after.events == len(both) > before.events  # no appended event was already there
    assert after.variants == _variants(both)

    saved = save_filtered(ws, "loans", Filter.variants(top=3), "loans-top3")
    assert saved.variants == ws.info("loans-top3").variants == len(pm4py.get_variants(pm4py.filter_variants_top_k(pm4py_frame(both), 3))) == 3
    assert saved.cases < after.cases
    assert {i.name: i.variants for i in ws.logs()} == {"loans": after.variants, "loans-top3": 3}


_OLD_LOGS = """
CREATE TABLE logs_old (
    log_id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, source VARCHAR, source_kind VARCHAR,
    content_hash VARCHAR, mapping JSON, options JSON, loaded_at TIMESTAMPTZ, events BIGINT, cases BIGINT,
    activities BIGINT, first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ, event_attributes JSON, case_attributes JSON,
    quality JSON, version INTEGER
)
"""


def test_a_store_from_before_the_variants_column_reads_and_gains_it_on_the_next_write(ws: Workspace) -> None:
    tables = {"a": generate_log(300, seed=1), "b": generate_log(200, seed=4, process="order"),
              "c": generate_log(100, seed=5), "a2": generate_log(150, seed=6)}
    ws.ingest(tables["a"], log="a")
    ws.ingest(tables["b"], log="b")
    expected = {log: _variants(tables[log]) for log in ("a", "b")}
    con = duckdb.connect(str(ws.store.path))  # the catalogue as Procestra wrote it before the count was kept
    try:
        con.execute(_OLD_LOGS)
        con.execute("INSERT INTO logs_old SELECT * EXCLUDE (variants) FROM logs")
        con.execute("DROP TABLE logs")
        con.execute("ALTER TABLE logs_old RENAME TO logs")
    finally:
        con.close()
    assert "variants" not in _logs_columns(ws)

    assert ws.info("a").variants == expected["a"]  # counted from the events, on a read-only connection
    assert {i.name: i.variants for i in ws.logs()} == expected
    assert "variants" not in _logs_columns(ws)  # reading changes nothing

    ws.ingest(tables["c"], log="c")  # the next write adds the column
    assert "variants" in _logs_columns(ws)
    con = duckdb.connect(str(ws.store.path), read_only=True)
    try:
        stored = dict(con.execute("SELECT name, variants FROM logs").fetchall())
    finally:
        con.close()
    assert stored["a"] is None and stored["b"] is None  # old rows keep NULL until rewritten ...
    assert stored["c"] == _variants(tables["c"])
    assert {i.name: i.variants for i in ws.logs()} == {**expected, "c": stored["c"]}  # ... and are counted

    ws.ingest(tables["a2"], log="a", mode="replace")  # a rewritten row gets its count
    con = duckdb.connect(str(ws.store.path), read_only=True)
    try:
        assert con.execute("SELECT variants FROM logs WHERE name = 'a'").fetchall()[0][0] == \
            _variants(tables["a2"])
    finally:
        con.close()


def test_listing_the_logs_opens_one_read_connection(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(4):
        ws.ingest(generate_log(100 + 50 * i, seed=i), log=f"log{i}")
    opened: list[bool] = []
    connect = duckdb.connect

    def counting(database: str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        opened.append(read_only)
        return connect(database, read_only=read_only)

    monkeypatch.setattr(events.duckdb, "connect", counting)
    infos = ws.logs()
    assert [i.name for i in infos] == ["log0", "log1", "log2", "log3"]
    assert opened == [True]  # one read-only connection for every log
    opened.clear()
    ws.info("log2")
    assert opened == [True]
