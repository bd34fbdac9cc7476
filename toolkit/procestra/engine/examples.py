"""The loan to-be process of the tutorial, built in code, and its handlers.

:func:`loan_to_be` builds the refined loan process the notebook ``03_refine_to_be`` and
the tests use: a credit check in Python that calls a (simulated) credit bureau with
retries and backoff, falling back to a manual review when the bureau stays down; fraud and
document checks in parallel; scoring in a notebook (:func:`write_scoring_notebook`);
small loans approved automatically by a gateway condition, large ones reviewed by an
underwriter through a form, escalated to a manager when the SLA passes; and a customer
notification whose effect is recorded once per idempotency key.

The handlers are pure and deterministic (results derive from the case data), except:

- ``credit_check`` fails with a retryable error while ``ctx.attempt <= bureau_failures``
  (case data, default 0), so retries and the fallback can be exercised;
- ``notify_customer`` writes one row per idempotency key into the SQLite file named by
  ``$PROCESTRA_EXAMPLE_EFFECTS`` (default ``<workspace>/runs/effects.sqlite``), with
  ``INSERT OR IGNORE``: the pattern for deduplicating external effects.

>>> model = loan_to_be()
>>> model.validate()
[]
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from procestra.engine.connectors import TaskContext, TaskError, notebook, python
from procestra.engine.tobe import FormField, Retry, ToBeModel

__all__ = [
    "LOAN_LIMIT",
    "auto_approve",
    "chain_model",
    "credit_check",
    "document_check",
    "effects",
    "fraud_check",
    "loan_to_be",
    "notify_customer",
    "write_scoring_notebook",
]

#: Loans below this amount are approved without an underwriter.
LOAN_LIMIT = 10_000


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# -- handlers ------------------------------------------------------------------------------------
def credit_check(ctx: TaskContext) -> dict[str, Any]:
    """Ask the credit bureau for a score (300-850); down while ``attempt <= bureau_failures``."""
    failures = int(ctx.data.get("bureau_failures") or 0)
    if ctx.attempt <= failures:
        raise TaskError(f"credit bureau unavailable (attempt {ctx.attempt} of the {failures} that fail)",
                        retryable=True)
    return {"credit_score": 300 + int(_unit("credit", ctx.data["applicant"]) * 551)}


def fraud_check(ctx: TaskContext) -> dict[str, Any]:
    """Flag about 3% of applicants as suspicious."""
    return {"fraud_flag": _unit("fraud", ctx.data["applicant"]) < 0.03}


def document_check(ctx: TaskContext) -> dict[str, Any]:
    """Whether the documents are complete (about 95%)."""
    return {"documents_ok": _unit("documents", ctx.data["applicant"]) < 0.95}


def auto_approve(ctx: TaskContext) -> dict[str, Any]:
    """Approve a small loan unless fraud is suspected or the documents are missing."""
    ok = not ctx.data.get("fraud_flag") and bool(ctx.data.get("documents_ok", True))
    return {"decision": "approve" if ok else "reject"}


def _effects_path(ctx: TaskContext) -> Path:
    env = os.environ.get("PROCESTRA_EXAMPLE_EFFECTS")
    if env:
        return Path(env)
    base = ctx.workspace / "runs" if ctx.workspace is not None else Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    return base / "effects.sqlite"


def notify_customer(ctx: TaskContext) -> dict[str, Any]:
    """Send the decision to the customer: one effect per idempotency key, however often it is retried."""
    path = _effects_path(ctx)
    con = sqlite3.connect(str(path), timeout=30)
    try:
        with con:
            con.execute("CREATE TABLE IF NOT EXISTS effects (idempotency_key TEXT PRIMARY KEY, case_id TEXT, "
                        "task TEXT, payload TEXT, attempts INTEGER)")  # fmt: skip
            payload = json.dumps({"applicant": ctx.data.get("applicant"), "decision": ctx.data.get("decision")})
            con.execute("INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?, 0)",
                        [ctx.idempotency_key, ctx.case_id, ctx.task_id, payload])
            con.execute("UPDATE effects SET attempts = attempts + 1 WHERE idempotency_key = ?", [ctx.idempotency_key])
    finally:
        con.close()
    return {"notified": True}


def effects(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The effects :func:`notify_customer` recorded in ``path`` (one per idempotency key)."""
    con = sqlite3.connect(str(path))
    try:
        cur = con.execute("SELECT idempotency_key, case_id, task, payload, attempts FROM effects ORDER BY rowid")
        return [dict(zip(("idempotency_key", "case_id", "task", "payload", "attempts"), r)) for r in cur.fetchall()]
    finally:
        con.close()


