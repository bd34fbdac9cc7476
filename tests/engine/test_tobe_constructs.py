"""Constructs the element model reads instead of dropping: loops, transactions, conditional, message and
timer-cycle events; and what the engine cannot run, refused by validation naming the element.

Each file is written here by hand as BPMN 2.0; the reference for "kept" is the element as written
(canonical XML), for "refused" SpiffWorkflow's own parser and the BPMN specification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from procestra import Workspace, engine
from procestra.engine.connectors import python
from procestra.engine.tobe import ToBeModel

CASES = Path(__file__).resolve().parent / "cases"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
B = f"{{{BPMN}}}"


def model(body: str, *, head: str = "", ns: str = "") -> ToBeModel:
    """A process: start -> ``body`` (whose first element is ``A``, whose last flows to the end) -> end."""
    xml = (f'<definitions xmlns="{BPMN}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           f'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" {ns} id="D" targetNamespace="t">{head}'
           '<process id="P" isExecutable="true"><startEvent id="S"/><sequenceFlow id="f0" sourceRef="S" '
           f'targetRef="A"/>{body}<endEvent id="E"/><sequenceFlow id="f9" sourceRef="Z" targetRef="E"/></process>'
           '</definitions>')  # fmt: skip
    return ToBeModel.from_xml(xml)


def codes(m: ToBeModel) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in m.validate():
        if p.severity == "error":
            out.setdefault(p.code, []).append(p.element)
    return out


def kept(m: ToBeModel, element: str, child: str) -> bytes:
    """Element ``element``'s ``child`` in the XML the model writes, canonical."""
    node = etree.fromstring(m.to_xml().encode()).find(f".//{B}*[@id='{element}']/{B}{child}")
    assert node is not None, (element, child)
    return etree.tostring(node, method="c14n", exclusive=True)


def written(text: str, child: str) -> bytes:
    return etree.tostring(etree.fromstring(f'<x xmlns="{BPMN}">{text}</x>').find(f"{B}{child}"), method="c14n",
                          exclusive=True)


def _script(id_: str, script: str, extra: str = "") -> str:
    return f'<scriptTask id="{id_}" scriptFormat="python">{extra}<script>{script}</script></scriptTask>'


MI = ('<multiInstanceLoopCharacteristics isSequential="true"><loopCardinality>3</loopCardinality>'
      '<completionCondition>done</completionCondition></multiInstanceLoopCharacteristics>')  # fmt: skip


def test_multi_instance_is_read_validated_and_kept() -> None:
    m = model(_script("A", "done = False", MI) + '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>'
              + _script("Z", "x = 1"))  # fmt: skip
    loop = m.element("A").loop
    assert (loop.kind, loop.cardinality, loop.completion_condition) == ("sequential", "3", "done")
    assert str(loop) == "sequential multi-instance, '3' times, until 'done'"
    assert codes(m) == {}
    assert kept(m, "A", "multiInstanceLoopCharacteristics") == written(MI, "multiInstanceLoopCharacteristics")
    api = ToBeModel.from_dict(m.to_dict())  # the same model without its file: written anew, loop included
    assert api.document is None and ToBeModel.from_xml(api.to_xml()).element("A").loop == loop


def test_a_camunda_collection_is_read_as_spiffworkflows_camunda_parser_reads_it() -> None:
    m = ToBeModel.load(CASES / "spiff_parallel_multiinstance_collection.bpmn")
    [task] = [e for e in m.elements.values() if e.loop is not None]
    loop = task.loop
    assert (loop.kind, loop.collection, loop.element_variable, loop.output_collection, loop.output_element,
            loop.vendor) == ("parallel", "input_data", "input_item", "input_data", "input_item", "")  # in place
    m.declare("input_data", "list")
    assert [p for p in m.validate() if p.severity == "error"] == []
    assert ToBeModel.from_xml(m.to_xml()).element(task.id).loop == loop  # written as standard BPMN


def test_standard_loop_is_read_and_kept() -> None:
    std = ('<standardLoopCharacteristics testBefore="true" loopMaximum="5"><loopCondition>n &lt; 3</loopCondition>'
           '</standardLoopCharacteristics>')  # fmt: skip
    m = model(_script("A", "n = n + 1", std) + '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>'
              + _script("Z", "x = 1"))  # fmt: skip
    m.declare("n", "integer")
    loop = m.element("A").loop
    assert (loop.kind, loop.condition, loop.maximum, loop.test_before) == ("standard", "n < 3", 5, True)
    assert codes(m) == {}
    assert kept(m, "A", "standardLoopCharacteristics") == written(std, "standardLoopCharacteristics")
    no_bound = model(_script("A", "n = 1", "<standardLoopCharacteristics/>")
                     + '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>' + _script("Z", "x = 1"))
    assert codes(no_bound) == {"bad-loop": ["A"]}


