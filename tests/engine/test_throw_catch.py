"""Escalations and errors thrown inside a case and caught by its boundary events, through a real
:class:`engine.Worker` (``cases/escalations.bpmn``, a Camunda-style file with escalation and error codes).

The subprocess "Handle claim" ends in an error end event when the policy is void (the
interrupting error boundary refuses the claim, nothing inside runs on), and throws an escalation
for a large amount (the non-interrupting escalation boundary tells the manager, and the inside goes
on to pay). The expected runs are read from the diagram.
"""

from __future__ import annotations

from pathlib import Path

import engine_handlers
from procestra import Workspace, engine
from procestra.engine.connectors import python
from procestra.engine.tobe import ToBeModel

CASES = Path(__file__).resolve().parent / "cases"


def test_escalations_and_errors_are_caught_by_the_boundary_events_of_the_subprocess(ws: Workspace) -> None:
    m = ToBeModel.load(CASES / "escalations.bpmn", name="claims")
    m.declare("amount", "number", required=True)
    m.declare("void", "boolean", required=True)
    for task in ("Activity_pay", "Activity_tell_manager", "Activity_refuse"):
        m.bind(task, python("engine_handlers:effect", outputs=["effect_done"]))
    m.save(ws)
    small = engine.start_case(ws, "claims", {"amount": 10, "void": False})
    large = engine.start_case(ws, "claims", {"amount": 5000, "void": False})
    void = engine.start_case(ws, "claims", {"amount": 5000, "void": True})
    engine.Worker(ws, poll=0.05).run(until_idle=True, max_seconds=60)

    def run(case: str) -> list[tuple[str, str | None]]:
        info = engine.get_case(ws, case)
        assert info.status == "completed", info.error
        return [(s.kind, s.element) for s in engine.case_history(ws, case)]

    end = ("end", None)
    assert run(small) == [("service", "Activity_pay"), end]
    # escalation: the manager is told and the claim is still paid (the boundary does not interrupt)
    *both, last = run(large)
    assert (sorted(both), last) == ([("service", "Activity_pay"), ("service", "Activity_tell_manager")], end)
    # error: the claim is refused, and nothing after the error inside the subprocess runs
    assert run(void) == [("service", "Activity_refuse"), end]
    assert sorted((c["case"], c["task"]) for c in engine_handlers.calls(ws)) == sorted([
        (small, "Activity_pay"), (large, "Activity_pay"), (large, "Activity_tell_manager"),
        (void, "Activity_refuse")])
