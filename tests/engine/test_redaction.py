"""Redaction that holds (issue 14, finding 3): a secret leaves no trace in any form, anywhere.

The secret holds quotes, a backslash, a slash, a plus and an ampersand, so that each of its
encodings differs from it. The forms are computed here with the standard library, apart from
the engine: the raw value, its repr and JSON escapes (to three levels), URL encodings, hex,
and base64 (standard and URL-safe) at byte offsets 0, 1 and 2 of a longer string, as in an HTTP
Basic header ``user:secret`` with a short user name; and every 8 characters of the raw value
(what survives when a text is cut across a secret).

:func:`test_every_form_of_a_secret_is_nowhere_a_worker_writes` runs Python handlers that return,
print and raise those forms, and shell commands that print them as JSON and text, fail quoting
them on stderr (cut at 500 characters) and print them as bad JSON (cut at 200), through a real
``procestra worker`` in a subprocess; then it scans every byte of the workspace (``ops.sqlite``,
``events.duckdb``, ``runs/``), every text column of both stores, and the worker's stdout and stderr.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import sqlite3
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path
from typing import Any

import duckdb
import pytest

from engine_handlers import subprocess_env
from procestra import Workspace, engine
from procestra.engine.connectors import Secrets, python, run_handler, shell
from procestra.engine.exceptions import TaskError
from procestra.engine.redaction import RedactingStream, Redactor
from procestra.engine.tobe import ToBeModel
from procestra.store import ops

SECRET = "Zq7\"w\\k'9f/3e+T&ok=5"
MARK = "[redacted:API_TOKEN]"
PY = sys.executable

#: The handlers the worker runs: ``planted`` makes every form of the secret a handler could let out.
HANDLERS = textwrap.dedent('''
    import base64, json, logging, sys, urllib.parse

    def planted(secret):
        raw = secret.encode()
        out = [secret, repr(secret), json.dumps(secret), urllib.parse.quote(secret, safe=""),
               urllib.parse.quote(secret), urllib.parse.quote_plus(secret), raw.hex(), raw.hex().upper(),
               "user:" + secret, "https://user:" + urllib.parse.quote(secret, safe="") + "@example.com/",
               "Authorization: Basic " + base64.b64encode(b"ab:" + raw).decode()]
        for prefix in (b"", b"u", b"us", b"usr"):
            out += [base64.b64encode(prefix + raw + b"!").decode(), base64.urlsafe_b64encode(prefix + raw).decode()]
        return out

    def returns(ctx):
        return {"planted": planted(ctx.secret("API_TOKEN"))}

    def prints(ctx):
        secret = ctx.secret("API_TOKEN")
        forms = planted(secret)
        print(*forms, sep="\\n")
        print(forms)
        sys.stderr.write(repr(forms) + "\\n")
        sys.stdout.write(secret[:7])  # one secret cut between two writes
        sys.stdout.write(secret[7:] + "\\n")
        log = logging.getLogger("leaky")
        log.warning("token %s", secret)
        try:
            raise ValueError(forms)
        except ValueError:
            log.exception("the call failed")
        return None

    def raises(ctx):
        raise ValueError(planted(ctx.secret("API_TOKEN")))
''')


# -- the forms, made apart from the engine ----------------------------------------------------------------
def _escaped(value: str, levels: int = 3) -> set[str]:
    out = {value}
    for _ in range(levels):
        out |= {e for v in out for e in (repr(v)[1:-1], json.dumps(v)[1:-1])}
    return out


def _base64(raw: bytes) -> set[str]:
    """The base64 characters that depend on ``raw`` alone, at offsets 0-2, standard and URL-safe."""
    out = set()
    for k in range(3):
        enc = base64.b64encode(b"\xff" * k + raw + b"\xff").decode()
        frag = enc[-(-8 * k // 6):8 * (k + len(raw)) // 6]
        out |= {frag, frag.replace("+", "-").replace("/", "_")}
    return out


def forms(secret: str) -> set[str]:
    """Every form of ``secret`` that must not be stored or printed."""
    raw = secret.encode()
    out = _escaped(secret)
    out |= {f(secret) for f in (urllib.parse.quote, urllib.parse.quote_plus,
                                lambda s: urllib.parse.quote(s, safe=""))}  # fmt: skip
    out |= {raw.hex(), raw.hex().upper()} | _base64(raw)
    out |= {secret[i:i + 8] for i in range(len(secret) - 7)}  # what a cut leaves of it
    return out


def leaks(where: str, content: str | bytes) -> list[str]:
    """``where`` with each form of the secret found in ``content``."""
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    return [f"{where}: {f!r}" for f in sorted(forms(SECRET)) if f.encode("utf-8") in data]


def planted(secret: str) -> list[str]:
    namespace: dict[str, Any] = {}
    exec(HANDLERS, namespace)  # the handlers' own source, run here as the worker runs it
    return list(namespace["planted"](secret))


# -- the redactor itself ------------------------------------------------------------------------------
def test_the_redactor_replaces_every_encoding_of_a_secret() -> None:
    r = Redactor({"API_TOKEN": SECRET})
    for text in planted(SECRET) + [repr(planted(SECRET)), json.dumps(planted(SECRET)), repr(repr(SECRET))]:
        out = r.redact(text)
        assert leaks("redacted", out) == [], (text, out)
        assert MARK in out, text
    assert r.redact("nothing secret here") == "nothing secret here"


def test_secrets_make_one_redactor_per_set_of_values() -> None:
    secrets = Secrets(environ={"API_TOKEN": SECRET, "OTHER": "o" * 8})
    assert secrets.redactor(["API_TOKEN"]) is secrets.restricted(["API_TOKEN"]).redactor(["API_TOKEN"])
    assert not secrets.redactor(["MISSING"]) and not secrets.redactor()


def test_a_stream_redacts_a_secret_cut_between_writes() -> None:
    target = io.StringIO()
    stream = RedactingStream(target, Redactor({"API_TOKEN": SECRET}))
    for part in ("a line\nthen ", SECRET[:5], SECRET[5:] + "\nand " + SECRET[:3], SECRET[3:], " end"):
        stream.write(part)
    stream.flush(final=True)
    assert target.getvalue() == f"a line\nthen {MARK}\nand {MARK} end"


def test_a_stream_writes_what_redacting_the_whole_text_gives_however_it_is_split() -> None:
    r = Redactor({"API_TOKEN": SECRET})
    rng = random.Random(14)
    pieces = ["ab\n", SECRET, repr(SECRET), "x", "\n", SECRET[:5], SECRET[5:], "zz"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(20))
        target = io.StringIO()
        stream = RedactingStream(target, r)
        i = 0
        while i < len(text):
            j = i + rng.randint(1, 15)
            stream.write(text[i:j])
            i = j
        stream.flush(final=True)
        assert target.getvalue() == r.redact(text), text


# -- truncation after redaction -----------------------------------------------------------------------
@pytest.mark.parametrize(("code", "stdout"), [
    ("import os, sys; sys.stderr.write(os.environ['T'] + 'x' * 490); sys.exit(3)", None),
    ("import os; print('y' * 190 + os.environ['T'])", "json"),
])  # fmt: skip
def test_shell_output_is_redacted_before_it_is_cut(code: str, stdout: str | None) -> None:
    h = shell([PY, "-c", code], env={"T": "{secret:API_TOKEN}"}, stdout=stdout)
    with pytest.raises(TaskError) as caught:
        run_handler(h, data={}, idempotency_key="k1", secrets=Secrets(environ={"API_TOKEN": SECRET}))
    assert leaks("error", str(caught.value)) == []
    message = str(caught.value)
    assert "[redacted:" in message or "API_TOKEN]" in message  # what the cut leaves of the mark


# -- a Python handler's prints ----------------------------------------------------------------------------
def test_what_a_python_handler_prints_reaches_the_streams_redacted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "leaky_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    h = python("leaky_handlers:prints", secrets=["API_TOKEN"])
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    logging.getLogger().addHandler(handler)
    try:
        run_handler(h, data={}, idempotency_key="k1", secrets=Secrets(environ={"API_TOKEN": SECRET}))
    finally:
        logging.getLogger().removeHandler(handler)
    out, err = capsys.readouterr()
    assert leaks("stdout", out) == [] and leaks("stderr", err) == [] and leaks("log", logged.getvalue()) == []
    assert out.count(MARK) >= len(planted(SECRET)) and MARK in err
    assert f"token {MARK}" in logged.getvalue() and "Traceback" in logged.getvalue()
    assert not handler.filters  # the log is redacted only while the handler runs


# -- the whole system -----------------------------------------------------------------------------------
def _one_task_model(name: str, handler: Any) -> ToBeModel:
    m = ToBeModel(name)
    start = m.add_event("start", id="StartEvent_1")
    task = m.add_task("Leak", id="Activity_leak", after=start)
    m.bind(task, handler)
    m.add_event("end", id="EndEvent_1", after=task)
    return m


def _rows_text(con: Any, tables: list[str]) -> dict[str, str]:
    return {t: "\n".join(repr(tuple(r)) for r in con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


def test_every_form_of_a_secret_is_nowhere_a_worker_writes(
        ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mods = tmp_path / "mods"  # outside the workspace: the handlers' source
    mods.mkdir()
    (mods / "leaky_handlers.py").write_text(HANDLERS)
    monkeypatch.setenv("API_TOKEN", SECRET)
    token = {"T": "{secret:API_TOKEN}"}
    emit = "import os, json, leaky_handlers as h; forms = h.planted(os.environ['T']); "
    cases = {
        "returns": (python("leaky_handlers:returns", outputs=["planted"], secrets=["API_TOKEN"]), "completed"),
        "prints": (python("leaky_handlers:prints", secrets=["API_TOKEN"]), "completed"),
        "raises": (python("leaky_handlers:raises", secrets=["API_TOKEN"]), "failed"),
        "shell_json": (shell([PY, "-c", emit + "print(json.dumps({'planted': forms}))"], env=token,
                             outputs=["planted"]), "completed"),
        "shell_text": (shell([PY, "-c", emit + "print('\\n'.join(forms))"], env=token, outputs=["text"],
                             stdout="text"), "completed"),
        "shell_fails": (shell([PY, "-c", emit + "import sys; sys.stderr.write('\\n'.join(forms) + '\\n' + "
                               "os.environ['T'] + 'x' * 490); sys.exit(3)"], env=token), "failed"),
        "shell_bad_json": (shell([PY, "-c", "import os; print('y' * 190 + os.environ['T'])"], env=token,
                                 stdout="json"), "failed"),
    }
    started = {}
    for name, (handler, _) in cases.items():
        _one_task_model(name, handler).save(ws)
        started[name] = engine.start_case(ws, name, {})

    env = subprocess_env()
    env["PYTHONPATH"] = f"{mods}:{env['PYTHONPATH']}"
    out_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.run([PY, "-c", "import sys; from procestra.cli.main import run; "
                               "run(['-w', sys.argv[1], 'worker', '--until-idle'])", str(ws.path)],
                              env=env, stdout=out, stderr=err, timeout=300)  # fmt: skip
    worker_out, worker_err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, worker_err[-3000:]

    # each case ran its handler, which had the secret: the marks stand where it was
    for name, (_, outcome) in cases.items():
        steps = engine.case_history(ws, started[name])
        assert [(s.element, s.outcome) for s in steps if s.kind == "service"] == [("Activity_leak", outcome)], name
    info = {name: engine.get_case(ws, case) for name, case in started.items()}
    assert info["returns"].data["planted"][0] == MARK and info["shell_json"].data["planted"][0] == MARK
    assert MARK in info["raises"].error and MARK in info["shell_text"].data["text"]
    assert MARK in worker_out and MARK in worker_err  # the prints reached the worker's streams, redacted
    assert ops.outbox_stats(ws).pending == 0  # the run events are in the event store

    found = leaks("worker stdout", worker_out) + leaks("worker stderr", worker_err)
    with sqlite3.connect(ops.ops_path(ws)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"cases", "steps", "outbox"} <= set(tables)
        for table, text in _rows_text(con, tables).items():
            found += leaks(f"ops table {table}", text)
    con.close()
    with duckdb.connect(str(ws.store.path), read_only=True) as duck:
        names = [f'"{s}"."{t}"' for s, t in duck.execute(
            "SELECT table_schema, table_name FROM information_schema.tables").fetchall()]
        assert any("runs" in n for n in names) or names
        for table, text in _rows_text(duck, names).items():
            found += leaks(f"DuckDB table {table}", text)
    for model in cases:
        found += leaks(f"runs:{model}", ws.to_pandas(engine.runs_log(model)).astype(str).to_csv())
    files = [p for p in ws.path.rglob("*") if p.is_file()]
    assert {"ops.sqlite", "events.duckdb"} <= {p.name for p in files}
    for path in files:  # every byte: ops.sqlite and its WAL, events.duckdb, runs/
        found += leaks(f"file {path.relative_to(ws.path)}", path.read_bytes())
    assert found == [], f"the secret got out: {found}"