def test_conditional_message_and_cycle_events_are_read_and_kept() -> None:
    cond = ('<conditionalEventDefinition id="c"><condition xsi:type="tFormalExpression">ready == True</condition>'
            '</conditionalEventDefinition>')  # fmt: skip
    body = (f'<intermediateCatchEvent id="A">{cond}</intermediateCatchEvent>'
            '<sequenceFlow id="f1" sourceRef="A" targetRef="M"/>'
            '<intermediateCatchEvent id="M"><messageEventDefinition id="m" messageRef="Msg"/></intermediateCatchEvent>'
            '<sequenceFlow id="f2" sourceRef="M" targetRef="Z"/>'
            '<intermediateCatchEvent id="Z"><timerEventDefinition id="t"><timeCycle>R3/PT10M</timeCycle>'
            '</timerEventDefinition></intermediateCatchEvent>')  # fmt: skip
    m = model(body, head='<message id="Msg" name="order placed"/>')
    m.declare("ready", "boolean")
    a, msg, cycle = m.element("A"), m.element("M"), m.element("Z")
    assert (a.event, a.condition) == ("conditional", "ready == True")
    assert (msg.event, msg.event_ref) == ("message", "order placed")
    assert (cycle.timer_kind, cycle.timer) == ("cycle", "R3/PT10M")
    assert cycle.describe() == ["timer event (cycle R3/PT10M)"]
    assert msg.describe() == ["message event 'order placed'"]
    assert kept(m, "A", "conditionalEventDefinition") == written(
        cond.replace('xsi:type="tFormalExpression"', ""), "conditionalEventDefinition").replace(
        b"<condition>", b'<condition xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="tFormalExpression">')
    assert "bad-condition" not in codes(m)
    broken = model(body.replace("ready == True", "ready ==="), head='<message id="Msg" name="order placed"/>')
    assert codes(broken)["bad-condition"] == ["A"]


def test_a_transaction_keeps_its_kind_and_cancel_is_refused_outside_one() -> None:
    inner = ('<startEvent id="TS"/><sequenceFlow id="t1" sourceRef="TS" targetRef="TE"/>'
             '<endEvent id="TE"><cancelEventDefinition id="cd"/></endEvent>')  # fmt: skip
    tail = ('<boundaryEvent id="X" attachedToRef="A"><cancelEventDefinition id="cb"/></boundaryEvent>'
            '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/><sequenceFlow id="f2" sourceRef="X" targetRef="Z"/>'
            + _script("Z", "x = 1"))  # fmt: skip
    m = model(f'<transaction id="A">{inner}</transaction>' + tail)
    assert m.element("A").transaction and m.element("A").kind == "subProcess"
    assert "cancel-outside-transaction" not in codes(m)
    assert etree.fromstring(m.to_xml().encode()).find(f".//{B}transaction[@id='A']") is not None  # before: subProcess
    plain = model(f'<subProcess id="A">{inner}</subProcess>' + tail)
    assert sorted(codes(plain)["cancel-outside-transaction"]) == ["TE", "X"]


@pytest.mark.parametrize(("body", "element", "words"), [
    ('<complexGateway id="A"/><sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>', "A", "complex gateways"),
    ('<adHocSubProcess id="A"><task id="in"/></adHocSubProcess><sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>',
     "A", "ad-hoc subprocesses"),
    ('<task id="A"><extensionElements><camunda:executionListener class="x.Y" event="start"/></extensionElements>'
     '</task><sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>', "A", "execution listener"),
    ('<scriptTask id="A" camunda:resultVariable="r"><script>r = 1</script></scriptTask>'
     '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>', "A", "result variable"),
    ('<scriptTask id="A" scriptFormat="groovy"><script>x = 1</script></scriptTask>'
     '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>', "A", "Python scripts only"),
    ('<userTask id="A"><extensionElements><camunda:taskListener class="x.Y" event="create"/></extensionElements>'
     '</userTask><sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>', "A", "task listener"),
])  # fmt: skip
def test_what_the_engine_does_not_run_is_an_error_naming_the_element(body: str, element: str, words: str) -> None:
    m = model(body + _script("Z", "x = 1"))  # before: dropped with a note, or a load error
    refused = [p for p in m.validate() if p.code == "unsupported-construct"]
    assert [p.element for p in refused] == [element]
    assert words in refused[0].message


