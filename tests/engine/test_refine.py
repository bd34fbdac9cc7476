"""procestra.refine: to-be models built, edited, validated and saved as executable BPMN.

The loan to-be model (procestra.examples) is saved to a real model repository and opened in
bpmn-js in a real Chromium; models from other tools and from discovery are loaded, checked
and edited. How saved models *run* (conditions, retries, fallbacks, SLA timers, forms,
subprocesses) is tested through the engine itself in ``test_behaviour.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from procestra import Workspace, engine, load_model
from procestra.engine.connectors import (
    http,
    python,
    shell,
)
from procestra.engine.examples import loan_to_be, write_scoring_notebook
from procestra.engine.sandbox import ConditionError
from procestra.engine.tobe import (
    NS,
    FormError,
    FormField,
    HumanTask,
    Retry,
    ToBeModel,
    ValidationError,
    validate_model,
)
from procestra.errors import (
    InvalidArgumentError,
    ModelError,
    ModelNotFoundError,
    UserError,
)

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "output"
MODELS = ROOT.parent / "shared" / "event_logs" / "models"
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
P = f"{{{NS}}}"


@pytest.fixture(scope="module")
def loan_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace with the scoring notebook and the loan to-be model saved."""
    ws = Workspace.init(tmp_path_factory.mktemp("refine") / "ws")
    write_scoring_notebook(ws.path / "notebooks" / "score_application.ipynb")
    loan_to_be().save(ws)
    return ws


def codes(problems: list[Any]) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for p in problems:
        out.setdefault(p.code, []).append(p.element)
    return out


# -- the loan model: build, XML, round trip --------------------------------------------------------
def test_loan_model_is_valid_and_round_trips_through_xml(tmp_path):
    model = loan_to_be()
    assert model.validate() == []
    xml = model.to_xml()
    root = etree.fromstring(xml.encode())
    process = root.find(f"{B}process")
    assert process.get("isExecutable") == "true"
    assert root.nsmap["procestra"] == NS
    assert process.find(f"{B}extensionElements/{P}caseData") is not None
    credit = root.find(f".//{B}serviceTask[@id='Activity_credit_check']")
    handler = credit.find(f"{B}extensionElements/{P}handler")
    assert handler.get("kind") == "python"
    assert json.loads(handler.find(f"{P}config").text) == {"target": "procestra.engine.examples:credit_check"}
    assert credit.find(f"{B}extensionElements/{P}retry").get("maxAttempts") == "3"
    review = root.find(f".//{B}userTask[@id='Activity_underwriter_review']/{B}extensionElements/{P}humanTask")
    assert review.get("candidateGroup") == "underwriters" and review.get("due") == "PT8H"
    timer = root.find(f".//{B}boundaryEvent/{B}timerEventDefinition/{B}timeDuration")
    assert timer.text == "PT8H"
    error = root.find(f"{B}error")
    assert error.get("errorCode") == "Activity_credit_check_failed"
    conditions = sorted(c.text for c in root.iter(f"{B}conditionExpression"))
    assert conditions == ["amount < 10000", "amount >= 10000"]
    again = ToBeModel.from_xml(xml)
    assert again.to_dict() == model.to_dict()
    assert again.notes == []
    path = model.write(tmp_path / "loan.bpmn")
    assert ToBeModel.load(path).to_dict() == {**model.to_dict()}


def test_saved_model_is_versioned_and_loads_back(loan_ws):
    model = ToBeModel.load("loan-to-be", ws=loan_ws)
    assert model.source == "loan-to-be@1"
    again = model.save(loan_ws)
    assert again.ref == "loan-to-be@2" and again.versions == 2
    assert set(again.files) == {"model.bpmn", "model.pnml"}
    meta = json.loads((again.path / "meta.json").read_text())
    assert meta["executable"] is True and meta["format"] == 1
    assert meta["handlers"]["Activity_assess_risk"] == "notebook"
    assert ToBeModel.load("loan-to-be@1", ws=loan_ws).to_dict() == model.to_dict()
    loaded = load_model(loan_ws, "loan-to-be")  # the repository's own reader, used by conformance
    assert "Credit check" in loaded.activities and len(loaded.activities) == 9
    assert ToBeModel.load(loaded).to_dict() == model.to_dict()  # a LoadedModel keeps its bindings too
    with pytest.raises(ModelNotFoundError, match="has no version 9"):
        ToBeModel.load("loan-to-be@9", ws=loan_ws)


