"""Crash test for waits inside constructs: workers SIGKILLed while cases wait for messages inside an
embedded subprocess, run a call activity, and race a message against a timer at an event-based gateway.

Cases of two models run on two worker processes that are killed with SIGKILL at random moments
(``$PROCESTRA_EVENTS_CRASH_KILLS`` times, default 12) and started again, while a sender process
sends each waiting case its message once (:func:`engine.send_message`, correlated by case data):

- ``settle``: Register (a handler) -> embedded subprocess [message "Payment received" -> Book] ->
  call activity of ``notify@1`` [Notify] -> end;
- ``race`` (``cases/race.bpmn``): Make offer -> event-based gateway: message "Offer accepted" (sent
  to the "M" offers, whose patience is an hour) | timer ``patience`` (PT1S for the "T" offers) |
  signal (never sent);
- ``batch``: a sequential multi-instance service task (cardinality 3) -> a parallel multi-instance
  user task over the case's ``items`` (the sender completes each work item);
- ``reminders`` (``cases/reminders.bpmn``): a review with a non-interrupting time cycle
  ``R2/PT0.3S`` that sends a reminder each time (the sender completes the review after both);
- ``tell`` (``cases/tell.bpmn``): Prepare -> throw the message "Told", which nothing in the case
  catches -> Follow up; each throw starts one ``heard`` case (``cases/heard.bpmn``, a message start).

Then workers that are not killed finish, and the test checks: every case completed on the path
its data chose; every message was delivered exactly once (a thrown one started exactly one case) (one delivery row per case, applied, one
journaled catch); no acknowledged step was lost or journaled twice; a handler was called again only
for a step the journal had not acknowledged at the kill before the repeat (the handler deduplicates
nothing); the events in ``runs:<model>`` equal the journal.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import engine_handlers
from engine_handlers import assert_closed_loop, stop_process, subprocess_env
from procestra import Workspace, engine
from procestra.engine.connectors import idempotency_key, python
from procestra.engine.tobe import FormField, ToBeModel
from procestra.store import ops

KILLS = int(os.environ.get("PROCESTRA_EVENTS_CRASH_KILLS") or 12)
CASES = 24  # of each model
SEED = 20261205
CONCURRENCY = 4
CASES_DIR = Path(__file__).resolve().parent / "cases"
SLOW = "engine_handlers:slow_effect"
MODELS = ("settle", "race", "batch", "reminders", "tell", "heard")


def save_batch_and_reminders(ws: Workspace) -> None:
    batch = engine_handlers.one_task_model("batch", "Activity_each", "Process item")
    batch.declare("items", "list", required=True)
    batch.declare("delay_ms", "number")
    batch.bind("Activity_each", python(SLOW, outputs=["Activity_each_done"]))
    approve = batch.add_task("Approve item", id="Activity_approve", after="Activity_each")
    batch.human(approve, [FormField("ok", "boolean")])
    batch.set_loop("Activity_each", kind="sequential", cardinality="3")
    batch.set_loop(approve, kind="parallel", collection="items", element_variable="item")
    batch.save(ws)
    reminders = ToBeModel.load(CASES_DIR / "reminders.bpmn", name="reminders")
    reminders.declare("delay_ms", "number")
    reminders.bind("Activity_send_reminder", python(SLOW, outputs=["Activity_send_reminder_done"]))
    reminders.human("Activity_review", [FormField("ok", "boolean")])
    reminders.save(ws)


def save_models(ws: Workspace) -> None:
    notify = ToBeModel("notify")
    start = notify.add_event("start", id="StartEvent_n")
    task = notify.add_task("Notify", id="Activity_notify", after=start)
    notify.bind(task, python(SLOW, outputs=["Activity_notify_done"]))
    notify.add_event("end", id="EndEvent_n", after=task)
    notify.save(ws)
    m = ToBeModel("settle")
    m.declare("order", "string", required=True)
    m.declare("delay_ms", "number")
    start = m.add_event("start", id="StartEvent_1")
    register = m.add_task("Register", id="Activity_register", after=start)
    m.bind(register, python(SLOW, outputs=["Activity_register_done"]))
    sub = m.add_subprocess("Settle payment", id="Activity_settle", after=register)
    [sub_start] = [e.id for e in m.elements.values() if e.parent == sub and e.kind == "startEvent"]
    paid = m.add_event("message", name="Payment received", id="Event_paid", parent=sub, after=sub_start)
    book = m.add_task("Book", id="Activity_book", parent=sub, after=paid)
    m.bind(book, python(SLOW, outputs=["Activity_book_done"]))
    call = m.add_call_activity("Notify customer", "notify@1", id="Activity_call_notify", after=sub)
    m.add_event("end", id="EndEvent_1", after=call)
    m.save(ws)
    race = ToBeModel.load(CASES_DIR / "race.bpmn", name="race")
    race.declare("patience", "string", required=True)
    race.declare("offer", "string", required=True)
    race.declare("delay_ms", "number")
    for el in ("Activity_offer", "Activity_accept", "Activity_close", "Activity_expire"):
        race.bind(el, python(SLOW, outputs=[f"{el}_done"]))
    race.save(ws)
    tell = ToBeModel.load(CASES_DIR / "tell.bpmn", name="tell")
    heard = ToBeModel.load(CASES_DIR / "heard.bpmn", name="heard")
    for m, els in ((tell, ("Activity_prepare", "Activity_follow")), (heard, ("Activity_heard",))):
        m.declare("order", "string", required=True)
        m.declare("delay_ms", "number")
        for el in els:
            m.bind(el, python(SLOW, outputs=[f"{el}_done"]))
        if m is heard:
            m.declare("Activity_prepare_done", "boolean")
        m.save(ws)


SETTLE_PATH = [("service", "Activity_register"), ("message", "Event_paid"), ("service", "Activity_book"),
               ("service", "Activity_notify"), ("end", None)]
BATCH_PATH = [("service", "Activity_each", n) for n in (1, 2, 3)] + [("user", "Activity_approve", n) for n in (1, 2)]
REMINDERS_PATH = [("timer", "Event_remind", 1), ("timer", "Event_remind", 2), ("service", "Activity_send_reminder", 1),
                  ("service", "Activity_send_reminder", 2), ("user", "Activity_review", 1)]
TELL_PATH = [("service", "Activity_prepare"), ("throw", "Event_told"), ("service", "Activity_follow"), ("end", None)]
HEARD_PATH = [("message", "StartEvent_heard"), ("service", "Activity_heard"), ("end", None)]
RACE_PATH = {"M": [("service", "Activity_offer"), ("message", "Event_accepted"), ("service", "Activity_accept"),
                   ("end", None)],
             "T": [("service", "Activity_offer"), ("timer", "Event_expired"), ("service", "Activity_expire"),
                   ("end", None)]}

WORKER = f"engine.Worker(ws, concurrency={CONCURRENCY}, lease=2.0, poll=0.05, flush_every=0.5).run()"
SENDER = """
import os, time
from procestra.engine import NotDeliveredError
from procestra.errors import UserError
stop = os.path.join(ws.path, "stop-sender")
sent = set()
while not os.path.exists(stop):
    for c in engine.list_cases(ws):
        if c.case in sent or c.status not in ("running", "waiting"):
            continue
        if c.model == "settle" and c.steps >= 1:
            name, key = "Payment received", {"order": c.data["order"]}
        elif c.model == "race" and c.data["offer"].startswith("M") and c.steps >= 1:
            name, key = "Offer accepted", {"offer": c.data["offer"]}
        elif c.model == "batch" or (c.model == "reminders" and c.steps >= 4):  # both reminders sent
            if c.model == "reminders" and len([s for s in engine.case_history(ws, c.case) if s.kind == "service"]) < 2:
                continue
            for t in engine.list_tasks(ws, case=c.case):
                try:
                    engine.complete_task(ws, t.task, {"ok": True}, user="sender")
                except UserError:
                    pass  # completed meanwhile
            continue
        else:
            continue
        try:
            engine.send_message(ws, name, correlate=key)
            sent.add(c.case)
        except NotDeliveredError:
            pass  # not waiting yet
    time.sleep(0.05)
