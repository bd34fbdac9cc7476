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
from .ingest import LoadResult, ingest
from .quality import QualityIssue, QualityReport
from .schema import LogSchema
from .workspace import LogInfo, Workspace

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "InvalidArgumentError",
    "LoadResult",
    "LogInfo",
    "LogNotFoundError",
    "LogSchema",
    "MappingError",
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
    "ingest",
]