def test_saved_model_opens_in_bpmn_js_without_warnings(loan_ws):
    from bpmn_viewer import BPMN_XSD, open_viewer, require_bpmn_js

    xml = (loan_ws.models_dir / "loan-to-be" / "v1" / "model.bpmn").read_text(encoding="utf-8")
    require_bpmn_js()
    xsd = etree.XMLSchema(etree.parse(str(BPMN_XSD)))
    assert xsd.validate(etree.fromstring(xml.encode())), xsd.error_log
    with open_viewer() as viewer:
        result = viewer.import_xml(xml, screenshot=OUTPUT / "refine_loan_to_be.png")
    assert result.error is None and result.warnings == []
    kinds = result.elements
    assert kinds["Activity_credit_check"] == "bpmn:ServiceTask"
    assert kinds["Activity_underwriter_review"] == "bpmn:UserTask"
    assert kinds["Event_sla_passed"] == "bpmn:BoundaryEvent"
    model = loan_to_be()
    assert set(model.elements) | set(model.flows) <= set(result.drawn)


# -- forms and subprocesses ----------------------------------------------------------------------------
def test_form_errors_stop_a_human_task(loan_ws):
    form = loan_to_be().element("Underwriter review").human
    assert form is not None
    assert form.check({"decision": "approve"}) == {"decision": "approve"}
    with pytest.raises(FormError) as info:
        form.check({"decision": "maybe", "extra": 1}, task="Activity_underwriter_review")
    assert info.value.problems == {"extra": "not a field of this form (fields: decision, note)",
                                   "decision": "'maybe' is not one of 'approve', 'reject'"}
    assert isinstance(info.value, UserError) and "Activity_underwriter_review" in str(info.value)
    typed = HumanTask((FormField("n", "integer"), FormField("x", "number", required=False), FormField("ok", "boolean"),
                       FormField("day", "date"), FormField("s", "string", default="-", required=False)))
    assert typed.check({"n": 3.0, "ok": True, "day": "2026-02-01"}) == {"n": 3, "ok": True, "day": "2026-02-01",
                                                                       "s": "-"}
    with pytest.raises(FormError) as info:
        typed.check({"n": "3", "x": "nan", "ok": "yes", "day": "Monday"})
    assert set(info.value.problems) == {"n", "x", "ok", "day"}
    with pytest.raises(FormError, match="required"):
        typed.check({})
    with pytest.raises(InvalidArgumentError, match="enum"):
        FormField("d", "enum")
    with pytest.raises(InvalidArgumentError, match="ISO 8601"):
        HumanTask((), "g", "tomorrow")


