"""The engine: to-be models (``ToBeModel``), their validation, the sandbox, connectors,
and the runtime that runs cases on SpiffWorkflow with durable state.

>>> from procestra import engine
>>> engine.start_case(ws, "loan-to-be", {"amount": 5000})
>>> engine.Worker(ws).run(until_idle=True)
"""

from procestra.engine.cases import (
    CaseInfo,
    Step,
    WorkItem,
    cancel_case,
    case_history,
    claim_task,
    complete_task,
    conform_runs,
    get_case,
    list_cases,
    list_tasks,
    retry_case,
    runs_log,
    start_case,
    start_cases,
)
from procestra.engine.connectors import Handler, TaskContext
from procestra.engine.elements import FormField, HumanTask, Loop, Retry
from procestra.engine.events import Delivery, NotDeliveredError, send_message, send_signal
from procestra.engine.exceptions import (
    CaseNotFoundError,
    CaseStateError,
    ConditionError,
    EngineError,
    FormError,
    SecretError,
    TaskError,
    TaskNotFoundError,
    TaskStateError,
    TaskTimeoutError,
    UnsafeExpressionError,
    ValidationError,
)
from procestra.engine.tobe import ToBeModel, validate_model
from procestra.engine.validate import Problem
from procestra.engine.worker import Worker, WorkerReport

__all__ = [
    "CaseInfo", "CaseNotFoundError", "CaseStateError", "ConditionError", "Delivery", "EngineError", "FormError",
    "FormField", "Handler", "HumanTask", "Loop", "NotDeliveredError", "Problem", "Retry", "SecretError", "Step",
    "TaskContext", "TaskError", "TaskNotFoundError", "TaskStateError", "TaskTimeoutError", "ToBeModel",
    "UnsafeExpressionError", "ValidationError", "WorkItem", "Worker", "WorkerReport", "cancel_case", "case_history",
    "claim_task", "complete_task", "conform_runs", "get_case", "list_cases", "list_tasks", "retry_case", "runs_log",
    "send_message", "send_signal", "start_case", "start_cases", "validate_model",
]  # fmt: skip
