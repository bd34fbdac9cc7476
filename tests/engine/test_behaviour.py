"""procestra.engine behaviour through the engine users run, checked against the case history and the effects.

Each test saves a :class:`ToBeModel` to a real workspace, starts cases with
:func:`engine.start_case`, runs a real :class:`engine.Worker` until the cases settle,
completes human tasks through :func:`engine.complete_task`, and checks the journal
(:func:`engine.case_history`), the inbox and what the handlers did against what the diagram
says must happen: gateway conditions by case data, retries that wait their back-off,
error boundaries that take the fallback, SLA timers that fire and escalate, forms that
refuse bad data, and the inside of subprocesses and call activities.

The loan model is the tutorial's (:func:`procestra.engine.examples.loan_to_be`, notebook 03),
with its real handlers: the credit bureau fails the first ``bureau_failures`` attempts (case
data), and the risk score comes from the scoring notebook, run in a kernel. Its diagram:

    Credit check (3 attempts, 0.2 s then 0.4 s apart; error boundary -> Manual credit review)
    -> Fraud check || Document check -> Assess risk
    -> amount < 10000: Automatic approval | amount >= 10000: Underwriter review
       (SLA timer -> Escalate to manager, interrupting) -> Notify customer -> end
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import engine_handlers
from procestra import Workspace, engine
from procestra.engine.connectors import idempotency_key, python
from procestra.engine.examples import effects, loan_to_be, write_scoring_notebook
from procestra.engine.exceptions import EngineError
from procestra.engine.tobe import FormError, FormField, Retry, ToBeModel

H = "engine_handlers:"
Step = tuple[str, str | None, str]

# the steps of the loan model, as (kind, name, outcome) in the journal
CREDIT = ("service", "Credit check", "completed")
BUREAU_DOWN = ("retry", "Credit check", "failed")
CHECKS = [("service", "Fraud check", "completed"), ("service", "Document check", "completed"),
          ("service", "Assess risk", "completed")]
AUTO = ("service", "Automatic approval", "completed")
NOTIFY = ("service", "Notify customer", "completed")
END = ("end", None, "completed")


def settle(ws: Workspace) -> engine.WorkerReport:
    """A real worker, run until no case can move now or within a second (so a due back-off or timer runs)."""
    return engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=120)


def steps(ws: Workspace, case: str) -> list[Step]:
    """The journal of ``case`` as (kind, name, outcome)."""
    return [(s.kind, s.name, s.outcome) for s in engine.case_history(ws, case)]


@pytest.fixture
def loan(ws: Workspace, python3_kernel: None, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The loan model saved twice: ``loan-to-be`` (the SLA of 8 hours never passes here) and ``loan-sla``
    (an SLA of one second), both with the bureau retried after 0.2 s and 0.4 s."""
    monkeypatch.delenv("PROCESTRA_EXAMPLE_EFFECTS", raising=False)  # effects go to <workspace>/runs
    write_scoring_notebook(ws.path / "notebooks" / "score_application.ipynb")
    bureau = Retry(max_attempts=3, initial=0.2, multiplier=2.0)
    loan_to_be(bureau_retry=bureau).save(ws)
    loan_to_be(name="loan-sla", sla="PT1S", bureau_retry=bureau).save(ws)
    return ws


def notified(ws: Workspace) -> list[tuple[str, str, dict[str, str]]]:
    """The customer notifications sent: (case, task, payload), one per idempotency key."""
    path = Path(ws.path) / "runs" / "effects.sqlite"
    return [(e["case_id"], e["task"], json.loads(e["payload"])) for e in effects(path)] if path.exists() else []


