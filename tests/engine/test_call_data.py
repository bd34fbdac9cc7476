"""What data reaches a task: guarded optional variables, what a call gives back, a process's ioSpecification
and a multi-instance subprocess's item (issue 13: SpiffWorkflow's models rely on each).

Every model runs through a real Worker (SpiffWorkflow underneath) and is checked at validate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procestra import engine
from procestra.engine.guards import proven, unguarded
from procestra.engine.tobe import ToBeModel

CASES = Path(__file__).resolve().parent / "cases"
CALLEE = CASES / "io_spec_callee.bpmn"


def errors(model: ToBeModel, ws=None) -> list[str]:
    return [str(p) for p in model.validate(ws=ws) if p.severity == "error"]


def run(ws, model: str, data: dict) -> engine.CaseInfo:
    case = engine.start_case(ws, model, data)
    engine.Worker(ws).run(until_idle=True, max_seconds=60)
    return engine.get_case(ws, case)


def guarded(*, guard: bool) -> ToBeModel:
    """start -> 'present?' -> (x in vars()) -> 'big?' (uses x) -> big / small; else -> absent."""
    m = ToBeModel("guarded")
    start = m.add_event("start", id="StartEvent_1")
    present = m.add_gateway(name="present?", id="Gateway_present", after=start)
    big = m.add_gateway(name="big?", id="Gateway_big")
    for name, gateway in (("Big", big), ("Small", big), ("Absent", present)):
        task = m.add_task(name, kind="script", id=f"Activity_{name}")
        m.set_script(task, f"seen = {name!r}")
        m.connect(gateway, task)
        m.connect(task, m.add_event("end", id=f"EndEvent_{name}"))
    m.connect(present, big, condition="'x' in vars() or 'x' in locals()" if guard else "True")
    m.set_default(present, "Activity_Absent")
    m.set_condition(big, "Activity_Big", "x > 10")
    m.set_default(big, "Activity_Small")
    return m


def test_a_variable_used_only_after_a_branch_testing_it_exists_is_known(ws):
    """CallActivity-Escalation-Test-Sub.bpmn20.xml: ``'should_escalate' in vars()`` guards its use."""
    unguarded = errors(guarded(guard=False))
    assert any("[unknown-variable] Gateway_big" in p and "'x'" in p for p in unguarded), unguarded
    model = guarded(guard=True)
    assert errors(model) == []
    model.save(ws)
    assert (run(ws, "guarded", {"x": 20}).data["seen"], run(ws, "guarded", {"x": 1}).data["seen"],
            run(ws, "guarded", {}).data["seen"]) == ("Big", "Small", "Absent")  # fmt: skip


@pytest.mark.parametrize(("condition", "proves", "reads"), [
    ("'x' in vars() and x > 1", {"x"}, set()),
    ("x > 1 and 'x' in vars()", {"x"}, {"x"}),  # read before the test
    ("'x' not in vars() or x > 1", set(), set()),
    ("x if 'x' in locals() else 0", set(), set()),
    ("not ('x' not in globals())", {"x"}, set()),
    ("'x' in vars() or 'y' in vars()", set(), set()),
    ("('x' in vars() or 'y' in vars()) and x", set(), {"x"}),
    ("'x' in vars(y)", set(), {"y"}),  # not the test for a variable
])  # fmt: skip
def test_what_a_condition_proves_and_reads_unguarded(condition, proves, reads):
    assert proven(condition) == proves
    assert (unguarded(condition) or set()) - {"vars", "locals", "globals"} == reads


def test_a_use_guarded_in_its_own_condition_is_known(ws):
    m = guarded(guard=False)
    m.set_condition("Gateway_big", "Activity_Big", "'x' in vars() and x > 10")
    assert errors(m) == []
    m.save(ws)
    assert (run(ws, "guarded", {"x": 20}).data["seen"], run(ws, "guarded", {}).data["seen"]) == ("Big", "Small")


def test_a_guard_on_one_path_only_does_not_hide_the_other():
    m = guarded(guard=True)
    m.connect("StartEvent_1", "Gateway_big")  # a second way in, with no test for x
    assert any("[unknown-variable] Gateway_big" in p for p in errors(m))


def caller(name: str, called: str, script: str, after_script: str) -> ToBeModel:
    m = ToBeModel(name)
    start = m.add_event("start", id="StartEvent_1")
    before = m.add_task("Set", kind="script", id="Activity_set", after=start)
    m.set_script(before, script)
    call = m.add_call_activity("Call", called, id="Activity_call", after=before)
    after = m.add_task("Use", kind="script", id="Activity_use", after=call)
    m.set_script(after, after_script)
    m.add_event("end", id="EndEvent_1", after=after)
    return m


def test_what_a_called_model_sets_is_known_after_the_call(ws):
    """call_activity_end_event.bpmn: the caller reads what the called model set; the callee deletes a variable."""
    callee = ToBeModel("getdata")
    start = callee.add_event("start", id="StartEvent_1")
    task = callee.add_task("Create", kind="script", id="Activity_create", after=start)
    callee.set_script(task, "my_var = 'World'\ndel(remove_this_var)")
    callee.add_event("end", id="EndEvent_1", after=task)
    assert errors(callee) == []
    callee.save(ws)
    m = caller("calls", "getdata", "pre_var = 'x'\nremove_this_var = 1", "both = pre_var + my_var")
    assert errors(m, ws) == []
    m.save(ws)
    info = run(ws, "calls", {})
    assert info.status == "completed", info.error
    assert info.data == {"pre_var": "x", "my_var": "World", "both": "xWorld"}


def test_a_called_process_gets_its_data_inputs_and_gives_back_its_data_outputs_only(ws):
    """io_spec_parent.bpmn / io_spec.bpmn: SpiffWorkflow passes only the inputs and takes back only the outputs."""
    callee = ToBeModel.load(CALLEE, name="io")
    assert errors(callee) == []  # in_1 and in_2 are its inputs: known
    callee.save(ws)
    saved = ToBeModel.load("io", ws=ws).document or b""
    assert b"<bpmn:ioSpecification>" in saved  # kept in the saved BPMN: SpiffWorkflow's parser applies it
    m = caller("parent", "io", "in_1, in_2, unused, extra = 1, 'hi', True, 'mine'", "done = out_1 + 1")
    assert errors(m, ws) == []
    m.save(ws)
    info = run(ws, "parent", {})
    assert info.status == "completed", info.error
    assert info.data == {"in_1": 1, "in_2": "hi", "unused": True, "extra": "mine", "out_1": 2,
                         "seen": ["in_1", "in_2", "out_1", "unused"], "done": 3}  # fmt: skip


def test_a_missing_data_input_is_refused_at_validate_and_fails_the_case_naming_it(ws):
    ToBeModel.load(CALLEE, name="io").save(ws)
    m = caller("parent", "io", "in_1 = 1", "done = out_1")
    problems = errors(m, ws)
    assert any("[unknown-variable] Activity_call" in p and "'in_2'" in p and "data input" in p for p in problems)
    m.declare("in_2")  # declared, but the case starts without it: SpiffWorkflow refuses the call
    m.save(ws)
    info = run(ws, "parent", {})
    assert info.status == "failed"
    assert "Activity_call: the called process's data input 'in_2' is missing" in (info.error or ""), info.error


def test_a_task_inside_a_multi_instance_subprocess_reads_the_item(ws):
    """performance_test.bpmn: the script inside a multi-instance subprocess reads its input data item."""
    m = ToBeModel("each")
    start = m.add_event("start", id="StartEvent_1")
    sub = m.add_subprocess("Each", tasks=["Update"], id="Activity_each", after=start)
    m.add_event("end", id="EndEvent_1", after=sub)
    inner = m.element("Update").id
    m.element(inner).kind = "scriptTask"
    m.set_script(inner, "out_item = {'a': my_item['a'], 'index': 1}")
    m.set_loop(sub, kind="sequential", collection="items", element_variable="my_item",
               output_collection="items2", output_element="out_item")  # fmt: skip
    m.declare("items")
    assert errors(m) == []
    m.save(ws)
    info = run(ws, "each", {"items": [{"a": 1}, {"a": 2}]})
    assert info.status == "completed", info.error
    assert info.data["items2"] == [{"a": 1, "index": 1}, {"a": 2, "index": 1}]
