"""Large models: nothing recurses as deep as the model is long, so a long chain validates, saves and runs."""

from __future__ import annotations

import sys

from engine_handlers import one_task_model
from procestra import Workspace, engine
from procestra.engine.examples import chain_model


def test_a_chain_longer_than_the_recursion_limit_validates_saves_and_runs(ws: Workspace) -> None:
    """Before: a chain of 500 script tasks validated, then start failed with RecursionError (exit 1), since
    SpiffWorkflow parses, predicts and rebuilds a chain by calls; 2,000 failed when the case was rebuilt."""
    n = sys.getrecursionlimit() + 200
    m = chain_model(n)
    assert [p for p in m.validate() if p.severity == "error"] == []
    m.save(ws)
    case = engine.start_case(ws, "chain", {})
    engine.Worker(ws).run(until_idle=True, max_seconds=120)
    info = engine.get_case(ws, case)
    assert (info.status, info.error) == ("completed", None)
    assert info.data == {f"x{k}": max(i for i in range(n) if i % 7 == k) for k in range(7)}
    assert sys.getrecursionlimit() < n  # raised only while SpiffWorkflow works, then put back


def test_a_case_looping_through_its_handlers_does_not_starve_the_cases_started_after_it(ws: Workspace) -> None:
    """Before, a worker ran the cases it claimed until each blocked or ended: a case looping through a
    service task held its worker, one handler call a round, and the cases started after it waited for the
    whole loop. A claim now runs at most ROUNDS_PER_CLAIM rounds, then lets go and claims again in turn."""
    from procestra.engine import worker
    from procestra.engine.connectors import python

    m = one_task_model("loop", "Activity_count", "Count")
    m.bind("Activity_count", python("engine_handlers:count_up", outputs=["n"]))
    m.declare("n", "integer")
    gate = m.add_gateway("exclusive", id="Gateway_again", after="Activity_count")
    m.connect(gate, "Activity_count", condition=f"n < {3 * worker.ROUNDS_PER_CLAIM}")
    [out] = [f for f in m.outgoing(gate) if f.target != "Activity_count"]
    m.set_default(gate, out.target)
    m.save(ws)
    one_task_model("quick", "Activity_q", "Quick").save(ws)
    loop = engine.start_case(ws, "loop", {"n": 0})
    quick = [engine.start_case(ws, "quick", {}) for _ in range(3)]
    engine.Worker(ws, concurrency=1, poll=0.01).run(until_idle=True, max_seconds=120)
    cases = {c.case: c for c in engine.list_cases(ws)}
    assert {c.status for c in cases.values()} == {"completed"}
    assert cases[loop].data["n"] == 3 * worker.ROUNDS_PER_CLAIM
    ended = {case: engine.case_history(ws, case)[-1].ended for case in [loop, *quick]}
    assert all(ended[q] < ended[loop] for q in quick)  # they ran between the loop's turns, not after it
