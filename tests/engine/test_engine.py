"""procestra.engine: to-be models run by real workers on a real workspace (SQLite ops store, DuckDB events).

Models are built with :class:`ToBeModel` and saved to the workspace's model repository;
their service tasks call the Python handlers in ``tests/engine_handlers.py``, which record
every call and their deduplicated effects in a SQLite file of the workspace. Workers are
real :class:`engine.Worker` s (in this process, or in subprocesses for the multi-worker
test); run events go through the real outbox into the real DuckDB event store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import engine_handlers
from engine_handlers import assert_closed_loop, run_events, subprocess_env
from procestra import Workspace, engine
from procestra.engine import runtime
from procestra.engine.connectors import idempotency_key, python
from procestra.engine.tobe import FormError, FormField, Retry, ToBeModel, ValidationError
from procestra.errors import (
    InvalidArgumentError,
    ModelNotFoundError,
    ProcestraError,
    UserError,
)
from procestra.store import ops

H = "engine_handlers:"
DECISION = [FormField("decision", "enum", allowed=("yes", "no"), label="Decision"),
            FormField("note", "text", required=False)]


# -- models -------------------------------------------------------------------------------------
def main_model(name: str = "orders", *, review_due: str = "PT1H") -> ToBeModel:
    """Score -> exclusive gateway (small: automatic approval; large: human review) -> A || B -> Notify."""
    m = ToBeModel(name)
    m.declare("amount", "number", required=True)
    m.declare("channel", "string", allowed=("web", "shop"))
    start = m.add_event("start", name="Order received", id="StartEvent_order")
    score = m.add_task("Score", id="Activity_score", after=start)
    m.bind(score, python(H + "score", outputs=["score"]))
    size = m.add_gateway("exclusive", name="Size?", id="Gateway_size", after=score)
    auto = m.add_task("Approve automatically", id="Activity_auto")
    m.bind(auto, python(H + "approve", outputs=["decision"]))
    review = m.add_task("Review", id="Activity_review")
    m.human(review, DECISION, group="reviewers", due=review_due)
    m.connect(size, auto, condition="amount < 1000", name="small")
    m.connect(size, review, condition="amount >= 1000", name="large")
    merge = m.add_gateway("exclusive", id="Gateway_merge")
    m.connect(auto, merge)
    m.connect(review, merge)
    split = m.add_gateway("parallel", id="Gateway_split", after=merge)
    a = m.add_task("Branch A", id="Activity_a")
    b = m.add_task("Branch B", id="Activity_b")
    m.bind(a, python(H + "branch_a", outputs=["a_done", "a_pid"]))
    m.bind(b, python(H + "branch_b", outputs=["b_done"]))
    join = m.add_gateway("parallel", id="Gateway_join")
    for t in (a, b):
        m.connect(split, t)
        m.connect(t, join)
    notify = m.add_task("Notify", id="Activity_notify", after=join)
    m.bind(notify, python(H + "effect", outputs=["effect_done"]))
    m.add_event("end", name="Done", id="EndEvent_done", after=notify)
    return m


def inclusive_model() -> ToBeModel:
    """An inclusive split with two conditions and a default, and its inclusive join."""
    m = ToBeModel("routes")
    m.declare("amount", "number", required=True)
    m.declare("risky", "boolean", required=True)
    start = m.add_event("start", id="StartEvent_1")
    split = m.add_gateway("inclusive", id="Gateway_or", after=start)
    a = m.add_task("Route A", id="Activity_route_a")
    b = m.add_task("Route B", id="Activity_route_b")
    c = m.add_task("Route C", id="Activity_route_c")
    m.bind(a, python(H + "route_a", outputs=["took_a"]))
    m.bind(b, python(H + "route_b", outputs=["took_b"]))
    m.bind(c, python(H + "noop"))
    join = m.add_gateway("inclusive", id="Gateway_or_join")
    m.connect(split, a, condition="amount > 10")
    m.connect(split, b, condition="risky")
    m.connect(split, c, default=True)
    for t in (a, b, c):
        m.connect(t, join)
    last = m.add_task("Finish", id="Activity_finish", after=join)
    m.bind(last, python(H + "noop"))
    m.add_event("end", id="EndEvent_1", after=last)
    return m


def retry_model(*, attempts: int = 3, initial: float = 0.3, multiplier: float = 2.0) -> ToBeModel:
    """A flaky call with retries and backoff; when they are exhausted an error boundary leads to a fallback."""
    m = ToBeModel("retries")
    m.declare("failures", "integer", required=True)
    start = m.add_event("start", id="StartEvent_1")
    call = m.add_task("Call service", id="Activity_call", after=start)
    m.bind(call, python(H + "flaky", outputs=["flaky_ok"]),
           retry=Retry(max_attempts=attempts, initial=initial, multiplier=multiplier))
    done = m.add_task("Done", id="Activity_done", after=call)
    m.bind(done, python(H + "approve", outputs=["decision"]))
    m.add_event("end", id="EndEvent_1", after=done)
    m.on_error(call, "Fallback", then=done, name="Service down")
    m.bind("Fallback", python(H + "effect", outputs=["effect_done"]))
    return m


def loop_model(handler: str = "effect", *, pause: str | None = None) -> ToBeModel:
    """One service task run ``limit`` times in a loop (a script task counts): instances of one element.

    With ``pause``, an intermediate timer waits that long after the service task on each pass.
    """
    m = ToBeModel("loop")
    m.declare("n", "integer", required=True)
    m.declare("limit", "integer", required=True)
    m.declare("die_at", "integer")
    start = m.add_event("start", id="StartEvent_1")
    back = m.add_gateway("exclusive", id="Gateway_back", after=start)
    work = m.add_task("Work", id="Activity_work", after=back)
    m.bind(work, python(H + handler, outputs=["effect_done"]))
    if pause is not None:
        work = m.add_event("timer", name="Pause", id="Event_pause", timer=pause, after=work)
    count = m.add_task("Count", id="Activity_count", after=work)
    m.set_script(count, "n = n + 1")
    again = m.add_gateway("exclusive", name="Again?", id="Gateway_again", after=count)
    end = m.add_event("end", id="EndEvent_1")
    m.connect(again, back, condition="n < limit")
    m.connect(again, end, default=True)
    return m


def sla_model(*, interrupting: bool, after: str = "PT1S") -> ToBeModel:
    """A human review with an SLA timer boundary: escalate (interrupting) or also notify a manager."""
    m = ToBeModel("sla-int" if interrupting else "sla-nonint")
    start = m.add_event("start", id="StartEvent_1")
    review = m.add_task("Review", id="Activity_review", after=start)
    m.human(review, DECISION, group="reviewers", due=after)
    done = m.add_task("Done", id="Activity_done", after=review)
    m.bind(done, python(H + "noop"))
    m.add_event("end", id="EndEvent_1", after=done)
    if interrupting:
        m.on_timeout(review, after, "Escalate", then=done, name="SLA passed")
        m.human("Escalate", DECISION, group="managers")
    else:
        m.on_timeout(review, after, "Remind manager", interrupting=False, name="SLA passed")
        m.bind("Remind manager", python(H + "effect", outputs=["effect_done"]))
        m.add_event("end", id="EndEvent_reminded", after="Remind manager")
    return m


def timer_model(wait: str = "PT2S") -> ToBeModel:
    """An intermediate timer between two automated steps."""
    m = ToBeModel("waits")
    start = m.add_event("start", id="StartEvent_1")
    first = m.add_task("First", id="Activity_first", after=start)
    m.bind(first, python(H + "noop"))
    timer = m.add_event("timer", name="Wait", id="Event_wait", timer=wait, after=first)
    second = m.add_task("Second", id="Activity_second", after=timer)
    m.bind(second, python(H + "effect", outputs=["effect_done"]))
    m.add_event("end", id="EndEvent_1", after=second)
    return m


# -- helpers ------------------------------------------------------------------------------------
def work(ws: Workspace, *, seconds: float = 60.0, **options: Any) -> engine.WorkerReport:
    """Run a fresh worker until nothing is runnable now or within a second."""
    options.setdefault("poll", 0.05)
    return engine.Worker(ws, **options).run(until_idle=True, max_seconds=seconds)


def history(ws: Workspace, case: str) -> list[tuple[str, str | None, int, int, str]]:
    """The journal of ``case`` as (kind, element, occurrence, attempt, outcome)."""
    return [(s.kind, s.element, s.occurrence, s.attempt, s.outcome) for s in engine.case_history(ws, case)]


def state(ws: Workspace) -> dict[str, Any]:
    """Everything in the operational store that a rejected call must not change."""
    with ops.connect(ws) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                                            "('cases', 'steps', 'work', 'outbox') ORDER BY name")]
        return {t: [tuple(r) for r in con.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables}


def worker_command(ws: Workspace, code: str) -> list[str]:
    """A ``python -c`` command running ``code`` with ``ws`` and ``engine`` defined."""
    script = f"from procestra import Workspace, engine\nws = Workspace({str(ws.path)!r})\n{code}"
    return [sys.executable, "-c", script]


# -- gateways and a full run ------------------------------------------------------------------------
@pytest.fixture
def orders(ws: Workspace) -> Workspace:
    assert [p for p in main_model().validate() if p.severity == "error"] == []
    main_model().save(ws)
    return ws


def test_exclusive_and_parallel_gateways_and_the_closed_loop(orders: Workspace) -> None:
    ws = orders
    small = engine.start_case(ws, "orders", {"amount": 10, "channel": "web"})
    large = engine.start_case(ws, "orders", '{"amount": 5000}', key="order-5000")
    report = work(ws)
    assert report.cases_completed == 1 and report.cases_failed == 0
    done = engine.get_case(ws, small)
    assert done.status == "completed" and done.version == 1 and done.ended is not None
    # exclusive gateway: the small order went the automatic way; parallel: both branches ran, data merged
    assert done.data == {"amount": 10, "channel": "web", "score": 0.1, "decision": "auto", "a_done": True,
                         "a_pid": os.getpid(), "b_done": True, "effect_done": True}
    assert history(ws, small) == [
        ("service", "Activity_score", 1, 1, "completed"), ("service", "Activity_auto", 1, 1, "completed"),
        ("service", "Activity_a", 1, 1, "completed"), ("service", "Activity_b", 1, 1, "completed"),
        ("service", "Activity_notify", 1, 1, "completed"), ("end", None, 1, 1, "completed")]
    # the large one waits for a person
    waiting = engine.get_case(ws, large)
    assert waiting.status == "waiting" and waiting.business_key == "order-5000" and waiting.data["score"] == 50.0
    [task] = engine.list_tasks(ws)
    assert (task.case, task.element, task.name, task.status, task.candidate_group) == (
        large, "Activity_review", "Review", "open", "reviewers")
    assert [f["name"] for f in task.form] == ["decision", "note"] and task.form[0]["allowed"] == ["yes", "no"]
    assert task.due is not None and not task.overdue and task.case_data["amount"] == 5000
    engine.complete_task(ws, task.task, {"decision": "no"}, user="ann", case=large)
    work(ws)
    done = engine.get_case(ws, large)
    assert done.status == "completed" and done.data["decision"] == "no"
    assert [k[:2] for k in history(ws, large)] == [
        ("service", "Activity_score"), ("user", "Activity_review"), ("service", "Activity_a"),
        ("service", "Activity_b"), ("service", "Activity_notify"), ("end", None)]
    user_step = engine.case_history(ws, large)[1]
    assert user_step.resource == "ann" and user_step.data == {"decision": "no"}
    assert [c.case for c in engine.list_cases(ws, model="orders", status="completed")] == [small, large]
    # one effect per task instance; the keys differ between cases and tasks
    effects = engine_handlers.effects(ws)
    assert len(effects) == 6 and len({e["key"] for e in effects}) == 6
    assert_closed_loop(ws, "orders")
    result = engine.conform_runs(ws, "orders")
    assert result.headline_fitness == pytest.approx(1.0)
    assert result.fitness["percentage_of_fitting_traces"] == pytest.approx(100.0) and result.n_cases == 2


def test_inclusive_gateway_takes_every_true_branch_and_joins(ws: Workspace) -> None:
    inclusive_model().save(ws)
    both = engine.start_case(ws, "routes", {"amount": 20, "risky": True})
    only_a = engine.start_case(ws, "routes", {"amount": 20, "risky": False})
    default = engine.start_case(ws, "routes", {"amount": 5, "risky": False})
    work(ws)
    ran = {c: {s.element for s in engine.case_history(ws, c) if s.kind == "service"}
           for c in (both, only_a, default)}
    assert ran == {both: {"Activity_route_a", "Activity_route_b", "Activity_finish"},
                   only_a: {"Activity_route_a", "Activity_finish"},
                   default: {"Activity_route_c", "Activity_finish"}}
    for c in (both, only_a, default):
        info = engine.get_case(ws, c)
        assert info.status == "completed", info.error
        # the join waited for every branch taken: Finish ran once, last
        assert [s.element for s in engine.case_history(ws, c) if s.kind == "service"][-1] == "Activity_finish"
    assert engine.get_case(ws, both).data | {} == {"amount": 20, "risky": True, "took_a": True, "took_b": True}
    assert_closed_loop(ws, "routes")


# -- retries, backoff and error boundaries ----------------------------------------------------------
def test_retries_back_off_exponentially_with_one_idempotency_key(ws: Workspace) -> None:
    retry_model(attempts=3, initial=0.3, multiplier=2.0).save(ws)
    case = engine.start_case(ws, "retries", {"failures": 2})
    worker = engine.Worker(ws, poll=0.05)
    assert worker.run_once()
    # attempt 1 failed: the case waits for its backoff, with wake_at in the journal's terms
    info = engine.get_case(ws, case)
    [retry] = engine.case_history(ws, case)
    assert (retry.kind, retry.attempt, retry.outcome, retry.data) == ("retry", 1, "failed", {"delay": 0.3})
    assert "service down (attempt 1 of 2 failing)" in retry.error
    assert info.status == "waiting"
    assert abs(info.wake_at - (retry.ended + timedelta(seconds=0.3))) < timedelta(milliseconds=10)
    assert not worker.run_once()  # not due yet: nothing to claim
    worker.run(until_idle=True, max_seconds=30)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["flaky_ok"] is True and "effect_done" not in info.data
    assert history(ws, case) == [("retry", "Activity_call", 1, 1, "failed"), ("retry", "Activity_call", 1, 2, "failed"),
                                 ("service", "Activity_call", 1, 3, "completed"),
                                 ("service", "Activity_done", 1, 1, "completed"), ("end", None, 1, 1, "completed")]
    steps = engine.case_history(ws, case)
    assert steps[1].data == {"delay": 0.6}
    calls = engine_handlers.calls(ws)
    assert [c["attempt"] for c in calls] == [1, 2, 3]
    # the delays were honoured: each attempt started no earlier than the failure before it + its delay
    assert steps[1].started >= steps[0].ended + timedelta(seconds=0.3)
    assert steps[2].started >= steps[1].ended + timedelta(seconds=0.6)
    # the same key across the retries of one task instance, the engine's documented key
    assert {c["key"] for c in calls} == {idempotency_key(case, "Activity_call", 1)}
    assert_closed_loop(ws, "retries")


def test_error_boundary_takes_the_fallback_after_the_last_attempt(ws: Workspace) -> None:
    retry_model(attempts=2, initial=0.1).save(ws)
    case = engine.start_case(ws, "retries", {"failures": 99})
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    # the caught error's payload is case data on the fallback path, as SpiffWorkflow merges it
    assert info.data == {"failures": 99, "effect_done": True, "decision": "auto",
                         "error": "task 'Activity_call' (python, attempt 2) failed: service down (attempt 2 of 99 failing)"}
    kinds = [(k, el, att) for k, el, _, att, _ in history(ws, case)]
    assert kinds == [("retry", "Activity_call", 1), ("error", "Activity_call", 2),
                     ("service", "Activity_fallback", 1), ("service", "Activity_done", 1), ("end", None, 1)]
    error = engine.case_history(ws, case)[1]
    assert "attempt 2" in error.error and error.outcome in ("error", "failed")
    assert [c["attempt"] for c in engine_handlers.calls(ws) if c["task"] == "Activity_call"] == [1, 2]
    assert_closed_loop(ws, "retries")
    events = run_events(ws, "retries")
    assert {e[5] for e in events if e[1] == "Call service"} == {"failed", error.outcome}


def test_a_failing_task_without_boundary_fails_the_case_clearly(ws: Workspace) -> None:
    m = retry_model(attempts=1)
    m.remove("Fallback")
    m.remove("Service down")
    m.save(ws)
    case = engine.start_case(ws, "retries", {"failures": 1})
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "failed" and info.ended is not None
    assert "Activity_call" in info.error and "service down" in info.error
    assert engine.case_history(ws, case)[0].outcome == "failed"
    assert_closed_loop(ws, "retries")


def test_idempotency_key_differs_between_instances_of_one_element(ws: Workspace) -> None:
    loop_model().save(ws)
    case = engine.start_case(ws, "loop", {"n": 0, "limit": 3})
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["n"] == 3
    assert [(k, el, occ) for k, el, occ, _, _ in history(ws, case)] == [
        ("service", "Activity_work", 1), ("script", "Activity_count", 1), ("service", "Activity_work", 2),
        ("script", "Activity_count", 2), ("service", "Activity_work", 3), ("script", "Activity_count", 3),
        ("end", None, 1)]
    keys = [c["key"] for c in engine_handlers.calls(ws)]
    assert keys == [idempotency_key(case, "Activity_work", i) for i in (1, 2, 3)] and len(set(keys)) == 3
    assert len(engine_handlers.effects(ws)) == 3
    assert_closed_loop(ws, "loop")


def test_a_worker_waits_out_a_store_locked_past_its_timeout(orders: Workspace,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A write lock held longer than the store's timeout is an OpsBusyError to the worker's claim:
    the worker logs it, waits and carries on instead of ending."""
    ws = orders
    case = engine.start_case(ws, "orders", {"amount": 10, "channel": "web"})
    monkeypatch.setenv("PROCESTRA_OPS_TIMEOUT", "0.2")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ops.transaction(ws, timeout=5):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    threading.Timer(1.0, release.set).start()  # well past the 0.2 s timeout
    try:
        report = work(ws)
    finally:
        release.set()
        holder.join()
    assert report.cases_completed == 1 and engine.get_case(ws, case).status == "completed"


