"""A model read from a file keeps the file: saving patches it, so what the author drew survives.

The reference is the file itself: its diagram bounds, its other pools and vendor parts, read
here with lxml, and SpiffWorkflow running the original file directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from procestra import Workspace
from procestra.engine.connectors import python
from procestra.engine.tobe import ToBeModel

CASES = Path(__file__).resolve().parent / "cases"
PARALLEL = CASES / "spiff_token_trial_parallel_simple.bpmn"  # drawn in Camunda Modeler 4.11.1
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
DI = "{http://www.omg.org/spec/BPMN/20100524/DI}"
DC = "{http://www.omg.org/spec/DD/20100524/DC}"
CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"


def bounds(xml: bytes | str) -> dict[str, tuple[str, ...]]:
    """Every shape's bounds by element id, as the file writes them."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    return {s.get("bpmnElement"): tuple(s.find(f"{DC}Bounds").get(k) for k in ("x", "y", "width", "height"))
            for s in root.iter(f"{DI}BPMNShape")}  # fmt: skip


def waypoints(xml: bytes | str) -> dict[str, list[tuple[str | None, str | None]]]:
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    return {e.get("bpmnElement"): [(w.get("x"), w.get("y")) for w in e.iter("{http://www.omg.org/spec/DD/20100524/DI}"
                                                                            "waypoint")]
            for e in root.iter(f"{DI}BPMNEdge")}  # fmt: skip


def test_saving_keeps_every_position_and_is_a_fixed_point(ws: Workspace) -> None:
    original = PARALLEL.read_bytes()
    model = ToBeModel.load(PARALLEL)
    model.bind("Task P2", python("engine_handlers:effect"))  # an edit that changes no element's place
    xml = model.to_xml()
    assert bounds(xml) == bounds(original)  # before: re-laid out, every shape moved
    assert waypoints(xml) == waypoints(original)
    saved = model.save(ws, check=False)
    first = (saved.path / "model.bpmn").read_bytes()
    again = ToBeModel.load(saved.ref, ws=ws).save(ws, check=False)
    assert (again.path / "model.bpmn").read_bytes() == first  # save(load(save(x))) == save(x), byte for byte
    assert ToBeModel.load(again.ref, ws=ws).to_dict() == ToBeModel.load(saved.ref, ws=ws).to_dict()


def test_a_model_built_through_the_api_is_a_fixed_point_too(ws: Workspace) -> None:
    from procestra.engine.examples import loan_to_be

    first = loan_to_be().save(ws, check=False)  # laid out anew: no file to keep
    again = ToBeModel.load(first.ref, ws=ws).save(ws, check=False)  # now the saved file is kept and patched
    assert (again.path / "model.bpmn").read_bytes() == (first.path / "model.bpmn").read_bytes()


def test_what_the_engine_does_not_model_stays_in_the_file() -> None:
    root = etree.fromstring(ToBeModel.load(PARALLEL).to_xml().encode())
    task = root.find(f".//{B}userTask[@id='UserTask_0fd3nql']")
    assert task.get(f"{CAMUNDA}formKey") == "Physical Interactions"
    fields = [f.get("id") for f in task.iter(f"{CAMUNDA}formField")]
    assert fields == ["nterviews", "StaffInteractions", "SubjectInteractions", "FaceToFaceInteractions",
                      "InteractionsDuringVisits", "Screening", "AtRiskParticipants"]
    doc = root.find(f".//{B}userTask[@id='UserTask_1k9gxsc']/{B}documentation")
    assert doc.text.startswith("#### Please plan")
    assert root.get("exporter") == "Camunda Modeler"


def test_edits_patch_the_file_and_only_new_elements_get_a_place() -> None:
    original = PARALLEL.read_bytes()
    model = ToBeModel.load(PARALLEL)
    model.rename("Task P1", "Interactions")
    new = model.add_task("Notify", kind="service", after="Set data")
    model.bind(new, python("engine_handlers:effect"))
    report = model.remove("Task P2")
    xml = model.to_xml()
    root = etree.fromstring(xml.encode())
    kept = bounds(xml)
    before = bounds(original)
    gone = {"UserTask_1k9gxsc"}
    assert set(report.removed) == gone
    assert {k: v for k, v in kept.items() if k != new} == {k: v for k, v in before.items() if k not in gone}
    assert root.find(f".//{B}userTask[@id='UserTask_0fd3nql']").get("name") == "Interactions"
    assert root.find(f".//{B}*[@id='UserTask_1k9gxsc']") is None
    removed_flows = {"SequenceFlow_1ylxjys", "SequenceFlow_0rwnquq"}
    assert not removed_flows & {e.get("bpmnElement") for e in root.iter(f"{DI}BPMNEdge")}
    set_data = [float(v) for v in before["Activity_1ghr6kd"]]
    x, y, w, h = (float(v) for v in kept[new])
    assert x == set_data[0] + set_data[2] + 50  # right of the task it follows, moved down while the place is taken
    assert (w, h) == (100.0, 80.0) and y >= set_data[1]
    notify = root.find(f".//{B}serviceTask[@id='{new}']")
    assert [c.text for c in notify if c.tag in (f"{B}incoming", f"{B}outgoing")] == [
        *(f.id for f in model.incoming(new)), *(f.id for f in model.outgoing(new))]
    again = ToBeModel.from_xml(xml)
    assert again.to_dict() == model.to_dict()
    assert again.to_xml() == xml


