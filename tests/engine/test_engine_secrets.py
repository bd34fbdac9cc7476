"""Secrets through the engine: HTTP, SQL and shell tasks run by a real worker leave no secret value behind.

README says task secrets "are redacted everywhere"; ``test_connectors.py`` checks that for
``run_handler`` alone. Here a to-be model runs through :func:`engine.start_case` and the real
``procestra worker`` command (a subprocess, logging at DEBUG into a file of the workspace):

- an HTTP task sends a secret in a header and in its JSON body to a local server, which first
  answers 503 quoting it (a retry whose error holds it), then echoes it (the output holds it);
- an SQL task reads a SQLite database whose URL is a second secret and returns the first secret
  stored there; a second SQL query fails with SQLite quoting it (an error boundary catches it);
- a shell task gets both secrets in its environment and prints them as its output; after a timer
  (so that a snapshot holding the outputs is stored), another fails, writing a secret to stderr,
  which fails the case.

Then neither secret, in any form the redactor promises to catch (plain, URL-quoted, JSON-escaped,
base64; computed here with the standard library), appears in any column of any table of the
operational store, in any byte of any file of the workspace (``ops.sqlite`` and its WAL, the
DuckDB store, the worker's log), or in any column of the run events in ``runs:<model>`` and the
other DuckDB tables. The marks ``[redacted:NAME]`` stand where the values were, so the secrets did
reach the handlers, and the server and the shell did receive the real values.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

from engine_handlers import JsonApi, assert_closed_loop, http_server, subprocess_env
from procestra import Workspace, engine
from procestra.engine.connectors import http, shell, sql
from procestra.engine.tobe import Retry, ToBeModel
from procestra.store import ops

#: The API token: a slash, a plus and a quote make its URL-quoted and JSON-escaped forms differ from it.
TOKEN = 'tok/9f3e+"Zq7w-engine'
MODEL = "vault"
PY = sys.executable
MARK = "[redacted:API_TOKEN]"


# -- a local HTTP server: 503 quoting the token on an idempotency key's first call, then an echo ----------
class _Bureau(JsonApi):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
        auth, key = self.headers.get("Authorization", ""), self.headers.get("Idempotency-Key")
        first = all(s["key"] != key for s in self.seen)
        self.seen.append({"key": key, "auth": auth, "body": body})
        if first:
            self.reply(503, {"error": f"overloaded, retry later; caller {auth}"})
        else:
            self.reply(200, {"echo": {"auth": auth, "body": body}})


@pytest.fixture
def bureau() -> Iterator[str]:
    _Bureau.seen.clear()
    with http_server(_Bureau) as url:
        yield url


def vault_model(api: str) -> ToBeModel:
    """Call bureau (HTTP, retried) -> Read vault (SQL) -> Check vault (SQL error) ~> Run script (shell)
    -> Pause (PT1S timer) -> Fail loudly (shell, fails the case)."""
    m = ToBeModel(MODEL)
    m.declare("applicant", "string", required=True)
    start = m.add_event("start", id="StartEvent_1")
    call = m.add_task("Call bureau", id="Activity_bureau", after=start)
    m.bind(call, http("POST", api + "/bureau/{applicant}", headers={"Authorization": "Bearer {secret:API_TOKEN}"},
                      json={"token": "{secret:API_TOKEN}", "applicant": "{applicant}"}, outputs=["echo"]),
           retry=Retry(max_attempts=2, initial=0.1))
    read = m.add_task("Read vault", id="Activity_read_vault", after=call)
    # the binding declares API_TOKEN: the SQL connector cannot know that a value it reads is a secret
    m.bind(read, dataclasses.replace(sql("VAULT_DB", "SELECT token AS vault_token FROM vault"),
                                     secrets=("API_TOKEN",)))
    check = m.add_task("Check vault", id="Activity_check_vault", after=read)
    m.bind(check, dataclasses.replace(sql("VAULT_DB", "SELECT json_extract('{}', token) AS path FROM vault"),
                                      secrets=("API_TOKEN",)))
    pause = m.add_event("timer", name="Pause", id="Event_pause", timer="PT1S", after=check)
    script = m.add_task("Run script", id="Activity_run_script")
    m.bind(script, shell([PY, "-c", "import json, os; print(json.dumps({'token': os.environ['T'], "
                                    "'db': os.environ['D']}))"],
                         env={"T": "{secret:API_TOKEN}", "D": "{secret:VAULT_DB}"}, outputs=["token", "db"]))
    m.on_error(check, script, then=pause, name="Vault unreadable")
    fail = m.add_task("Fail loudly", id="Activity_fail_loudly", after=pause)
    m.bind(fail, shell([PY, "-c", "import os, sys; sys.stderr.write('refused ' + os.environ['T']); sys.exit(3)"],
                       env={"T": "{secret:API_TOKEN}"}))
    m.add_event("end", id="EndEvent_1", after=fail)
    return m


def forms(value: str) -> set[str]:
    """``value`` as the redactor promises to catch it (connectors' docstring): plain, URL-quoted,
    JSON-escaped and base64, made here with the standard library."""
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1],
            base64.b64encode(value.encode()).decode().rstrip("=")}


def leaks(secrets: list[str], where: str, content: str | bytes) -> list[str]:
    """``where`` once per form of a secret found in ``content``."""
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    return [f"{where}: {form!r}" for s in secrets for form in forms(s) if form.encode("utf-8") in data]


def rows_text(con: Any, tables: list[str]) -> dict[str, str]:
    """Every row of every table in ``tables``, all columns, as text, by table."""
    return {t: "\n".join(repr(tuple(r)) for r in con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


def test_http_sql_and_shell_secrets_are_nowhere_in_the_store_events_or_logs(
        ws: Workspace, tmp_path: Path, bureau: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vault = tmp_path / "vault.db"  # outside the workspace: it holds the token
    with sqlite3.connect(vault) as con:
        con.execute("CREATE TABLE vault (token TEXT)")
        con.execute("INSERT INTO vault VALUES (?)", (TOKEN,))
    con.close()
    db_url = f"sqlite:///{vault}"
    secrets = [TOKEN, db_url]
    monkeypatch.setenv("API_TOKEN", TOKEN)  # from the environment: no file of the workspace holds them
    monkeypatch.setenv("VAULT_DB", db_url)
    vault_model(bureau).save(ws)
    case = engine.start_case(ws, MODEL, {"applicant": "A 1"})

    log = ws.path / "logs" / "worker.log"
    log.parent.mkdir()
    script = ("import logging, sys\nlogging.basicConfig(level=logging.DEBUG, filename=sys.argv[1], "
              "format='%(asctime)s %(name)s %(levelname)s %(message)s')\nfrom procestra.cli.main import run\n"
              "run(['-w', sys.argv[2], 'worker', '--until-idle', '--concurrency', '4'])")
    with open(log.with_suffix(".out"), "wb") as out:
        proc = subprocess.run([PY, "-c", script, str(log), str(ws.path)], env=subprocess_env(), stdout=out,
                              stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == 0, log.with_suffix(".out").read_text()[-3000:]
    assert "DEBUG" in log.read_text() and "1 failed" in log.with_suffix(".out").read_text()

    # the case ran as drawn, and failed in its last task
    info = engine.get_case(ws, case)
    assert info.status == "failed"
    steps = engine.case_history(ws, case)
    assert [(s.kind, s.element, s.attempt, s.outcome) for s in steps] == [
        ("retry", "Activity_bureau", 1, "failed"), ("service", "Activity_bureau", 2, "completed"),
        ("service", "Activity_read_vault", 1, "completed"), ("error", "Activity_check_vault", 1, "error"),
        ("service", "Activity_run_script", 1, "completed"), ("timer", "Event_pause", 1, "fired"),
        ("service", "Activity_fail_loudly", 1, "failed"), ("fail", None, 1, "failed")]
    assert ops.outbox_stats(ws).pending == 0  # the worker flushed the run events at its end

    # no secret in any form: the operational store's tables (every column) and files, the event
    # store's tables (every column), the run events, the worker's log: every file of the workspace
    found: list[str] = []
    with sqlite3.connect(ops.ops_path(ws)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"cases", "steps", "outbox"} <= set(tables)
        for table, text in rows_text(con, tables).items():
            found += leaks(secrets, f"ops table {table}", text)
    con.close()
    events = ws.to_pandas(engine.runs_log(MODEL))
    assert len(events) == 2 * 8  # a start and a complete per named step: all but the end
    assert_closed_loop(ws, MODEL)
    found += leaks(secrets, "runs:vault", events.astype(str).to_csv())
    with duckdb.connect(str(ws.store.path), read_only=True) as duck:
        names = [f'"{s}"."{t}"' for s, t in duck.execute(
            "SELECT table_schema, table_name FROM information_schema.tables").fetchall()]
        for table, text in rows_text(duck, names).items():
            found += leaks(secrets, f"DuckDB table {table}", text)
    files = [p for p in ws.path.rglob("*") if p.is_file()]
    assert {"ops.sqlite", "events.duckdb", "worker.log"} <= {p.name for p in files}
    for path in files:
        found += leaks(secrets, f"file {path.relative_to(ws.path)}", path.read_bytes())
    assert found == [], f"secret values stored: {found}"

    # the marks stand where the values were: the handlers got the secrets, and the parts outside the real ones
    assert [(s["auth"], s["body"]["token"]) for s in _Bureau.seen] == [(f"Bearer {TOKEN}", TOKEN)] * 2
    retry, called, read, error, script_step, _, failed, fail = steps
    assert f"caller Bearer {MARK}" in retry.error
    assert called.data == {"echo": {"auth": f"Bearer {MARK}", "body": {"token": MARK, "applicant": "A 1"}}}
    assert read.data == {"vault_token": MARK}
    assert f"JSON path error near '{MARK}'" in error.error and error.data["message"] == error.error
    assert script_step.data == {"token": MARK, "db": "[redacted:VAULT_DB]"}
    assert failed.error.endswith(f"exited with code 3: refused {MARK}")
    assert fail.error == info.error and info.error.endswith(f"refused {MARK}")
    assert {k: info.data[k] for k in ("echo", "vault_token", "token", "db")} == {
        "echo": called.data["echo"], "vault_token": MARK, "token": MARK, "db": "[redacted:VAULT_DB]"}
    errors = events.loc[events["error"].notna(), ["concept:name", "error"]].drop_duplicates()
    assert sorted(errors["concept:name"]) == ["Call bureau", "Case failed", "Check vault", "Fail loudly"]
    assert all(MARK in e for e in errors["error"])