def test_a_worker_that_dies_mid_case_is_replaced_and_the_case_replays_exactly(ws: Workspace) -> None:
    loop_model("effect_or_die").save(ws)
    limit, die_at = 40, 30  # 80 steps: past a periodic snapshot (every 50), then a crash before one is due
    assert die_at * 2 > runtime.SNAPSHOT_EVERY
    case = engine.start_case(ws, "loop", {"n": 0, "limit": limit, "die_at": die_at})
    with pytest.raises(KeyboardInterrupt):
        engine.Worker(ws, lease=0.3, poll=0.05).run_once()
    before = engine.case_history(ws, case)
    assert len(before) == 2 * die_at - 1  # acknowledged: up to Work #30 (Count #30 runs in the round that died)
    with ops.connect(ws) as con:
        snap = con.execute("SELECT snapshot_seq, lease_owner FROM cases WHERE case_id = ?", (case,)).fetchone()
    assert 0 < snap[0] < len(before) and snap[1] is not None  # a snapshot, steps after it, a dead worker's lease
    time.sleep(0.35)
    work(ws)  # a new worker takes the case over once the lease ran out, from the snapshot and the journal
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["n"] == limit
    steps = engine.case_history(ws, case)
    assert steps[:len(before)] == before
    assert [(s.kind, s.occurrence) for s in steps[:-1]] == [(k, i) for i in range(1, limit + 1)
                                                           for k in ("service", "script")]
    calls, effects = engine_handlers.calls(ws), engine_handlers.effects(ws)
    assert len(calls) == limit + 1 and len(effects) == limit  # the dead worker's call ran again, one effect
    assert [c["key"] for c in calls].count(idempotency_key(case, "Activity_work", die_at + 1)) == 2
    assert_closed_loop(ws, "loop")