def test_parallel_branches_keep_their_order_after_saving() -> None:
    """SpiffWorkflow offers parallel branches in the order of their positions in the diagram."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.util.task import TaskState

    def offered(xml: bytes) -> list[str]:
        parser = BpmnParser()
        parser.add_bpmn_str(xml, filename="m.bpmn")
        wf = BpmnWorkflow(parser.get_spec("ParallelOrder"))
        wf.do_engine_steps()
        return [t.task_spec.bpmn_name for t in wf.get_tasks(state=TaskState.READY)]

    file = CASES / "spiff_ParallelOrder.bpmn"
    original = offered(file.read_bytes())
    assert original == ["Task 1", "Task 2", "Task 3", "Task 4"]
    assert offered(ToBeModel.load(file).to_xml().encode()) == original  # before: Task 4, 3, 2, 1


def test_removing_an_element_removes_what_refers_to_it() -> None:
    orders = CASES / "orders_camunda.bpmn20.xml"
    model = ToBeModel.load(orders)
    model.remove("Order in")  # the target of the customer's message flow
    model.add_event("start", name="Order in", before="Enter order")
    model.add_event("timer", name="Cool down", timer="PT1M", after="Enter order")
    root = etree.fromstring(model.to_xml().encode())
    assert root.find(f".//{B}messageFlow") is None
    drawn = {e.get("bpmnElement") for e in root.iter(f"{DI}BPMNEdge")} | {
        s.get("bpmnElement") for s in root.iter(f"{DI}BPMNShape")}
    assert {"MessageFlow_order", "StartEvent_order"}.isdisjoint(drawn)
    ids = {x.get("id") for x in root.iter() if x.get("id")}
    refs = {x.get(a) for x in root.iter() for a in ("sourceRef", "targetRef", "bpmnElement") if x.get(a)}
    assert refs <= ids  # nothing left pointing at what was removed
    [timer] = root.iter(f"{B}timeDuration")
    assert timer.text == "PT1M" and timer.get("{http://www.w3.org/2001/XMLSchema-instance}type") == \
        "bpmn:tFormalExpression"


def test_a_drawn_call_activity_calls_the_saved_model_it_names(ws: Workspace) -> None:
    from procestra import engine

    called = ToBeModel("checks")
    start = called.add_event("start")
    task = called.add_task("Check", after=start)
    called.bind(task, python("engine_handlers:effect"))
    called.add_event("end", after=task)
    called.save(ws)
    caller = ToBeModel.from_xml(
        f'<definitions xmlns="{B[1:-1]}" id="D" targetNamespace="t"><process id="P" name="caller">'
        '<startEvent id="S"/><sequenceFlow id="f0" sourceRef="S" targetRef="Call"/>'
        '<callActivity id="Call" name="Run checks" calledElement="checks"/>'
        '<sequenceFlow id="f1" sourceRef="Call" targetRef="E"/><endEvent id="E"/></process></definitions>')
    info = caller.save(ws)
    node = etree.parse(str(info.path / "model.bpmn")).find(f".//{B}callActivity")
    assert node.get("calledElement") == "Process_checks"  # the saved model's process, which the engine loads
    case = engine.start_case(ws, "caller")
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)
    info_case = engine.get_case(ws, case)
    assert (info_case.status, info_case.data) == ("completed", {"effect_done": True})


def test_a_file_without_a_diagram_gets_one_in_flow_order() -> None:
    m = ToBeModel.from_xml(
        f'<definitions xmlns="{B[1:-1]}" id="D" targetNamespace="t"><process id="P"><startEvent id="S"/>'
        '<sequenceFlow id="f0" sourceRef="S" targetRef="A"/><task id="A"/><sequenceFlow id="f1" sourceRef="A" '
        'targetRef="G"/><parallelGateway id="G"/><sequenceFlow id="f2" sourceRef="G" targetRef="B1"/>'
        '<sequenceFlow id="f3" sourceRef="G" targetRef="B2"/><task id="B1"/><task id="B2"/></process></definitions>')
    drawn = {k: tuple(float(v) for v in b) for k, b in bounds(m.to_xml()).items()}
    assert set(drawn) == set(m.elements)
    x = [drawn[k][0] for k in ("S", "A", "G", "B1")]
    assert x == sorted(x) and len(set(x)) == 4  # left to right along the flow
    assert drawn["B1"][0] == drawn["B2"][0] and drawn["B1"][1] < drawn["B2"][1]  # branches in the file's order
    assert set(waypoints(m.to_xml())) == set(m.flows)


def test_an_edit_that_fails_midway_leaves_the_model_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each edit deep-copied the whole model to undo a failure: 1,000 tasks took 50 s to add (0.14 s now,
    benchmarks/bench_large_model.py). The undo copies the dicts and the attributes of what the edit
    changes; a failure midway still restores all."""
    m = ToBeModel("undo")
    start = m.add_event("start", id="S")
    a = m.add_task("A", id="A", after=start)
    m.add_event("end", id="E", after=a)
    before = m.to_dict()
    splice = ToBeModel._splice

    def broken(self: ToBeModel, el: object, after: str | None, before_: str | None) -> None:
        splice(self, el, after, before_)  # rewires the flow A -> E in place, adds flows, then fails
        self.element("A").name = "changed"
        raise RuntimeError("boom")

    monkeypatch.setattr(ToBeModel, "_splice", broken)
    with pytest.raises(RuntimeError, match="boom"):
        m.add_task("B", id="B", after="A")
    assert m.to_dict() == before
    monkeypatch.setattr(ToBeModel, "_splice", splice)
    m.add_task("B", id="B", after="A")  # the same edit, not failing: what the broken one undid
    assert sorted(f"{f.source}>{f.target}" for f in m.flows.values()) == ["A>B", "B>E", "S>A"]
    assert m.element("A").name == "A"
