"""The package's shape: subpackages by stage, no module over 800 lines, no private name across
subpackages, one owner for the catalogue tables. Layers themselves are checked by import-linter
(``lint-imports`` in ``make lint``); these are the rules it cannot express."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toolkit" / "procestra"
STAGES = {"store", "ingest", "models", "mining", "engine", "schedule", "widgets", "cli"}
FLOOR = {"errors", "names", "schema", "progress", "version", "workspace", "__init__"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def owner(path: Path) -> str:
    """The subpackage a module belongs to ("" for the modules at the package root)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else ""


def dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["procestra", *parts])


def test_subpackages_by_stage_no_deeper_than_package_subpackage_module() -> None:
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert found == STAGES
    for path in modules():
        rel = path.relative_to(PACKAGE)
        assert len(rel.parts) <= 2, f"{rel} is deeper than package/subpackage/module"
        if len(rel.parts) == 1:
            assert rel.stem in FLOOR, f"{rel}: a module at the root must be part of the floor or the facade"
    for stage in STAGES:
        init = ast.parse((PACKAGE / stage / "__init__.py").read_text())
        names = [t.id for n in init.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        assert "__all__" in names, f"{stage}/__init__.py has no __all__"


def test_no_module_is_over_800_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > 800}
    assert not long, f"modules over 800 lines: {long}"


def _bindings(tree: ast.Module) -> dict[str, str]:
    """Local names bound to procestra modules (``from procestra.x import y`` where y is a module,
    ``import procestra.x as y``)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("procestra"):
            for a in node.names:
                candidate = f"{node.module}.{a.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() or \
                        (PACKAGE.parent / candidate.replace(".", "/")).is_dir():
                    out[a.asname or a.name] = candidate
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("procestra.") and a.asname:
                    out[a.asname] = a.name
    return out


def _stage_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_crossings() -> list[str]:
    found = []
    for path in modules():
        here = owner(path)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("procestra"):
                there = _stage_of(node.module)
                if there == here:
                    continue
                if any(_private(p) for p in node.module.split(".")):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports private module {node.module}")
                for a in node.names:
                    if _private(a.name):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {node.module}.{a.name}")
        bound = _bindings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
                module = bound[node.value.id]
                if _stage_of(module) != here and _private(node.attr):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} uses {module}.{node.attr}")
    return found


def test_no_private_name_crosses_a_subpackage() -> None:
    assert private_crossings() == []


def test_no_module_imports_the_package_root() -> None:
    """The root imports every stage; a stage importing it would hide a cycle."""
    bad = []
    for path in modules():
        if path == PACKAGE / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "procestra":
                names = {a.name for a in node.names}
                if names - STAGES - FLOOR:
                    bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert bad == []


_CATALOGUE_SQL = re.compile(r"\b(FROM|INTO|UPDATE|JOIN|TABLE(?: IF (?:NOT )?EXISTS)?)\s+(logs|loads)\b", re.I)


def test_only_the_catalogue_has_sql_on_logs_and_loads() -> None:
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in modules() if p != PACKAGE / "store" / "catalogue.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if _CATALOGUE_SQL.search(line)]
    assert hits == []


@pytest.mark.parametrize("rule", ["private", "sql"])
def test_the_checks_catch_a_deliberate_break(rule: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules above fail on the mistakes they guard against (checked on a scratch copy)."""
    import shutil

    copy = tmp_path / "procestra"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "cli" / "__init__.py"
    if rule == "private":
        target.write_text(target.read_text() + "\nfrom procestra.store.ops import _open  # noqa\n")
        monkeypatch.setattr(__import__(__name__), "PACKAGE", copy)
        assert any("store.ops._open" in f for f in private_crossings())
    else:
        target.write_text(target.read_text() + '\nSQL = "SELECT name FROM logs"\n')
        assert _CATALOGUE_SQL.search(target.read_text())