def test_what_spiffworkflow_refuses_is_an_error_from_its_parser() -> None:
    m = model('<task id="A"/><sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>' + _script("Z", "x = 1"),
              head='<dataStore id="DS" name="warehouse"/>')
    m.set_script("A", "y = 2")
    [problem] = [p for p in m.validate() if p.severity == "error"]
    assert problem.code == "engine-refuses" and "warehouse" in problem.message


def test_camunda_form_fields_become_the_form() -> None:
    m = ToBeModel.load(CASES / "spiff_random_fact.bpmn")
    human = m.element("Task_User_Select_Type").human
    [field] = human.fields
    assert (field.name, field.type, field.allowed, field.default, field.max_length, field.label) == (
        "type", "enum", ("norris", "cat", "buzzword"), "cat", 25, "Type")
    assert human.form_key == "Fact"
    assert codes(m)["unsupported-construct"] == ["Task_Get_Fact_From_API"]  # its camunda:inputOutput


def test_an_unbound_service_task_fails_its_case_instead_of_being_skipped(ws: Workspace) -> None:
    m = ToBeModel("draft")
    start = m.add_event("start")
    charge = m.add_task("Charge", kind="service", after=start)
    after = m.add_task("After", after=charge)
    m.bind(after, python("engine_handlers:noop"))
    m.add_event("end", after=after)
    m.save(ws, check=False)  # a draft: validation would refuse it
    case = engine.start_case(ws, "draft")
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)
    info = engine.get_case(ws, case)
    assert info.status == "failed"  # before: completed, the service task skipped
    assert "Activity_charge 'Charge' has no handler" in (info.error or "")


def test_called_models_must_exist(ws: Workspace) -> None:
    m = model('<callActivity id="A" calledElement="Other"/><sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>'
              + _script("Z", "x = 1"))  # fmt: skip
    assert "call-unknown-model" not in codes(m)  # no workspace: not checked
    [problem] = [p for p in m.validate(ws=ws) if p.code == "call-unknown-model"]
    assert problem.element == "A" and "Other" in problem.message
    in_file = ToBeModel.from_xml(
        f'<definitions xmlns="{BPMN}" id="D" targetNamespace="t"><process id="P"><startEvent id="S"/>'
        '<sequenceFlow id="f0" sourceRef="S" targetRef="A"/><callActivity id="A" calledElement="Q"/>'
        '<sequenceFlow id="f1" sourceRef="A" targetRef="E"/><endEvent id="E"/></process>'
        '<process id="Q" isExecutable="false"><startEvent id="QS"/><serviceTask id="QT"/><endEvent id="QE"/>'
        '<sequenceFlow id="q1" sourceRef="QS" targetRef="QT"/><sequenceFlow id="q2" sourceRef="QT" targetRef="QE"/>'
        '</process></definitions>', process="P")  # fmt: skip
    # a process of the same file runs when called (before: refused), so what it lacks is an error on the call
    [problem] = [p for p in in_file.validate() if p.severity == "error"]
    assert (problem.code, problem.element) == ("unbound-service-task", "A") and "in process 'Q'" in problem.message


def test_an_event_subprocess_is_read_and_runs_as_in_spiffworkflow(ws: Workspace) -> None:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser

    file = CASES / "error_event_subprocess.bpmn"
    m = ToBeModel.load(file)  # before: "event subprocesses are not supported"
    assert m.element("ES").triggered_by_event and m.validate() == []
    m.save(ws)
    case = engine.start_case(ws, "ev")
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)
    parser = BpmnParser()
    parser.add_bpmn_file(str(file))
    wf = BpmnWorkflow(parser.get_spec("P"), parser.get_subprocess_specs("P"))
    wf.do_engine_steps()
    assert wf.is_completed()  # SpiffWorkflow, run directly, is the reference
    info = engine.get_case(ws, case)
    assert (info.status, info.data) == ("completed", wf.data)


ZEEBE = 'xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'


