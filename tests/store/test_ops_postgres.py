"""The operational store on a real PostgreSQL server: translation, rows, locks, migrations, outbox, selection, errors.

Every test gets a fresh database on the session's server (the ``postgres_url`` fixture of
conftest.py), created with ``CREATE DATABASE`` and dropped afterwards, so tests never see
each other's tables.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from conftest import run_cli
from procestra import Workspace
from procestra.errors import ProcestraError, UserError
from procestra.ingest.outbox import flush_outbox
from procestra.store import ops
from procestra.store._postgres import WRITE_LOCK_KEY, translate
from procestra.store.ops import Event

pytestmark = pytest.mark.postgres
T0 = datetime(2025, 1, 6, 5, 0, tzinfo=UTC)


@pytest.fixture
def pws(ws: Workspace, pg_url: str) -> Workspace:
    """A workspace whose operational store is a fresh database (``<workspace>/ops.url``)."""
    ops.set_url(ws, pg_url)
    return ws


def with_password(url: str, password: str) -> str:
    """``url`` with a password (the test server trusts every local connection, so it is ignored)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


def _events(n: int, *, case: str = "c", start: datetime = T0, **attrs: object) -> list[Event]:
    return [Event(f"{case}{i % 3}", "step", start + timedelta(seconds=i), "complete", "bot", {"n": i, **attrs})
            for i in range(n)]


# -- translation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sqlite_sql, pg_sql", [
    ("SELECT * FROM t WHERE a = ? AND b = ?", ("SELECT * FROM t WHERE a = %s AND b = %s",)),
    ("SELECT '?', \"odd?name\", ? FROM t", ("SELECT '?', \"odd?name\", %s FROM t",)),
    ("SELECT 'it''s ?', ? -- why?\n", ("SELECT 'it''s ?', %s -- why?\n",)),
    ("SELECT x FROM t WHERE s LIKE '50%' AND d LIKE ?", ("SELECT x FROM t WHERE s LIKE '50%%' AND d LIKE %s",)),
    ("SELECT 10 % 3 /* ? % */", ("SELECT 10 %% 3 /* ? %% */",)),
    ("BEGIN IMMEDIATE", ("BEGIN", f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")),
    ("BEGIN", ("BEGIN",)),
    ("PRAGMA busy_timeout = 5000", ()),
    (("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, x REAL, s TEXT "
      "CHECK (s IN ('INTEGER', 'TEXT')))"),
     (('CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, x DOUBLE PRECISION, s TEXT COLLATE "C" '
       "CHECK (s IN ('INTEGER', 'TEXT')))"),)),
    ("ALTER TABLE work ADD COLUMN applied INTEGER NOT NULL DEFAULT 0",
     ("ALTER TABLE work ADD COLUMN applied BIGINT NOT NULL DEFAULT 0",)),
    ("SELECT CAST(x AS INTEGER) FROM t", ("SELECT CAST(x AS INTEGER) FROM t",)),  # types only in table DDL
])
def test_translation_of_placeholders_literals_locks_and_types(sqlite_sql: str, pg_sql: tuple[str, ...]) -> None:
    assert translate(sqlite_sql) == pg_sql


def test_the_wrapper_answers_like_sqlite3_on_the_same_statements(pg_url: str, tmp_path: Path) -> None:
    from procestra.store._postgres import PgConnection

    lite = sqlite3.connect(str(tmp_path / "same.sqlite"), isolation_level=None)
    lite.row_factory = sqlite3.Row
    pg = PgConnection.open(pg_url, 5.0)
    try:
        results = []
        for con in (lite, pg):
            con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, "
                        "n INTEGER, share REAL, flag INTEGER)")
            con.executemany("INSERT INTO t (name, n, share, flag) VALUES (?, ?, ?, ?)",
                            [("b", 2**40, 0.5, True), ("a?", None, 1.0, False), ("B%", 3, None, 1)])
            cur = con.execute("UPDATE t SET n = coalesce(n, 0) + ? WHERE name LIKE '%#%' ESCAPE '#' OR name = ?",
                              (1, "a?"))  # LIKE: mind that SQLite's ignores ASCII case, PostgreSQL's does not
            updated = cur.rowcount
            rows = con.execute("SELECT id, name, n, share, flag, '50%' AS pct, '?' AS q FROM t "
                               "ORDER BY name").fetchall()
            first = rows[0]
            results.append({
                "updated": updated,
                "rows": [tuple(r) for r in rows],
                "by_name": [(r["name"], r["N"], r["share"]) for r in rows],
                "keys": first.keys(),
                "dict": dict(first),
                "iterated": [r[1] for r in con.execute("SELECT id, name FROM t WHERE n > ? ORDER BY id", [2])],
                "none": con.execute("SELECT * FROM t WHERE name = ?", ["zzz"]).fetchone(),
                "ignored": con.execute("INSERT INTO t (name) VALUES (?) ON CONFLICT DO NOTHING", ["b"]).rowcount,
                "returning": [tuple(r) for r in con.execute(
                    "UPDATE t SET flag = 0 WHERE name = ? RETURNING name, flag", ["b"]).fetchall()],
                "count": con.execute("SELECT count(*) FILTER (WHERE flag = 1) FROM t").fetchone()[0],
            })
            with pytest.raises(IndexError):
                first["nope"]
            with pytest.raises(sqlite3.IntegrityError):
                con.execute("INSERT INTO t (name) VALUES (?)", ["b"])
            with pytest.raises(sqlite3.OperationalError, match="no such table"):
                con.execute("SELECT * FROM missing")
        assert results[0] == results[1]
        assert results[1]["rows"][0][1] == "B%" and results[1]["dict"]["pct"] == "50%"  # bytewise order, as SQLite
    finally:
        lite.close()
        pg.close()


