"""Camunda constructs read as SpiffWorkflow's CamundaParser runs them, through a real :class:`engine.Worker`.

- ``camunda:collection``/``camunda:elementVariable`` on a multi-instance task: read as standard
  multi-instance (the collection updated in place, or the instance indexes collected) and saved so;
- a dotted form field id (``person.dog_friendly``) sets a key inside nested case data;
- an enum field without values takes no answer; a boolean default that is not true/false is dropped
  with a warning; a field with an empty type is a string field, with a warning;
- a script whose scriptFormat names no language (``reset``) runs as Python, as SpiffWorkflow runs it.

Each run is compared with SpiffWorkflow's own run of the same file (CamundaParser, the answers put
into the task data as its tests do); before, the engine refused each of these files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from procestra import Workspace, engine
from procestra.engine.exceptions import FormError
from procestra.engine.tobe import ToBeModel
from procestra.models.repository import model_info

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="main" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="StartEvent_1" targetRef="Task_1" />
"""
TAIL = """    <bpmn:sequenceFlow id="f2" sourceRef="Task_1" targetRef="EndEvent_1" />
    <bpmn:endEvent id="EndEvent_1"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""


def bpmn(task: str) -> str:
    return HEAD + task + TAIL


def run_spiff(xml: str, data: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """SpiffWorkflow's run of ``xml`` with its CamundaParser; each ready user task gets the next answer."""
    from SpiffWorkflow import TaskState
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.camunda.parser import CamundaParser

    parser = CamundaParser()
    parser.add_bpmn_str(xml.encode())
    wf = BpmnWorkflow(parser.get_spec("main"))
    for t in wf.get_tasks(state=TaskState.READY):
        t.data.update(data)
    todo = list(answers)
    wf.do_engine_steps()
    while not wf.is_completed():
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        assert ready, "SpiffWorkflow's run waits for something other than a user task"
        ready[0].data.update(todo.pop(0))
        ready[0].run()
        wf.do_engine_steps()
    return dict(wf.data)


def run_ours(
    ws: Workspace, xml: str, data: dict[str, Any], answers: list[dict[str, Any]], tmp: Path, name: str = "m"
) -> dict[str, Any]:
    """The engine's run of ``xml``: loaded, validated, saved, started and its user tasks answered in turn."""
    src = tmp / f"{name}.bpmn"
    src.write_text(xml, encoding="utf-8")
    model = ToBeModel.load(src, name=name)
    for key in data:
        model.declare(key)
    errors = [str(p) for p in model.validate(ws=ws) if p.severity == "error"]
    assert not errors, errors
    model.save(ws)
    case = engine.start_case(ws, name, data)
    todo = list(answers)
    for _ in range(20):
        engine.Worker(ws, poll=0.02).run(until_idle=True, max_seconds=30)
        open_tasks = engine.list_tasks(ws, case=case)
        if not open_tasks:
            break
        engine.complete_task(ws, open_tasks[0].task, todo.pop(0))
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    return dict(info.data)


# -- camunda:collection / camunda:elementVariable ---------------------------------------------------------
MI_COLLECTION = bpmn("""    <bpmn:userTask id="Task_1" name="Rate">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics isSequential="true" camunda:collection="people"
        camunda:elementVariable="person" />
    </bpmn:userTask>
""")
MI_CARDINALITY = bpmn("""    <bpmn:userTask id="Task_1" name="Count">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:multiInstanceLoopCharacteristics camunda:collection="counted" camunda:elementVariable="n">
        <bpmn:loopCardinality>2</bpmn:loopCardinality>
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:userTask>
""")