def test_zeebe_and_spiffworkflow_extensions_are_read() -> None:
    m = model(
        '<userTask id="A" name="Approve"><extensionElements><zeebe:assignmentDefinition assignee="ann" '
        'candidateGroups="managers"/><zeebe:formDefinition formId="approve-form"/>'
        '</extensionElements></userTask><sequenceFlow id="f1" sourceRef="A" targetRef="J"/>'
        '<serviceTask id="J" name="Ship"><extensionElements><zeebe:taskDefinition type="ship-parcel"/>'
        '</extensionElements></serviceTask><sequenceFlow id="f2" sourceRef="J" targetRef="O"/>'
        '<serviceTask id="O" name="Call"><extensionElements><spiffworkflow:serviceTaskOperator id="http/GetRequest"/>'
        '</extensionElements></serviceTask><sequenceFlow id="f3" sourceRef="O" targetRef="Z"/>'
        '<scriptTask id="Z"><extensionElements><spiffworkflow:preScript>y = 1</spiffworkflow:preScript>'
        '</extensionElements><script>x = 1</script></scriptTask>', ns=ZEEBE)  # fmt: skip
    human = m.element("A").human
    assert (human.assignee, human.candidate_group, human.form_key, human.fields) == (
        "ann", "managers", "approve-form", ())
    assert m.element("J").vendor_binding == "Zeebe job type 'ship-parcel'"
    assert m.element("O").vendor_binding == "SpiffWorkflow operator 'http/GetRequest'"
    found = codes(m)
    assert found["unbound-service-task"] == ["J", "O"]
    assert found["unsupported-construct"] == ["Z"]  # SpiffWorkflow ignores a script task's pre-script: refused
    assert m.element("Z").pre_script == "y = 1"


def test_a_camunda_form_embedded_for_zeebe_becomes_the_form() -> None:
    form = ('{"components": [{"type": "text", "text": "# Review"}, {"type": "textfield", "key": "reviewer", '
            '"label": "Reviewer", "validate": {"required": true, "maxLength": 30}}, {"type": "number", "key": '
            '"score", "validate": {"min": 0, "max": 10}}, {"type": "select", "key": "verdict", "values": '
            '[{"label": "OK", "value": "ok"}, {"label": "Not OK", "value": "nok"}]}], "type": "default"}')
    m = ToBeModel.from_xml(
        f'<definitions xmlns="{BPMN}" {ZEEBE} id="D" targetNamespace="t"><process id="P" isExecutable="true">'
        f'<extensionElements><zeebe:userTaskForm id="Form_1">{form}</zeebe:userTaskForm></extensionElements>'
        '<startEvent id="S"/><sequenceFlow id="f0" sourceRef="S" targetRef="A"/><userTask id="A">'
        '<extensionElements><zeebe:formDefinition formKey="camunda-forms:bpmn:Form_1"/></extensionElements>'
        '</userTask><sequenceFlow id="f1" sourceRef="A" targetRef="E"/><endEvent id="E"/></process></definitions>')
    fields = {f.name: f for f in m.element("A").human.fields}
    assert list(fields) == ["reviewer", "score", "verdict"]
    assert (fields["reviewer"].type, fields["reviewer"].required, fields["reviewer"].max_length) == ("string", True, 30)
    assert (fields["score"].type, fields["score"].minimum, fields["score"].maximum) == ("number", 0, 10)
    assert (fields["verdict"].type, fields["verdict"].allowed) == ("enum", ("ok", "nok"))
    assert codes(m) == {}


def test_a_message_nothing_in_the_case_catches_is_a_warning_saying_where_it_goes() -> None:
    """Before, a message throw event or a send task completed and the message went nowhere; it now goes out
    of the case (test_messages), and validate says so."""
    head = '<message id="M" name="Ping"/>'
    throw = '<intermediateThrowEvent id="A"><messageEventDefinition messageRef="M"/></intermediateThrowEvent>'
    send = '<sendTask id="A" messageRef="M"/>'
    flow = '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>' + _script("Z", "x = 1")
    for body in (throw, send):
        [problem] = [p for p in model(body + flow, head=head).validate() if p.code == "message-leaves-case"]
        assert (problem.severity, problem.element) == ("warning", "A") and "'Ping'" in problem.message
        assert "every other case waiting for it" in problem.message
    bound = model(send + flow, head=head)
    bound.bind("A", python("engine_handlers:noop"))
    assert "message-leaves-case" not in codes(bound)
    assert codes(model('<sendTask id="A"/>' + flow)) == {"unbound-send-task": ["A"]}
    # caught in the same case (here by a boundary event of the next task): SpiffWorkflow delivers it there
    caught = ('<boundaryEvent id="B" attachedToRef="Z"><messageEventDefinition messageRef="M"/></boundaryEvent>'
              '<endEvent id="E2"/><sequenceFlow id="f2" sourceRef="B" targetRef="E2"/>')
    assert "message-leaves-case" not in codes(model(throw + flow + caught, head=head))


