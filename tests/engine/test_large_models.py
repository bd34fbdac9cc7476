"""Large models: nothing recurses as deep as the model is long, so a long chain validates, saves and runs."""

from __future__ import annotations

import sys

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
