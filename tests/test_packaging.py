"""environment.yml stays in step with pyproject.toml: every dependency, with the same bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_NAME = {"duckdb": "python-duckdb", "graphviz": "python-graphviz", "tzdata": "python-tzdata",
              "dask[distributed]": "dask", "psycopg[binary]": "psycopg"}


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", spec)
    assert m, spec
    return m.group(1), m.group(2).replace(" ", "")


def test_environment_yml_lists_every_dependency_with_its_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    lines = [ln.strip()[2:].strip() for ln in (ROOT / "environment.yml").read_text().splitlines()
             if ln.strip().startswith("- ")]
    listed = dict(_split(ln) for ln in lines if not ln.startswith(("-e", "pip:")) and ln != "pip")
    missing = []
    for spec in wanted:
        name, bounds = _split(spec)
        conda = CONDA_NAME.get(name, name)
        if conda not in listed or listed[conda] != bounds:
            missing.append(f"{spec} (environment.yml has {conda}{listed.get(conda, ': nothing')})")
    assert missing == []
    assert "distributed>=2024.1" in lines  # dask[distributed]'s extra