# -- gateway conditions ---------------------------------------------------------------------------------
def test_the_loan_size_gateway_routes_each_case_by_its_amount(loan: Workspace) -> None:
    small = engine.start_case(loan, "loan-to-be", {"applicant": "A-1", "amount": 9999.5, "channel": "online"})
    large = engine.start_case(loan, "loan-to-be", {"applicant": "A-2", "amount": 10_000})  # the limit itself
    settle(loan)
    # amount < 10000: approved automatically, no person involved, the customer told once
    info = engine.get_case(loan, small)
    assert info.status == "completed", info.error
    assert steps(loan, small) == [CREDIT, *CHECKS, AUTO, NOTIFY, END]
    assert engine.list_tasks(loan, case=small, status=None) == []
    assert set(info.data) == {"applicant", "amount", "channel", "credit_score", "fraud_flag", "documents_ok",
                              "risk_score", "decision", "notified"}
    assert notified(loan) == [(small, "Activity_notify_customer", {"applicant": "A-1", "decision": info.data["decision"]})]
    # amount >= 10000: the underwriter's review is offered, nothing is approved or sent
    assert steps(loan, large) == [CREDIT, *CHECKS]
    assert engine.get_case(loan, large).status == "waiting"
    [review] = engine.list_tasks(loan, case=large)
    assert (review.element, review.name, review.status, review.candidate_group) == (
        "Activity_underwriter_review", "Underwriter review", "open", "underwriters")
    assert review.case_data["amount"] == 10_000
    # each case keeps its own scoring notebook (before, the second case's overwrote the first's)
    for case, amount in ((small, "9999.5"), (large, "10000")):
        [kept] = (Path(loan.path) / "runs" / "tasks" / case).glob("*.ipynb")
        assert kept.name.endswith("-1-1.ipynb") and f"amount = {amount}" in kept.read_text()


# -- human task forms -----------------------------------------------------------------------------------
def test_the_review_form_refuses_bad_data_naming_the_field_and_takes_good_data(loan: Workspace) -> None:
    case = engine.start_case(loan, "loan-to-be", {"applicant": "A-6", "amount": 25_000})
    settle(loan)
    [review] = engine.list_tasks(loan, case=case)
    assert [(f["name"], f["type"], f["required"]) for f in review.form] == [("decision", "enum", True),
                                                                          ("note", "text", False)]
    with pytest.raises(FormError) as bad:
        engine.complete_task(loan, review.task, {"decision": "maybe"}, user="ann")
    assert bad.value.problems == {"decision": "'maybe' is not one of 'approve', 'reject'"}
    assert "decision: 'maybe' is not one of" in str(bad.value)
    with pytest.raises(FormError) as missing:
        engine.complete_task(loan, review.task, {"note": "looks fine"}, user="ann")
    assert missing.value.problems == {"decision": "required"}
    # refused data changes nothing: the task stays open and a worker has nothing to do
    assert [t.status for t in engine.list_tasks(loan, case=case, status=None)] == ["open"]
    assert settle(loan).steps == 0
    done = engine.complete_task(loan, review.task, {"decision": "reject", "note": "income too low"}, user="ann")
    assert (done.status, done.completed_by) == ("completed", "ann")
    settle(loan)
    info = engine.get_case(loan, case)
    assert info.status == "completed", info.error
    assert steps(loan, case) == [CREDIT, *CHECKS, ("user", "Underwriter review", "completed"), NOTIFY, END]
    user = engine.case_history(loan, case)[4]
    assert (user.resource, user.data) == ("ann", {"decision": "reject", "note": "income too low"})
    assert (info.data["decision"], info.data["note"]) == ("reject", "income too low")
    assert notified(loan) == [(case, "Activity_notify_customer", {"applicant": "A-6", "decision": "reject"})]


# -- retries and their delays ---------------------------------------------------------------------------
def test_a_failing_call_is_retried_after_its_delays_and_then_succeeds(loan: Workspace) -> None:
    case = engine.start_case(loan, "loan-to-be", {"applicant": "A-3", "amount": 4000, "bureau_failures": 2})
    settle(loan)
    info = engine.get_case(loan, case)
    assert info.status == "completed", info.error
    assert steps(loan, case) == [BUREAU_DOWN, BUREAU_DOWN, CREDIT, *CHECKS, AUTO, NOTIFY, END]
    first, second, third = engine.case_history(loan, case)[:3]
    assert [(s.attempt, s.data) for s in (first, second, third)] == [
        (1, {"delay": 0.2}), (2, {"delay": 0.4}), (3, {"credit_score": info.data["credit_score"]})]
    assert "credit bureau unavailable (attempt 1 of the 2 that fail)" in (first.error or "")
    assert "credit bureau unavailable (attempt 2 of the 2 that fail)" in (second.error or "")
    # each attempt started no earlier than the failure before it plus that failure's delay
    assert second.started >= first.ended + timedelta(seconds=0.2)
    assert third.started >= second.ended + timedelta(seconds=0.4)