def test_call_activities_and_subprocesses_run(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    kyc = ToBeModel("kyc")
    s = kyc.add_event("start")
    t = kyc.add_task("Verify identity", after=s)
    kyc.set_script(t, "verified = applicant != ''")
    kyc.add_event("end", after=t)
    kyc.declare("applicant", "string")
    kyc.save(ws)
    main = ToBeModel("onboarding")
    main.declare("applicant", "string")
    s = main.add_event("start")
    call = main.add_call_activity("Run KYC", "kyc@1", after=s)
    sub = main.add_subprocess("Open account", tasks=["Create account", "Send welcome"], after=call)
    main.set_script("Create account", "account = 'ACC-' + applicant")
    main.set_script("Send welcome", "welcomed = True")
    main.add_event("end", after=sub)
    assert main.validate(ws=ws) == []
    main.save(ws)
    case = engine.start_case(ws, "onboarding", {"applicant": "A-9"})  # the engine users run, with a real worker
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)
    info = engine.get_case(ws, case)
    assert info.status == "completed", info.error
    assert [(s.kind, s.name) for s in engine.case_history(ws, case)] == [
        ("script", "Verify identity"), ("script", "Create account"), ("script", "Send welcome"), ("end", None)]
    assert (info.data["verified"], info.data["account"], info.data["welcomed"]) == (True, "ACC-A-9", True)
    import pandas as pd
    import pm4py

    net, im, fm = load_model(ws, "onboarding").petri  # the subprocess is inlined for replay
    fits = []
    for trace in (["Run KYC", "Create account", "Send welcome"], ["Run KYC", "Send welcome"]):
        log = pd.DataFrame([{"case:concept:name": "1", "concept:name": a,
                             "time:timestamp": pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=i)}
                            for i, a in enumerate(trace)])  # fmt: skip
        fits.append(pm4py.conformance_diagnostics_token_based_replay(log, net, im, fm)[0]["trace_is_fit"])
    assert fits == [True, False]
    broken = main.copy()
    broken.element("Run KYC").called = "nobody"
    assert codes(broken.validate(ws=ws)) == {"call-unknown-model": ["Activity_run_kyc"]}


# -- loading other sources ----------------------------------------------------------------------------
def test_load_a_discovery_and_refine_it(ws, loan_csv, loan_table):
    ws.ingest(loan_csv, log="loans")
    model = ToBeModel.load(ws.discover("loans", "inductive", noise_threshold=0.2), name="loans-to-be")
    assert model.source == "discovered from log 'loans'"
    assert "Activity_credit_check" in model.elements and model.element("Credit check").kind == "task"
    gateways = sum(1 for e in model.elements.values() if "Gateway" in e.kind)
    removed = model.simplify()
    assert sum(1 for e in model.elements.values() if "Gateway" in e.kind) == gateways - len(removed)
    report = model.remove("Request documents")
    assert report.removed == ("Activity_request_documents",) and report.broken == ()
    model.rename("Close case", "Archive case")
    assert model.element("Archive case").id == "Activity_close_case"
    problems = model.validate()
    assert "untyped-task" in codes(problems) and all(p.element for p in problems if p.code != "no-end")
    assert all(p.name for p in problems if p.code == "untyped-task")
    model.bind("Credit check", python("procestra.engine.examples:credit_check", outputs=["credit_score"]))
    assert "Activity_credit_check" not in codes(model.validate()).get("untyped-task", [])
    with pytest.raises(ValidationError) as info:
        model.save(ws)
    # The refusal is exactly: one error per branch of each discovered XOR/OR split (a discovered
    # model has no conditions), and a warning per task still without a handler, i.e. every
    # activity of the generated log (the generator's own table) but the removed and the bound one.
    refused = info.value.problems
    splits = Counter(f.source for f in model.flows.values()
                     if model.elements[f.source].kind in ("exclusiveGateway", "inclusiveGateway"))
    assert Counter(p.element for p in refused if p.severity == "error") == +Counter(
        {g: n for g, n in splits.items() if n >= 2})
    assert {p.code for p in refused if p.severity == "error"} == {"missing-condition"}
    activities = set(loan_table.column("activity").to_pylist()) - {"Request documents", "Credit check"}
    assert sorted(p.element for p in refused if p.code == "untyped-task") == sorted(
        "Activity_" + a.lower().replace(" ", "_") for a in activities)
    assert not (ws.models_dir / "loans-to-be").exists()  # nothing written
    saved = model.save(ws, check=False)  # a draft can be kept
    assert saved.ref == "loans-to-be@1"


CAMUNDA = (Path(__file__).resolve().parent / "cases" / "claims_camunda.bpmn").read_text(encoding="utf-8")