def test_a_timer_in_a_loop_fires_on_every_pass(ws: Workspace) -> None:
    loop_model(pause="PT0.2S").save(ws)
    case = engine.start_case(ws, "loop", {"n": 0, "limit": 3})
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["n"] == 3
    assert [(k, el, occ) for k, el, occ, _, _ in history(ws, case) if k == "timer"] == [
        ("timer", "Event_pause", 1), ("timer", "Event_pause", 2), ("timer", "Event_pause", 3)]
    assert_closed_loop(ws, "loop")


# -- human tasks -------------------------------------------------------------------------------------
def test_inbox_list_claim_complete_and_every_wrong_move(orders: Workspace) -> None:
    ws = orders
    one = engine.start_case(ws, "orders", {"amount": 2000})
    two = engine.start_case(ws, "orders", {"amount": 3000})
    work(ws)
    tasks = engine.list_tasks(ws)
    assert [t.case for t in tasks] == [one, two]
    assert engine.list_tasks(ws, group="reviewers") == tasks and engine.list_tasks(ws, group="nobody") == []
    first, second = tasks
    claimed = engine.claim_task(ws, first.task, "ann")
    assert (claimed.status, claimed.assignee) == ("claimed", "ann")
    assert [t.task for t in engine.list_tasks(ws, user="bob")] == [second.task]
    before = state(ws)
    with pytest.raises(engine.TaskStateError, match="claimed by 'ann'"):
        engine.claim_task(ws, first.task, "bob")
    with pytest.raises(engine.TaskStateError, match="claimed by 'ann'"):
        engine.complete_task(ws, first.task, {"decision": "yes"}, user="bob")
    with pytest.raises(FormError) as form:
        engine.complete_task(ws, first.task, {"decision": "maybe", "extra": 1}, user="ann")
    assert set(form.value.problems) == {"decision", "extra"} and "'yes'" in form.value.problems["decision"]
    with pytest.raises(FormError, match="decision: required"):
        engine.complete_task(ws, first.task, {}, user="ann")
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        engine.complete_task(ws, first.task, "{decision: yes", user="ann")
    with pytest.raises(engine.TaskStateError, match=f"belongs to case {one}"):
        engine.complete_task(ws, first.task, {"decision": "yes"}, user="ann", case=two)
    with pytest.raises(engine.TaskNotFoundError, match="no human task 't-nope'"):
        engine.complete_task(ws, "t-nope", {"decision": "yes"})
    with pytest.raises(engine.TaskNotFoundError):
        engine.claim_task(ws, "t-nope", "ann")
    with pytest.raises(InvalidArgumentError):
        engine.claim_task(ws, first.task, " ")
    assert state(ws) == before  # nothing changed
    assert engine.complete_task(ws, first.task, '{"decision": "yes"}', user="ann").status == "completed"
    after_first = state(ws)
    with pytest.raises(engine.TaskStateError, match="completed already, by ann"):
        engine.complete_task(ws, first.task, {"decision": "no"}, user="ann")
    with pytest.raises(engine.TaskStateError):
        engine.claim_task(ws, first.task, "ann")
    assert state(ws) == after_first
    work(ws)
    assert engine.get_case(ws, one).status == "completed" and engine.get_case(ws, one).data["decision"] == "yes"
    assert engine.get_case(ws, two).status == "waiting"
    assert [t.task for t in engine.list_tasks(ws, status="completed")] == [first.task]
    # a cancelled task cannot be completed
    engine.cancel_case(ws, two, reason="customer withdrew", user="ann")
    [cancelled] = engine.list_tasks(ws, status="cancelled")
    assert cancelled.task == second.task
    with pytest.raises(engine.TaskStateError, match="cancelled"):
        engine.complete_task(ws, second.task, {"decision": "yes"})
    for error in (engine.TaskStateError, engine.TaskNotFoundError, FormError):
        assert issubclass(error, UserError)


