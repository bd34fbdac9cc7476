"""Procestra: event logs into process models, and process models into processes that run.

>>> import procestra
>>> ws = procestra.Workspace.init("workspace")
>>> ws.ingest("orders.csv", log="orders")
>>> ws.info("orders")
"""

from __future__ import annotations

from .errors import (
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
from . import stats
from .bpmn import bpmn_to_petri, read_bpmn, write_bpmn
from .conformance import ConformanceResult, conform, deviations
from .connectors import Handler, SecretError, TaskContext, TaskError, TaskTimeoutError
from .discover import DiscoveryResult, Miner, get_miner, miners, register_miner
from .filters import Filter, save_filtered
from .ingest import LoadResult, ingest
from .ops import OpsBusyError, OpsError, OpsUnavailableError, OpsUrlError
from .models import LoadedModel, ModelInfo, list_models, load_model, model_info, save_model
from .quality import QualityIssue, QualityReport
from .refine import FormError, FormField, HumanTask, Problem, Retry, ToBeModel, ValidationError, validate_model
from .render import DFG, DFGDiff, save, show
from .sandbox import ConditionError, UnsafeExpressionError
from .schema import LogSchema
from .workspace import LogInfo, Workspace

__version__ = "0.1.0"

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
    "NotebookError": "runner",
    "Notify": "notify",
    "ParameterError": "runner",
    "Run": "schedule",
    "RunHistory": "widgets",
    "RunNotFoundError": "schedule",
    "RunResult": "runner",
    "Scheduler": "schedule",
    "VariantBrowser": "widgets",
    "add_job": "schedule",
    "list_jobs": "schedule",
    "list_runs": "schedule",
    "record_output": "runner",
    "run_notebook": "runner",
    "run_now": "schedule",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procestra' has no attribute {name!r}")
