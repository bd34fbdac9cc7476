"""Procestra: event logs into process models, and process models into processes that run.

>>> import procestra
>>> ws = procestra.Workspace.init("workspace")
>>> ws.ingest("orders.csv", log="orders")
>>> ws.info("orders")
"""

from __future__ import annotations

from procestra.engine import (
    ConditionError,
    FormError,
    FormField,
    Handler,
    HumanTask,
    Problem,
    Retry,
    SecretError,
    TaskContext,
    TaskError,
    TaskTimeoutError,
    ToBeModel,
    UnsafeExpressionError,
    ValidationError,
    validate_model,
)
from procestra.errors import (
    DataError,
    EmptyResultError,
    InvalidArgumentError,
    LogNotFoundError,
    MappingError,
    ModelError,
    ModelNotFoundError,
    ProcestraError,
    SourceConnectionError,
    SourceError,
    SourceFormatError,
    StoreBusyError,
    StoreError,
    TimestampError,
    UserError,
    WorkspaceError,
)
from procestra.ingest import LoadResult, QualityIssue, QualityReport, ingest
from procestra.mining import (
    ConformanceResult,
    DiscoveryResult,
    Filter,
    Miner,
    conform,
    deviations,
    get_miner,
    miners,
    register_miner,
    save_filtered,
    stats,
)
from procestra.models import (
    DFG,
    DFGDiff,
    LoadedModel,
    ModelInfo,
    bpmn_to_petri,
    list_models,
    load_model,
    model_info,
    read_bpmn,
    save,
    save_model,
    show,
    write_bpmn,
)
from procestra.schema import LogSchema
from procestra.store import OpsBusyError, OpsError, OpsUnavailableError, OpsUrlError
from procestra.version import __version__
from procestra.workspace import LogInfo, Workspace

__all__ = [
    "Comparison",
    "ConditionError",
    "ConformanceResult",
    "DFG",
    "DFGDiff",
    "DataError",
    "DiscoveryResult",
    "EmptyResultError",
    "Explorer",
    "Filter",
    "FormError",
    "FormField",
    "Handler",
    "HumanTask",
    "Inbox",
    "InvalidArgumentError",
    "Job",
    "JobError",
    "JobNotFoundError",
    "LoadResult",
    "LoadedModel",
    "LogInfo",
    "LogNotFoundError",
    "LogSchema",
    "MappingError",
    "Miner",
    "ModelError",
    "ModelInfo",
    "ModelNotFoundError",
    "NotebookError",
    "Notify",
    "OpsBusyError",
    "OpsError",
    "OpsUnavailableError",
    "OpsUrlError",
    "ParameterError",
    "Problem",
    "ProcestraError",
    "QualityIssue",
    "QualityReport",
    "Retry",
    "Run",
    "RunHistory",
    "RunNotFoundError",
    "RunResult",
    "Scheduler",
    "SecretError",
    "SourceConnectionError",
    "SourceError",
    "SourceFormatError",
    "StoreBusyError",
    "StoreError",
    "TaskContext",
    "TaskError",
    "TaskTimeoutError",
    "TimestampError",
    "ToBeModel",
    "UnsafeExpressionError",
    "UserError",
    "ValidationError",
    "VariantBrowser",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "add_job",
    "bpmn_to_petri",
    "conform",
    "deviations",
    "get_miner",
    "ingest",
    "list_jobs",
    "list_models",
    "list_runs",
    "load_model",
    "miners",
    "model_info",
    "read_bpmn",
    "record_output",
    "register_miner",
    "run_notebook",
    "run_now",
    "save",
    "save_filtered",
    "save_model",
    "show",
    "stats",
    "validate_model",
    "write_bpmn",
]


#: Names imported on first use: the widgets pull in ipywidgets and the scheduler nbformat (2-3 s),
#: which most CLI commands never need.
_LAZY = {
    "Comparison": "widgets",
    "Explorer": "widgets",
    "Inbox": "widgets",
    "Job": "schedule",
    "JobError": "schedule",
    "JobNotFoundError": "schedule",
    "NotebookError": "schedule",
    "Notify": "schedule",
    "ParameterError": "schedule",
    "Run": "schedule",
    "RunHistory": "widgets",
    "RunNotFoundError": "schedule",
    "RunResult": "schedule",
    "Scheduler": "schedule",
    "VariantBrowser": "widgets",
    "add_job": "schedule",
    "list_jobs": "schedule",
    "list_runs": "schedule",
    "record_output": "schedule",
    "run_notebook": "schedule",
    "run_now": "schedule",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"procestra.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procestra' has no attribute {name!r}")