def test_cancel_case_stops_it_and_is_logged(orders: Workspace) -> None:
    ws = orders
    case = engine.start_case(ws, "orders", {"amount": 5000})
    work(ws)
    assert len(engine.list_tasks(ws, case=case)) == 1
    info = engine.cancel_case(ws, case, reason="duplicate order", user="ann")
    assert info.status == "cancelled" and info.error == "duplicate order" and info.ended is not None
    assert engine.list_tasks(ws, case=case) == []
    assert engine.list_tasks(ws, case=case, status=None)[0].status == "cancelled"
    before = state(ws)
    with pytest.raises(engine.CaseStateError, match="cancelled already"):
        engine.cancel_case(ws, case)
    with pytest.raises(engine.CaseNotFoundError, match="no case 'c-nope'"):
        engine.cancel_case(ws, "c-nope")
    assert state(ws) == before
    assert work(ws).steps == 0  # nothing runs after a cancel
    assert history(ws, case)[-1] == ("cancel", None, 1, 1, "cancelled")
    assert_closed_loop(ws, "orders")


# -- timers -------------------------------------------------------------------------------------------
def test_interrupting_sla_cancels_the_task_and_escalates(ws: Workspace) -> None:
    sla_model(interrupting=True, after="PT1S").save(ws)
    case = engine.start_case(ws, "sla-int", {})
    work(ws)  # runs until the timer has fired (due within the idle horizon)
    tasks = {t.name: t for t in engine.list_tasks(ws, case=case, status=None)}
    assert set(tasks) == {"Review", "Escalate"}
    assert tasks["Review"].status == "cancelled" and tasks["Escalate"].status == "open"
    assert tasks["Escalate"].candidate_group == "managers"
    [timer] = [s for s in engine.case_history(ws, case) if s.kind == "timer"]
    assert timer.name == "SLA passed" and timer.started >= tasks["Review"].created + timedelta(seconds=1)
    with pytest.raises(engine.TaskStateError, match="cancelled"):
        engine.complete_task(ws, tasks["Review"].task, {"decision": "yes"})
    engine.complete_task(ws, tasks["Escalate"].task, {"decision": "yes", "note": "late"}, user="boss")
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data == {"decision": "yes", "note": "late"}
    # (the cancelled review may be journaled as an instance that ended, "cancelled")
    assert [k[:2] for k in history(ws, case) if k[4] != "cancelled"] == [
        ("timer", "Event_sla_passed"), ("user", "Activity_escalate"),
                                                  ("service", "Activity_done"), ("end", None)]
    assert_closed_loop(ws, "sla-int")