# -- the scoring notebook --------------------------------------------------------------------------
def write_scoring_notebook(path: str | os.PathLike[str]) -> Path:
    """Write the risk-scoring notebook: parameters ``amount``, ``credit_score``; result ``risk_score``."""
    import nbformat

    # nbformat has no type hints
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    params = nbformat.v4.new_code_cell("amount = 5000.0\ncredit_score = 650")  # type: ignore[no-untyped-call]
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
        "# Risk grows with the amount and falls with the credit score.\n"
        "import math\n"
        "risk_score = round(1 / (1 + math.exp((credit_score - 600) / 60 - math.log10(max(amount, 1)) + 3.5)), 4)\n"
        "risk_score")
    out = nbformat.v4.new_code_cell("from procestra.engine.connectors import record_results\n"  # type: ignore[no-untyped-call]
                                    "record_results(risk_score=risk_score)")
    title = nbformat.v4.new_markdown_cell("# Loan risk scoring\nRun by the *Assess risk* task.")  # type: ignore[no-untyped-call]
    nb.cells = [title, params, work, out]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))  # type: ignore[no-untyped-call]
    return path


# -- the model -------------------------------------------------------------------------------------
def loan_to_be(*, name: str = "loan-to-be", scoring_notebook: str = "notebooks/score_application.ipynb",
               sla: str = "PT8H", bureau_retry: Retry | None = None) -> ToBeModel:
    """The refined loan process (see the module docstring); ``sla`` is the underwriter's due time."""
    h = "procestra.engine.examples:"
    m = ToBeModel(name)
    m.declare("applicant", "string", required=True, description="applicant id")
    m.declare("amount", "number", required=True, description="requested amount in EUR")
    m.declare("channel", "string", allowed=("online", "branch", "broker"))
    m.declare("bureau_failures", "integer", description="test knob: the credit bureau fails this many attempts")
    start = m.add_event("start", name="Application received", id="StartEvent_application")
    credit = m.add_task("Credit check", id="Activity_credit_check", after=start)
    m.bind(credit, python(h + "credit_check", outputs=["credit_score"]),
           retry=bureau_retry or Retry(max_attempts=3, initial=0.2, multiplier=2.0, max_delay=5.0))
    merge = m.add_gateway("exclusive", id="Gateway_credit_known", after=credit)
    split = m.add_gateway("parallel", id="Gateway_checks", after=merge)
    fraud = m.add_task("Fraud check", id="Activity_fraud_check")
    docs = m.add_task("Document check", id="Activity_document_check")
    join = m.add_gateway("parallel", id="Gateway_checks_done")
    for t in (fraud, docs):
        m.connect(split, t)
        m.connect(t, join)
    m.bind(fraud, python(h + "fraud_check", outputs=["fraud_flag"]))
    m.bind(docs, python(h + "document_check", outputs=["documents_ok"]))
    m.on_error(credit, "Manual credit review", then=merge, name="Bureau down")
    m.human("Manual credit review", [FormField("credit_score", "integer", label="Credit score (300-850)")],
            group="analysts", due="PT4H")
    risk = m.add_task("Assess risk", id="Activity_assess_risk", after=join)
    m.bind(risk, notebook(scoring_notebook, parameters=["amount", "credit_score"], results=["risk_score"]),
           retry=Retry(max_attempts=2, initial=1.0))
    size = m.add_gateway("exclusive", name="Loan size?", id="Gateway_loan_size", after=risk)
    auto = m.add_task("Automatic approval", id="Activity_automatic_approval")
    review = m.add_task("Underwriter review", id="Activity_underwriter_review")
    m.connect(size, auto, condition=f"amount < {LOAN_LIMIT}", name="small")
    m.connect(size, review, condition=f"amount >= {LOAN_LIMIT}", name="large")
    m.bind(auto, python(h + "auto_approve", outputs=["decision"]))
    decision = [FormField("decision", "enum", allowed=("approve", "reject"), label="Decision"),
                FormField("note", "text", required=False, label="Note")]
    m.human(review, decision, group="underwriters", due=sla)
    decided = m.add_gateway("exclusive", id="Gateway_decided")
    for t in (auto, review):
        m.connect(t, decided)
    m.on_timeout(review, sla, "Escalate to manager", then=decided, name="SLA passed")
    m.human("Escalate to manager", decision, group="managers", due="PT4H")
    notify = m.add_task("Notify customer", id="Activity_notify_customer", after=decided)
    m.bind(notify, python(h + "notify_customer", outputs=["notified"]),
           retry=Retry(max_attempts=5, initial=0.2, multiplier=2.0, max_delay=10.0))
    m.add_event("end", name="Decision sent", id="EndEvent_sent", after=notify)
    return m


def chain_model(n: int, *, name: str = "chain") -> ToBeModel:
    """start -> ``n`` script tasks in a row (task i sets ``x{i % 7} = i``) -> end: a long model for limits."""
    m = ToBeModel(name)
    prev = m.add_event("start", id="S")
    for i in range(n):
        prev = m.add_task(f"Step {i}", kind="scriptTask", id=f"T{i}", after=prev)
        m.set_script(prev, f"x{i % 7} = {i}")
    m.add_event("end", id="E", after=prev)
    return m