def test_a_camunda_collection_is_updated_in_place_as_spiffworkflow_does(ws: Workspace, tmp_path: Path) -> None:
    data = {"people": ["ann", "bob"]}
    answers = [{"person": "ANN"}, {"person": "BOB"}]
    ours = run_ours(ws, MI_COLLECTION, data, answers, tmp_path)
    assert run_spiff(MI_COLLECTION, data, answers) == {"people": ["ANN", "BOB"]}
    assert ours == {"people": ["ANN", "BOB"]}
    saved = (model_info(ws, "m").path / "model.bpmn").read_text()  # the product's file: standard BPMN
    assert "camunda:collection" not in saved and ">people</bpmn:loopDataInputRef>" in saved
    assert ">people</bpmn:loopDataOutputRef>" in saved
    # the item is both input and output item: one id for two data items, said at validate
    warned = [p for p in ToBeModel.load(tmp_path / "m.bpmn", name="m").validate(ws=ws) if p.code == "shared-data-item"]
    assert [(p.severity, p.element) for p in warned] == [("warning", "Task_1")]


def test_a_camunda_element_variable_with_a_cardinality_collects_the_indexes(ws: Workspace, tmp_path: Path) -> None:
    answers: list[dict[str, Any]] = [{}, {}]
    ours = run_ours(ws, MI_CARDINALITY, {}, answers, tmp_path)
    theirs = run_spiff(MI_CARDINALITY, {}, answers)
    assert theirs == {"counted": [0, 1]}
    assert ours == theirs
    src = tmp_path / "v.bpmn"  # a cardinality from data: a count, as Camunda 7 takes it, said at validate
    src.write_text(MI_CARDINALITY.replace(">2<", ">how_many<"), encoding="utf-8")
    model = ToBeModel.load(src, name="v")
    model.declare("how_many", "integer")
    [w] = [p for p in model.validate(ws=ws) if p.code == "read-as-spiffworkflow"]
    assert w.severity == "warning" and "'how_many' is taken as a count" in w.message


