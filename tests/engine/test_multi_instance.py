"""Multi-instance and loop activities through a real :class:`engine.Worker` on a real workspace.

- a parallel multi-instance user task over a collection offers one work item per element at once,
  each showing its element, and collects the answers in the output collection in the order people
  complete them (as SpiffWorkflow appends them to a list separate from the input);
- a sequential multi-instance service task by cardinality calls its handler once per instance,
  each with its own idempotency key and its instance number, and collects the outputs;
- a standard loop runs its script until the loop condition fails.

Before, the multi-instance task itself was taken for a service task (its handler ran once more,
with no instance) and the instances of a user task were offered one or two at a time. The expected
runs are read from the diagrams (BPMN 2.0: one instance per element or per count).

Until the product keeps multi-instance and loop markup when it saves a model (the imported
document is kept: issue 13, another part), :func:`engine_handlers.save_with_markup` saves the model and adds the
markup to the saved ``model.bpmn``, which is what SpiffWorkflow runs.
"""

from __future__ import annotations

import engine_handlers
from procestra import Workspace, engine
from procestra.engine.connectors import idempotency_key, python
from procestra.engine.tobe import FormField, ToBeModel

H = "engine_handlers:"


def settle(ws: Workspace) -> None:
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)


def test_a_parallel_multi_instance_user_task_offers_one_item_per_element_at_once(ws: Workspace) -> None:
    m = ToBeModel("reviews")
    m.declare("documents", "list", required=True)
    start = m.add_event("start", id="StartEvent_1")
    review = m.add_task("Review document", id="Activity_review", after=start)
    m.human(review, [FormField("verdict", "string")], group="reviewers")
    m.add_event("end", id="EndEvent_1", after=review)
    engine_handlers.save_with_markup(ws, m, {"Activity_review": (
        "<bpmn:multiInstanceLoopCharacteristics><bpmn:loopDataInputRef>documents</bpmn:loopDataInputRef>"
        "<bpmn:loopDataOutputRef>verdicts</bpmn:loopDataOutputRef><bpmn:inputDataItem id='document' "
        "name='document'/><bpmn:outputDataItem id='verdict' name='verdict'/></bpmn:multiInstanceLoopCharacteristics>")})
    case = engine.start_case(ws, "reviews", {"documents": ["contract", "invoice", "receipt"]})
    settle(ws)
    items = engine.list_tasks(ws, case=case)
    assert [(t.element, t.instance_data, t.candidate_group) for t in items] == [
        ("Activity_review", {"document": d}, "reviewers") for d in ("contract", "invoice", "receipt")]
    assert sorted(t.task for t in items) == sorted({t.task for t in items})  # three work items
    for item in reversed(items):  # people answer in any order
        engine.complete_task(ws, item.task, {"verdict": f"{item.instance_data['document']} ok"})
        settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    # the answers in the output collection as completed; no instance's own data in the case data
    assert info.data == {"documents": ["contract", "invoice", "receipt"],
                         "verdicts": ["receipt ok", "invoice ok", "contract ok"]}
    history = engine.case_history(ws, case)
    assert sorted((s.kind, s.element, s.occurrence) for s in history[:3]) == [
        ("user", "Activity_review", n) for n in (1, 2, 3)]
    assert [s.data for s in history[:3]] == [{"verdict": f"{d} ok"} for d in ("receipt", "invoice", "contract")]
    assert [t.status for t in engine.list_tasks(ws, case=case, status=None)] == ["completed"] * 3