# -- transactions, migrations --------------------------------------------------------------------------
def test_write_transactions_are_serialised_like_sqlites(pws: Workspace) -> None:
    ops.ensure_schema(pws, "demo", [["CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
                                     "INSERT INTO counter VALUES (1, 0)"]])
    errors: list[BaseException] = []

    def bump() -> None:  # read, think, write: only safe when writers are serialised
        try:
            for _ in range(25):
                with ops.transaction(pws) as con:
                    n = con.execute("SELECT n FROM counter WHERE id = 1").fetchone()["n"]
                    time.sleep(0.001)
                    con.execute("UPDATE counter SET n = ? WHERE id = 1", [n + 1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ops.connect(pws) as con:
        assert con.execute("SELECT n FROM counter").fetchone()[0] == 100

    # a writer kept waiting past the timeout gets the transient OpsBusyError, and changes nothing
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ops.transaction(pws) as con:
            con.execute("UPDATE counter SET n = n + 1")
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(ops.OpsBusyError, match="stayed locked") as info, \
                ops.transaction(pws, timeout=0.3) as con:
            con.execute("UPDATE counter SET n = 0")
        assert info.value.transient
    finally:
        release.set()
        holder.join()
    with ops.connect(pws) as con:
        assert con.execute("SELECT n FROM counter").fetchone()[0] == 101


def test_migrations_apply_once_in_order_and_roll_back_whole(pws: Workspace, pg_url: str) -> None:
    v1 = [["CREATE TABLE widgets (id INTEGER PRIMARY KEY)"]]
    assert ops.ensure_schema(pws, "demo", v1) == 1
    assert (pg_url, "demo") in ops._applied  # the in-process cache is keyed by the store's URL
    assert ops.ensure_schema(pws, "demo", v1) == 1
    broken = v1 + [["ALTER TABLE widgets ADD COLUMN name TEXT", "CREATE TABLE widgets (oops INTEGER)"]]
    ops._applied.clear()
    with pytest.raises(ops.OpsError, match="already exists"):
        ops.ensure_schema(pws, "demo", broken)

    def columns() -> list[str]:
        with ops.connect(pws) as con:
            return [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                              "table_name = 'widgets' ORDER BY ordinal_position")]

    def versions() -> dict[str, int]:
        with ops.connect(pws) as con:
            return {r["component"]: r["version"] for r in con.execute("SELECT * FROM schema_versions")}

    assert columns() == ["id"] and versions()["demo"] == 1  # the failed migration left nothing behind
    assert ops.ensure_schema(pws, "demo", v1 + [["ALTER TABLE widgets ADD COLUMN name TEXT"]]) == 2
    assert columns() == ["id", "name"] and versions() == {"ops": 1, "shared": 1, "demo": 2}
    ops._applied.clear()
    with pytest.raises(ops.OpsError, match="newer than this Procestra") as info:
        ops.ensure_schema(pws, "demo", v1)
    assert "postgresql://postgres@" in str(info.value)
    with ops.connect(pws) as con:  # the SQLite type names became PostgreSQL's
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'outbox'").fetchall())
    assert types["seq"] == "bigint" and types["uid"] == "text"


# -- the outbox --------------------------------------------------------------------------------------------
def test_outbox_commits_with_the_transaction_and_flushes_into_duckdb(pws: Workspace) -> None:
    with pytest.raises(RuntimeError), ops.transaction(pws) as con:
        ops.emit(con, "jobs", _events(3))
        raise RuntimeError("the state change failed")
    assert ops.outbox_stats(pws).pending == 0
    with ops.transaction(pws) as con:
        assert ops.emit(con, "jobs", _events(5, outcome="ok", score=0.5, flag=True)) == 5
        ops.emit(con, "other", _events(2, case="o"))
    assert ops.outbox_stats(pws) == ops.OutboxStats(pending=7, flushed=0, failed=0)
    result = flush_outbox(pws)
    assert (result.events, result.logs, result.failed, result.skipped) == (7, {"jobs": 5, "other": 2}, 0, None)
    info = pws.info("jobs")
    assert info.events == 5 and info.cases == 3
    assert info.event_attributes["n"] == "BIGINT" and info.event_attributes["score"] == "DOUBLE"
    assert info.event_attributes["flag"] == "BOOLEAN"
    assert flush_outbox(pws).events == 0
    assert ops.outbox_stats(pws) == ops.OutboxStats(pending=0, flushed=7, failed=0)
    df = pws.to_pandas("jobs")
    assert sorted(df["n"].tolist()) == [0, 1, 2, 3, 4] and df["event_uid"].nunique() == 5


def test_only_the_events_home_flushes_a_shared_store(pws: Workspace, pg_url: str, tmp_path: Path) -> None:
    other = Workspace.init(tmp_path / "other-machine")
    assert ops.set_url(other, pg_url).backend == "postgresql"
    assert ops.events_home(other) == ops.events_home(pws) == ops.workspace_id(pws)  # the first one keeps it
    with ops.transaction(other) as con:
        ops.emit(con, "jobs", _events(4))
    skipped = flush_outbox(other)
    assert skipped.events == 0 and "flush there" in skipped.skipped and str(pws.path) in skipped.skipped
    assert not other.store.path.exists() or "jobs" not in [log.name for log in other.logs()]
    assert ops.outbox_stats(pws).pending == 4  # still queued for the home
    assert flush_outbox(pws).events == 4 and pws.info("jobs").events == 4
    # the CLI moves the home, and the other workspace flushes from then on
    home = json.loads(run_cli("ops", "url", "--events-home", "--json", workspace=other.path, check=True).stdout)
    assert home["events_home"] == home["workspace"] == ops.workspace_id(other)
    with ops.transaction(pws) as con:
        ops.emit(con, "jobs", _events(2, case="late"))
    assert flush_outbox(pws).skipped is not None
    flushed = json.loads(run_cli("ops", "flush", "--json", workspace=other.path, check=True).stdout)
    assert flushed["events"] == 2 and other.info("jobs").events == 2


# -- choosing the backend -----------------------------------------------------------------------------------
def test_the_backend_is_chosen_by_env_then_ops_url_then_sqlite(ws: Workspace, pg_url: str, postgres_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert ops.backend(ws) == "sqlite" and ops.location(ws).source == "default"
    url = with_password(pg_url, "hunter2-secret")
    here = ops.set_url(ws, url)
    file = ws.path / ops.OPS_URL_FILE
    assert file.read_text().strip() == url and stat.S_IMODE(file.stat().st_mode) == 0o600
    assert here == ops.OpsLocation("postgresql", pg_url.replace("postgres@", "postgres:***@"), str(file))
    assert "hunter2" not in repr(here) and "hunter2" not in json.dumps(here.to_dict())
    ops.prepare(ws)
    with ops.transaction(ws) as con:
        ops.emit(con, "jobs", _events(1))
    assert not ops.ops_path(ws).exists()  # nothing went to SQLite

    # the environment wins over ops.url: another database, other contents
    name = f"procestra_env_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env_url = postgres_url.rsplit("/", 1)[0] + "/" + name
        monkeypatch.setenv(ops.OPS_URL_ENV, env_url)
        assert ops.location(ws) == ops.OpsLocation("postgresql", env_url, "$PROCESTRA_OPS_URL")
        assert ops.outbox_stats(ws).pending == 0
        monkeypatch.setenv(ops.OPS_URL_ENV, "sqlite:///nope")
        with pytest.raises(ops.OpsUrlError, match=r"\$PROCESTRA_OPS_URL: 'sqlite:///nope' is not a PostgreSQL URL"):
            ops.backend(ws)
        monkeypatch.delenv(ops.OPS_URL_ENV)
        assert ops.outbox_stats(ws).pending == 1
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # back to SQLite: ops.url goes, the SQLite store is the workspace's own again
    assert ops.set_url(ws, None) == ops.OpsLocation("sqlite", str(ops.ops_path(ws)), "default")
    assert not file.exists() and ops.outbox_stats(ws).pending == 0


def test_bad_urls_and_an_unreachable_server_are_one_clear_error_without_the_password(
        ws: Workspace, pg_url: str, tmp_path: Path) -> None:
    for bad in ("mysql://root:pw@db/x", "not a url", ""):
        with pytest.raises(ops.OpsUrlError) as info:
            ops.set_url(ws, bad)
        assert isinstance(info.value, UserError)
        assert ("empty" if not bad else "is not a PostgreSQL URL") in str(info.value) and "pw@" not in str(info.value)
    # a closed port: the URL given is the user's to fix (exit 2; it was exit 1), nothing is written, the
    # message names the redacted URL and what to check
    closed = f"postgresql://alice:s3cret-Passw0rd@127.0.0.1:{_closed_port()}/db"
    with pytest.raises(ops.OpsUrlError) as info:
        ops.set_url(ws, closed)
    message = str(info.value)
    assert "s3cret" not in message and "alice:***@127.0.0.1" in message and "server is running" in message
    assert isinstance(info.value, UserError) and "nothing was changed" in message
    assert not (ws.path / ops.OPS_URL_FILE).exists()
    # a broken ops.url names the file; a server gone later is one OpsError naming the redacted URL
    (ws.path / ops.OPS_URL_FILE).write_text("postgres//oops\n")
    with pytest.raises(ops.OpsUrlError, match=r"ops\.url: 'postgres//oops' is not a PostgreSQL URL"):
        ops.prepare(ws)
    (ws.path / ops.OPS_URL_FILE).write_text(closed + "\n")
    with pytest.raises(ops.OpsUnavailableError) as info:
        ops.outbox_stats(ws)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_a_lost_server_connection_is_an_ops_error_and_the_next_connection_works(pws: Workspace, pg_url: str,
                                                                                  postgres_url: str) -> None:
    ops.prepare(pws)
    con = ops.open_connection(pws)
    pid = con.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(sqlite3.OperationalError) as info:
        con.execute("SELECT count(*) FROM outbox")
    error = ops.busy_or_error(ops.display_location(pws), info.value, 1.0)
    assert isinstance(error, ops.OpsUnavailableError) and "cannot be reached" in str(error)
    con.close()
    assert ops.outbox_stats(pws).pending == 0  # a new connection works


# -- the CLI -------------------------------------------------------------------------------------------------
def test_ops_url_command_shows_sets_and_resets_without_the_password(ws: Workspace, pg_url: str) -> None:
    shown = json.loads(run_cli("ops", "url", "--json", workspace=ws.path, check=True).stdout)
    assert shown["backend"] == "sqlite" and shown["source"] == "default"
    url = with_password(pg_url, "t0p-secret")
    proc = run_cli("ops", "url", url, "--json", workspace=ws.path, check=True)
    data = json.loads(proc.stdout)
    assert "t0p-secret" not in proc.stdout + proc.stderr
    assert data["backend"] == "postgresql" and data["location"].startswith("postgresql://postgres:***@")
    assert data["events_home"] == data["workspace"]
    text = run_cli("ops", "url", workspace=ws.path, check=True).stdout
    assert text.startswith("postgresql: postgresql://postgres:***@") and "(this workspace)" in text
    for args, code, words in ((("mysql://u:pw@h/d",), 2, "not a PostgreSQL URL"),
                              ((url, "--sqlite"), 2, "not both"),
                              ((f"postgresql://u:t0p-secret@127.0.0.1:{_closed_port()}/d",), 2, "cannot connect")):
        proc = run_cli("ops", "url", *args, workspace=ws.path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
        assert "t0p-secret" not in proc.stderr and "pw@" not in proc.stderr and proc.stdout == ""
    assert json.loads(run_cli("ops", "url", "--json", workspace=ws.path, check=True).stdout)["backend"] == \
        "postgresql"  # the failed calls changed nothing
    reset = json.loads(run_cli("ops", "url", "--sqlite", "--json", workspace=ws.path, check=True).stdout)
    assert reset["backend"] == "sqlite" and not (ws.path / ops.OPS_URL_FILE).exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed as soon as the socket is


def test_errors_are_procestra_errors(pws: Workspace) -> None:
    """Anything the server rejects reaches callers as an OpsError (the CLI's exit 1), never a psycopg error."""
    with pytest.raises(ops.OpsError, match="failed") as info, ops.connect(pws) as con:
        con.execute("SELEC 1")
    assert isinstance(info.value, ProcestraError) and "syntax error" in str(info.value)
    assert os.environ.get(ops.OPS_URL_ENV) is None