# -- error boundary and fallback ------------------------------------------------------------------------
def test_retries_run_out_and_the_error_boundary_takes_the_manual_review(loan: Workspace) -> None:
    case = engine.start_case(loan, "loan-to-be", {"applicant": "A-4", "amount": 900, "bureau_failures": 5})
    settle(loan)
    failed = ("error", "Credit check", "error")
    assert steps(loan, case) == [BUREAU_DOWN, BUREAU_DOWN, failed]
    history = engine.case_history(loan, case)
    assert [s.attempt for s in history] == [1, 2, 3]
    assert history[2].data == {"code": "Activity_credit_check_failed", "message": history[2].error}
    assert history[1].started >= history[0].ended + timedelta(seconds=0.2)
    assert history[2].started >= history[1].ended + timedelta(seconds=0.4)
    # the fallback path: a person enters the score the bureau could not give
    assert engine.get_case(loan, case).status == "waiting"
    [manual] = engine.list_tasks(loan, case=case)
    assert (manual.element, manual.name, manual.candidate_group, [f["name"] for f in manual.form]) == (
        "Activity_manual_credit_review", "Manual credit review", "analysts", ["credit_score"])
    engine.complete_task(loan, manual.task, {"credit_score": 640}, user="ann")
    settle(loan)
    info = engine.get_case(loan, case)
    assert info.status == "completed", info.error
    assert steps(loan, case) == [BUREAU_DOWN, BUREAU_DOWN, failed, ("user", "Manual credit review", "completed"),
                                 *CHECKS, AUTO, NOTIFY, END]
    assert info.data["credit_score"] == 640
    assert [n[0] for n in notified(loan)] == [case]


# -- SLA timers -----------------------------------------------------------------------------------------
def test_the_underwriter_sla_fires_and_escalates_to_a_manager(loan: Workspace) -> None:
    case = engine.start_case(loan, "loan-sla", {"applicant": "A-5", "amount": 60_000})
    settle(loan)  # the SLA comes due within the worker's one-second horizon: it keeps going until it fired
    items = {t.name: t for t in engine.list_tasks(loan, case=case, status=None)}
    assert {name: t.status for name, t in items.items()} == {"Underwriter review": "cancelled",
                                                             "Escalate to manager": "open"}
    escalate = items["Escalate to manager"]
    assert (escalate.element, escalate.candidate_group) == ("Activity_escalate_to_manager", "managers")
    sla = [("timer", "SLA passed", "fired"), ("user", "Underwriter review", "cancelled")]
    assert steps(loan, case) == [CREDIT, *CHECKS, *sla]
    timer = engine.case_history(loan, case)[4]
    assert timer.started >= items["Underwriter review"].created + timedelta(seconds=1)
    with pytest.raises(engine.TaskStateError, match="cancelled"):
        engine.complete_task(loan, items["Underwriter review"].task, {"decision": "approve"})
    engine.complete_task(loan, escalate.task, {"decision": "approve", "note": "late"}, user="boss")
    settle(loan)
    info = engine.get_case(loan, case)
    assert info.status == "completed", info.error
    assert steps(loan, case) == [CREDIT, *CHECKS, *sla, ("user", "Escalate to manager", "completed"), NOTIFY, END]
    assert (info.data["decision"], info.data["note"]) == ("approve", "late")
    assert notified(loan) == [(case, "Activity_notify_customer", {"applicant": "A-5", "decision": "approve"})]


