"""SpiffWorkflow's own extensions run as SpiffWorkflow runs them, through a real :class:`engine.Worker`.

A catching message event with ``spiffworkflow:messageVariable`` keeps the payload under that variable
(and its ``processVariableCorrelation`` decides which message it catches); a signal, error or
escalation with ``spiffworkflow:payloadExpression`` sends the expression's value, caught under its
``spiffworkflow:variableName``; a task's ``preScript``/``postScript`` run before and after it (around
all the instances of a multi-instance task). Before, each was refused at validation. The files are
SpiffWorkflow's own test files; the expected data are what SpiffWorkflow's spiff parser gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procestra import Workspace, engine
from procestra.engine import loading
from procestra.engine.connectors import python
from procestra.engine.tobe import Retry, ToBeModel
from procestra.errors import InvalidArgumentError
from procestra.store import ops

SPIFF = Path(__file__).resolve().parents[1] / "data" / "bpmn" / "spiffworkflow" / "spiff"


def settle(ws: Workspace) -> None:
    engine.Worker(ws, poll=0.02).run(until_idle=True, max_seconds=60)


def restart() -> None:
    """Forget what this process parsed, as a new worker process would: cases resume from their snapshots."""
    loading._models.clear()
    loading._latest.clear()


def snapshot(ws: Workspace, case: str) -> str:
    with ops.connect(ws) as con:
        return str(con.execute("SELECT snapshot FROM cases WHERE case_id = ?", (case,)).fetchone()[0] or "")


def complete_open_tasks(ws: Workspace, case: str, answer: dict[str, object]) -> int:
    done = 0
    while tasks := engine.list_tasks(ws, case=case):
        engine.complete_task(ws, tasks[0].task, answer, user="tester")
        settle(ws)
        done += 1
    return done


@pytest.mark.parametrize("file", ["waiting_event.bpmn", "default_correlation_key.bpmn"])
def test_a_message_variable_keeps_the_payload_and_process_correlations_pick_the_message(ws: Workspace,
                                                                                        file: str) -> None:  # fmt: skip
    model = ToBeModel.load(SPIFF / file, process="main", name="receive")
    receive = model.elements["Activity_0qpzdpu"]
    assert (receive.payload_variable, receive.correlations) == ("a_var", (("uid", "1"),))
    model.save(ws)
    case = engine.start_case(ws, "receive", {})
    settle(ws)
    assert engine.get_case(ws, case).status == "waiting"
    snap = snapshot(ws, case)  # the case rests in SpiffWorkflow's spiff definition, under its own name
    assert '"typename": "SpiffMessageEventDefinition"' in snap and '"message_var": "a_var"' in snap
    engine.send_message(ws, "B", data={"uid": 2})  # its process correlation says uid 1: not this one
    settle(ws)
    assert engine.get_case(ws, case).status == "waiting"
    assert [(s.kind, s.outcome) for s in engine.case_history(ws, case)] == [("message", "uncaught")]
    restart()
    engine.send_message(ws, "B", data={"uid": 1, "note": "x"})
    settle(ws)
    info = engine.get_case(ws, case)
    assert (info.status, info.error) == ("completed", None)
    assert info.data["a_var"] == {"uid": 1, "note": "x"} and "note" not in info.data and "uid" not in info.data


def test_a_message_variable_holds_the_payload_in_the_case_data_while_the_case_goes_on(ws: Workspace) -> None:
    m = ToBeModel("wait")
    start = m.add_event("start", id="StartEvent_1")
    paid = m.add_event("message", name="Paid", id="Event_paid", after=start)
    m.set_spiff(paid, payload_variable="payment")
    ask = m.add_task("Check", id="Activity_check", after=paid)
    m.human(ask)
    m.add_event("end", id="EndEvent_1", after=ask)
    again = ToBeModel.from_xml(m.to_xml())  # the saved BPMN keeps it, where SpiffWorkflow reads it
    assert again.elements["Event_paid"].payload_variable == "payment"
    assert "<spiffworkflow:messageVariable>payment</spiffworkflow:messageVariable>" in m.to_xml()
    m.save(ws)
    case = engine.start_case(ws, "wait", {})
    settle(ws)
    engine.send_message(ws, "Paid", data={"amount": 12})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "waiting" and info.data == {"payment": {"amount": 12}}
    restart()
    assert complete_open_tasks(ws, case, {}) == 1
    assert engine.get_case(ws, case).data == {"payment": {"amount": 12}}


def test_a_signal_payload_expression_is_caught_under_its_variable(ws: Workspace) -> None:
    model = ToBeModel.load(SPIFF / "signal_event_payload.bpmn", name="signal")
    assert model.elements["throw"].payload == "{'r1': v1, 'r2': v2}"
    assert model.elements["catch"].payload_variable == "result"
    model.declare("v1")
    model.declare("v2")
    model.save(ws)
    case = engine.start_case(ws, "signal", {})
    settle(ws)
    restart()
    assert complete_open_tasks(ws, case, {"v1": 1, "v2": 2}) == 1
    info = engine.get_case(ws, case)
    assert (info.status, info.data) == ("completed", {"v1": 1, "v2": 2, "result": {"r1": 1, "r2": 2}})


@pytest.mark.parametrize("kind", ["error", "escalation"])
def test_an_error_or_escalation_payload_is_caught_under_its_variable(ws: Workspace, kind: str) -> None:
    model = ToBeModel.load(SPIFF / f"{kind}_event_payload.bpmn", name="thrower")
    model.declare(kind)
    model.declare("payload")
    model.save(ws)
    case = engine.start_case(ws, "thrower", {kind: True, "payload": {"a": 1}})
    settle(ws)
    assert complete_open_tasks(ws, case, {}) == 1  # "Set Data", a task someone completes
    info = engine.get_case(ws, case)
    assert (info.status, info.error) == ("completed", None)
    assert info.data == {kind: True, "payload": {"a": 1}, "result": {"a": 1}}


def test_a_failed_service_task_error_is_caught_under_the_boundary_events_variable(ws: Workspace) -> None:
    m = ToBeModel("failing")
    start = m.add_event("start", id="StartEvent_1")
    task = m.add_task("Call", id="Activity_call", after=start)
    m.declare("failures", "integer")
    m.bind(task, python("engine_handlers:flaky"), retry=Retry(max_attempts=1))
    m.add_event("end", id="EndEvent_1", after=task)
    boundary = m.on_error(task, "Handle", then="EndEvent_1")
    m.set_spiff(boundary, payload_variable="failure")
    m.save(ws)
    case = engine.start_case(ws, "failing", {"failures": 9})
    settle(ws)
    info = engine.get_case(ws, case)
    assert (info.status, info.error) == ("waiting", None)  # at the human task "Handle"
    assert complete_open_tasks(ws, case, {}) == 1
    info = engine.get_case(ws, case)
    assert info.status == "completed" and "service down" in info.data["failure"]["error"]


def test_pre_and_post_scripts_run_around_a_multi_instance_task(ws: Workspace) -> None:
    model = ToBeModel.load(SPIFF / "spiff_multiinstance.bpmn", name="mi")
    assert model.elements["any_task"].pre_script == "input_data = [ v + 1 for v in input_data ]"
    model.declare("input_data", "list")
    model.save(ws)
    case = engine.start_case(ws, "mi", {"input_data": [1, 2, 3]})
    settle(ws)
    assert '"typename": "SpiffParallelMultiInstanceTask"' in snapshot(ws, case)
    restart()
    assert complete_open_tasks(ws, case, {"output_item": 2}) == 3
    info = engine.get_case(ws, case)
    assert (info.status, info.data) == ("completed", {"input_data": [2, 3, 4], "output_data": [1, 1, 1]})


def test_pre_and_post_scripts_of_an_api_built_task_run_before_and_after_it(ws: Workspace) -> None:
    m = ToBeModel("scripted")
    m.declare("n", "integer", required=True)
    start = m.add_event("start", id="StartEvent_1")
    task = m.add_task("Review", id="Activity_review", after=start)
    m.human(task)
    m.set_spiff(task, pre_script="before = n + 1", post_script="after = before + extra")
    m.add_event("end", id="EndEvent_1", after=task)
    assert "pre-script: 'before = n + 1'" in m.elements[task].describe()
    m.save(ws)
    case = engine.start_case(ws, "scripted", {"n": 1})
    settle(ws)
    restart()
    assert complete_open_tasks(ws, case, {"extra": 10}) == 1
    info = engine.get_case(ws, case)
    assert (info.status, info.data) == ("completed", {"n": 1, "before": 2, "extra": 10, "after": 12})


MISMATCH = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d">
  <bpmn:message id="Go" name="Go" />
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1" />
    <bpmn:parallelGateway id="Gateway_split" />
    <bpmn:intermediateThrowEvent id="Event_throw"><bpmn:messageEventDefinition messageRef="Go" /></bpmn:intermediateThrowEvent>
    <bpmn:receiveTask id="Activity_receive" messageRef="Go">
      <bpmn:extensionElements><spiffworkflow:messageVariable>go</spiffworkflow:messageVariable></bpmn:extensionElements>
    </bpmn:receiveTask>
    <bpmn:serviceTask id="Activity_call">
      <bpmn:extensionElements><spiffworkflow:preScript>x = 1</spiffworkflow:preScript></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:parallelGateway id="Gateway_join" />
    <bpmn:endEvent id="EndEvent_1" />
    <bpmn:sequenceFlow id="f1" sourceRef="StartEvent_1" targetRef="Gateway_split" />
    <bpmn:sequenceFlow id="f2" sourceRef="Gateway_split" targetRef="Event_throw" />
    <bpmn:sequenceFlow id="f3" sourceRef="Gateway_split" targetRef="Activity_receive" />
    <bpmn:sequenceFlow id="f4" sourceRef="Event_throw" targetRef="Gateway_join" />
    <bpmn:sequenceFlow id="f5" sourceRef="Activity_receive" targetRef="Activity_call" />
    <bpmn:sequenceFlow id="f6" sourceRef="Activity_call" targetRef="Gateway_join" />
    <bpmn:sequenceFlow id="f7" sourceRef="Gateway_join" targetRef="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_what_the_engine_cannot_run_exactly_is_refused_naming_the_element() -> None:
    m = ToBeModel.from_xml(MISMATCH)
    m.bind("Activity_call", python("engine_handlers:noop"))
    problems = {(p.code, p.element) for p in m.validate() if p.severity == "error"}
    assert ("unsupported-construct", "Activity_call") in problems  # a pre-script on a service task
    assert ("payload-mismatch", "Event_throw") in problems  # thrown without a payload, caught with a variable
    m.set_spiff("Event_throw", payload="{'go': True}")  # both: SpiffWorkflow's way, the throw is caught
    m.set_spiff("Activity_call", pre_script=None)
    assert not [p for p in m.validate() if p.severity == "error"]
    with pytest.raises(InvalidArgumentError):
        m.set_spiff("Activity_receive", payload_variable="not a name")
    with pytest.raises(InvalidArgumentError):
        m.set_spiff("Activity_receive", nonsense="x")


def signal_file(process: str, body: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d">
  <bpmn:signal id="Signal_ready" name="Ready">
    <bpmn:extensionElements>
      <spiffworkflow:payloadExpression>{{'x': x}}</spiffworkflow:payloadExpression>
      <spiffworkflow:variableName>got</spiffworkflow:variableName>
    </bpmn:extensionElements>
  </bpmn:signal>
  <bpmn:process id="{process}" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1" />
    {body}
    <bpmn:endEvent id="EndEvent_1" />
    <bpmn:sequenceFlow id="f1" sourceRef="StartEvent_1" targetRef="Event_signal" />
    <bpmn:sequenceFlow id="f2" sourceRef="Event_signal" targetRef="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_signal_thrown_to_other_cases_carries_its_payload_expression(ws: Workspace) -> None:
    definition = '<bpmn:signalEventDefinition signalRef="Signal_ready" />'
    thrower = ToBeModel.from_xml(signal_file("thrower", f'<bpmn:intermediateThrowEvent id="Event_signal">'
                                                        f'{definition}</bpmn:intermediateThrowEvent>'))
    thrower.declare("x", "integer", required=True)
    thrower.save(ws, "thrower")
    catcher = ToBeModel.from_xml(signal_file("catcher", f'<bpmn:intermediateCatchEvent id="Event_signal">'
                                                        f'{definition}</bpmn:intermediateCatchEvent>'))
    catcher.save(ws, "catcher")
    waiting = engine.start_case(ws, "catcher", {})
    settle(ws)
    assert engine.get_case(ws, waiting).status == "waiting"
    engine.start_case(ws, "thrower", {"x": 5})
    settle(ws)
    info = engine.get_case(ws, waiting)
    assert (info.status, info.data) == ("completed", {"got": {"x": 5}})


def test_a_message_start_event_with_a_variable_starts_the_case_with_the_payload_under_it(ws: Workspace) -> None:
    m = ToBeModel.from_xml("""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d">
  <bpmn:message id="Order" name="Order" />
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1">
      <bpmn:messageEventDefinition messageRef="Order">
        <bpmn:extensionElements><spiffworkflow:messageVariable>order</spiffworkflow:messageVariable></bpmn:extensionElements>
      </bpmn:messageEventDefinition>
    </bpmn:startEvent>
    <bpmn:endEvent id="EndEvent_1" />
    <bpmn:sequenceFlow id="f1" sourceRef="StartEvent_1" targetRef="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>
