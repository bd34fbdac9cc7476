"""procestra.connectors against real parts: a local HTTP server, SQLite and PostgreSQL, subprocesses, a kernel.

The secret tests give each handler a secret and check that its value appears nowhere
we write: results, details, error messages, output notebooks.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import nbformat
import pytest

from engine_handlers import JsonApi, http_server
from procestra.engine.connectors import (
    Handler,
    Redactor,
    SecretError,
    Secrets,
    TaskContext,
    TaskError,
    TaskTimeoutError,
    check_handler,
    connectors,
    get_connector,
    http,
    idempotency_key,
    notebook,
    python,
    register,
    run_handler,
    shell,
    sql,
)
from procestra.errors import InvalidArgumentError

SECRET = "s3cr3t-Value-9f8e7d"
KEY = "case-1:task-a:1"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A directory with a ``.env`` holding the test secret."""
    (tmp_path / ".env").write_text(f"# test secrets\nAPI_TOKEN={SECRET}\nexport QUOTED='{SECRET}-q'\n"
                                   "SHORT=abc\n", encoding="utf-8")  # fmt: skip
    (tmp_path / "tmp").mkdir()
    return tmp_path


def no_secret(*values: Any) -> None:
    for v in values:
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        assert SECRET not in text, f"the secret leaked into {text[:200]}"


# -- handlers for the python connector (imported by path: test_connectors:...) ----------------------
def echo(ctx: TaskContext) -> dict[str, Any]:
    return {"key": ctx.idempotency_key, "attempt": ctx.attempt, "case": ctx.case_id, "inputs": dict(ctx.inputs),
            "amount": ctx.data.get("amount")}  # fmt: skip


def leaky(ctx: TaskContext) -> dict[str, Any]:
    token = ctx.secret("API_TOKEN")
    if ctx.attempt == 1:
        raise ConnectionError(f"bureau refused token {token}")
    return {"token": token, "nested": {"list": [f"Bearer {token}"]}}


def permanent(ctx: TaskContext) -> None:
    raise TaskError("applicant unknown", retryable=False)


def returns_list(ctx: TaskContext) -> list[int]:
    return [1, 2]


def returns_object(ctx: TaskContext) -> dict[str, Any]:
    return {"when": object()}


def reads_undeclared(ctx: TaskContext) -> dict[str, Any]:
    return {"x": ctx.secret("API_TOKEN")}


