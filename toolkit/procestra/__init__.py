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
from .discover import DiscoveryResult, Miner, get_miner, miners, register_miner
from .filters import Filter, save_filtered
from .ingest import LoadResult, ingest
from .quality import QualityIssue, QualityReport
from .render import DFG, save, show
from .schema import LogSchema
from .workspace import LogInfo, Workspace

__version__ = "0.1.0"

__all__ = [
    "DFG",
    "DataError",
    "DiscoveryResult",
    "EmptyResultError",
    "Filter",
    "InvalidArgumentError",
    "LoadResult",
    "LogInfo",
    "LogNotFoundError",
    "LogSchema",
    "MappingError",
    "Miner",
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
    "get_miner",
    "ingest",
    "miners",
    "read_bpmn",
    "register_miner",
    "save",
    "save_filtered",
    "show",
    "stats",
    "write_bpmn",
]
