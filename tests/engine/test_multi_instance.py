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

The loops are set through the API (:meth:`ToBeModel.set_loop`) and saved by the product, so what
runs is what the model writer puts in ``model.bpmn``.
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
    m.set_loop(review, kind="parallel", collection="documents", element_variable="document",
               output_collection="verdicts", output_element="verdict")
    m.save(ws)
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
    m.set_loop("Activity_send", kind="sequential", cardinality="3", element_variable="n", output_collection="sent",
               output_element="effect_done")
    m.save(ws)
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


def counting(name: str, var: str, **loop: object) -> ToBeModel:
    """start -> script ``var = var + 1`` looping as ``loop`` says -> end."""
    m = ToBeModel(name)
    m.declare(var, "number", required=True)
    start = m.add_event("start", id="StartEvent_1")
    step = m.add_task("Count", id="Activity_count", after=start)
    m.set_script(step, f"{var} = {var} + 1")
    m.add_event("end", id="EndEvent_1", after=step)
    m.set_loop(step, **loop)
    return m


def test_a_standard_loop_runs_until_its_condition_fails(ws: Workspace) -> None:
    counting("count3", "count", kind="standard", condition="count < 3").save(ws)
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
    m.set_script(double, "doubled = each * 2")
    m.add_event("end", id="EndEvent_1", after=double)
    m.set_loop(score, kind="parallel", collection="amounts", element_variable="amount", output_collection="scores",
               output_element="score")
    m.set_loop(double, kind="sequential", collection="scores", element_variable="score",
               output_collection="doubles", output_element="doubled")
    [clash] = [p for p in m.validate(ws=ws) if p.code == "duplicate-data-item"]  # Activity_score's output element
    assert (clash.code, clash.element) == ("duplicate-data-item", "Activity_double") and "'score'" in clash.message
    m.set_loop(double, kind="sequential", collection="scores", element_variable="each",
               output_collection="doubles", output_element="doubled")
    m.save(ws)
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


def test_juel_and_feel_give_values_for_a_cardinality_and_a_timer(ws: Workspace) -> None:
    """Camunda Modeler writes ``${n}`` as a cardinality and ``=wait`` as a timer: values, not conditions
    (before, the case failed at the task with "a JUEL condition must give true or false")."""
    m = ToBeModel("juel-values")
    m.declare("n", "number", required=True)
    m.declare("k", "number", required=True)
    m.declare("wait", "string", required=True)
    start = m.add_event("start", id="StartEvent_1")
    count = m.add_task("Count", id="Activity_count", after=start)
    m.set_script(count, "k = k + 1")
    m.set_loop(count, kind="sequential", cardinality="${n}")
    pause = m.add_event("timer", name="Pause", id="Event_pause", after=count, timer="=wait")
    m.add_event("end", id="EndEvent_1", after=pause)
    assert [p for p in m.validate(ws=ws) if p.severity == "error"] == []
    m.save(ws)
    case = engine.start_case(ws, "juel-values", {"n": 4, "k": 0, "wait": "PT0S"})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert info.data["k"] == 4
    assert [s.occurrence for s in engine.case_history(ws, case) if s.element == "Activity_count"] == [1, 2, 3, 4]


def test_a_juel_condition_that_gives_a_number_is_refused_naming_the_loop(ws: Workspace) -> None:
    counting("juel-loop", "k", kind="standard", condition="${k}", maximum=5).save(ws)
    case = engine.start_case(ws, "juel-loop", {"k": 0})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "failed"
    assert "Activity_count" in (info.error or "") and "must give true or false" in (info.error or "")