def run(handler: Handler, workspace: Path | None = None, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    return run_handler(handler, data=data if data is not None else {"amount": 120, "applicant": "A-1"},
                       idempotency_key=KEY, case_id="case-1", task_id="task-a", workspace=workspace, **kw)


# -- python ---------------------------------------------------------------------------------------
def test_python_handler_gets_context_and_returns_results(workspace):
    h = python("test_connectors:echo", inputs={"yearly": "amount * 12"})
    result = run(h, workspace, attempt=3)
    assert result.data == {"key": KEY, "attempt": 3, "case": "case-1", "inputs": {"yearly": 1440}, "amount": 120}
    assert result.seconds >= 0
    only = run(python("test_connectors:echo", outputs=["key"]), workspace)
    assert only.data == {"key": KEY}


def test_python_handler_failures_say_whether_a_retry_helps(workspace):
    with pytest.raises(TaskError) as info:
        run(python("test_connectors:permanent"), workspace)
    assert not info.value.retryable and "applicant unknown" in str(info.value) and "not retryable" in str(info.value)
    assert info.value.task == "task-a" and info.value.kind == "python" and info.value.attempt == 1
    for target, fragment in [("test_connectors:returns_list", "returned a list"),
                             ("test_connectors:returns_object", "not JSON data"),
                             ("no_such_module_xyz:f", "cannot import"), ("test_connectors:nope", "has no 'nope'"),
                             ("not a path", "must look like")]:  # fmt: skip
        with pytest.raises(TaskError, match=fragment) as info:
            run(Handler("python", {"target": target}), workspace)
        assert not info.value.retryable
    with pytest.raises(TaskError, match="lack the declared output") as info:
        run(python("test_connectors:echo", outputs=["score"]), workspace)
    assert not info.value.retryable
    with pytest.raises(TaskError, match="unknown variable 'nope'") as info:
        run(python("test_connectors:echo", inputs={"x": "nope + 1"}), workspace)
    assert not info.value.retryable


def test_secrets_are_redacted_from_results_and_errors(workspace):
    h = python("test_connectors:leaky", secrets=["API_TOKEN"])
    with pytest.raises(TaskError) as info:
        run(h, workspace, attempt=1)
    assert info.value.retryable  # a ConnectionError: worth retrying
    assert "[redacted:API_TOKEN]" in str(info.value)
    no_secret(str(info.value), info.value.reason, info.value.details, repr(info.value))
    result = run(h, workspace, attempt=2)
    assert result.data == {"token": "[redacted:API_TOKEN]", "nested": {"list": ["Bearer [redacted:API_TOKEN]"]}}
    no_secret(result.data, result.details)
    with pytest.raises(TaskError, match="not declared by this task's binding") as info:
        run(python("test_connectors:reads_undeclared"), workspace)
    assert not info.value.retryable


def test_secrets_come_from_the_environment_before_dotenv(workspace, monkeypatch):
    secrets = Secrets(workspace)
    assert secrets["API_TOKEN"] == SECRET and secrets["QUOTED"] == SECRET + "-q"
    monkeypatch.setenv("API_TOKEN", SECRET + "-env")
    assert Secrets(workspace)["API_TOKEN"] == SECRET + "-env"
    with pytest.raises(SecretError, match="'MISSING' is not set: define it in the environment or") as info:
        secrets["MISSING"]
    assert info.value.name == "MISSING"
    with pytest.raises(SecretError, match="too short"):
        secrets["SHORT"]
    assert SECRET not in repr(secrets) and secrets.get("MISSING") is None
    with pytest.raises(SecretError, match="not declared"):
        secrets.restricted(["OTHER"])["API_TOKEN"]


def test_redactor_covers_encodings():
    r = Redactor({"T": "p@ss w/rd&x"})
    assert r.redact("u=p%40ss%20w%2Frd%26x and p%40ss+w%2Frd%26x and p@ss w/rd&x") == (
        "u=[redacted:T] and [redacted:T] and [redacted:T]")
    assert r.redact({"k": ["p@ss w/rd&x", 3]}) == {"k": ["[redacted:T]", 3]}
    assert "p@ss" not in repr(r)


# -- http ------------------------------------------------------------------------------------------
class _Api(JsonApi):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.startswith("/score"):
            auth = self.headers.get("Authorization", "")
            self.reply(200, {"score": 710, "echo_auth": auth, "body": body})
        elif self.path.startswith("/flaky"):
            self.reply(503, {"error": f"overloaded, your token was {self.headers.get('Authorization')}"})
        elif self.path.startswith("/bad"):
            self.reply(422, {"error": "amount missing"})
        elif self.path.startswith("/slow"):
            time.sleep(1.5)
            self.reply(200, {})
        else:
            self.reply(404, {})

    do_PUT = do_POST

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": None})
        self.reply(200, [1, 2, 3])


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with http_server(_Api) as url:
        yield url


def test_http_request_with_templates_secret_header_and_idempotency_key(api, workspace):
    _Api.seen.clear()
    h = http("POST", api + "/score/{applicant}", json={"amount": "{amount}", "note": "for {applicant}", "n": 1},
             headers={"Authorization": "Bearer {secret:API_TOKEN}"}, outputs=["score", "echo_auth"])
    result = run(h, workspace, data={"amount": 120, "applicant": "A 1/x"})
    assert result.data == {"score": 710, "echo_auth": "Bearer [redacted:API_TOKEN]"}
    assert result.details == {"status": 200, "url": api + "/score/A%201%2Fx"}
    request = _Api.seen[-1]
    assert request["path"] == "/score/A%201%2Fx"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"  # the server did get it
    assert request["headers"]["Idempotency-Key"] == KEY
    assert request["body"] == {"amount": 120, "note": "for A 1/x", "n": 1}  # "{amount}" kept its type
    no_secret(result.data, result.details)
    listing = run(http("GET", api + "/list", outputs=["items"]), workspace)
    assert listing.data == {"items": [1, 2, 3]}


def test_http_errors_classify_retries_and_hide_secrets(api, workspace):
    auth = {"Authorization": "Bearer {secret:API_TOKEN}"}
    with pytest.raises(TaskError) as info:
        run(http("POST", api + "/flaky", headers=auth), workspace)
    assert info.value.retryable and "503" in str(info.value) and info.value.details["status"] == 503
    no_secret(str(info.value), info.value.details)
    with pytest.raises(TaskError) as info:
        run(http("POST", api + "/bad", headers=auth), workspace)
    assert not info.value.retryable and "422" in str(info.value) and "amount missing" in str(info.value)
    with pytest.raises(TaskTimeoutError) as info:
        run(http("POST", api + "/slow", timeout=0.3), workspace)
    assert info.value.retryable and "timed out" in str(info.value)
    with pytest.raises(TaskError) as info:
        run(http("POST", "http://127.0.0.1:9/nothing"), workspace)
    assert info.value.retryable and "ConnectError" in str(info.value)
    with pytest.raises(TaskError, match="never in URLs"):
        run(http("POST", api + "/score?token={secret:API_TOKEN}"), workspace)
    with pytest.raises(TaskError, match="neither an input nor case data"):
        run(http("POST", api + "/score/{nobody}"), workspace)


# -- sql ------------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_db(workspace: Path) -> Path:
    path = workspace / "loans.db"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE customers (applicant TEXT PRIMARY KEY, segment TEXT, limit_eur INTEGER);"
                      "INSERT INTO customers VALUES ('A-1', 'retail', 15000), ('A-2', 'private', 90000);"
                      "CREATE TABLE effects (key TEXT PRIMARY KEY, applicant TEXT);")  # fmt: skip
    con.commit()
    con.close()
    with open(workspace / ".env", "a", encoding="utf-8") as fh:
        fh.write("LOANS_DB=sqlite:///loans.db\n")
    return path


