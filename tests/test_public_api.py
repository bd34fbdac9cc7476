"""The public API is exactly what ``procestra.__all__`` lists, and every name resolves."""

from __future__ import annotations

import procestra


def test_all_names_resolve_and_are_sorted() -> None:
    names = procestra.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(procestra, name) is not None, name


def test_public_names_are_exactly_all() -> None:
    modules = {"bpmn", "cli", "conformance", "connectors", "discover", "engine", "errors", "examples", "export",
               "filters", "generate", "ingest", "models", "notify", "ops", "progress", "quality", "refine",
               "render", "runner", "sandbox", "schedule", "schema", "sources", "stats", "store", "widgets",
               "workspace", "xes"}
    public = {n for n in vars(procestra) if not n.startswith("_") and n != "annotations"}
    public -= modules - set(procestra.__all__)  # submodules are attributes once imported
    public -= {"__getattr__"}
    assert public | set(procestra._LAZY) == set(procestra.__all__) - {"__version__"}
    assert public == set(procestra.__all__) - {"__version__"} - set(procestra._LAZY) or \
        set(procestra._LAZY) <= public  # lazy names appear once used


def test_errors_share_one_root() -> None:
    for name in procestra.__all__:
        obj = getattr(procestra, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, procestra.ProcestraError), name