"""


def _spawn(ws: Workspace, code: str, log: Path) -> subprocess.Popen[bytes]:
    script = f"from procestra import Workspace, engine\nws = Workspace({str(ws.path)!r})\n{code}"
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", script], env=subprocess_env(), stdout=out, stderr=out)


def acknowledged(ws: Workspace) -> set[tuple[Any, ...]]:
    with ops.connect(ws) as con:
        return {tuple(r) for r in con.execute("SELECT case_id, seq, kind, element_id, occurrence, outcome FROM steps")}


def keys(rows: set[tuple[Any, ...]]) -> frozenset[str]:
    return frozenset(idempotency_key(case, el, occ) for case, _, kind, el, occ, _ in rows if kind == "service")


def test_workers_killed_inside_waits_and_calls_lose_and_repeat_nothing(ws: Workspace, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    save_models(ws)
    save_batch_and_reminders(ws)
    engine.list_cases(ws)  # the engine's tables, before the processes start
    expected: dict[str, list[tuple[str, str | None]]] = {}
    for i in range(CASES):
        delay = rng.choice((0, 5, 20))
        expected[engine.start_case(ws, "settle", {"order": f"O-{i}", "delay_ms": delay})] = SETTLE_PATH
        kind = "M" if i % 2 == 0 else "T"
        data = {"offer": f"{kind}-{i}", "patience": "PT1H" if kind == "M" else "PT1S", "delay_ms": delay}
        expected[engine.start_case(ws, "race", data)] = RACE_PATH[kind]
        if i % 2 == 0:
            expected[engine.start_case(ws, "tell", {"order": f"W-{i}", "delay_ms": delay})] = TELL_PATH
        if i % 3 == 0:
            expected[engine.start_case(ws, "batch", {"items": ["x", "y"], "delay_ms": delay})] = BATCH_PATH
            expected[engine.start_case(ws, "reminders", {"delay_ms": delay})] = REMINDERS_PATH
    logs = tmp_path / "logs"
    logs.mkdir()
    sender = _spawn(ws, SENDER, logs / "sender.log")
    kills: list[tuple[float, frozenset[str]]] = []  # (when the process was dead, keys acknowledged before)
    seen: set[tuple[Any, ...]] = set()
    workers = [_spawn(ws, WORKER, logs / f"w{i}.log") for i in range(2)]
    try:
        while len(kills) < KILLS:
            time.sleep(rng.uniform(0.3, 1.2))
            i = rng.randrange(2)
            assert workers[i].poll() is None, (logs / f"w{i}.log").read_text()[-3000:]
            rows = acknowledged(ws)
            assert seen <= rows, "acknowledged steps were lost"
            seen |= rows
            os.kill(workers[i].pid, signal.SIGKILL)
            workers[i].wait()
            kills.append((time.time(), keys(rows)))
            workers[i] = _spawn(ws, WORKER, logs / f"w{i}.log")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(c.status not in ("completed", "failed", "cancelled")
                                                  for c in engine.list_cases(ws)):
            time.sleep(0.2)
    finally:
        (ws.path / "stop-sender").touch()
        for p in [*workers, sender]:
            stop_process(p, 15)
    cases = {c.case: c for c in engine.list_cases(ws) if c.model in MODELS}
    assert {c: (i.status, i.error) for c, i in cases.items() if i.status != "completed"} == {}
    # each thrown "Told" started exactly one heard case, with the teller's data, and its throw step says which
    told = {c: i for c, i in cases.items() if i.model == "tell"}
    heard = {c: i for c, i in cases.items() if i.model == "heard"}
    assert sorted(i.data["order"] for i in heard.values()) == sorted(i.data["order"] for i in told.values())
    for case in told:
        [throw] = [s for s in engine.case_history(ws, case) if s.kind == "throw"]
        [started] = throw.data["started"]
        assert heard[started].data["order"] == told[case].data["order"]
    expected.update({case: HEARD_PATH for case in heard})
    rows = acknowledged(ws)
    assert seen <= rows
    for case, path in expected.items():
        steps = engine.case_history(ws, case)
        if path in (BATCH_PATH, REMINDERS_PATH):  # instances and repetitions: each once, end last
            assert (sorted((s.kind, s.element, s.occurrence) for s in steps[:-1]), steps[-1].kind) == (
                sorted(path), "end"), case
        else:
            assert [(s.kind, s.element) for s in steps] == path, case
            assert all(s.occurrence == 1 for s in steps)
        assert [s.seq for s in steps] == list(range(1, len(steps) + 1))
    # each message delivered exactly once: one delivery row per messaged case, applied, one journaled catch
    with ops.connect(ws) as con:
        deliveries = [tuple(r) for r in con.execute("SELECT case_id, applied FROM deliveries ORDER BY case_id")]
    messaged = sorted(c for c, path in expected.items() if any(len(p) == 2 and p[0] == "message" for p in path[:2]))
    assert deliveries == [(c, 1) for c in messaged]
    # handlers: every call is for a journaled step; a repeat only after a kill that found its step unacknowledged
    calls = engine_handlers.calls(ws)
    assert {c["key"] for c in calls} == keys(rows)
    last: dict[str, float] = {}
    for c in calls:
        before = [k for k in kills if k[0] < c["at"]]
        if c["key"] in last:
            assert before and last[c["key"]] < before[-1][0], f"{c['task']} of {c['case']} repeated with no kill"
        if before:
            assert c["key"] not in before[-1][1], f"{c['task']} of {c['case']} called again after it was acknowledged"
        last[c["key"]] = c["at"]
    for model in MODELS:
        assert_closed_loop(ws, model)
    repeats = len(calls) - len({c["key"] for c in calls})
    print(f"\nevents crash test: {len(expected)} cases, {len(kills)} SIGKILLs, {len(rows)} steps, {len(calls)} handler "
          f"calls ({repeats} repeated after kills), {len(deliveries)} messages delivered once each")
