"""README: "a discovered or Camunda model becomes a runnable to-be model". Models we did not draw, run.

Each model comes from outside: discovered by the inductive miner from a hand-written log,
a Camunda Modeler file (``cases/claims_camunda.bpmn``), and a Signavio simulation model
from ``../shared/event_logs/models`` (skipped when ``../shared`` is absent). Each is loaded
with :meth:`ToBeModel.load`, its tasks are bound, its gateways get conditions, and it is
saved; then cases run through :func:`engine.start_case` and a real :class:`engine.Worker`,
and the tasks each case completed are checked against the paths the diagram allows, read by
hand from the diagram and replayed by pm4py on the net it reads from the saved file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

import engine_handlers
from procestra import Workspace, engine
from procestra.engine.connectors import python
from procestra.engine.tobe import FormField, ToBeModel

H = "engine_handlers:"
CASES = Path(__file__).resolve().parent / "cases"
MODELS = Path(__file__).resolve().parents[2] / ".." / "shared" / "event_logs" / "models"


def settle(ws: Workspace) -> None:
    """A real worker until no case can move now or within a second."""
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=120)


def completed(ws: Workspace, case: str) -> list[str]:
    """The names of the tasks ``case`` completed, in the order the journal has them."""
    info = engine.get_case(ws, case)
    assert info.status == "completed", (info.status, info.error)
    return [s.name for s in engine.case_history(ws, case) if s.kind in ("service", "user") and s.outcome == "completed"
            and s.name is not None]


def complete_open(ws: Workspace, case: str, name: str, data: dict[str, Any]) -> None:
    """Complete the one open human task of ``case``, which must be ``name``."""
    [item] = engine.list_tasks(ws, case=case)
    assert item.name == name
    engine.complete_task(ws, item.task, data, user="tester")


def fits_saved_diagram(ws: Workspace, model: str, traces: list[list[str]]) -> list[bool]:
    """Whether each trace replays on the Petri net pm4py builds from the saved BPMN file (pm4py.read_bpmn)."""
    import pandas as pd
    import pm4py

    from procestra.models.bpmn import read_bpmn  # pm4py's reader, minus the vendor parts it trips over

    bpmn = read_bpmn(ws.models_dir / model / "v1" / "model.bpmn")
    net, im, fm = pm4py.convert_to_petri_net(bpmn)
    rows = [{"case:concept:name": str(i), "concept:name": a,
             "time:timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=j)}
            for i, trace in enumerate(traces) for j, a in enumerate(trace)]  # fmt: skip
    replay = pm4py.conformance_diagnostics_token_based_replay(pd.DataFrame(rows), net, im, fm)
    return [r["trace_is_fit"] for r in replay]


def bind_all(model: ToBeModel) -> None:
    """Bind every plain task to a handler that records its call."""
    for task in model.tasks():
        if task.kind in ("task", "serviceTask") and task.handler is None:
            model.bind(task.id, python(H + "effect", outputs=["effect_done"]))


def split_before(model: ToBeModel, task: str) -> str:
    """The gateway whose branch leads to ``task``."""
    [flow] = model.incoming(task)
    return flow.source


# -- a discovered model -------------------------------------------------------------------------------
LOG = {  # register, both checks in either order, decide, then approve or reject
    "c1": ["Register", "Check credit", "Check income", "Decide", "Approve"],
    "c2": ["Register", "Check income", "Check credit", "Decide", "Reject"],
    "c3": ["Register", "Check credit", "Check income", "Decide", "Reject"],
}


def test_a_model_discovered_from_a_log_runs_as_a_to_be_model(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "applications.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["case_id", "activity", "timestamp"])
        for case, trace in LOG.items():
            out.writerows([case, a, f"2026-01-0{i + 1}T10:00:00Z"] for i, a in enumerate(trace))
    ws.ingest(path, log="applications")
    model = ToBeModel.load(ws.discover("applications", "inductive"), name="applications")
    assert sorted(t.name for t in model.tasks()) == sorted(set(LOG["c1"]) | {"Reject"})
    model.declare("amount", "number", required=True)
    bind_all(model)
    model.bind("Decide", python(H + "score", outputs=["score"]))  # score = amount / 100
    gateway = split_before(model, "Approve")
    assert split_before(model, "Reject") == gateway
    model.set_condition(gateway, "Approve", "score < 10")
    model.set_condition(gateway, "Reject", "score >= 10")
    assert [p for p in model.validate() if p.severity == "error"] == []
    model.save(ws)
    approve = engine.start_case(ws, "applications", {"amount": 500})
    reject = engine.start_case(ws, "applications", {"amount": 5000})
    settle(ws)
    runs = {case: completed(ws, case) for case in (approve, reject)}
    for case, last in ((approve, "Approve"), (reject, "Reject")):
        trace = runs[case]
        assert (trace[0], set(trace[1:3]), trace[3:]) == ("Register", {"Check credit", "Check income"},
                                                          ["Decide", last])
    assert fits_saved_diagram(ws, "applications", list(runs.values())) == [True, True]
    recorded = ["Activity_register", "Activity_check_credit", "Activity_check_income"] * 2  # Decide records nothing
    assert sorted(c["task"] for c in engine_handlers.calls(ws)) == sorted([*recorded, "Activity_approve",
                                                                           "Activity_reject"])


# -- a Camunda Modeler file ---------------------------------------------------------------------------
def test_a_camunda_modeler_file_runs_as_a_to_be_model(ws: Workspace) -> None:
    model = ToBeModel.load(CASES / "claims_camunda.bpmn")
    assert model.name == "Claims"
    model.remove("Orphan")  # unreachable in the drawing
    model.declare("amount", "number", required=True)
    model.set_condition("Gateway_big", "Review claim", "amount > 1000")  # it was JUEL: ${amount > 1000}
    bind_all(model)  # Check policy (a Java class in Camunda) and Auto settle (a business rule task)
    model.human("Review claim", [FormField("approved", "boolean")], group="adjusters")
    remind = model.add_task("Remind adjuster", after="Timer_sla")  # the SLA boundary led nowhere
    model.bind(remind, python(H + "noop"))
    model.add_event("end", after=remind)
    assert model.validate() == []
    model.save(ws, "claims")
    small = engine.start_case(ws, "claims", {"amount": 1000})
    large = engine.start_case(ws, "claims", {"amount": 1000.5})
    settle(ws)
    assert completed(ws, small) == ["Check policy", "Auto settle"]
    assert [s.name for s in engine.case_history(ws, large)] == ["Check policy"]
    complete_open(ws, large, "Review claim", {"approved": True})
    settle(ws)
    assert completed(ws, large) == ["Check policy", "Review claim"]
    assert engine.get_case(ws, large).data["approved"] is True
    assert fits_saved_diagram(ws, "claims", [completed(ws, small), completed(ws, large)]) == [True, True]


# -- a Signavio model from ../shared -------------------------------------------------------------------
@pytest.mark.shared
def test_a_signavio_model_from_shared_runs_as_a_to_be_model(ws: Workspace) -> None:
    path = MODELS / "ch7_CreditAppSimulation.bpmn"
    if not path.is_file():
        pytest.skip("../shared/event_logs/models is not beside the checkout")
    model = ToBeModel.load(path, name="credit")
    model.declare("amount", "number", required=True)
    bind_all(model)
    model.bind("Assess application", python(H + "score", outputs=["score"]))  # score = amount / 100
    model.human("Receive customer feedback", [FormField("review", "boolean")], group="clerks")
    assess = split_before(model, "Make credit offer")
    model.set_condition(assess, "Make credit offer", "score < 500")  # drawn as "granted", 80%
    model.set_condition(assess, "Notify rejection", "score >= 500")  # drawn as "denied", 20%
    [after_feedback] = [f.target for f in model.outgoing("Receive customer feedback")]
    again = next(f for f in model.outgoing(after_feedback) if f.id != model.element(after_feedback).default)
    model.set_condition(after_feedback, again.target, "review")  # "decision review requested": assess again
    assert [p for p in model.validate() if p.severity == "error"] == []
    model.save(ws)
    granted = engine.start_case(ws, "credit", {"amount": 1000})
    denied = engine.start_case(ws, "credit", {"amount": 90_000})
    settle(ws)
    complete_open(ws, denied, "Receive customer feedback", {"review": True})
    settle(ws)
    complete_open(ws, denied, "Receive customer feedback", {"review": False})
    settle(ws)
    checks = {"Check credit history", "Check income sources"}
    runs = {case: completed(ws, case) for case in (granted, denied)}
    for case, rest in ((granted, ["Assess application", "Make credit offer"]),
                       (denied, ["Assess application", "Notify rejection", "Receive customer feedback",
                                 "Assess application", "Notify rejection", "Receive customer feedback"])):
        trace = runs[case]
        assert (set(trace[:2]), trace[2:]) == (checks, rest)
    assert fits_saved_diagram(ws, "credit", list(runs.values())) == [True, True]
