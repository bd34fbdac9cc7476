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
    "InvalidArgumentError",
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
    "Problem",
    "ProcestraError",
    "QualityIssue",
    "QualityReport",
    "Retry",
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
    "bpmn_to_petri",
    "conform",
    "deviations",
    "get_miner",
    "ingest",
    "list_models",
    "load_model",
    "miners",
    "model_info",
    "read_bpmn",
    "register_miner",
    "save",
    "save_filtered",
    "save_model",
    "show",
    "stats",
    "validate_model",
    "write_bpmn",
]


#: Names imported on first use: the widgets pull in ipywidgets, which the CLI never needs.
_LAZY = {"Explorer": "widgets", "VariantBrowser": "widgets", "Comparison": "widgets"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procestra' has no attribute {name!r}")