def test_non_interrupting_sla_keeps_the_task_open(ws: Workspace) -> None:
    sla_model(interrupting=False, after="PT1S").save(ws)
    case = engine.start_case(ws, "sla-nonint", {})
    work(ws)
    [review] = engine.list_tasks(ws, case=case)
    assert review.name == "Review" and review.status == "open"
    steps = engine.case_history(ws, case)
    assert [(s.kind, s.element) for s in steps] == [("timer", "Event_sla_passed"),
                                                   ("service", "Activity_remind_manager")]
    assert engine.get_case(ws, case).status == "waiting"
    engine.complete_task(ws, review.task, {"decision": "no"}, user="ann")
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["decision"] == "no" and info.data["effect_done"] is True
    assert len(engine_handlers.effects(ws)) == 1
    assert_closed_loop(ws, "sla-nonint")


def test_a_task_completed_before_its_sla_is_not_escalated_by_a_late_worker(ws: Workspace) -> None:
    sla_model(interrupting=True, after="PT2S").save(ws)
    case = engine.start_case(ws, "sla-int", {})
    work(ws)
    [task] = engine.list_tasks(ws, case=case)
    done = engine.complete_task(ws, task.task, {"decision": "yes"}, user="ann")
    assert done.completed_at < task.due  # in time
    time.sleep(max(0.0, (task.due - ops.utcnow()).total_seconds()) + 0.3)  # no worker runs until after the due time
    work(ws)
    info = engine.get_case(ws, case)
    assert [s.kind for s in engine.case_history(ws, case)] == ["user", "service", "end"]
    assert info.status == "completed" and info.data["decision"] == "yes"
    assert [t.name for t in engine.list_tasks(ws, case=case, status=None)] == ["Review"]


def test_a_completion_that_lost_to_its_sla_neither_counts_nor_keeps_the_case_busy(ws: Workspace) -> None:
    sla_model(interrupting=True, after="PT1S").save(ws)
    case = engine.start_case(ws, "sla-int", {})
    engine.Worker(ws, poll=0.05).run_once()  # the review is open, its SLA timer armed
    [task] = engine.list_tasks(ws, case=case)
    time.sleep(max(0.0, (task.due - ops.utcnow()).total_seconds()) + 0.2)
    done = engine.complete_task(ws, task.task, {"decision": "yes"}, user="ann")  # after the due time
    assert done.completed_at > task.due
    report = work(ws, seconds=3)  # (a worker spinning on the case would go on until this limit)
    assert report.rounds <= 5, f"the worker spun on the case: {report}"
    steps = engine.case_history(ws, case)
    assert [s.kind for s in steps if s.outcome != "cancelled"] == ["timer"]  # the timer was due first: it won
    assert {t.name: t.status for t in engine.list_tasks(ws, case=case, status=None)}["Escalate"] == "open"
    info = engine.get_case(ws, case)
    assert info.status == "waiting" and "decision" not in info.data
    assert engine.Worker(ws, poll=0.05).run_once() is False  # nothing to do until the manager decides


