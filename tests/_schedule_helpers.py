"""Tiny notebooks for the scheduler tests, built with nbformat (kernel python3)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# Records what the run received, so tests can see injected parameters and typed values.
RECORD = (
    "from procestra.schedule.runner import record_output\n"
    "record_output('scheduled_for', scheduled_for)\n"
    "record_output('run_id', run_id)\n"
    "record_output('attempt', attempt)"
)


def make_notebook(path: Path, parameters: str | None, *cells: str, kernelspec: bool = True) -> Path:
    """A notebook at ``path``: an optional tagged ``parameters`` cell, then ``cells``."""
    nb = new_notebook(metadata={"kernelspec": KERNELSPEC} if kernelspec else {})
    nb.cells.append(new_markdown_cell("# test notebook"))
    if parameters is not None:
        p = new_code_cell(parameters)
        p.metadata["tags"] = ["parameters"]
        nb.cells.append(p)
    nb.cells.extend(new_code_cell(c) for c in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def trivial(path: Path) -> Path:
    return make_notebook(path, "x = 1", "y = x + 1")


def recorder(path: Path) -> Path:
    """Records injected values and its typed parameters as outputs."""
    return make_notebook(
        path, 'text = "hello"\nn = 1\nratio: float = 0.5\nflag = False\nitems = [1]\nupstream = None',
        RECORD + "\nrecord_output('text', text)\nrecord_output('n', n)\nrecord_output('ratio', ratio)\n"
        "record_output('flag', flag)\nrecord_output('items', items)\nrecord_output('upstream', upstream)")


def raising(path: Path) -> Path:
    return make_notebook(path, "x = 1", "y = x + 1", "raise ValueError(f'bad value {x}')", "z = 3")


def sleeping(path: Path, seconds: float = 60) -> Path:
    return make_notebook(path, f"seconds = {seconds}", "import time", "time.sleep(seconds)")


def kernel_killer(path: Path) -> Path:
    return make_notebook(path, "x = 1", "import os, signal", "os.kill(os.getpid(), signal.SIGKILL)", "print('unreachable')")


def flaky(path: Path, fail_until: int = 2) -> Path:
    """Fails while ``attempt < fail_until``, then succeeds."""
    return make_notebook(path, f"fail_until = {fail_until}",
                         "if attempt < fail_until:\n    raise RuntimeError(f'attempt {attempt} failed')",
                         RECORD)
