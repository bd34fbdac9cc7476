"""Procestra: event logs into process models, and process models into processes that run.

>>> import procestra
>>> ws = procestra.Workspace.init("workspace")
>>> ws.ingest("orders.csv", log="orders")
>>> ws.info("orders")
"""

from __future__ import annotations

from .errors import (
    DataError,
    InvalidArgumentError,
    LogNotFoundError,
    MappingError,
    ModelError,
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
from .bpmn import bpmn_to_petri, read_bpmn, write_bpmn
from .ingest import LoadResult, ingest
from .quality import QualityIssue, QualityReport
from .render import DFG, render, save, show
from .schema import LogSchema
from .workspace import LogInfo, Workspace

__version__ = "0.1.0"

__all__ = [
    "DFG",
    "DataError",
    "InvalidArgumentError",
    "LoadResult",
    "LogInfo",
    "LogNotFoundError",
    "LogSchema",
    "MappingError",
    "ModelError",
    "ProcestraError",
    "QualityIssue",
    "QualityReport",
    "SourceConnectionError",
    "SourceError",
    "SourceFormatError",
    "StoreBusyError",
    "StoreError",
    "TimestampError",
    "UserError",
    "Workspace",
    "WorkspaceError",
    "__version__",
    "bpmn_to_petri",
    "ingest",
    "read_bpmn",
    "render",
    "save",
    "show",
    "write_bpmn",
]