def test_sqlite_query_binds_parameters(workspace, sqlite_db):
    h = sql("LOANS_DB", "SELECT segment, limit_eur FROM customers WHERE applicant = :who", params={"who": "applicant"})
    assert run(h, workspace).data == {"segment": "retail", "limit_eur": 15000}
    assert run(h, workspace, data={"applicant": "nobody"}).data == {"segment": None, "limit_eur": None}
    rows = sql("LOANS_DB", "SELECT applicant FROM customers WHERE limit_eur > :amount ORDER BY 1", fetch="all",
               outputs=["rich"])
    assert run(rows, workspace, data={"amount": 10}).data == {"rich": [{"applicant": "A-1"}, {"applicant": "A-2"}]}
    insert = sql("LOANS_DB", "INSERT OR IGNORE INTO effects VALUES (:idempotency_key, :applicant)", fetch="none")
    assert run(insert, workspace).data == {"rowcount": 1}
    assert run(insert, workspace, attempt=2).data == {"rowcount": 0}  # the retry is deduplicated by its key
    assert sqlite3.connect(sqlite_db).execute("SELECT count(*) FROM effects").fetchone() == (1,)
    injection = {"applicant": "x' OR '1'='1"}
    assert run(h, workspace, data=injection).data == {"segment": None, "limit_eur": None}


def test_sql_errors(workspace, sqlite_db):
    with pytest.raises(TaskError, match="syntax error") as info:
        run(sql("LOANS_DB", "SELEC nonsense"), workspace)
    assert not info.value.retryable
    with pytest.raises(TaskError, match="'NO_DB' is not set") as info:
        run(sql("NO_DB", "SELECT 1"), workspace)
    assert not info.value.retryable
    with open(workspace / ".env", "a", encoding="utf-8") as fh:
        fh.write("ODD_DB=mysql://x\n")
    with pytest.raises(TaskError, match="must start with sqlite:/// or postgresql://"):
        run(sql("ODD_DB", "SELECT 1"), workspace)
    assert check_handler(sql("not a secret name", "", fetch="some")) == [
        "the SQL connection must be the name of a secret holding the database URL, not 'not a secret name'",
        "the SQL query is empty", "fetch must be 'one', 'all' or 'none', not 'some'"]


