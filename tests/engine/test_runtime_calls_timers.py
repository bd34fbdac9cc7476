"""Crashes from issue 13, through a real :class:`engine.Worker` on a real workspace.

- a chain of call activities A -> B -> C, and two call activities to the same model, run
  (before: "process not found" and "Duplicate process ID"); a cycle of calls is refused naming
  the models in it;
- a time-cycle timer (``R3/PT...``) fires its repetitions, also across a worker restart (before:
  "Invalid isoformat string");
- a script's change to the case data just before a failure is in the journal and in the case data.

The expected runs are read from the diagrams: what each task must do, in which order.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import engine_handlers
from engine_handlers import subprocess_env
from procestra import Workspace, engine
from procestra.engine.connectors import idempotency_key, python
from procestra.engine.exceptions import EngineError
from procestra.engine.tobe import FormField, ToBeModel

H = "engine_handlers:"
CASES = Path(__file__).resolve().parent / "cases"


def settle(ws: Workspace) -> engine.WorkerReport:
    """A real worker, run until no case can move now or within a second."""
    return engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=120)


def steps(ws: Workspace, case: str) -> list[tuple[str, str | None, str]]:
    return [(s.kind, s.element, s.outcome) for s in engine.case_history(ws, case)]


def leaf(name: str, task_id: str) -> ToBeModel:
    """start -> one bound task (records its call) -> end."""
    m: ToBeModel = engine_handlers.one_task_model(name, task_id, f"Work of {name}", start_id=f"StartEvent_{name}",
                                                  end_id=f"EndEvent_{name}")
    return m


def caller(name: str, calls: list[tuple[str, str]]) -> ToBeModel:
    """start -> one call activity per (id, called model), in sequence -> end."""
    m = ToBeModel(name)
    prev = m.add_event("start", id=f"StartEvent_{name}")
    for cid, called in calls:
        prev = m.add_call_activity(f"Call {cid}", called, id=cid, after=prev)
    m.add_event("end", id=f"EndEvent_{name}", after=prev)
    return m


# -- call activities -----------------------------------------------------------------------------
def test_a_chain_of_call_activities_runs_every_level(ws: Workspace) -> None:
    leaf("cee", "Activity_c_work").save(ws)
    bee = caller("bee", [("Activity_call_c", "cee@1")])
    t = bee.add_task("Work of bee", id="Activity_b_work", after="StartEvent_bee")
    bee.bind(t, python(H + "effect", outputs=["effect_done"]))
    bee.save(ws)
    caller("ay", [("Activity_call_b", "bee@1")]).save(ws)
    case = engine.start_case(ws, "ay", {})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    # B's own task, then C's (called from B), each once, with the key of its element
    assert [(c["task"], c["key"]) for c in engine_handlers.calls(ws)] == [
        ("Activity_b_work", idempotency_key(case, "Activity_b_work", 1)),
        ("Activity_c_work", idempotency_key(case, "Activity_c_work", 1))]
    assert steps(ws, case) == [("service", "Activity_b_work", "completed"),
                               ("service", "Activity_c_work", "completed"), ("end", None, "completed")]


def test_two_call_activities_to_the_same_model_run_it_twice(ws: Workspace) -> None:
    leaf("kyc", "Activity_kyc_work").save(ws)
    caller("twice", [("Activity_first", "kyc@1"), ("Activity_second", "kyc@1")]).save(ws)
    case = engine.start_case(ws, "twice", {})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    # the same task of the called model, once per call: occurrences 1 and 2, two keys
    assert [(c["task"], c["key"]) for c in engine_handlers.calls(ws)] == [
        ("Activity_kyc_work", idempotency_key(case, "Activity_kyc_work", 1)),
        ("Activity_kyc_work", idempotency_key(case, "Activity_kyc_work", 2))]
    assert [(s.kind, s.element, s.occurrence) for s in engine.case_history(ws, case)] == [
        ("service", "Activity_kyc_work", 1), ("service", "Activity_kyc_work", 2), ("end", None, 1)]


def test_a_cycle_of_call_activities_is_refused_naming_the_models(ws: Workspace) -> None:
    leaf("pong", "Activity_pong_work").save(ws)  # v1: no call yet
    caller("ping", [("Activity_call_pong", "pong@2")]).save(ws, check=False)
    back = caller("pong", [("Activity_call_ping", "ping@1")])
    back.save(ws)  # pong v2 calls ping v1, which calls pong v2
    with pytest.raises(EngineError, match=r"ping@1 -> pong@2 -> ping@1"):
        engine.start_case(ws, "ping", {})
    assert engine.list_cases(ws) == []


# -- time cycles ---------------------------------------------------------------------------------


def reminders(ws: Workspace, tmp_path: Path, cycle: str) -> None:
    """A review (a person) with a non-interrupting cycle timer that sends a reminder each time it fires."""
    path = tmp_path / "reminders.bpmn"
    path.write_text((CASES / "reminders.bpmn").read_text(encoding="utf-8").replace("R2/PT0.3S", cycle),
                    encoding="utf-8")
    m = ToBeModel.load(path, name="reminders")
    m.bind("Activity_send_reminder", python(H + "effect", outputs=["effect_done"]))
    m.human("Activity_review", [FormField("ok", "boolean")])
    m.save(ws)


def test_a_time_cycle_fires_its_repetitions_then_stops(ws: Workspace, tmp_path: Path) -> None:
    reminders(ws, tmp_path, "R3/PT0.2S")
    case = engine.start_case(ws, "reminders", {})
    for _ in range(20):  # each round of the worker stops when nothing is due within a second
        settle(ws)
        if len(engine_handlers.calls(ws)) == 3:
            break
    settle(ws)
    # three repetitions, no more: three reminders, each its own occurrence of the timer and the task
    assert [(c["task"], c["key"]) for c in engine_handlers.calls(ws)] == [
        ("Activity_send_reminder", idempotency_key(case, "Activity_send_reminder", n)) for n in (1, 2, 3)]
    fired = [s for s in engine.case_history(ws, case) if s.kind == "timer"]
    assert [(s.element, s.occurrence, s.outcome) for s in fired] == [("Event_remind", n, "fired") for n in (1, 2, 3)]
    # the repetitions are due 0.2 s apart, and none fired before it was due
    due = [datetime.fromisoformat(s.data["due"]) for s in fired]
    assert [b - a for a, b in itertools.pairwise(due)] == [timedelta(seconds=0.2)] * 2
    assert all(s.started >= d for s, d in zip(fired, due))
    info = engine.get_case(ws, case)
    assert info.status == "waiting", info.error
    [review] = engine.list_tasks(ws, case=case)
    engine.complete_task(ws, review.task, {"ok": True})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert len(engine_handlers.calls(ws)) == 3


def test_a_time_cycle_survives_a_worker_restart(ws: Workspace, tmp_path: Path) -> None:
    reminders(ws, tmp_path, "R2/PT1S")
    case = engine.start_case(ws, "reminders", {})
    # a first worker arms the timer and lets go of the case (it waits for the review and the timer)
    engine.Worker(ws, poll=0.05).run_once()
    info = engine.get_case(ws, case)
    assert (info.status, engine_handlers.calls(ws)) == ("waiting", [])
    assert info.wake_at is not None
    armed = info.wake_at
    # workers in new processes (the first one's state gone) fire both repetitions from the store
    code = ("from procestra import Workspace, engine\n"
            f"engine.Worker(Workspace({str(ws.path)!r}), poll=0.05).run(until_idle=True, max_seconds=60)")
    for _ in range(10):
        subprocess.run([sys.executable, "-c", code], env=subprocess_env(), check=True, timeout=120)
        if len(engine_handlers.calls(ws)) == 2:
            break
    fired = [s for s in engine.case_history(ws, case) if s.kind == "timer"]
    assert [s.occurrence for s in fired] == [1, 2]
    assert fired[0].started >= armed  # not before the due time armed by the first worker
    assert [c["key"] for c in engine_handlers.calls(ws)] == [
        idempotency_key(case, "Activity_send_reminder", n) for n in (1, 2)]
    assert engine.get_case(ws, case).wake_at is None  # no repetition left


def test_a_cron_cycle_fires_on_the_times_it_names(ws: Workspace, tmp_path: Path) -> None:
    reminders(ws, tmp_path, '"* * * * * ?"')  # Camunda's (Quartz) cron: every second, seconds first
    case = engine.start_case(ws, "reminders", {})
    for _ in range(20):  # the cycle never ends: each worker stops after 3 s (after its current batch)
        engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=3)
        if len(engine_handlers.calls(ws)) >= 2:
            break
    info = engine.get_case(ws, case)
    assert (info.status, info.error) == ("waiting", None)
    fired = [s for s in engine.case_history(ws, case) if s.kind == "timer"]
    due = [datetime.fromisoformat(s.data["due"]) for s in fired]
    # each repetition on a whole second, one second after the one before, never early
    assert [d.microsecond for d in due] == [0] * len(due)
    assert [b - a for a, b in itertools.pairwise(due)] == [timedelta(seconds=1)] * (len(due) - 1)
    assert all(s.started >= d for s, d in zip(fired, due))
    # one reminder per repetition, each with its own key (a worker stops only once its cases wait)
    assert [c["key"] for c in engine_handlers.calls(ws)] == [
        idempotency_key(case, "Activity_send_reminder", n) for n in range(1, len(fired) + 1)]
    assert info.wake_at == due[-1] + timedelta(seconds=1)  # the next repetition is armed
    engine.cancel_case(ws, case)


# -- the journal gap -----------------------------------------------------------------------------
def test_a_script_change_before_a_failure_is_journaled_and_kept(ws: Workspace) -> None:
    m = ToBeModel("gap")
    m.declare("amount", "number", required=True)
    m.declare("zero", "number", required=True)
    start = m.add_event("start", id="StartEvent_1")
    first = m.add_task("Count", id="Activity_count", after=start)
    m.set_script(first, "counted = amount + 1")
    second = m.add_task("Divide", id="Activity_divide", after=first)
    m.set_script(second, "ratio = amount / zero")
    m.add_event("end", id="EndEvent_1", after=second)
    m.save(ws)
    case = engine.start_case(ws, "gap", {"amount": 4, "zero": 0})
    settle(ws)
    info = engine.get_case(ws, case)
    assert (info.status, info.error) == ("failed", "script 'ratio = amount / zero' on element 'Activity_divide': "
                                                   "ZeroDivisionError: division by zero")
    history = engine.case_history(ws, case)
    assert [(s.kind, s.element, s.outcome) for s in history] == [
        ("script", "Activity_count", "completed"), ("fail", None, "failed")]
    assert info.data == {"amount": 4, "zero": 0, "counted": 5}


# -- wait states deep inside -----------------------------------------------------------------------
def test_timers_people_and_handlers_wait_inside_a_call_inside_a_subprocess(ws: Workspace) -> None:
    inner = ToBeModel("inner")
    start = inner.add_event("start", id="StartEvent_inner")
    wait = inner.add_event("timer", name="Cool off", id="Event_cool_off", timer="PT0.3S", after=start)
    sign = inner.add_task("Sign", id="Activity_sign", after=wait)
    inner.human(sign, [FormField("signed", "boolean")], group="signers")
    file = inner.add_task("File", id="Activity_file", after=sign)
    inner.bind(file, python(H + "effect", outputs=["effect_done"]))
    inner.add_event("end", id="EndEvent_inner", after=file)
    inner.save(ws)
    outer = ToBeModel("outer")
    start = outer.add_event("start", id="StartEvent_outer")
    sub = outer.add_subprocess("Contract", id="Activity_contract", after=start)
    [sub_start] = [e.id for e in outer.elements.values() if e.parent == sub and e.kind == "startEvent"]
    outer.add_call_activity("Run inner", "inner@1", id="Activity_call_inner", parent=sub, after=sub_start)
    outer.add_event("end", id="EndEvent_outer", after=sub)
    outer.save(ws)
    case = engine.start_case(ws, "outer", {})
    settle(ws)  # the timer two levels down fires (within the worker's horizon), then a person signs
    assert steps(ws, case) == [("timer", "Event_cool_off", "fired")]
    timer = engine.case_history(ws, case)[0]
    assert timer.started >= datetime.fromisoformat(timer.data["due"])
    [item] = engine.list_tasks(ws, case=case)
    assert (item.element, item.candidate_group) == ("Activity_sign", "signers")
    engine.complete_task(ws, item.task, {"signed": True})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert steps(ws, case) == [("timer", "Event_cool_off", "fired"), ("user", "Activity_sign", "completed"),
                               ("service", "Activity_file", "completed"), ("end", None, "completed")]
    assert [c["key"] for c in engine_handlers.calls(ws)] == [idempotency_key(case, "Activity_file", 1)]
    assert {k: info.data[k] for k in ("signed", "effect_done")} == {"signed": True, "effect_done": True}


def test_a_loop_that_never_ends_fails_its_case_naming_it_and_the_worker_goes_on(ws: Workspace, monkeypatch) -> None:
    """Issue 14's reproducer: script ``n = 1`` -> gateway ``n > 5`` -> end, default back to the script. Before,
    one worker round ran it for ever, journaled nothing and ignored SIGTERM; now the case fails naming the loop
    and the other case completes in the same worker run."""
    from procestra.engine import runtime

    monkeypatch.setattr(runtime, "ENGINE_STEPS_LIMIT", 600)
    ToBeModel.load(CASES / "endless_loop.bpmn", name="endless").save(ws, check=False)
    good = engine_handlers.one_task_model("fine", "Activity_ok", "Do it")
    good.set_script("Activity_ok", "done = True")
    good.save(ws)
    endless, fine = engine.start_case(ws, "endless", {}), engine.start_case(ws, "fine", {})
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)
    stuck = engine.get_case(ws, endless)
    assert stuck.status == "failed" and "loop limit reached at element" in (stuck.error or "")
    assert "600 steps in one go" in (stuck.error or "")
    assert "sc -> g" in (stuck.error or "") or "g -> sc" in (stuck.error or "")
    assert engine.get_case(ws, fine).status == "completed"
    assert [s.element for s in engine.case_history(ws, endless)][:4] == ["sc", "sc", "sc", "sc"]


@pytest.mark.parametrize(("seat", "path", "data"), [
    ("12A", [("user", "Activity_seat", "completed"), ("end", None, "completed")], {"flight": "KL1", "seat": "12A"}),
    ("", [("user", "Activity_seat", "completed"), ("script", "Activity_note", "completed"),
          ("end", None, "completed")], {"flight": "KL1", "reason": "no seat"}),
])  # fmt: skip
def test_a_cancelled_transaction_takes_its_cancel_path_and_keeps_none_of_its_data(
        ws: Workspace, seat: str, path: list[tuple[str, str | None, str]], data: dict[str, str]) -> None:  # fmt: skip
    """Through a Worker, as SpiffWorkflow's own transaction test asserts: a cancel end event inside a
    transaction ends it on its cancel boundary path, and what the transaction set is gone. Before, the
    case ended with the seat chosen inside the cancelled transaction still in its data."""
    ToBeModel.load(CASES / "cancel_transaction.bpmn").save(ws)
    case = engine.start_case(ws, "booking", {"flight": "KL1"})
    settle(ws)
    [task] = engine.list_tasks(ws, case=case)
    engine.complete_task(ws, task.task, {"seat": seat})
    settle(ws)
    info = engine.get_case(ws, case)
    assert (info.status, steps(ws, case), info.data) == ("completed", path, data)


def test_a_start_event_with_two_flows_starts_both_branches(ws: Workspace) -> None:
    """A start event's outgoing flows are all taken (SpiffWorkflow runs them as a parallel split): before, the
    model was refused; a start event whose flows have conditions is refused, since they would be ignored."""
    bpmn = "http://www.omg.org/spec/BPMN/20100524/MODEL"

    def xml(condition: str) -> str:
        return (f'<definitions xmlns="{bpmn}" id="D" targetNamespace="t"><process id="P" name="two-ways" '
                'isExecutable="true"><startEvent id="S"/><scriptTask id="A"><script>a = 1</script></scriptTask>'
                '<scriptTask id="B"><script>b = 2</script></scriptTask><parallelGateway id="J"/><endEvent id="E"/>'
                f'<sequenceFlow id="f1" sourceRef="S" targetRef="A">{condition}</sequenceFlow>'
                '<sequenceFlow id="f2" sourceRef="S" targetRef="B"/><sequenceFlow id="f3" sourceRef="A" targetRef="J"/>'
                '<sequenceFlow id="f4" sourceRef="B" targetRef="J"/><sequenceFlow id="f5" sourceRef="J" targetRef="E"/>'
                '</process></definitions>')  # fmt: skip

    conditional = ToBeModel.from_xml(xml("<conditionExpression>a == 1</conditionExpression>"))
    assert ("condition-ignored", "S") in [(p.code, p.element) for p in conditional.validate()]
    ToBeModel.from_xml(xml("")).save(ws)
    case = engine.start_case(ws, "two-ways", {})
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data == {"a": 1, "b": 2}
    assert sorted(el for _, el, _ in steps(ws, case) if el) == ["A", "B"]


def test_a_case_no_condition_matches_fails_at_the_gateway_naming_it(ws: Workspace) -> None:
    """No default and conditions that may all be false: a warning (before, an error that refused SpiffWorkflow's
    own test models, which run), and a case that matches none fails there, as BPMN says, naming the gateway."""
    m = ToBeModel("which")
    m.declare("amount", "number", required=True)
    start = m.add_event("start", id="StartEvent_1")
    g = m.add_gateway("exclusive", name="Which?", id="Gateway_which", after=start)
    end = m.add_event("end", id="EndEvent_1")
    for i, condition in enumerate(("amount < 10", "amount > 10")):
        t = m.add_task(f"T{i}", id=f"Activity_{i}")
        m.set_script(t, f"route = {i}")
        m.connect(g, t, condition=condition)
        m.connect(t, end)
    [warning] = [p for p in m.validate() if p.code == "no-default"]
    assert (warning.severity, warning.element) == ("warning", "Gateway_which")
    m.save(ws)
    small, ten = engine.start_case(ws, "which", {"amount": 3}), engine.start_case(ws, "which", {"amount": 10})
    settle(ws)
    assert engine.get_case(ws, small).data == {"amount": 3, "route": 0}
    failed = engine.get_case(ws, ten)
    assert failed.status == "failed" and "No conditions satisfied for Gateway_which" in (failed.error or "")


def test_a_call_to_another_process_of_the_same_file_runs_it(ws: Workspace) -> None:
    """Camunda Modeler collaborations call their own pools; before, such a file was refused ("save that process
    as a model of its own"). The called pool's user task is offered, and its answer reaches the caller."""
    m = ToBeModel.load(CASES / "approvals_in_file.bpmn", process="Process_order")
    m.declare("approved", "boolean")
    assert [p for p in m.validate(ws=ws) if p.severity == "error"] == []
    m.save(ws)
    case = engine.start_case(ws, "order", {})
    settle(ws)
    [task] = engine.list_tasks(ws, case=case)
    assert (task.element, task.name) == ("Activity_approve", "Approve order")
    engine.complete_task(ws, task.task, {"approved": True})
    settle(ws)
    info = engine.get_case(ws, case)
    assert (info.status, info.data) == ("completed", {"approved": True, "booked": True})
    assert steps(ws, case) == [("user", "Activity_approve", "completed"), ("script", "Activity_book", "completed"),
                               ("end", None, "completed")]
