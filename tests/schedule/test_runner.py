"""Running one notebook in a real kernel: parameters, injected context, failures, timeouts, dead kernels."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from _schedule_helpers import (
    flaky,
    kernel_killer,
    make_notebook,
    raising,
    recorder,
    sleeping,
    trivial,
)
from procestra.schedule import runner
from procestra.schedule.exceptions import NotebookError, ParameterError
from procestra.schedule.executors import LocalExecutor, RunSpec
from procestra.schedule.runner import (
    coerce_parameters,
    notebook_parameters,
    run_notebook,
    validate_parameters,
)

WHEN = datetime(2025, 3, 31, 4, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def nbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("nbs")
    return {
        "trivial": trivial(d / "trivial.ipynb"),
        "recorder": recorder(d / "recorder.ipynb"),
        "raising": raising(d / "raising.ipynb"),
        "sleeping": sleeping(d / "sleeping.ipynb"),
        "killer": kernel_killer(d / "killer.ipynb"),
        "flaky": flaky(d / "flaky.ipynb"),
        "plain": make_notebook(d / "plain.ipynb", None, "print('no parameters')"),
    }


def test_parameters_are_read_with_types_from_annotations_and_defaults(nbs: dict[str, Path]) -> None:
    ps = notebook_parameters(nbs["recorder"])
    assert ps is not None
    assert {k: (p.type, p.optional) for k, p in ps.items()} == {
        "text": ("str", False), "n": ("int", False), "ratio": ("float", False), "flag": ("bool", False),
        "items": ("list", False), "upstream": (None, True)}
    assert notebook_parameters(nbs["plain"]) is None


@pytest.mark.parametrize("params, match", [
    ({"nope": 1}, "unknown parameter 'nope'; the parameters cell defines: flag, items, n, ratio, text, upstream"),
    ({"n": "3"}, "parameter 'n' expects int"),
    ({"n": True}, "parameter 'n' expects int"),
    ({"text": 5}, "parameter 'text' expects str"),
    ({"flag": 1}, "parameter 'flag' expects bool"),
    ({"items": {"a": 1}}, "parameter 'items' expects list"),
    ({"run_id": "x"}, "'run_id' is set by Procestra"),
    ({"text": object()}, "parameters must be str, int"),
])
def test_bad_parameters_name_the_parameter(nbs: dict[str, Path], params: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        validate_parameters(nbs["recorder"], params)
    assert info.value.parameter == next(iter(params))
    assert str(nbs["recorder"]) in str(info.value)


def test_parameters_for_a_notebook_without_a_parameters_cell_are_refused(nbs: dict[str, Path]) -> None:
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'"):
        validate_parameters(nbs["plain"], {"x": 1})
    assert validate_parameters(nbs["plain"], {}) == {}
    with pytest.raises(NotebookError, match="no such notebook"):
        validate_parameters(nbs["plain"].parent / "missing.ipynb", {"x": 1})


def test_cli_texts_become_declared_types_and_code_stays_text(nbs: dict[str, Path]) -> None:
    got = coerce_parameters(nbs["recorder"], {"n": "7", "ratio": "2", "flag": "yes", "items": "[1, 2]",
                                              "text": "__import__('os')", "upstream": '{"a": 1}'})
    assert got == {"n": 7, "ratio": 2.0, "flag": True, "items": [1, 2], "text": "__import__('os')",
                   "upstream": {"a": 1}}
    with pytest.raises(ParameterError, match="parameter 'n' expects int .* got 'seven'"):
        coerce_parameters(nbs["recorder"], {"n": "seven"})


def test_a_run_gets_its_context_and_returns_outputs_notebook_and_html(nbs: dict[str, Path], tmp_path: Path) -> None:
    r = run_notebook(nbs["recorder"], tmp_path / "out" / "r.ipynb",
                     parameters={"n": 3, "ratio": 1, "items": [4, 5], "flag": True},
                     scheduled_for=WHEN, run_id="job-1", attempt=2, extra_parameters={"upstream": {"a": 1},
                                                                                      "undeclared": 5})
    assert r.status == "succeeded" and r.error is None and r.ok
    assert r.outputs == {"scheduled_for": "2025-03-31T04:00:00+00:00", "run_id": "job-1", "attempt": 2,
                         "text": "hello", "n": 3, "ratio": 1, "flag": True, "items": [4, 5],
                         "upstream": {"a": 1}}
    assert Path(r.output).is_file() and Path(r.html).is_file()
    assert "hello" in Path(r.html).read_text() and r.seconds > 0
    assert runner.read_outputs(r.output)["run_id"] == "job-1"


def test_a_string_parameter_with_python_code_arrives_as_a_string(nbs: dict[str, Path], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = (f"__import__('pathlib').Path({str(marker)!r}).touch()\n'''\"\"\" \\n"
            f"\"; __import__('pathlib').Path({str(marker)!r}).touch(); x = \"")
    r = run_notebook(nbs["recorder"], tmp_path / "code.ipynb", parameters={"text": code}, html=False)
    assert r.status == "succeeded" and r.html is None
    assert r.outputs["text"] == code
    assert not marker.exists()


def test_a_raising_notebook_fails_naming_cell_error_and_value(nbs: dict[str, Path], tmp_path: Path) -> None:
    r = run_notebook(nbs["raising"], tmp_path / "raise.ipynb")
    assert r.status == "failed"
    assert (r.error.cell_index, r.error.ename, r.error.evalue) == (3, "ValueError", "bad value 1")
    nb = nbformat.read(tmp_path / "raise.ipynb", as_version=4)
    assert nbformat.read(nbs["raising"], as_version=4).cells[3].source.startswith("raise ValueError")
    assert any(o.get("ename") == "ValueError" for c in nb.cells for o in c.get("outputs", []))
    assert Path(r.html).is_file()
    assert str(r.error) == "cell 3: ValueError: bad value 1"


def test_a_run_past_its_timeout_is_killed_and_timed_out(nbs: dict[str, Path], tmp_path: Path) -> None:
    r = run_notebook(nbs["sleeping"], tmp_path / "slow.ipynb", timeout=3)
    assert r.status == "timed_out"
    assert r.error.ename == "TimeoutError" and r.error.cell_index == 3 and "timeout of 3 s" in r.error.evalue
    assert r.kernel_exit == -9
    assert "timed out" in nbformat.read(tmp_path / "slow.ipynb", as_version=4).cells[0].source
    assert Path(r.html).is_file()


def test_a_killed_kernel_is_a_failed_run_not_a_hang(nbs: dict[str, Path], tmp_path: Path) -> None:
    r = run_notebook(nbs["killer"], tmp_path / "killed.ipynb")
    assert r.status == "failed"
    assert r.error.ename == "DeadKernelError" and r.error.cell_index == 3
    assert "signal 9" in r.error.evalue and r.kernel_exit == -9


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting for its parent to reap it does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_cancelled_run_stops_its_kernel_and_what_the_kernel_started(tmp_path: Path) -> None:
    import json
    import time

    pids = tmp_path / "pids.json"
    nb = make_notebook(tmp_path / "nb" / "stuck.ipynb", f"pids_file = {str(pids)!r}",
                       "import json, os, subprocess, sys\n"
                       "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                       "with open(pids_file + '.partial', 'w') as f:\n"
                       "    json.dump({'kernel': os.getpid(), 'child': child.pid}, f)\n"
                       "os.replace(pids_file + '.partial', pids_file)",
                       "import time\ntime.sleep(120)")
    cancel = threading.Event()

    def cancel_once_started() -> None:  # cancel while the kernel is busy in the cell after the pids
        deadline = time.monotonic() + 120
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=cancel_once_started, daemon=True).start()
    r = run_notebook(nb, tmp_path / "cancel.ipynb", cancel=cancel)
    assert r.status == "cancelled" and r.error.ename == "Cancelled" and r.error.cell_index == 3
    started = json.loads(pids.read_text())
    left = [name for name, pid in started.items() if _running(pid)]
    for name in left:  # never leave them behind, even when the test fails
        os.kill(started[name], signal.SIGKILL)
    assert started["kernel"] != started["child"]
    assert left == []  # the kernel and the process it started are gone


def test_missing_notebook_and_unknown_kernel_are_user_errors(nbs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(NotebookError, match="no such notebook"):
        run_notebook(tmp_path / "nope.ipynb", tmp_path / "o.ipynb")
    with pytest.raises(NotebookError, match="no Jupyter kernel named 'cobol'.*python3"):
        run_notebook(nbs["trivial"], tmp_path / "o.ipynb", kernel="cobol")
    (tmp_path / "junk.ipynb").write_text("{not json")
    with pytest.raises(NotebookError, match="not a readable notebook"):
        run_notebook(tmp_path / "junk.ipynb", tmp_path / "o.ipynb")


def test_local_executor_runs_with_a_concurrency_limit_and_turns_errors_into_failed_runs(
        nbs: dict[str, Path], tmp_path: Path) -> None:
    ex = LocalExecutor(concurrency=2)
    try:
        futs = [ex.submit(RunSpec(f"r{i}", str(nbs["flaky"]), str(tmp_path / f"f{i}.ipynb"), attempt=i + 1))
                for i in range(3)]
        bad = ex.submit(RunSpec("bad", str(nbs["trivial"]), str(tmp_path / "b.ipynb"), parameters={"nope": 1}))
        results = [f.result(timeout=120) for f in futs]
        assert [r.status for r in results] == ["failed", "succeeded", "succeeded"]
        assert results[0].error.evalue == "attempt 1 failed"
        b = bad.result(timeout=60)
        assert b.status == "failed" and b.error.ename == "ParameterError" and "nope" in b.error.evalue
    finally:
        ex.close()


def test_kernels_started_ahead_are_used_once_in_the_right_directory_and_stopped(tmp_path: Path) -> None:
    import time

    import psutil

    from procestra.schedule.executors import KernelPool

    nb = make_notebook(tmp_path / "nb" / "cwd.ipynb", "x = 1",
                       "import os\nfrom procestra.schedule import record_output\nrecord_output('cwd', os.getcwd())\n"
                       "record_output('pid', os.getpid())\nrecord_output('seen', 'marker' in globals())\nmarker = 1")
    slow = sleeping(tmp_path / "nb" / "slow.ipynb", 60)
    pool = KernelPool(1)
    try:
        first = run_notebook(nb, tmp_path / "o1.ipynb", pool=pool)  # cold: nothing warm yet

        def warm_pid() -> int | None:
            ready = pool._idle.get(("python3", str(nb.parent.resolve())), [])
            return ready[0].process.pid if ready else None

        deadline = time.monotonic() + 60
        while warm_pid() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        ahead = warm_pid()
        second = run_notebook(nb, tmp_path / "o2.ipynb", pool=pool)
        assert first.ok and second.ok
        assert second.outputs["pid"] == ahead != first.outputs["pid"]  # the kernel started ahead ran it
        assert second.outputs["cwd"] == first.outputs["cwd"] == str(nb.parent.resolve())
        assert second.outputs["seen"] is False  # fresh: nothing ran in it before
        while warm_pid() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        timed = run_notebook(slow, tmp_path / "o3.ipynb", pool=pool, timeout=2)  # the watchdog kills it too
        assert timed.status == "timed_out" and timed.kernel_exit == -9
        idle = [k.process.pid for v in pool._idle.values() for k in v]
    finally:
        pool.close()
    _, alive = psutil.wait_procs([psutil.Process(p) for p in idle if psutil.pid_exists(p)], timeout=10)
    assert alive == []
    assert pool.take("python3", str(tmp_path)) is None  # closed
