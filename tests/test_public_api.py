"""The public API: ``procestra.__all__`` is composed from the subpackages' own ``__all__``.

Like httpx's exported-members test, the expected names are not a hand-kept list: every
subpackage and floor module declares its public surface in ``__all__``, the root
re-exports from those, and each name resolves to the object its home exports.
"""

from __future__ import annotations

import importlib
import pkgutil

import procestra

#: The names ``import procestra`` gave before the package was split into subpackages:
#: each must stay importable from the root.
BEFORE_THE_SPLIT = {
    "Comparison", "ConditionError", "ConformanceResult", "DFG", "DFGDiff", "DataError", "DiscoveryResult",
    "EmptyResultError", "Explorer", "Filter", "FormError", "FormField", "Handler", "HumanTask", "Inbox",
    "InvalidArgumentError", "Job", "JobError", "JobNotFoundError", "LoadResult", "LoadedModel", "LogInfo",
    "LogNotFoundError", "LogSchema", "MappingError", "Miner", "ModelError", "ModelInfo", "ModelNotFoundError",
    "NotebookError", "Notify", "OpsBusyError", "OpsError", "OpsUnavailableError", "OpsUrlError", "ParameterError",
    "Problem", "ProcestraError", "QualityIssue", "QualityReport", "Retry", "Run", "RunHistory", "RunNotFoundError",
    "RunResult", "Scheduler", "SecretError", "SourceConnectionError", "SourceError", "SourceFormatError",
    "StoreBusyError", "StoreError", "TaskContext", "TaskError", "TaskTimeoutError", "TimestampError", "ToBeModel",
    "UnsafeExpressionError", "UserError", "ValidationError", "VariantBrowser", "Workspace", "WorkspaceError",
    "__version__", "add_job", "bpmn_to_petri", "conform", "deviations", "get_miner", "ingest", "list_jobs",
    "list_models", "list_runs", "load_model", "miners", "model_info", "read_bpmn", "record_output",
    "register_miner", "run_notebook", "run_now", "save", "save_filtered", "save_model", "show", "stats",
    "validate_model", "write_bpmn",
}


def homes() -> dict[str, object]:
    """Every subpackage and floor module, found by walking the package (never listed by hand)."""
    out = {}
    for info in pkgutil.iter_modules(procestra.__path__):
        if info.name.startswith("_") or info.name == "cli":
            continue
        out[info.name] = importlib.import_module(f"procestra.{info.name}")
    return out


def exported() -> dict[str, set[str]]:
    """Each name some subpackage or floor module exports, with the homes that export it."""
    names: dict[str, set[str]] = {}
    for home, module in homes().items():
        for name in module.__all__:
            names.setdefault(name, set()).add(home)
        names.setdefault(home, set()).add("<module>")
    return names


def test_every_home_declares_a_sorted_all_of_names_that_resolve() -> None:
    for home, module in homes().items():
        assert hasattr(module, "__all__"), home
        for name in module.__all__:
            assert getattr(module, name) is not None, f"procestra.{home}.{name}"


def test_the_root_exports_only_names_its_subpackages_export() -> None:
    names = procestra.__all__
    assert names == sorted(names)
    available = exported()
    strays = [n for n in names if n not in available]
    assert strays == [], f"root names no subpackage or floor module exports: {strays}"
    for name in names:
        value = getattr(procestra, name)
        homes_of = [h for h in available[name] if h != "<module>"]
        if homes_of:
            assert any(getattr(homes()[h], name) is value for h in homes_of), name


def test_nothing_public_went_missing_in_the_split() -> None:
    assert set(procestra.__all__) >= BEFORE_THE_SPLIT


def test_public_names_are_exactly_all() -> None:
    public = {n for n in vars(procestra) if not n.startswith("_") and n != "annotations"}
    public -= set(homes()) - set(procestra.__all__)  # subpackages are attributes once imported
    public -= {"cli"}
    lazy = set(procestra._LAZY)
    assert public - lazy == set(procestra.__all__) - {"__version__"} - lazy
    assert lazy <= set(procestra.__all__)


def test_errors_share_one_root() -> None:
    for name, homes_of in exported().items():
        for home in homes_of - {"<module>"}:
            obj = getattr(homes()[home], name)
            if isinstance(obj, type) and issubclass(obj, Exception):
                assert issubclass(obj, procestra.ProcestraError), f"procestra.{home}.{name}"
