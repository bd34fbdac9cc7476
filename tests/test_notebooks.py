"""Every shipped notebook (``notebooks/[0-9]*.ipynb``) runs under papermill in a real kernel.

Notebooks are found by the glob, so ones added later are tested without touching this
file; a notebook that needs more than ``workspace`` names its extra parameters in
:data:`EXTRA_PARAMETERS`. The executed copies are kept in ``tests/output/notebooks/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

from procestra import Workspace

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUTPUT = ROOT / "tests" / "output" / "notebooks"
SHIPPED = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))

#: Parameters beyond ``workspace`` (a fresh, empty workspace) per notebook file name.
EXTRA_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_explore.ipynb": {"log_name": "loan"},
    "03_refine_to_be.ipynb": {"cases": 12, "seed": 3},
}


def _check_explore(nb: nbformat.NotebookNode) -> None:
    """01 loaded the sample, displayed one explorer widget and printed its query."""
    widgets = [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1
    joined = "\n".join(texts(nb))
    assert 'stats.dfg(ws, "loan")' in joined
    assert "2,145 cases, " in joined  # event_logs/loan-sample.csv, through the code-equivalent cell
    assert "error:" not in joined


def _check_refine(nb: nbformat.NotebookNode) -> None:
    """03 saved a valid model, ran every case to the end and replayed the runs as fitting."""
    joined = "\n".join(texts(nb))
    assert "'no problems'" in joined and "saved loan-to-be version 1" in joined
    assert "{'completed': 12}" in joined
    assert "name='runs:loan-to-be'" in joined and "cases=12" in joined
    assert "fitness 1.0000" in joined, joined[-2000:]


def _check_schedule(nb: nbformat.NotebookNode) -> None:
    """04 defined a job, ran its due slot with the scheduled time injected, and showed the history."""
    joined = "\n".join(texts(nb))
    assert "daily-report-20250331T040000Z-1 succeeded" in joined
    assert "'2025-03-31T04:00:00+00:00'" in joined
    assert [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]


#: Checks of an executed notebook's outputs, beyond "it ran without an error".
CHECKS: dict[str, Callable[[nbformat.NotebookNode], None]] = {
    "01_explore.ipynb": _check_explore,
    "03_refine_to_be.ipynb": _check_refine,
    "04_schedule.ipynb": _check_schedule,
}


pytestmark = pytest.mark.usefixtures("python3_kernel")


def run_notebook(path: Path, out: Path, **parameters: Any) -> nbformat.NotebookNode:
    """Execute ``path`` with papermill in a real ``python3`` kernel, cwd = notebooks/."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return papermill.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3",
                                      cwd=str(path.parent), progress_bar=False, log_output=False)  # fmt: skip


def outputs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def texts(nb: nbformat.NotebookNode) -> list[str]:
    """Every output as text: streams, plain-text and HTML reprs, tracebacks."""
    out = []
    for o in outputs(nb):
        if o["output_type"] == "stream":
            out.append(o["text"])
        elif o["output_type"] == "error":
            out.append("\n".join(o.get("traceback", [])))
        else:
            out += [str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return out


@pytest.mark.parametrize("notebook", SHIPPED, ids=[p.name for p in SHIPPED])
def test_notebook_has_parameters_and_kernel(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{notebook.name}: kernelspec python3"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: needs exactly one cell tagged 'parameters'"
    assert "workspace" in papermill.inspect_notebook(str(notebook)), f"{notebook.name}: no `workspace` parameter"


@pytest.mark.parametrize("notebook", SHIPPED, ids=[p.name for p in SHIPPED])
def test_notebook_runs(notebook: Path, tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    params = {"workspace": str(ws.path), **EXTRA_PARAMETERS.get(notebook.name, {})}
    nb = run_notebook(notebook, OUTPUT / notebook.name, **params)  # raises PapermillExecutionError on failure
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    assert not any("Traceback" in t for t in texts(nb))
    check = CHECKS.get(notebook.name)
    if check is not None:
        check(nb)


@pytest.mark.parametrize(("params", "message"), [
    ({"log_name": "no-such-log", "log_path": None}, "error: no log named 'no-such-log' in this workspace"),
    ({"log_name": "loan", "log_path": "no-such-file.csv"}, "no-such-file.csv"),
], ids=["unknown-log", "missing-file"])  # fmt: skip
def test_explore_bad_input_is_one_clear_line(tmp_path: Path, params: dict[str, Any], message: str) -> None:
    nb = run_notebook(NOTEBOOKS / "01_explore.ipynb", tmp_path / "out.ipynb",
                      workspace=str(tmp_path / "ws"), **params)  # fmt: skip
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    assert not any("Traceback" in t or "File \"" in t for t in texts(nb))
    plain = [o["data"]["text/plain"] for o in outputs(nb) if "text/plain" in o.get("data", {})]
    errors = [t for t in plain if t.startswith("error: ")]
    assert len(errors) == 1 and "\n" not in errors[0].strip(), plain
    assert message in errors[0]
    assert not [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    # the workspace is created, and holds no log
    assert Workspace(tmp_path / "ws").logs() == []
