"""Shared fixtures: workspaces, generated logs, the real logs in ../shared, a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pg_cluster import cluster, pg_bin
from procestra import Workspace

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "event_logs"
OUTPUT = ROOT / "tests" / "output"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A fresh workspace in a temporary directory."""
    return Workspace.init(tmp_path / "ws")


@pytest.fixture(scope="session")
def shared_logs() -> Path:
    """``../shared/event_logs/logs``; tests using it skip when it is absent."""
    logs = SHARED / "logs"
    if not logs.is_dir():
        pytest.skip("../shared/event_logs is not beside the checkout")
    return logs


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/event_logs is not beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def loan_table():
    """A small generated loan log (about 5,000 events) as an Arrow table."""
    from procestra.mining.generate import generate_log

    return generate_log(5_000, seed=42)


@pytest.fixture(scope="session")
def loan_csv(tmp_path_factory: pytest.TempPathFactory, loan_table) -> Path:
    from procestra.mining.generate import write_log

    return write_log(loan_table, tmp_path_factory.mktemp("gen") / "loan.csv")


def pm4py_frame(table: Any) -> Any:
    """The generator's own table (Arrow or pandas) as pm4py's DataFrame, never through the store.

    Columns are renamed by ``PM4PY_COLUMNS`` and ``pm4py.format_dataframe`` does the rest
    (string case ids, a stable sort by case, timestamp and row), so an ingest or export
    error in the project cannot cancel out against the reference.
    """
    import pandas as pd
    import pm4py

    from procestra.mining.generate import PM4PY_COLUMNS

    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    out = pm4py.format_dataframe(frame.rename(columns=PM4PY_COLUMNS), case_id="case:concept:name",
                                 activity_key="concept:name", timestamp_key="time:timestamp")
    # format_dataframe casts both to the nullable "string" dtype, whose Arrow-backed isin
    # pm4py's variant filters cannot use under pandas 3; pandas' default str, as read_xes gives
    for column in ("case:concept:name", "concept:name"):
        out[column] = out[column].astype(str)
    # we order and measure cases by completion time (see procestra.mining.stats): the start
    # time stays a plain column, not the start key pm4py's DFG and durations would sort by
    out.attrs.pop(pm4py.util.constants.PARAMETER_CONSTANT_START_TIMESTAMP_KEY, None)
    return out


def run_cli(*args: str, workspace: Path | None = None, env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``procestra`` command in a subprocess."""
    cmd = [sys.executable, "-m", "procestra.cli"]
    if workspace is not None:
        cmd += ["-w", str(workspace)]
    full_env = {**os.environ, "PROCESTRA_NO_PROGRESS": "1", **(env or {})}
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, env=full_env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"procestra {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


# -- PostgreSQL --------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on a free loopback port, for the session (see ``pg_cluster``).

    ``make test`` installs the package; without it the tests fail, naming the fix.
    """
    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("PROCESTRA_SKIP_POSTGRES"):
            pytest.skip("PostgreSQL is not installed")
        pytest.fail("PostgreSQL is not installed: run `make test` (it installs Debian's postgresql)")
    with cluster(bindir) as url:
        yield url


@pytest.fixture
def pg_url(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL server (dropped afterwards)."""
    import uuid

    import psycopg

    from procestra.store import ops

    monkeypatch.delenv(ops.OPS_URL_ENV, raising=False)
    name = f"procestra_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_python3_kernel() -> None:
    """Register this interpreter's ``python3`` kernel in its prefix (idempotent): voila needs it there."""
    import subprocess
    import sys

    from filelock import FileLock

    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    with FileLock(str(Path(sys.prefix) / ".procestra-kernelspec.lock")):
        if not spec.is_file():
            subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"],
                           capture_output=True, check=True)  # fmt: skip


@pytest.fixture(scope="session")
def python3_kernel() -> None:
    """The ``python3`` kernel registered in the virtualenv (papermill and voila start it by name)."""
    ensure_python3_kernel()


# -- a small to-be model ---------------------------------------------------------------
def small_model(name: str = "review") -> Any:
    """start -> Fraud check (python) -> amount < 1000 ? Automatic approval : Review (form) -> end."""
    from procestra.engine.connectors import python
    from procestra.engine.tobe import FormField, ToBeModel

    h = "procestra.engine.examples:"
    m = ToBeModel(name)
    m.declare("applicant", "string", required=True)
    m.declare("amount", "number", required=True)
    start = m.add_event("start", name="Received", id="start")
    check = m.add_task("Fraud check", id="fraud", after=start)
    m.bind(check, python(h + "fraud_check", outputs=["fraud_flag"]))
    gate = m.add_gateway("exclusive", name="Small?", id="size", after=check)
    auto = m.add_task("Automatic approval", id="auto")
    review = m.add_task("Review", id="review")
    m.connect(gate, auto, condition="amount < 1000")
    m.connect(gate, review, condition="amount >= 1000")
    m.bind(auto, python(h + "auto_approve", outputs=["decision"]))
    m.human(review, [FormField("decision", "enum", allowed=("approve", "reject")),
                     FormField("note", "text", required=False)], group="reviewers", due="PT1H")
    done = m.add_gateway("exclusive", id="done")
    m.connect(auto, done)
    m.connect(review, done)
    m.add_event("end", name="Decided", id="end", after=done)
    return m