""")
    m.save(ws, "orders")
    started = engine.send_message(ws, "Order", data={"item": "pen"}).started
    settle(ws)
    info = engine.get_case(ws, started[0])
    assert (info.status, info.data) == ("completed", {"order": {"item": "pen"}})


def test_a_loaded_models_extensions_are_saved_where_spiffworkflow_reads_them(tmp_path: Path) -> None:
    model = ToBeModel.load(SPIFF / "signal_event_payload.bpmn")
    assert ToBeModel.from_xml(model.to_xml()).elements["throw"].payload == "{'r1': v1, 'r2': v2}"
    model.set_spiff("throw", payload="{'r1': v2}")
    model.set_spiff("catch", payload_variable="other")
    again = ToBeModel.from_xml(model.to_xml())
    assert (again.elements["throw"].payload, again.elements["catch"].payload_variable) == ("{'r1': v2}", "other")
    model = ToBeModel.load(SPIFF / "waiting_event.bpmn", process="main")
    model.set_spiff("Activity_0qpzdpu", correlations=[("uid", "2"), ("other", "3")], pre_script="n = 1")
    again = ToBeModel.from_xml(model.to_xml())
    assert again.elements["Activity_0qpzdpu"].correlations == (("uid", "2"), ("other", "3"))
    assert again.elements["Activity_0qpzdpu"].pre_script == "n = 1"


def test_a_copy_keeps_the_extensions_and_saves_the_same_file() -> None:
    model = ToBeModel.load(SPIFF / "waiting_event.bpmn", process="main")
    copy = model.copy()
    assert copy.elements["Activity_0qpzdpu"].correlations == (("uid", "1"),)
    assert copy.to_xml() == model.to_xml()


def test_a_catch_all_error_beside_an_error_with_a_payload_is_refused() -> None:
    """SpiffWorkflow's spiff parser makes every error definition of the file payload-aware; a catch-all boundary event
    (no error named) would catch the thrown one there, the engine's plain one would not: refused, naming it."""
    xml = (SPIFF / "error_event_payload.bpmn").read_text()
    head, sep, tail = xml.partition('<bpmn:errorEventDefinition id="ErrorEventDefinition_147hq0b" errorRef="error_event" />')
    m = ToBeModel.from_xml(head + '<bpmn:errorEventDefinition id="ErrorEventDefinition_147hq0b" />' + tail)
    assert sep and [(p.code, p.element) for p in m.validate() if p.code == "payload-mismatch"] == [
        ("payload-mismatch", "catch")]
