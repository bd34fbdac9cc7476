"""Messages and signals into cases, through a real :class:`engine.Worker` on a real workspace.

A case at a message catch event waits (before: it failed with "no task is ready");
:func:`engine.send_message` reaches the cases whose data matches the correlation, starts a case
of a model whose start event catches it, and is refused naming the message when it reaches
nothing; :func:`engine.send_signal` reaches every waiting case of every model; an event-based
gateway takes the branch of whichever comes first: a message, a signal or its timer. The
expected runs are read from the diagrams.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import engine_handlers
from procestra import Workspace, engine
from procestra.engine.connectors import idempotency_key, python
from procestra.engine.tobe import FormField, ToBeModel
from procestra.errors import InvalidArgumentError

H = "engine_handlers:"
DATA = Path(__file__).resolve().parent / "cases"


def settle(ws: Workspace) -> engine.WorkerReport:
    return engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=120)


def journal(ws: Workspace, case: str) -> list[tuple[str, str | None, str]]:
    return [(s.kind, s.element, s.outcome) for s in engine.case_history(ws, case)]


def orders_model() -> ToBeModel:
    """Ship order (a handler) -> wait for the message "Payment received" -> Book payment (a handler) -> end."""
    m = ToBeModel("orders")
    m.declare("order", "string", required=True)
    start = m.add_event("start", id="StartEvent_1")
    ship = m.add_task("Ship order", id="Activity_ship", after=start)
    m.bind(ship, python(H + "effect", outputs=["effect_done"]))
    paid = m.add_event("message", name="Payment received", id="Event_paid", after=ship)
    book = m.add_task("Book payment", id="Activity_book", after=paid)
    m.bind(book, python(H + "effect", outputs=["effect_done"]))
    m.add_event("end", id="EndEvent_1", after=book)
    return m


def test_a_case_waits_for_its_message_and_goes_on_when_it_comes(ws: Workspace) -> None:
    orders_model().save(ws)
    a17 = engine.start_case(ws, "orders", {"order": "A-17"})
    a18 = engine.start_case(ws, "orders", {"order": "A-18"})
    settle(ws)
    for case in (a17, a18):
        info = engine.get_case(ws, case)
        assert (info.status, info.error, info.wake_at) == ("waiting", None, None)
        assert journal(ws, case) == [("service", "Activity_ship", "completed")]
    sent = engine.send_message(ws, "Payment received", correlate={"order": "A-17"}, data={"paid": 120.5})
    assert (sent.kind, sent.name, sent.delivered, sent.started) == ("message", "Payment received", (a17,), ())
    settle(ws)
    info = engine.get_case(ws, a17)
    assert info.status == "completed", info.error
    assert journal(ws, a17) == [("service", "Activity_ship", "completed"), ("message", "Event_paid", "caught"),
                                ("service", "Activity_book", "completed"), ("end", None, "completed")]
    assert (info.data["order"], info.data["paid"]) == ("A-17", 120.5)
    caught = engine.case_history(ws, a17)[1]
    assert (caught.name, caught.data["payload"]) == ("Payment received", {"paid": 120.5})
    # the other order still waits; its payment is still to come
    assert engine.get_case(ws, a18).status == "waiting"
    assert [c["key"] for c in engine_handlers.calls(ws)] == [
        idempotency_key(a17, "Activity_ship", 1), idempotency_key(a18, "Activity_ship", 1),
        idempotency_key(a17, "Activity_book", 1)]


def test_a_message_that_reaches_no_case_is_refused_naming_it(ws: Workspace) -> None:
    orders_model().save(ws)
    case = engine.start_case(ws, "orders", {"order": "A-17"})
    settle(ws)
    with pytest.raises(engine.NotDeliveredError) as nobody:
        engine.send_message(ws, "Payment received", correlate={"order": "B-99"}, data={"paid": 1})
    assert str(nobody.value) == ("no running case waits for the message 'Payment received' with order='B-99', and "
                                 "no model starts with it; nothing was sent (`procestra cases --status waiting` "
                                 "lists the waiting cases)")
    assert (nobody.value.name, nobody.value.correlate) == ("Payment received", {"order": "B-99"})
    with pytest.raises(engine.NotDeliveredError, match="the message 'Refund'"):
        engine.send_message(ws, "Refund")
    # nothing was queued: the worker has nothing to do and the case still waits
    assert settle(ws).steps == 0
    assert engine.get_case(ws, case).status == "waiting"
    # once delivered and caught, the case no longer waits for it: a second one is refused
    engine.send_message(ws, "Payment received", correlate={"order": "A-17"})
    settle(ws)
    with pytest.raises(engine.NotDeliveredError):
        engine.send_message(ws, "Payment received", correlate={"order": "A-17"})


def test_the_cli_sends_a_message_and_refuses_one_that_reaches_nothing(ws: Workspace, cli) -> None:
    orders_model().save(ws)
    case = engine.start_case(ws, "orders", {"order": "17"})
    settle(ws)
    missing = cli("message", "Payment received", "--correlate", "order=18", workspace=ws.path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: no running case waits for the message 'Payment received' with "
                                      "order='18', and no model starts with it; nothing was sent (`procestra cases "
                                      "--status waiting` lists the waiting cases)")
    sent = cli("message", "Payment received", "--correlate", "order=17", "--data", '{"paid": 3}', "--json",
               workspace=ws.path, check=True)

    assert json.loads(sent.stdout) == {"kind": "message", "name": "Payment received", "delivered": [case],
                                       "started": []}
    settle(ws)
    info = engine.get_case(ws, case)
    assert (info.status, info.data["paid"]) == ("completed", 3)


# -- signals and event-based gateways ----------------------------------------------------------------
def save_race_and_closing(ws: Workspace) -> None:
    """``race`` (cases/race.bpmn): Make offer -> event-based gateway: message "Offer accepted" -> Book sale |
    signal "Market closed" -> Withdraw offer | timer ``patience`` (case data) -> Tell customer.
    ``closing`` (cases/closing.bpmn): signal "Market closed" -> Pack up stall."""
    race = ToBeModel.load(DATA / "race.bpmn", name="race")
    race.declare("patience", "string", required=True)
    race.declare("offer", "string", required=True)
    for task in ("Activity_offer", "Activity_accept", "Activity_close", "Activity_expire"):
        race.bind(task, python(H + "effect", outputs=["effect_done"]))
    race.save(ws)
    closing = ToBeModel.load(DATA / "closing.bpmn", name="closing")
    closing.bind("Activity_pack", python(H + "effect", outputs=["effect_done"]))
    closing.save(ws)


def test_an_event_based_gateway_takes_the_branch_of_what_comes_first(ws: Workspace) -> None:
    save_race_and_closing(ws)
    by_message = engine.start_case(ws, "race", {"offer": "M", "patience": "PT1H"})
    by_signal = engine.start_case(ws, "race", {"offer": "S", "patience": "PT1H"})
    by_timer = engine.start_case(ws, "race", {"offer": "T", "patience": "PT0.5S"})
    stall = engine.start_case(ws, "closing", {})
    settle(ws)  # the short patience runs out within the worker's horizon; the others wait an hour
    offer = ("service", "Activity_offer", "completed")
    end = ("end", None, "completed")
    assert journal(ws, by_timer) == [offer, ("timer", "Event_expired", "fired"),
                                     ("service", "Activity_expire", "completed"), end]
    timer_step = engine.case_history(ws, by_timer)[1]
    assert timer_step.started >= engine.case_history(ws, by_timer)[0].ended + timedelta(seconds=0.5)
    for case in (by_message, by_signal, stall):
        assert engine.get_case(ws, case).status == "waiting"
    # the message goes to its case only (by correlation); the signal to every case still waiting for it
    assert engine.send_message(ws, "Offer accepted", correlate={"offer": "M"}).delivered == (by_message,)
    settle(ws)
    signal = engine.send_signal(ws, "Market closed", data={"closed_at": "18:00"})
    assert (signal.kind, set(signal.delivered), signal.started) == ("signal", {by_signal, stall}, ())
    settle(ws)
    assert journal(ws, by_message) == [offer, ("message", "Event_accepted", "caught"),
                                       ("service", "Activity_accept", "completed"), end]
    assert journal(ws, by_signal) == [offer, ("signal", "Event_closed", "caught"),
                                      ("service", "Activity_close", "completed"), end]
    assert journal(ws, stall) == [("signal", "Event_market_closed", "caught"),
                                  ("service", "Activity_pack", "completed"), end]
    for case in (by_message, by_signal, by_timer, stall):
        assert engine.get_case(ws, case).status == "completed"
    assert engine.get_case(ws, stall).data == {"closed_at": "18:00", "effect_done": True}
    # the branches not taken never ran: one handler call per case past the offer
    tasks = sorted(c["task"] for c in engine_handlers.calls(ws))
    assert tasks == sorted(["Activity_offer"] * 3 + ["Activity_expire", "Activity_accept", "Activity_close",
                                                     "Activity_pack"])
    with pytest.raises(engine.NotDeliveredError, match="the signal 'Market closed'"):
        engine.send_signal(ws, "Market closed")


def test_a_signal_thrown_by_one_case_reaches_the_cases_of_other_models_waiting_for_it(ws: Workspace) -> None:
    save_race_and_closing(ws)
    ToBeModel.load(DATA / "closer.bpmn", name="closer").save(ws)
    stalls = [engine.start_case(ws, "closing", {}) for _ in range(2)]
    settle(ws)
    closer = engine.start_case(ws, "closer", {})
    settle(ws)
    assert journal(ws, closer) == [("throw", "Event_close", "sent"), ("end", None, "completed")]
    for stall in stalls:
        assert journal(ws, stall) == [("signal", "Event_market_closed", "caught"),
                                      ("service", "Activity_pack", "completed"), ("end", None, "completed")]
        assert engine.get_case(ws, stall).data == {"effect_done": True}  # the thrower's data stays its own
    with pytest.raises(engine.NotDeliveredError):  # delivered once: no case waits for it any more
        engine.send_signal(ws, "Market closed")


def test_a_message_start_event_starts_a_case_with_the_message_data(ws: Workspace) -> None:
    web = ToBeModel.load(DATA / "web_order.bpmn", name="web-order")
    web.declare("order", "string", required=True)
    web.bind("Activity_confirm", python(H + "effect", outputs=["effect_done"]))
    web.save(ws)
    orders_model().save(ws)  # waits for another message: not started
    sent = engine.send_message(ws, "Order placed", data={"order": "W-1"})
    [case] = sent.started
    assert (sent.delivered, [(c.case, c.model) for c in engine.list_cases(ws)]) == ((), [(case, "web-order")])
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert journal(ws, case) == [("message", "StartEvent_placed", "caught"),
                                 ("service", "Activity_confirm", "completed"), ("end", None, "completed")]
    assert info.data == {"order": "W-1", "effect_done": True}
    # the start event's model declares the order required: a message without it starts nothing
    with pytest.raises(InvalidArgumentError, match="case data does not fit model 'web-order' version 1: order: required"):
        engine.send_message(ws, "Order placed", data={})
    assert len(engine.list_cases(ws)) == 1


def test_a_message_boundary_event_interrupts_the_persons_task(ws: Workspace) -> None:
    m = ToBeModel.load(DATA / "cancellable.bpmn", name="cancellable")
    m.declare("order", "string", required=True)
    m.human("Activity_pack", [FormField("packed", "boolean")], group="warehouse")
    m.bind("Activity_refund", python(H + "effect", outputs=["effect_done"]))
    m.save(ws)
    cancelled = engine.start_case(ws, "cancellable", {"order": "A-1"})
    packed = engine.start_case(ws, "cancellable", {"order": "A-2"})
    settle(ws)
    items = {t.case: t for t in engine.list_tasks(ws)}
    assert {c: (t.element, t.status) for c, t in items.items()} == {
        cancelled: ("Activity_pack", "open"), packed: ("Activity_pack", "open")}
    engine.send_message(ws, "Order cancelled", correlate={"order": "A-1"}, data={"reason": "changed mind"})
    engine.complete_task(ws, items[packed].task, {"packed": True})
    settle(ws)
    # the cancelled order: its packing task is withdrawn and the refund runs
    assert journal(ws, cancelled) == [("message", "Event_cancelled", "caught"),
                                      ("user", "Activity_pack", "cancelled"),
                                      ("service", "Activity_refund", "completed"), ("end", None, "completed")]
    assert engine.case_history(ws, cancelled)[1].resource == "events"
    [withdrawn] = engine.list_tasks(ws, case=cancelled, status=None)
    assert withdrawn.status == "cancelled"
    with pytest.raises(engine.TaskStateError, match="cancelled"):
        engine.complete_task(ws, withdrawn.task, {"packed": True})
    assert engine.get_case(ws, cancelled).data == {"order": "A-1", "reason": "changed mind", "effect_done": True}
    # the packed one: the boundary event never fired, and it no longer waits for the message
    assert journal(ws, packed) == [("user", "Activity_pack", "completed"), ("end", None, "completed")]
    with pytest.raises(engine.NotDeliveredError):
        engine.send_message(ws, "Order cancelled", correlate={"order": "A-2"})


def test_a_case_waits_at_a_conditional_event_until_its_condition_holds(ws: Workspace) -> None:
    m = ToBeModel.load(DATA / "conditional.bpmn", name="conditional")
    m.human("Activity_decide", [FormField("approved", "boolean")])
    m.bind("Activity_ship", python(H + "effect", outputs=["effect_done"]))
    m.save(ws)  # the file's condition is kept on save
    yes = engine.start_case(ws, "conditional", {})
    no = engine.start_case(ws, "conditional", {})
    settle(ws)
    items = {t.case: t for t in engine.list_tasks(ws)}
    engine.complete_task(ws, items[yes].task, {"approved": True})
    engine.complete_task(ws, items[no].task, {"approved": False})
    settle(ws)
    assert journal(ws, yes) == [("user", "Activity_decide", "completed"), ("service", "Activity_ship", "completed"),
                                ("end", None, "completed")]
    # the condition does not hold: the case waits at the event (it does not fail), nothing is shipped
    info = engine.get_case(ws, no)
    assert (info.status, info.error, info.wake_at) == ("waiting", None, None)
    assert journal(ws, no) == [("user", "Activity_decide", "completed")]
    assert [c["case"] for c in engine_handlers.calls(ws)] == [yes]


def thrower(name: str, message: str, script: str) -> ToBeModel:
    """start -> script -> throw the message ``message`` (nothing in the model catches it) -> end."""
    m = ToBeModel.from_xml(
        f'<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="D" targetNamespace="t">'
        f'<message id="M" name="{message}"/><process id="{name}" isExecutable="true"><startEvent id="S"/>'
        '<sequenceFlow id="f0" sourceRef="S" targetRef="Set"/>'
        f'<scriptTask id="Set" scriptFormat="python"><script>{script}</script></scriptTask>'
        '<sequenceFlow id="f1" sourceRef="Set" targetRef="Throw"/><intermediateThrowEvent id="Throw" name="Tell">'
        '<messageEventDefinition messageRef="M"/></intermediateThrowEvent>'
        '<sequenceFlow id="f2" sourceRef="Throw" targetRef="E"/><endEvent id="E"/></process></definitions>')
    m.name = name
    return m


def test_a_message_thrown_out_of_a_case_reaches_the_case_waiting_for_it_or_starts_one(ws: Workspace) -> None:
    """Before, validate refused a message nothing in its own model catches; SpiffWorkflow hands it to the
    application, and the engine now sends it on as ``send_message`` does, saying where it went."""
    payer = thrower("payer", "Payment received", "paid = 99.5")
    [warning] = [p for p in payer.validate() if p.code == "message-leaves-case"]
    assert (warning.severity, warning.element) == ("warning", "Throw")
    payer.save(ws)
    orders_model().save(ws)
    a17 = engine.start_case(ws, "orders", {"order": "A-17"})
    settle(ws)
    pay = engine.start_case(ws, "payer", {})
    settle(ws)
    [throw] = [s for s in engine.case_history(ws, pay) if s.kind == "throw"]
    assert (throw.element, throw.outcome, throw.data) == (
        "Throw", "sent", {"messages": ["Payment received"], "delivered": [a17], "started": []})
    assert engine.get_case(ws, pay).status == "completed"
    info = engine.get_case(ws, a17)
    assert info.status == "completed", info.error
    assert ("message", "Event_paid", "caught") in journal(ws, a17)
    assert info.data["paid"] == 99.5 and info.data["order"] == "A-17"  # the thrower's data is the payload
    # nothing waits now and no model starts on it: the thrower goes on, its step says so
    again = engine.start_case(ws, "payer", {})
    settle(ws)
    assert engine.get_case(ws, again).status == "completed"
    assert [(s.outcome, s.data["delivered"]) for s in engine.case_history(ws, again) if s.kind == "throw"] == [
        ("not delivered", [])]
    # a model whose start event catches it: a case of it starts with the thrower's data
    web = ToBeModel.load(DATA / "web_order.bpmn", name="web-order")
    web.bind("Activity_confirm", python(H + "effect", outputs=["effect_done"]))
    web.save(ws)
    thrower("shop", "Order placed", "order = 'W-2'").save(ws)
    shop = engine.start_case(ws, "shop", {})
    settle(ws)
    [throw] = [s for s in engine.case_history(ws, shop) if s.kind == "throw"]
    [started] = throw.data["started"]
    assert engine.get_case(ws, started).model == "web-order"
    assert engine.get_case(ws, started).data["order"] == "W-2"
