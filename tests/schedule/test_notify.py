"""Notifications through a real local HTTP server (webhook) and a real aiosmtpd server (email)."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from _schedule_helpers import raising, trivial
from procestra import InvalidArgumentError, Workspace
from procestra.schedule.executors import LocalExecutor
from procestra.schedule.jobs import add_job
from procestra.schedule.notify import Notify, send
from procestra.schedule.runs import list_runs
from procestra.schedule.scheduler import tick

T0 = datetime(2025, 1, 6, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204 if self.path == "/ok" else 500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


@pytest.fixture(scope="module")
def smtp():
    from aiosmtpd.controller import Controller

    messages: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy)))
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield f"127.0.0.1:{port}", messages
    controller.stop()


@pytest.fixture(scope="module")
def nbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("notify-nbs")
    return {"raising": raising(d / "raising.ipynb"), "trivial": trivial(d / "trivial.ipynb")}


def test_a_final_failure_is_announced_once_by_webhook_and_email_with_status_and_error(
        ws: Workspace, nbs: dict[str, Path], webhook, smtp) -> None:
    url, hooks = webhook
    server, mails = smtp
    hooks.clear()
    mails.clear()
    add_job(ws, "report", nbs["raising"], cron="0 6 * * *", start=T0, retries=1, retry_backoff=0,
            notify=Notify(webhook=f"{url}/ok", email=("analyst@example.com",), on="failure", smtp=server))
    ex = LocalExecutor(1)
    try:
        tick(ws, T0 + timedelta(hours=6, seconds=1), executor=ex)
    finally:
        ex.close()
    assert [r.status for r in list_runs(ws, job="report")] == ["failed", "failed"]
    assert len(hooks) == 1 and len(mails) == 1  # after the last attempt only
    hook = hooks[0]
    assert (hook["job"], hook["status"], hook["attempt"]) == ("report", "failed", 2)
    assert hook["error"] == {"cell": 3, "name": "ValueError", "value": "bad value 1"}
    assert hook["run"] == "report-20250106T060000Z-2" and hook["output"].endswith(".ipynb")
    rcpt, msg = mails[0]
    assert rcpt == ["analyst@example.com"]
    assert msg["Subject"] == "[procestra] job report failed (attempt 2) for 2025-01-06T06:00:00+00:00"
    body = msg.get_content()
    assert "error in cell 3: ValueError: bad value 1" in body and "status: failed" in body
    df = ws.to_pandas("jobs")
    sent = df[df["concept:name"] == "notify"]
    assert sorted(sent["org:resource"]) == ["email", "webhook"] and set(sent["outcome"]) == {"sent"}


def test_success_and_always_and_delivery_failures(ws: Workspace, nbs: dict[str, Path], webhook, smtp) -> None:
    url, hooks = webhook
    server, mails = smtp
    hooks.clear()
    mails.clear()
    add_job(ws, "quiet", nbs["trivial"], cron="0 6 * * *", start=T0, notify=Notify(webhook=f"{url}/ok"))
    add_job(ws, "cheer", nbs["trivial"], cron="0 6 * * *", start=T0,
            notify=Notify(email=("a@example.com", "b@example.com"), on="success", smtp=server))
    add_job(ws, "broken-hook", nbs["trivial"], cron="0 6 * * *", start=T0,
            notify=Notify(webhook=f"{url}/fail", on="always"))
    ex = LocalExecutor(2)
    try:
        tick(ws, T0 + timedelta(hours=6, seconds=1), executor=ex)
    finally:
        ex.close()
    assert {r.status for r in list_runs(ws)} == {"succeeded"}
    assert [m[0] for m in mails] == [["a@example.com", "b@example.com"]]
    assert "succeeded" in mails[0][1]["Subject"]
    assert [h["job"] for h in hooks] == ["broken-hook", "broken-hook"]  # a 500 is retried once, then given up
    df = ws.to_pandas("jobs")
    failed = df[(df["concept:name"] == "notify") & (df["outcome"] == "failed")]
    assert list(failed["error_value"]) == ["HTTP 500"]


def test_unreachable_servers_are_reported_not_raised() -> None:
    port = _free_port()
    payload = {"job": "j", "status": "failed", "attempt": 1, "scheduled_for": "x"}
    out = send(Notify(webhook=f"http://127.0.0.1:{port}/x", email=("a@example.com",), smtp=f"127.0.0.1:{port}"),
               payload)
    assert [(d.channel, d.ok) for d in out] == [("webhook", False), ("email", False)]
    assert "ConnectError" in out[0].error and "Connection refused" in out[1].error


@pytest.mark.parametrize("kwargs, match", [
    ({"webhook": "ftp://host/x"}, "not an http\\(s\\) URL"),
    ({"email": ("not-an-address",)}, "email address 'not-an-address'"),
    ({"on": "sometimes"}, "notify on 'sometimes'"),
    ({"smtp": "host"}, "use HOST:PORT"),
])
def test_bad_targets_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Notify(**kwargs)