def test_postgresql_query(workspace, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS pg_effects")
        con.execute("CREATE TABLE pg_effects (key TEXT PRIMARY KEY, amount NUMERIC)")
    with open(workspace / ".env", "a", encoding="utf-8") as fh:
        fh.write(f"PG_URL={postgres_url}\n")
    insert = sql("PG_URL", "INSERT INTO pg_effects VALUES (:idempotency_key, :amount) ON CONFLICT DO NOTHING",
                 fetch="none")
    assert run(insert, workspace).data == {"rowcount": 1}
    assert run(insert, workspace, attempt=2).data == {"rowcount": 0}
    query = sql("PG_URL", "SELECT key, amount::int AS amount, '100%' AS pct FROM pg_effects "
                          "WHERE key = :idempotency_key")
    assert run(query, workspace).data == {"key": KEY, "amount": 120, "pct": "100%"}
    with pytest.raises(TaskError, match="PostgreSQL") as info:
        run(sql("PG_URL", "SELECT * FROM no_such_table"), workspace)
    assert not info.value.retryable
    no_secret(str(info.value))


# -- shell ----------------------------------------------------------------------------------------
PY = sys.executable


def test_shell_runs_argv_without_a_shell(workspace):
    script = ("import json, os, sys; print(json.dumps({'args': sys.argv[1:], "
              "'key': os.environ['PROCESTRA_IDEMPOTENCY_KEY'], 'token': os.environ['TOKEN']}))")
    h = shell([PY, "-c", script, "{applicant}", "$(touch pwned); `id`"], env={"TOKEN": "{secret:API_TOKEN}"},
              outputs=["args", "key", "token"])
    result = run(h, workspace, data={"applicant": "A 1; rm -rf /"})
    assert result.data["args"] == ["A 1; rm -rf /", "$(touch pwned); `id`"]
    assert result.data["key"] == KEY and result.data["token"] == "[redacted:API_TOKEN]"
    assert result.details == {"returncode": 0}
    assert not (workspace / "pwned").exists()
    text = run(shell([PY, "-c", "print('hello')"], outputs=["greeting"], stdout="text"), workspace)
    assert text.data == {"greeting": "hello"}


def test_shell_failures_and_timeouts(workspace):
    with pytest.raises(TaskError) as info:
        run(shell([PY, "-c", "import os, sys; sys.stderr.write('bad token ' + os.environ['T']); sys.exit(3)"],
                  env={"T": "{secret:API_TOKEN}"}), workspace)
    assert info.value.retryable and "exited with code 3" in str(info.value) and info.value.details["returncode"] == 3
    no_secret(str(info.value))
    pid_file = workspace / "child.pid"
    started = time.monotonic()
    sleeper = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    with pytest.raises(TaskTimeoutError) as info:
        run(shell([PY, "-c", sleeper], timeout=1), workspace)
    assert time.monotonic() - started < 20 and info.value.retryable and "was killed" in str(info.value)
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    with pytest.raises(TaskError, match="printed no JSON") as info:
        run(shell([PY, "-c", "print('not json')"], outputs=["x"]), workspace)
    assert not info.value.retryable
    with pytest.raises(TaskError, match="cannot start"):
        run(shell(["/no/such/program"]), workspace)
    with pytest.raises(InvalidArgumentError, match="not a command string"):
        shell("rm -rf /")  # type: ignore[arg-type]
    assert check_handler(shell([PY, "{secret:API_TOKEN}"])) == [
        "argv may not use {secret:API_TOKEN}: secrets go in headers, the JSON body or env, never in URLs or argv"]


# -- notebook -------------------------------------------------------------------------------------
def make_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("amount = 0\ncredit_score = 0\nidempotency_key = ''")
    params.metadata["tags"] = ["parameters"]
    tagged = nbformat.v4.new_code_cell("import json\nprint(json.dumps({'from_tag': amount + 1}))")
    tagged.metadata["tags"] = ["results"]
    nb.cells = [params, nbformat.v4.new_code_cell(body), tagged]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_notebook_runs_in_a_kernel_and_results_come_back_without_secrets(workspace):
    make_notebook(workspace / "score.ipynb",
                  "import os\nfrom procestra.engine.connectors import record_results\ntoken = os.environ['API_TOKEN']\n"
                  "print('using', token)\nrecord_results(risk=round(amount / (credit_score or 1), 3), "
                  "key=idempotency_key, case=os.environ['PROCESTRA_CASE_ID'], leak=token)")  # fmt: skip
    h = notebook("score.ipynb", parameters={"amount": "amount", "credit_score": "score"}, secrets=["API_TOKEN"])
    out = workspace / "runs" / "case-1"
    result = run(h, workspace, data={"amount": 120, "score": 600}, output_dir=out)
    assert result.data == {"risk": 0.2, "key": KEY, "case": "case-1", "leak": "[redacted:API_TOKEN]", "from_tag": 121}
    saved = Path(result.details["notebook"])
    assert saved == out / "task-a-1-1.ipynb" and saved.is_file()
    text = saved.read_text(encoding="utf-8")
    assert "using [redacted:API_TOKEN]" in text
    no_secret(text, result.data, result.details)
    leftovers = [p for p in (workspace / "tmp").rglob("*") if p.is_file()]
    assert not leftovers, leftovers


def test_notebook_failure_names_the_cell_and_keeps_no_secret(workspace):
    make_notebook(workspace / "fails.ipynb", f"raise ValueError('bureau said no to {SECRET}')")
    h = notebook("fails.ipynb", parameters=["amount"], secrets=["API_TOKEN"])
    with pytest.raises(TaskError) as info:
        run(h, workspace, output_dir=workspace / "out")
    err = info.value
    assert "raised ValueError" in str(err) and "[redacted:API_TOKEN]" in str(err) and err.details["cell"]
    assert err.retryable
    no_secret(str(err), err.details, (workspace / "out" / "task-a-1-1.ipynb").read_text())
    with pytest.raises(TaskError, match="does not exist") as info:
        run(notebook("missing.ipynb"), workspace)
    assert not info.value.retryable


# -- registry -------------------------------------------------------------------------------------
def test_registry_and_handler_checks(workspace):
    assert {"python", "notebook", "http", "sql", "shell"} <= set(connectors())
    register("upper", lambda ctx, config: {"shout": str(ctx.data["word"]).upper() + config.get("suffix", "")},
             replace=True)
    assert run(Handler("upper", {"suffix": "!"}), workspace, data={"word": "hi"}).data == {"shout": "HI!"}
    with pytest.raises(InvalidArgumentError, match="already registered"):
        register("upper", lambda ctx, config: None)
    with pytest.raises(InvalidArgumentError, match="no connector 'nope'"):
        get_connector("nope")
    assert check_handler(Handler("nope")) == [
        f"no connector 'nope' is registered (known: {', '.join(connectors())})"]
    assert check_handler(http("FETCH", "ftp://x")) == [
        "HTTP method 'FETCH' must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
        "URL 'ftp://x' must start with http:// or https://"]
    assert check_handler(python("m:f", inputs={"x": "amount >"}))[0].startswith("input 'x' 'amount >'")
    with pytest.raises(InvalidArgumentError, match="idempotency_key"):
        run_handler(python("m:f"), data={}, idempotency_key="")
    with pytest.raises(InvalidArgumentError, match="not a valid input or output name"):
        python("m:f", outputs=["bad name"])
    with pytest.raises(InvalidArgumentError, match="plain JSON"):
        Handler("python", {"target": object()})


def test_handler_round_trips_and_lists_what_it_uses():
    h = http("POST", "https://x/{applicant}", json={"a": "{amount}"}, headers={"A": "{secret:TOKEN}"},
             inputs={"amount": "loan.amount"}, outputs=["score"], timeout=5)
    assert Handler.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    assert h.secret_names() == ("TOKEN",)
    assert h.variables() == {"applicant", "loan"}
    assert sql("DB", "SELECT 1").secret_names() == ("DB",)
    assert sql("DB", "SELECT x::int FROM t WHERE a = :who AND k = :idempotency_key", params={"who": "applicant"},
               ).variables() == {"applicant"}  # fmt: skip
    assert sql("DB", "SELECT 1 WHERE :amount > 0").variables() == {"amount"}
    assert idempotency_key("c", "t", 1) == idempotency_key("c", "t", 1) != idempotency_key("c", "t", 2)