def test_camunda_modeler_file_loads_and_validation_names_each_problem(tmp_path):
    path = tmp_path / "claims.bpmn"
    path.write_text(CAMUNDA, encoding="utf-8")
    model = ToBeModel.load(path)
    assert model.name == "Claims" and model.process_id == "Process_claims"
    assert model.element("Auto settle").kind == "serviceTask"  # business rule task read as a service task
    assert model.element("Timer_sla").timer == "PT2H" and not model.element("Timer_sla").interrupting
    assert model.notes == ["<businessRuleTask> 'Task_auto' was read as a service task: bind it to a handler"]
    review = model.element("Review claim").human  # camunda:candidateGroups and formKey
    assert (review.candidate_group, review.form_key, review.fields) == ("adjusters", "review", ())
    kept = etree.fromstring(model.to_xml().encode())  # the file, patched: lanes, pool and extensions stay
    assert kept.find(f"{B}collaboration/{B}participant").get("processRef") == "Process_claims"
    assert kept.find(f".//{B}laneSet/{B}lane").get("name") == "Clerks"
    assert kept.find(f".//{B}serviceTask[@id='Task_check']").get("{http://camunda.org/schema/1.0/bpmn}class") == \
        "com.acme.Check"
    assert kept.find(f".//{B}businessRuleTask[@id='Task_auto']") is not None  # unbound: as drawn
    problems = model.validate()
    found = codes(problems)
    assert "bad-condition" not in found and "no-default" not in found  # ${amount > 1000} is JUEL, translated
    assert found["unbound-service-task"] == ["Task_check", "Task_auto"]
    assert found["unreachable"] == ["Task_orphan"]
    assert found["boundary-without-path"] == ["Timer_sla"]
    assert found["unknown-variable"] == ["Gateway_big"]  # amount is not declared
    bad = next(p for p in problems if p.code == "unknown-variable")
    assert bad.name == "Big claim?" and "Flow_big" in bad.message and "'amount'" in bad.message
    assert str(bad).startswith("error [unknown-variable] Gateway_big 'Big claim?': ")
    assert all(p.severity in ("error", "warning") for p in problems)
    assert problems == validate_model(path)
    model.set_condition("Gateway_big", "Review claim", "amount > 1000")
    model.declare("amount", "number")
    found = codes(model.validate())
    assert "bad-condition" not in found and "unknown-variable" not in found
    assert "no-default" not in found  # amount > 1000 / amount <= 1000 is proven exhaustive
    model.set_condition("Gateway_big", "Auto settle", "amount < 1000")
    assert codes(model.validate())["no-default"] == ["Gateway_big"]  # 1000 itself is left out


def test_exhaustive_conditions_need_no_default():
    def gateway(*conditions: str, **variables: Any) -> list[str]:
        m = ToBeModel("g")
        for name, spec in variables.items():
            m.declare(name, **spec)
        s = m.add_event("start")
        g = m.add_gateway("exclusive", name="Which?", after=s)
        end = m.add_event("end")
        for i, c in enumerate(conditions):
            t = m.add_task(f"T{i}", kind="script")
            m.set_script(t, "done = True")
            m.connect(g, t, condition=c)
            m.connect(t, end)
        return [p.code for p in m.validate()]

    num = {"amount": {"type": "number"}}
    assert gateway("amount < 10", "amount >= 10", **num) == []
    assert gateway("amount <= 10", "amount > 10", **num) == []
    assert gateway("amount < 0", "0 <= amount < 100", "amount >= 100", **num) == []
    assert gateway("amount < 0 or amount > 5", "0 <= amount and amount <= 5", **num) == []
    assert gateway("not (amount < 10)", "amount < 10", **num) == []
    assert gateway("amount != 3", "amount == 3", **num) == []
    assert gateway("amount < 10", "amount > 10", **num) == ["no-default"]
    assert gateway("amount < 10", "amount >= 11", **num) == ["no-default"]
    assert gateway("amount < 10", "score >= 10", amount={"type": "number"}, score={"type": "number"}) == ["no-default"]
    assert gateway("vip", "not vip", vip={"type": "boolean"}) == []
    assert gateway("vip == True", "vip == False", vip={"type": "boolean"}) == []
    channel = {"channel": {"type": "string", "allowed": ("online", "branch", "broker")}}
    assert gateway("channel == 'online'", "channel in ('branch', 'broker')", **channel) == []
    assert gateway("channel == 'online'", "channel == 'branch'", **channel) == ["no-default"]