def send_back_model() -> ToBeModel:
    """A review whose SLA escalates to a manager, who may send it back to be reviewed again."""
    m = ToBeModel("send-back")
    start = m.add_event("start", id="StartEvent_1")
    merge = m.add_gateway("exclusive", id="Gateway_merge", after=start)
    review = m.add_task("Review", id="Activity_review", after=merge)
    m.human(review, DECISION, group="reviewers")
    done = m.add_task("Done", id="Activity_done", after=review)
    m.bind(done, python(H + "effect", outputs=["effect_done"]))
    m.add_event("end", id="EndEvent_1", after=done)
    m.on_timeout(review, "PT1S", "Escalate", name="SLA passed")
    m.human("Escalate", [FormField("verdict", "enum", allowed=("redo", "close"))], group="managers")
    again = m.add_gateway("exclusive", name="Again?", id="Gateway_again", after="Escalate")
    m.connect(again, merge, condition="verdict == 'redo'")
    m.connect(again, done, default=True)
    return m


def test_a_task_escalated_and_sent_back_opens_a_new_work_item(ws: Workspace) -> None:
    send_back_model().save(ws)
    case = engine.start_case(ws, "send-back", {})
    other = engine.start_case(ws, "send-back", {})
    work(ws)  # both reviews escalate after a second
    for item in engine.list_tasks(ws):
        assert item.name == "Escalate"
        engine.complete_task(ws, item.task, {"verdict": "redo" if item.case == case else "close"})
    engine.Worker(ws, poll=0.05).run_once()  # the new review opens (its own SLA is a second away)
    assert engine.get_case(ws, other).status == "completed"  # not rolled back with the case sent back
    [again] = engine.list_tasks(ws, case=case)
    assert again.name == "Review" and again.status == "open"
    engine.complete_task(ws, again.task, {"decision": "yes"})
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["decision"] == "yes"
    user = [(s.element, s.occurrence, s.outcome) for s in engine.case_history(ws, case) if s.kind == "user"]
    assert user[-1] == ("Activity_review", 2, "completed")  # the second instance of the review
    assert_closed_loop(ws, "send-back")


def test_a_task_past_its_due_time_shows_overdue(orders: Workspace) -> None:
    ws = orders
    later = engine.start_case(ws, "orders", {"amount": 5000})  # version 1: the review is due in an hour
    main_model(review_due="PT2S").save(ws)
    soon = engine.start_case(ws, "orders", {"amount": 5000})  # version 2: due in two seconds
    work(ws)
    [hour] = engine.list_tasks(ws, case=later)
    [task] = engine.list_tasks(ws, case=soon)
    assert hour.due is not None and abs(hour.due - hour.created - timedelta(hours=1)) < timedelta(milliseconds=50)
    assert task.due is not None and abs(task.due - task.created - timedelta(seconds=2)) < timedelta(milliseconds=50)
    assert (hour.overdue, hour.to_dict()["overdue"]) == (False, False)  # an hour is never up during this test
    time.sleep(max(0.0, (task.due - ops.utcnow()).total_seconds()) + 0.05)
    [task] = engine.list_tasks(ws, case=soon)
    [hour] = engine.list_tasks(ws, case=later)
    assert (task.overdue, task.to_dict()["overdue"]) == (True, True)
    assert (hour.overdue, hour.to_dict()["overdue"]) == (False, False)
    done = engine.complete_task(ws, task.task, {"decision": "yes"})  # done late: no longer overdue, only late
    assert (done.status, done.overdue, done.to_dict()["overdue"]) == ("completed", False, False)
    assert done.completed_at is not None and done.completed_at > done.due


def test_a_timer_that_came_due_while_no_worker_ran_fires_at_start(ws: Workspace) -> None:
    timer_model("PT2S").save(ws)
    case = engine.start_case(ws, "waits", {})
    first = work(ws)  # runs First, arms the timer, stops: nothing due within a second
    assert first.steps == 1
    info = engine.get_case(ws, case)
    assert info.status == "waiting" and info.wake_at is not None
    due = info.wake_at
    time.sleep(max(0.0, (due - ops.utcnow()).total_seconds()) + 0.3)  # no worker runs meanwhile
    assert engine.get_case(ws, case).status == "waiting"
    work(ws)  # a new worker (a restart) fires it
    info = engine.get_case(ws, case)
    assert info.status == "completed"
    steps = engine.case_history(ws, case)
    assert [(s.kind, s.element) for s in steps] == [("service", "Activity_first"), ("timer", "Event_wait"),
                                                   ("service", "Activity_second"), ("end", None)]
    assert steps[1].started >= due
    assert_closed_loop(ws, "waits")


def race_model() -> ToBeModel:
    """A human review in parallel with two automated steps, the second of which completes the review."""
    m = ToBeModel("race")
    start = m.add_event("start", id="StartEvent_1")
    split = m.add_gateway("parallel", id="Gateway_split", after=start)
    review = m.add_task("Review", id="Activity_review")
    m.human(review, DECISION, group="reviewers")
    prepare = m.add_task("Prepare", id="Activity_prepare")
    m.bind(prepare, python(H + "noop"))
    meanwhile = m.add_task("Meanwhile", id="Activity_meanwhile")
    m.bind(meanwhile, python(H + "complete_open_review", outputs=["completed_meanwhile"]))
    join = m.add_gateway("parallel", id="Gateway_join")
    m.connect(split, review)
    m.connect(review, join)
    m.connect(split, prepare)
    m.connect(prepare, meanwhile)
    m.connect(meanwhile, join)
    m.add_event("end", id="EndEvent_1", after=join)
    return m