def test_a_sequential_multi_instance_service_task_calls_its_handler_once_per_instance(ws: Workspace) -> None:
    m = engine_handlers.one_task_model("notify3", "Activity_send", "Send notice")
    engine_handlers.save_with_markup(ws, m, {"Activity_send": (
        "<bpmn:multiInstanceLoopCharacteristics isSequential='true'><bpmn:loopCardinality>3</bpmn:loopCardinality>"
        "<bpmn:loopDataOutputRef>sent</bpmn:loopDataOutputRef><bpmn:inputDataItem id='n' name='n'/>"
        "<bpmn:outputDataItem id='effect_done' name='effect_done'/></bpmn:multiInstanceLoopCharacteristics>")})
    case = engine.start_case(ws, "notify3", {})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert [(c["task"], c["key"]) for c in engine_handlers.calls(ws)] == [
        ("Activity_send", idempotency_key(case, "Activity_send", n)) for n in (1, 2, 3)]
    assert [(s.kind, s.element, s.occurrence) for s in engine.case_history(ws, case)] == [
        ("service", "Activity_send", 1), ("service", "Activity_send", 2), ("service", "Activity_send", 3),
        ("end", None, 1)]
    assert info.data == {"sent": [True, True, True]}


def test_a_standard_loop_runs_until_its_condition_fails(ws: Workspace) -> None:
    m = ToBeModel("count3")
    m.declare("count", "number", required=True)
    start = m.add_event("start", id="StartEvent_1")
    step = m.add_task("Count", id="Activity_count", after=start)
    m.set_script(step, "count = count + 1")
    m.add_event("end", id="EndEvent_1", after=step)
    engine_handlers.save_with_markup(ws, m, {"Activity_count": (
        "<bpmn:standardLoopCharacteristics><bpmn:loopCondition>count &lt; 3</bpmn:loopCondition>"
        "</bpmn:standardLoopCharacteristics>")})
    case = engine.start_case(ws, "count3", {"count": 0})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert [(s.kind, s.element, s.occurrence) for s in engine.case_history(ws, case)] == [
        ("script", "Activity_count", n) for n in (1, 2, 3)] + [("end", None, 1)]
    assert info.data == {"count": 3}


def test_each_instance_of_a_multi_instance_service_or_script_task_sees_its_own_element(ws: Workspace) -> None:
    m = ToBeModel("scores")
    m.declare("amounts", "list", required=True)
    start = m.add_event("start", id="StartEvent_1")
    score = m.add_task("Score", id="Activity_score", after=start)
    m.bind(score, python(H + "score", outputs=["score"]))  # score = amount / 100
    double = m.add_task("Double", id="Activity_double", after=score)
    m.set_script(double, "doubled = score * 2")
    m.add_event("end", id="EndEvent_1", after=double)
    engine_handlers.save_with_markup(ws, m, {
        "Activity_score": ("<bpmn:multiInstanceLoopCharacteristics><bpmn:loopDataInputRef>amounts"
                           "</bpmn:loopDataInputRef><bpmn:loopDataOutputRef>scores</bpmn:loopDataOutputRef>"
                           "<bpmn:inputDataItem id='amount' name='amount'/><bpmn:outputDataItem id='score' "
                           "name='score'/></bpmn:multiInstanceLoopCharacteristics>"),
        "Activity_double": ("<bpmn:multiInstanceLoopCharacteristics isSequential='true'><bpmn:loopDataInputRef>"
                            "scores</bpmn:loopDataInputRef><bpmn:loopDataOutputRef>doubles</bpmn:loopDataOutputRef>"
                            "<bpmn:inputDataItem id='score' name='score'/><bpmn:outputDataItem id='doubled' "
                            "name='doubled'/></bpmn:multiInstanceLoopCharacteristics>")})
    case = engine.start_case(ws, "scores", {"amounts": [100, 250, 400]})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    # the handler ran once per element and saw it (score = amount / 100); the script once per score
    history = engine.case_history(ws, case)
    assert sorted(s.data["score"] for s in history if s.kind == "service") == [1.0, 2.5, 4.0]
    assert [(s.kind, s.occurrence) for s in history] == [
        ("service", 1), ("service", 2), ("service", 3), ("script", 1), ("script", 2), ("script", 3), ("end", 1)]
    assert sorted(info.data["scores"]) == [1.0, 2.5, 4.0]
    assert info.data["doubles"] == [s * 2 for s in info.data["scores"]]
    assert set(info.data) == {"amounts", "scores", "doubles"}