def test_an_empty_text_is_a_value_of_an_optional_text_field_and_missing_for_the_rest() -> None:
    """SpiffWorkflow's transaction model cancels on ``value == ""``: before, the empty text was dropped and the
    condition failed on an unknown variable."""
    from procestra.engine import FormError, FormField, HumanTask

    form = HumanTask((FormField("value", "string", required=False), FormField("quantity", "integer", required=False),
                      FormField("name", "string")))  # fmt: skip
    assert form.check({"value": "", "quantity": "", "name": "x"}) == {"value": "", "name": "x"}
    with pytest.raises(FormError, match="name"):
        form.check({"value": "a", "name": ""})


def test_spiffworkflow_payload_extensions_are_read_and_what_would_not_run_exactly_is_refused() -> None:
    """Before, each was refused; the engine now runs them as SpiffWorkflow does (tests/engine/test_spiff_extensions)."""
    spiff = 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'
    head = ('<signal id="Sig" name="Done"><extensionElements><spiffworkflow:payloadExpression>{"r": v}'
            '</spiffworkflow:payloadExpression><spiffworkflow:variableName>result</spiffworkflow:variableName>'
            '</extensionElements></signal>')
    throw = ('<intermediateThrowEvent id="A"><signalEventDefinition signalRef="Sig"/></intermediateThrowEvent>'
             '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>' + _script("Z", "x = 1"))
    m = model(throw, head=head, ns=spiff)
    assert (m.element("A").payload, m.element("A").payload_variable) == ('{"r": v}', None)
    assert "unsupported-construct" not in codes(m)
    catch = throw.replace("intermediateThrowEvent", "intermediateCatchEvent")
    assert model(catch, head=head, ns=spiff).element("A").payload_variable == "result"
    no_variable = head.replace("<spiffworkflow:variableName>result</spiffworkflow:variableName>", "")
    [problem] = [p for p in model(catch, head=no_variable, ns=spiff).validate() if p.code == "unsupported-construct"]
    assert problem.element == "A" and "drops the payload" in problem.message  # SpiffWorkflow would drop it
    receive = ('<receiveTask id="A" messageRef="M"><extensionElements><spiffworkflow:messageVariable>a_var'
               '</spiffworkflow:messageVariable></extensionElements></receiveTask>'
               '<sequenceFlow id="f1" sourceRef="A" targetRef="Z"/>' + _script("Z", "x = 1"))
    assert model(receive, head='<message id="M" name="B"/>', ns=spiff).element("A").payload_variable == "a_var"
    on_message = ('<message id="M" name="B"><extensionElements><spiffworkflow:messageVariable>a_var'
                  '</spiffworkflow:messageVariable></extensionElements></message>')  # SpiffWorkflow's old place
    [problem] = [p for p in model(receive, head=on_message, ns=spiff).validate()
                 if p.code == "unsupported-construct"]  # fmt: skip
    assert problem.element == "A" and "spiffworkflow:messageVariable" in problem.message


def test_a_parallel_join_waiting_for_a_boundary_branch_is_refused_naming_it() -> None:
    """SpiffWorkflow waits for ever at such a join when the boundary event does not fire; before, the engine
    failed the case there with no word of the join."""
    body = ('<userTask id="A"/><boundaryEvent id="B" attachedToRef="A" cancelActivity="false"><timerEventDefinition>'
            '<timeDuration>PT1H</timeDuration></timerEventDefinition></boundaryEvent>'
            '<scriptTask id="R"><script>late = True</script></scriptTask><parallelGateway id="J"/>'
            '<sequenceFlow id="f1" sourceRef="A" targetRef="J"/><sequenceFlow id="f2" sourceRef="B" targetRef="R"/>'
            '<sequenceFlow id="f3" sourceRef="R" targetRef="J"/><sequenceFlow id="f4" sourceRef="J" targetRef="Z"/>'
            + _script("Z", "x = 1"))  # fmt: skip
    assert codes(model(body))["join-after-boundary"] == ["J"]
    exclusive = body.replace('<parallelGateway id="J"/>', '<exclusiveGateway id="J"/>')
    assert "join-after-boundary" not in codes(model(exclusive))