def test_validation_finds_each_kind_of_problem():
    m = ToBeModel("broken")
    m.declare("amount", "number")
    t1 = m.add_task("Score", kind="service")
    g = m.add_gateway("exclusive", name="Route", after=t1)
    a = m.add_task("Approve", kind="user")
    r = m.add_task("Reject", kind="user")
    m.connect(g, a, condition="amount < limit")
    m.connect(g, r)
    extra = m.add_task("Extra")
    m.connect(a, extra)
    m.connect(a, r)
    found = codes(m.validate())
    assert found["no-start"] == [None]
    assert found["unbound-service-task"] == ["Activity_score"]
    assert found["unknown-variable"] == ["Gateway_route"]
    assert found["missing-condition"] == ["Gateway_route"]
    assert found["multiple-outgoing"] == ["Activity_approve"]
    assert found["untyped-task"] == ["Activity_extra"]
    m.add_event("start", before=t1)
    found = codes(m.validate())
    assert "no-start" not in found and "unreachable" not in found
    orphan = m.add_task("Orphan", kind="script")
    m.elements[orphan].script = "x = "
    found = codes(m.validate())
    assert found["unreachable"] == [orphan] and found["bad-script"] == [orphan]
    m.elements["Activity_score"].kind = "task"
    m.bind("Score", python("procestra.engine.examples:credit_check", outputs=["limit"]))
    assert "unknown-variable" not in codes(m.validate())  # limit now comes from the task before the gateway
    m.flow("Route", "Approve").condition = "amount <"
    assert codes(m.validate())["bad-condition"] == ["Gateway_route"]
    m.flow("Route", "Approve").condition = "__import__('os').system('id')"
    assert codes(m.validate())["unsafe-condition"] == ["Gateway_route"]
    sub = m.add_subprocess("Empty sub")
    for child in [e.id for e in m.elements.values() if e.parent == sub]:
        del m.elements[child]
    m.flows = {k: f for k, f in m.flows.items() if f.source in m.elements and f.target in m.elements}
    assert sub in codes(m.validate())["subprocess-start"]
    late = ToBeModel("late")
    s = late.add_event("start")
    gw = late.add_gateway("exclusive", after=s)
    x, y = late.add_task("X", kind="script"), late.add_task("Y", kind="script")
    late.set_script(x, "seen = True")
    late.set_script(y, "seen = False")
    late.connect(gw, x, condition="seen")
    late.connect(gw, y, default=True)
    assert codes(late.validate())["unknown-variable"] == [gw]  # produced only after the gateway


def test_timers_handlers_and_boundaries_are_checked():
    m = loan_to_be()
    m.elements["Event_sla_passed"].timer = "P1M"
    m.elements["Activity_fraud_check"].handler = http("FETCH", "https://x")
    m.bind("Document check", shell(["echo"]), retry=Retry(2))
    m.elements["Activity_underwriter_review"].retry = Retry(2)
    found = codes(m.validate())
    assert found["bad-timer"] == ["Event_sla_passed"]
    assert found["bad-handler"] == ["Activity_fraud_check"]
    assert found["retry-unbound"] == ["Activity_underwriter_review"]
    bad = next(p for p in m.validate() if p.code == "bad-timer")
    assert bad.name == "SLA passed" and "months" in bad.message


# -- editing -------------------------------------------------------------------------------------------
def chain(*names: str) -> ToBeModel:
    m = ToBeModel("chain")
    prev = m.add_event("start")
    for n in names:
        prev = m.add_task(n, after=prev)
    m.add_event("end", after=prev)
    return m