def test_a_task_completed_while_a_worker_holds_the_case_is_not_lost(ws: Workspace) -> None:
    race_model().save(ws)
    case = engine.start_case(ws, "race", {})
    work(ws)  # Meanwhile's handler completes the review (as a person would) while the worker holds the case
    [item] = engine.list_tasks(ws, case=case, status=None)
    assert (item.status, item.completed_by) == ("completed", "colleague")
    work(ws, seconds=10)
    info = engine.get_case(ws, case)
    assert info.status == "completed" and info.data["decision"] == "yes"


# -- several workers ------------------------------------------------------------------------------------
def test_two_worker_processes_never_run_a_step_twice(orders: Workspace) -> None:
    ws = orders
    cases = [engine.start_case(ws, "orders", {"amount": 1 + i}) for i in range(40)]
    go = ws.path / "go"
    code = ("import os, time\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
            "r = engine.Worker(ws, concurrency=4, poll=0.05, lease=30).run(until_idle=True, max_seconds=120)\n"
            "print(r.steps)")
    procs = [subprocess.Popen(worker_command(ws, code), env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    steps_by_worker = [int(o[0].split()[-1]) for o in outs]
    assert sum(steps_by_worker) == 40 * 6  # five service steps and the end of each case
    assert all(engine.get_case(ws, c).status == "completed" for c in cases)
    calls = engine_handlers.calls(ws)
    # both processes worked, and no handler was ever called twice for one task instance
    assert len({c["pid"] for c in calls}) == 2, steps_by_worker
    assert len(calls) == len({c["key"] for c in calls}) == 40 * 3
    with ops.connect(ws) as con:
        dup = con.execute("SELECT count(*) FROM (SELECT case_id, kind, element_id, occurrence FROM steps "
                          "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) AS d").fetchone()[0]
        per_case = Counter(r[0] for r in con.execute("SELECT case_id FROM steps WHERE kind = 'service'"))
    assert dup == 0 and set(per_case.values()) == {5}
    # each case's steps came from one worker or were handed over between commits, never interleaved twice
    assert_closed_loop(ws, "orders")


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_case_data_unknown_models_and_versions_change_nothing(orders: Workspace) -> None:
    ws = orders
    ops.prepare(ws)
    engine.list_cases(ws)
    before = state(ws)
    with pytest.raises(InvalidArgumentError, match="not valid JSON: .* line 1 column"):
        engine.start_case(ws, "orders", '{"amount": 10')
    with pytest.raises(InvalidArgumentError, match="amount: required"):
        engine.start_case(ws, "orders", {"channel": "web"})
    with pytest.raises(InvalidArgumentError, match="amount: expected a number"):
        engine.start_case(ws, "orders", {"amount": "lots"})
    with pytest.raises(InvalidArgumentError, match="channel: 'fax' is not one of 'web', 'shop'"):
        engine.start_case(ws, "orders", {"amount": 10, "channel": "fax"})
    with pytest.raises(ModelNotFoundError, match="nope"):
        engine.start_case(ws, "nope", {"amount": 10})
    with pytest.raises(ModelNotFoundError, match="version 7"):
        engine.start_case(ws, "orders", {"amount": 10}, version=7)
    with pytest.raises(InvalidArgumentError, match="business key"):
        engine.start_case(ws, "orders", {"amount": 10}, key=" ")
    with pytest.raises(engine.CaseNotFoundError):
        engine.get_case(ws, "c-nope")
    with pytest.raises(engine.CaseNotFoundError):
        engine.case_history(ws, "c-nope")
    with pytest.raises(InvalidArgumentError, match="status"):
        engine.list_cases(ws, status="sleeping")
    with pytest.raises(InvalidArgumentError, match="concurrency"):
        engine.Worker(ws, concurrency=0)
    assert state(ws) == before
    # a business key is unique per model
    first = engine.start_case(ws, "orders", {"amount": 10}, key="k-1")
    after = state(ws)
    with pytest.raises(engine.CaseStateError, match=f"business key 'k-1': {first}"):
        engine.start_case(ws, "orders", {"amount": 20}, key="k-1")
    assert state(ws) == after
    for error in (ModelNotFoundError, engine.CaseStateError, engine.CaseNotFoundError):
        assert issubclass(error, UserError)


def test_bad_input_through_the_cli_is_one_line_and_exit_2(orders: Workspace, cli) -> None:
    proc = cli("start", "orders", "--data", "{oops", workspace=orders.path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "not valid JSON" in proc.stderr
    proc = cli("complete", "t-nope", "--data", "{}", workspace=orders.path)
    assert proc.returncode == 2 and "no human task 't-nope'" in proc.stderr
    assert engine.list_cases(orders) == []


def test_case_data_that_is_json_but_not_an_object_is_a_user_error(orders: Workspace) -> None:
    before = state(orders)
    for data in ("[1, 2]", "3", '"text"', "true"):
        with pytest.raises(InvalidArgumentError, match="object"):
            engine.start_case(orders, "orders", data)
    assert state(orders) == before


def test_element_ids_spiffworkflow_reserves_are_refused_naming_them(ws: Workspace) -> None:
    m = ToBeModel("reserved")
    start = m.add_event("start", id="Start")
    task = m.add_task("Task", id="Activity_task", after=start)
    m.bind(task, python(H + "effect", outputs=["effect_done"]))
    m.add_event("end", id="End", after=task)
    with pytest.raises(ValidationError) as info:  # SpiffWorkflow names its own start and end steps so
        m.save(ws)
    assert [(p.code, p.element) for p in info.value.problems] == [("reserved-id", "Start"), ("reserved-id", "End")]
    assert "'Start' is reserved" in str(info.value) and not (ws.models_dir / "reserved").exists()
    with pytest.raises(ModelNotFoundError, match="reserved"):
        engine.start_case(ws, "reserved", {})
    assert engine.list_cases(ws) == []


def test_a_case_that_cannot_be_rebuilt_fails_alone_and_the_worker_goes_on(orders: Workspace) -> None:
    ws = orders
    bad = engine.start_case(ws, "orders", {"amount": 5000})
    work(ws)
    with ops.transaction(ws) as con:  # e.g. a snapshot written by another SpiffWorkflow version
        con.execute("UPDATE cases SET snapshot = '{\"not a workflow\": 1}' WHERE case_id = ?", (bad,))
    [task] = engine.list_tasks(ws)
    engine.complete_task(ws, task.task, {"decision": "yes"})
    good = engine.start_case(ws, "orders", {"amount": 10})
    work(ws)
    assert engine.get_case(ws, good).status == "completed"
    info = engine.get_case(ws, bad)
    assert info.status == "failed" and info.error


# -- versions ---------------------------------------------------------------------------------------------
def test_running_cases_stay_on_the_version_they_started_on(orders: Workspace) -> None:
    ws = orders
    old = engine.start_case(ws, "orders", {"amount": 5000})
    work(ws)
    assert engine.get_case(ws, old).status == "waiting"
    v2 = main_model()
    v2.rename("Notify", "Notify customer")
    v2.remove("Branch B")
    assert v2.save(ws).version == 2
    new = engine.start_case(ws, "orders", {"amount": 5000})
    assert engine.get_case(ws, new).version == 2
    work(ws)
    for case in (old, new):
        [task] = engine.list_tasks(ws, case=case)
        engine.complete_task(ws, task.task, {"decision": "yes"})
    work(ws)
    old_info, new_info = engine.get_case(ws, old), engine.get_case(ws, new)
    assert (old_info.status, old_info.version, new_info.status, new_info.version) == ("completed", 1, "completed", 2)
    assert [s.name for s in engine.case_history(ws, old) if s.kind == "service"] == [
        "Score", "Branch A", "Branch B", "Notify"]
    assert [s.name for s in engine.case_history(ws, new) if s.kind == "service"] == [
        "Score", "Branch A", "Notify customer"]
    assert "b_done" in old_info.data and "b_done" not in new_info.data
    assert_closed_loop(ws, "orders")
    # each version's runs are checked against the version they ran
    for version, _case in ((1, old), (2, new), (None, new)):
        result = engine.conform_runs(ws, "orders", version=version)
        assert (result.model, result.n_cases, result.headline_fitness) == (f"orders@{version or 2}", 1, 1.0)
    # the new version's run does not fit the old model (Branch B is missing)
    from procestra.mining.conformance import conform
    from procestra.mining.filters import Filter

    flt = Filter.event_attribute("lifecycle", ["complete"], level="event") & Filter.cases([new])
    assert conform(ws, engine.runs_log("orders"), "orders@1", filter=flt).headline_fitness < 1.0


# -- the sandbox ----------------------------------------------------------------------------------------
def test_a_malicious_condition_cannot_be_saved_or_run(ws: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "x"
    evil = f"__import__('os').system('touch {marker}')"
    m = main_model("evil")
    with pytest.raises(ProcestraError, match="calling '__import__' is not allowed"):
        m.set_condition("Gateway_size", "Activity_auto", evil)
    assert m.flow("Gateway_size", "Activity_auto").condition == "amount < 1000"
    # a file written by hand (or by another tool) with that condition: validate names it, save refuses it
    xml = m.to_xml().replace("amount &lt; 1000", evil.replace("'", "&apos;"))
    loaded = ToBeModel.from_xml(xml)
    unsafe = [p for p in loaded.validate() if p.code == "unsafe-condition"]
    assert [(p.severity, p.element) for p in unsafe] == [("error", "Gateway_size")] and "__import__" in unsafe[0].message
    with pytest.raises(ValidationError, match="unsafe-condition"):
        loaded.save(ws)
    with pytest.raises(ModelNotFoundError):
        engine.start_case(ws, "evil", {"amount": 10})
    # a model file tampered with after it was saved: the case fails at the gateway, naming it; nothing executes
    info = m.save(ws)
    path = Path(info.path) / "model.bpmn"
    path.write_text(path.read_text().replace("amount &lt; 1000", evil.replace("'", "&apos;")))
    case = engine.start_case(ws, "evil", {"amount": 10})  # starting reads no condition: the gateway does
    work(ws)
    info = engine.get_case(ws, case)
    assert info.status == "failed" and "Gateway_size" in info.error and "'__import__' is not allowed" in info.error
    assert [s.element for s in engine.case_history(ws, case)] == ["Activity_score", None]  # Score, then the failure
    assert not marker.exists()


def test_a_long_handler_keeps_its_lease(ws: Workspace) -> None:
    """A handler running longer than the lease is not taken over by another worker (the lease is renewed)."""
    m = ToBeModel("slow")
    m.declare("delay_ms", "number")
    start = m.add_event("start", id="StartEvent_1")
    task = m.add_task("Slow", id="Activity_slow", after=start)
    m.bind(task, python(H + "slow_effect", outputs=["Activity_slow_done"]))
    m.add_event("end", id="EndEvent_1", after=task)
    m.save(ws)
    case = engine.start_case(ws, "slow", {"delay_ms": 2500})
    import threading

    holder = engine.Worker(ws, lease=0.9, poll=0.05)
    t = threading.Thread(target=lambda: holder.run(until_idle=True, max_seconds=30))
    t.start()
    time.sleep(1.5)  # the lease would have run out without renewal
    other = engine.Worker(ws, lease=0.9, poll=0.05).run(until_idle=True, max_seconds=5)
    t.join()
    assert engine.get_case(ws, case).status == "completed"
    assert len(engine_handlers.calls(ws)) == 1 and other.steps == 0