# -- subprocesses and call activities -------------------------------------------------------------------
def kyc_model() -> ToBeModel:
    """The called model: Verify identity (a handler) -> Approve identity (a person)."""
    m = ToBeModel("kyc")
    start = m.add_event("start", id="StartEvent_kyc")
    verify = m.add_task("Verify identity", id="Activity_verify_identity", after=start)
    m.bind(verify, python(H + "effect", outputs=["effect_done"]))
    approve = m.add_task("Approve identity", id="Activity_approve_identity", after=verify)
    m.human(approve, [FormField("identity_ok", "boolean")], group="compliance")
    m.add_event("end", id="EndEvent_kyc", after=approve)
    return m


def onboarding_model() -> ToBeModel:
    """An embedded subprocess (Create account, a handler -> Confirm account, a person), then a call of kyc@1."""
    m = ToBeModel("onboarding")
    start = m.add_event("start", id="StartEvent_1")
    sub = m.add_subprocess("Open account", tasks=["Create account", "Confirm account"], id="Activity_open_account",
                           after=start)
    m.bind("Create account", python(H + "branch_a", outputs=["a_done", "a_pid"]))
    m.human("Confirm account", [FormField("account_ok", "boolean")], group="clerks")
    call = m.add_call_activity("Run KYC", "kyc@1", id="Activity_run_kyc", after=sub)
    m.add_event("end", id="EndEvent_1", after=call)
    return m


def test_the_inside_of_subprocesses_and_call_activities_runs(ws: Workspace) -> None:
    kyc_model().save(ws)
    main = onboarding_model()
    assert main.validate(ws=ws) == []
    main.save(ws)
    case = engine.start_case(ws, "onboarding", {})
    settle(ws)
    # the embedded subprocess: its handler ran, then its user task is offered
    assert [c["task"] for c in engine_handlers.calls(ws)] == ["Activity_create_account"]
    [confirm] = engine.list_tasks(ws, case=case)
    assert (confirm.element, confirm.name, confirm.candidate_group) == ("Activity_confirm_account", "Confirm account",
                                                                        "clerks")
    engine.complete_task(ws, confirm.task, {"account_ok": True}, user="ann")
    settle(ws)
    # the called model: its handler ran, then its user task is offered
    calls = engine_handlers.calls(ws)
    assert [(c["task"], c["key"]) for c in calls] == [
        ("Activity_create_account", idempotency_key(case, "Activity_create_account", 1)),
        ("Activity_verify_identity", idempotency_key(case, "Activity_verify_identity", 1))]
    [approve] = engine.list_tasks(ws, case=case)
    assert (approve.element, approve.name, approve.candidate_group) == ("Activity_approve_identity",
                                                                        "Approve identity", "compliance")
    engine.complete_task(ws, approve.task, {"identity_ok": True}, user="bob")
    settle(ws)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert steps(ws, case) == [("service", "Create account", "completed"), ("user", "Confirm account", "completed"),
                               ("service", "Verify identity", "completed"), ("user", "Approve identity", "completed"),
                               END]
    assert {k: info.data[k] for k in ("a_done", "account_ok", "effect_done", "identity_ok")} == {
        "a_done": True, "account_ok": True, "effect_done": True, "identity_ok": True}
    assert len(engine_handlers.calls(ws)) == 2  # nothing ran again after the case completed


def test_a_task_id_used_by_the_model_and_the_model_it_calls_is_refused_naming_both(ws: Workspace) -> None:
    kyc_model().save(ws)
    main = ToBeModel("clash")
    start = main.add_event("start", id="StartEvent_1")
    own = main.add_task("Verify identity", id="Activity_verify_identity", after=start)  # kyc has this id too
    main.bind(own, python(H + "noop"))
    call = main.add_call_activity("Run KYC", "kyc@1", id="Activity_run_kyc", after=own)
    main.add_event("end", id="EndEvent_1", after=call)
    main.save(ws)
    with pytest.raises(EngineError, match="'Activity_verify_identity' is used by clash@1 and by kyc@1"):
        engine.start_case(ws, "clash", {})
    assert engine.list_cases(ws) == []