def test_a_camunda_collection_without_element_variable_is_refused(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "x.bpmn"
    src.write_text(MI_COLLECTION.replace(' camunda:elementVariable="person"', ""), encoding="utf-8")
    problems = [str(p) for p in ToBeModel.load(src, name="x").validate(ws=ws) if p.severity == "error"]
    assert any("Task_1" in p and "camunda:elementVariable" in p for p in problems), problems


# -- forms -------------------------------------------------------------------------------------------------
def form(fields: str) -> str:
    return bpmn(f"""    <bpmn:userTask id="Task_1" name="Ask" camunda:formKey="ask">
      <bpmn:extensionElements><camunda:formData>{fields}</camunda:formData></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
""")


DOTTED = form('<camunda:formField id="person.dog_friendly" type="boolean" />')


def test_a_dotted_field_id_sets_the_key_inside_the_nested_case_data(ws: Workspace, tmp_path: Path) -> None:
    data = {"person": {"id": 7}}
    ours = run_ours(ws, DOTTED, data, [{"person.dog_friendly": True}], tmp_path)
    # SpiffWorkflow's Camunda forms (Task.update_data_var, 1.x) set the path, keeping the object's other keys
    assert ours == {"person": {"id": 7, "dog_friendly": True}}
    assert run_spiff(DOTTED, data, [{}]) == data  # unanswered, as SpiffWorkflow's peer run: nothing set
    made = run_ours(ws, DOTTED, {}, [{"person.dog_friendly": False}], tmp_path, name="made")
    assert made == {"person": {"dog_friendly": False}}  # the object is made on the way


def test_a_dotted_field_over_data_that_is_not_an_object_is_refused_on_completion(ws: Workspace,
                                                                                  tmp_path: Path) -> None:
    src = tmp_path / "d.bpmn"
    src.write_text(DOTTED, encoding="utf-8")
    model = ToBeModel.load(src, name="d")
    model.declare("person")
    model.save(ws)
    case = engine.start_case(ws, "d", {"person": "Ann"})
    engine.Worker(ws, poll=0.02).run(until_idle=True, max_seconds=30)
    [item] = engine.list_tasks(ws, case=case)
    with pytest.raises(FormError, match="not an object"):
        engine.complete_task(ws, item.task, {"person.dog_friendly": True})
    with pytest.raises(FormError, match="not a field"):
        engine.complete_task(ws, item.task, {"person": {"dog_friendly": True}})  # the dotted name, as it is
    bad = form('<camunda:formField id="person-dog" type="boolean" />')
    src.write_text(bad, encoding="utf-8")
    problems = [str(p) for p in ToBeModel.load(src, name="b").validate(ws=ws) if p.severity == "error"]
    assert any("'person-dog'" in p and "not an identifier" in p for p in problems), problems


ENUM_EMPTY = form('<camunda:formField id="choice" type="enum" /><camunda:formField id="note" type="" />')


def test_an_enum_without_values_takes_no_answer(ws: Workspace, tmp_path: Path) -> None:
    ours = run_ours(ws, ENUM_EMPTY, {}, [{"note": "hi"}], tmp_path)
    assert ours == run_spiff(ENUM_EMPTY, {}, [{"note": "hi"}]) == {"note": "hi"}
    model = ToBeModel.load(tmp_path / "m.bpmn", name="m")
    warnings = {p.message for p in model.validate(ws=ws) if p.severity == "warning" and p.element == "Task_1"}
    assert any("'choice' is an enum without values" in w for w in warnings), warnings
    assert any("'note' has an empty type" in w for w in warnings), warnings
    case = engine.start_case(ws, "m", {})
    engine.Worker(ws, poll=0.02).run(until_idle=True, max_seconds=30)
    [item] = engine.list_tasks(ws, case=case)
    with pytest.raises(FormError, match="takes no answer"):
        engine.complete_task(ws, item.task, {"choice": "x"})
    src = tmp_path / "r.bpmn"
    src.write_text(form('<camunda:formField id="choice" type="enum"><camunda:validation><camunda:constraint '
                        'name="required" config="true" /></camunda:validation></camunda:formField>'), encoding="utf-8")
    problems = [str(p) for p in ToBeModel.load(src, name="r").validate(ws=ws) if p.severity == "error"]
    assert any("'choice'" in p and "required enum without values" in p for p in problems), problems


BOOL_DEFAULT = form('<camunda:formField id="NeedClarification" type="boolean" defaultValue="No" />')


def test_a_boolean_default_that_is_not_true_or_false_is_dropped_with_a_warning(ws: Workspace,
                                                                                tmp_path: Path) -> None:
    data = {"NeedClarification": "No"}
    ours = run_ours(ws, BOOL_DEFAULT, data, [{}], tmp_path)
    assert ours == run_spiff(BOOL_DEFAULT, data, [{}]) == data  # unanswered: nothing set, as SpiffWorkflow
    model = ToBeModel.load(tmp_path / "m.bpmn", name="m")
    [w] = [p for p in model.validate(ws=ws) if p.code == "read-as-spiffworkflow"]
    assert w.severity == "warning" and w.element == "Task_1" and "the default 'No' is not a boolean" in w.message
    assert model.element("Task_1").human.fields[0].default is None


# -- scriptFormat ------------------------------------------------------------------------------------------
def script(fmt: str) -> str:
    return bpmn(f"""    <bpmn:scriptTask id="Task_1" name="Reset" scriptFormat="{fmt}">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>caught = False</bpmn:script>
    </bpmn:scriptTask>
""")


def test_a_script_format_naming_no_language_runs_as_python_as_spiffworkflow_does(ws: Workspace,
                                                                                 tmp_path: Path) -> None:
    ours = run_ours(ws, script("reset"), {}, [], tmp_path)
    assert ours == run_spiff(script("reset"), {}, []) == {"caught": False}
    saved = (model_info(ws, "m").path / "model.bpmn").read_text()
    assert 'scriptFormat="python"' in saved and "reset" not in saved
    src = tmp_path / "js.bpmn"
    for fmt in ("javascript", "groovy", "text/x-groovy"):
        src.write_text(script(fmt), encoding="utf-8")
        problems = [str(p) for p in ToBeModel.load(src, name="js").validate(ws=ws) if p.severity == "error"]
        assert any("Python scripts only" in p for p in problems), (fmt, problems)