def test_remove_reconnects_or_reports_what_broke():
    m = chain("A", "B", "C")
    report = m.remove("B")
    assert report.reconnected == (("Activity_a", "Activity_c"),) and report.broken == ()
    assert [f.target for f in m.outgoing("A")] == ["Activity_c"]
    m = ToBeModel("x")
    s = m.add_event("start")
    g = m.add_gateway("exclusive", after=s)
    a, b = m.add_task("A"), m.add_task("B")
    m.connect(g, a, condition="amount > 1")
    m.connect(g, b, default=True)
    j = m.add_gateway("exclusive")
    m.connect(a, j)
    m.connect(b, j)
    e = m.add_event("end", after=j)
    m.declare("amount", "number")
    report = m.remove(g)  # one incoming: the start connects to both branches, keeping their conditions
    assert sorted(report.reconnected) == [(s, a), (s, b)]
    assert m.flow(s, a).condition == "amount > 1"
    m2 = ToBeModel("y")
    x1, x2, y1, y2 = (m2.add_task(n) for n in ("X1", "X2", "Y1", "Y2"))
    hub = m2.add_task("Hub")
    for x in (x1, x2):
        m2.connect(x, hub)
    for y in (y1, y2):
        m2.connect(hub, y)
    report = m2.remove("Hub")
    assert report.reconnected == ()
    assert sorted(report.broken) == sorted([
        "Activity_x1 'X1' has no outgoing flow any more", "Activity_x2 'X2' has no outgoing flow any more",
        "Activity_y1 'Y1' has no incoming flow any more", "Activity_y2 'Y2' has no incoming flow any more"])
    sub_model = ToBeModel("s")
    sub = sub_model.add_subprocess("Sub", tasks=["In"])
    b = sub_model.on_error(sub, "Fix")
    report = sub_model.remove(sub)
    assert b in report.removed and "Activity_in" in report.removed and "Activity_fix" in sub_model.elements
    assert e in m.elements


def test_editing_errors_are_clear():
    m = chain("Check", "Check again")
    with pytest.raises(ModelError, match="did you mean 'Check'"):
        m.element("Chek")
    m.add_task("Check", id="Activity_dup")
    with pytest.raises(ModelError, match="2 elements are named 'Check'"):
        m.element("Check")
    with pytest.raises(InvalidArgumentError, match="only tasks can be bound"):
        m.bind(m.add_gateway("parallel"), python("a.b:c"))
    with pytest.raises(InvalidArgumentError, match="must look like"):
        m.bind("Check again", python("not valid"))
    with pytest.raises(ConditionError, match="does not parse"):
        m.connect("Check again", "Activity_dup", condition="amount >")
    with pytest.raises(InvalidArgumentError, match="ISO 8601"):
        m.on_timeout("Check again", "8 hours", "Escalate")
    with pytest.raises(InvalidArgumentError, match="already used"):
        m.add_task("X", id="Activity_dup")
    with pytest.raises(InvalidArgumentError, match="must start with a letter"):
        m.add_task("X", id="1bad")
    with pytest.raises(InvalidArgumentError, match="task kind"):
        m.add_task("X", kind="robot")
    g = m.add_gateway("parallel", after="Check again")
    m.connect(g, "Activity_dup")
    before = m.to_dict()
    with pytest.raises(InvalidArgumentError, match="2 outgoing flows"):
        m.add_task("Y", after=g)
    with pytest.raises(ModelError, match="no element"):
        m.on_error("Check again", "Fallback", then="Nowhere")
    assert m.to_dict() == before  # failed edits change nothing
    sub = m.add_subprocess("Sub", tasks=["Inner"])
    with pytest.raises(InvalidArgumentError, match="different"):
        m.connect("Inner", "Activity_dup")
    with pytest.raises(InvalidArgumentError, match="max_attempts"):
        Retry(0)
    with pytest.raises(ConditionError):
        m.set_script("Inner", "import os")
    assert m.element(sub).kind == "subProcess"


