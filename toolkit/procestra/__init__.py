"""Procestra: event logs into process models, and process models into processes that run.

>>> import procestra
>>> ws = procestra.Workspace.init("workspace")
>>> ws.ingest("orders.csv", log="orders")
>>> ws.info("orders")
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

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

# ``ingest`` names both a subpackage and its main function. Importing a submodule sets it as an
# attribute of its parent, so if ``procestra.ingest`` were first imported after this module,
# ``procestra.ingest`` would become the subpackage. Binding the function here, once the
# subpackage is in ``sys.modules``, keeps ``procestra.ingest(...)`` the function for good.
from procestra.ingest import ingest
from procestra.version import __version__

if _TYPE_CHECKING:  # for type checkers and IDEs; at run time every name below loads on first use
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
    from procestra.ingest import LoadResult, QualityIssue, QualityReport
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
    from procestra.schedule import (
        Job,
        JobError,
        JobNotFoundError,
        NotebookError,
        Notify,
        ParameterError,
        Run,
        RunNotFoundError,
        RunResult,
        Scheduler,
        add_job,
        list_jobs,
        list_runs,
        record_output,
        run_notebook,
        run_now,
    )
    from procestra.schema import (
        LogSchema,
    )
    from procestra.store import (
        OpsBusyError,
        OpsError,
        OpsUnavailableError,
        OpsUrlError,
    )
    from procestra.widgets import (
        Comparison,
        Explorer,
        Inbox,
        RunHistory,
        VariantBrowser,
    )
    from procestra.workspace import (
        LogInfo,
        Workspace,
    )

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


#: Where each public name lives. Nothing below the errors is imported until first use, so
#: ``procestra --help`` or ``procestra logs`` never pays for pm4py, SpiffWorkflow, ipywidgets or
#: nbformat, and a subpackage the caller never touches is never loaded.
_LAZY = {
    "Comparison": "widgets",
    "ConditionError": "engine",
    "ConformanceResult": "mining",
    "DFG": "models",
    "DFGDiff": "models",
    "DiscoveryResult": "mining",
    "Explorer": "widgets",
    "Filter": "mining",
    "FormError": "engine",
    "FormField": "engine",
    "Handler": "engine",
    "HumanTask": "engine",
    "Inbox": "widgets",
    "Job": "schedule",
    "JobError": "schedule",
    "JobNotFoundError": "schedule",
    "LoadResult": "ingest",
    "LoadedModel": "models",
    "LogInfo": "workspace",
    "LogSchema": "schema",
    "Miner": "mining",
    "ModelInfo": "models",
    "NotebookError": "schedule",
    "Notify": "schedule",
    "OpsBusyError": "store",
    "OpsError": "store",
    "OpsUnavailableError": "store",
    "OpsUrlError": "store",
    "ParameterError": "schedule",
    "Problem": "engine",
    "QualityIssue": "ingest",
    "QualityReport": "ingest",
    "Retry": "engine",
    "Run": "schedule",
    "RunHistory": "widgets",
    "RunNotFoundError": "schedule",
    "RunResult": "schedule",
    "Scheduler": "schedule",
    "SecretError": "engine",
    "TaskContext": "engine",
    "TaskError": "engine",
    "TaskTimeoutError": "engine",
    "ToBeModel": "engine",
    "UnsafeExpressionError": "engine",
    "ValidationError": "engine",
    "VariantBrowser": "widgets",
    "Workspace": "workspace",
    "add_job": "schedule",
    "bpmn_to_petri": "models",
    "conform": "mining",
    "deviations": "mining",
    "get_miner": "mining",
    "list_jobs": "schedule",
    "list_models": "models",
    "list_runs": "schedule",
    "load_model": "models",
    "miners": "mining",
    "model_info": "models",
    "read_bpmn": "models",
    "record_output": "schedule",
    "register_miner": "mining",
    "run_notebook": "schedule",
    "run_now": "schedule",
    "save": "models",
    "save_filtered": "mining",
    "save_model": "models",
    "show": "models",
    "stats": "mining",
    "validate_model": "engine",
    "write_bpmn": "models",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"procestra.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procestra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