def test_retry_backoff():
    r = Retry(max_attempts=5, initial=0.5, multiplier=3, max_delay=10)
    assert [r.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_bad_files_give_clear_errors(tmp_path):
    cases = {
        "not-xml.bpmn": ("<definitions", "not well-formed XML"),
        "not-bpmn.bpmn": ("<html/>", "expected <definitions>"),
        "empty.bpmn": (f'<definitions xmlns="{B[1:-1]}"><process id="p"/></definitions>', "no process elements"),
        "dangling.bpmn": ((f'<definitions xmlns="{B[1:-1]}"><process id="p"><task id="t"/>'
                           '<sequenceFlow id="f" sourceRef="t" targetRef="nowhere"/></process></definitions>'),
                          "sequence flow 'f' has targetRef='nowhere'"),
        "bad-ext.bpmn": ((f'<definitions xmlns="{B[1:-1]}" xmlns:procestra="{NS}"><process id="p"><serviceTask '
                          'id="t"><extensionElements><procestra:handler kind="python"><procestra:config>{oops'
                          '</procestra:config></procestra:handler></extensionElements></serviceTask></process>'
                          '</definitions>'), "<serviceTask> 't': procestra:handler"),
    }  # fmt: skip
    for name, (text, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ModelError, match=fragment.replace("(", r"\(")) as info:
            ToBeModel.load(path)
        assert str(path) in str(info.value)
    complex_ = tmp_path / "complex.bpmn"  # read, and refused by validation, naming the element
    complex_.write_text(f'<definitions xmlns="{B[1:-1]}"><process id="p"><complexGateway id="c"/></process>'
                        '</definitions>', encoding="utf-8")
    [refused] = [p for p in ToBeModel.load(complex_).validate() if p.code == "unsupported-construct"]
    assert refused.element == "c" and "complex gateways are not supported" in refused.message
    with pytest.raises(ModelError, match="no such file"):
        ToBeModel.load(tmp_path / "missing.bpmn")
    with pytest.raises(InvalidArgumentError, match="saved models need ws="):
        ToBeModel.load("some-name")


# What each drawing in ../shared lacks before it can run, counted by hand in the files: its plain
# <task>s (untyped), the branches without a condition of exclusive gateways that split (missing
# condition), Signavio's branch probabilities ("0.2") read as conditions that use no case data
# (constant: a warning; with no default flow either, that gateway has no provable way out), the
# cancel events of Subprocess1 (outside a transaction, which SpiffWorkflow refuses), and the subprocess of simple_model, which has no
# start event inside.
OTHER_TOOLS = {
    "SimpleParallel": {"untyped-task": 6, "missing-condition": 2},
    "Subprocess1": {"untyped-task": 5, "missing-condition": 2, "cancel-outside-transaction": 2},
    "ch7_CreditAppSimulation": {"untyped-task": 6, "constant-condition": 4, "no-default": 1},
    "ch7_InsuranceClaimsSimulationNormalSeason": {"untyped-task": 9, "constant-condition": 10, "no-default": 1},
    "receipt": {"untyped-task": 27, "missing-condition": 47},
    "running-example": {"untyped-task": 8, "missing-condition": 6},
    "simple_model": {"untyped-task": 2, "subprocess-start": 1},
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(OTHER_TOOLS))
def test_other_tools_models_load_validate_and_write(name, tmp_path):
    path = MODELS / f"{name}.bpmn"
    if not path.is_file():
        pytest.skip("../shared/event_logs/models is not beside the checkout")
    model = ToBeModel.load(path)
    problems = model.validate()
    assert Counter(p.code for p in problems) == OTHER_TOOLS[name]
    assert all(p.message for p in problems)
    tasks = {e.name for e in model.tasks()}
    original = etree.parse(str(path)).getroot()
    assert {" ".join((t.get("name") or "").split()) for t in original.iter(f"{B}task")} <= tasks | {""}
    again = ToBeModel.from_xml(model.to_xml())
    assert again.to_dict() == model.to_dict()
