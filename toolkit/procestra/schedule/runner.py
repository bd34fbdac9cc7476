"""Run one notebook with papermill in a real kernel.

:func:`run_notebook` validates the parameters against the notebook's tagged
``parameters`` cell, injects the run's context (``scheduled_for``, ``run_id``,
``attempt``), runs papermill in this process (no new Python per run: the kernel is
the only new process), and returns a :class:`RunResult`:

- a hard ``timeout`` for the whole run kills the kernel and yields ``timed_out``;
- a kernel that dies (out of memory, ``os.kill``) is detected within a second and
  yields ``failed`` with ``DeadKernelError``, never a hang;
- a failure names the cell (its index in the *input* notebook), the error name and value;
- the executed notebook is written as .ipynb and, optionally, HTML (nbconvert);
- values the notebook returns with :func:`record_output` come back in ``outputs``.

papermill, nbformat, nbconvert and jupyter_client load inside the functions that read or
run notebooks, so importing this module (for :class:`RunResult`, say) stays cheap. The
executors that run many notebooks are in :mod:`procestra.schedule.executors`.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.errors import InvalidArgumentError
from procestra.schedule.exceptions import NotebookError, ParameterError

if TYPE_CHECKING:
    import nbformat

    from procestra.schedule.executors import KernelPool

__all__ = [
    "INJECTED_PARAMETERS",
    "OUTPUT_MIME",
    "CellError",
    "Parameter",
    "RunResult",
    "check_kernel",
    "coerce_parameters",
    "notebook_parameters",
    "read_outputs",
    "record_output",
    "run_notebook",
    "validate_parameters",
]

#: Parameters Procestra injects into every run; a job may not set them itself.
INJECTED_PARAMETERS = ("scheduled_for", "run_id", "attempt")
#: The MIME type of a value a notebook returns (see :func:`record_output`).
OUTPUT_MIME = "application/vnd.procestra.output+json"

logging.getLogger("papermill").addHandler(logging.NullHandler())  # its warnings are ours to report


# -- parameters --------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """One name in a notebook's ``parameters`` cell: its type (annotation, else the default's), default, help."""

    name: str
    type: str | None
    default: str
    help: str
    optional: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(notebook: str | os.PathLike[str] | nbformat.NotebookNode) -> tuple[Any, str]:
    import nbformat

    if not isinstance(notebook, (str, os.PathLike)):
        return notebook, "<notebook>"
    path = Path(notebook)
    if not path.is_file():
        raise NotebookError("no such notebook" if not path.exists() else "not a file", path=str(path))
    try:
        return nbformat.read(str(path), as_version=4), str(path)  # type: ignore[no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        raise NotebookError(f"not a readable notebook ({type(exc).__name__}: {exc})", path=str(path)) from None


_TYPE_ALIASES = {"List": "list", "Dict": "dict", "Tuple": "list", "tuple": "list", "Sequence": "list",
                 "Mapping": "dict", "Any": None, "object": None}


def _declared(annotation: str, default: str) -> tuple[str | None, bool]:
    """(base type name or None for any, whether None is allowed) of one parameter."""
    ann = (annotation or "").replace("typing.", "").strip()
    if ann and ann != "None":
        optional = ann.startswith("Optional[") or bool(re.search(r"\|\s*None|None\s*\|", ann))
        inner = ann[len("Optional["):-1] if ann.startswith("Optional[") else re.sub(r"\|\s*None|None\s*\|", "", ann)
        m = re.match(r"\s*(\w+)", inner)
        base = m.group(1) if m else None
        base = _TYPE_ALIASES.get(base, base) if base else None
        if base not in ("int", "float", "str", "bool", "list", "dict"):
            return None, True
        return base, optional or default.strip() == "None"
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, True
    if value is None:
        return None, True
    kind = {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "list", dict: "dict"}.get(
        type(value))
    return kind, False


def notebook_parameters(notebook: str | os.PathLike[str] | nbformat.NotebookNode) -> dict[str, Parameter] | None:
    """The parameters declared in ``notebook``'s tagged ``parameters`` cell; None when it has none."""
    import papermill

    nb, where = _load(notebook)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        return None
    try:
        found = papermill.inspect_notebook(nb)
    except Exception as exc:  # noqa: BLE001
        raise NotebookError(f"cannot read its parameters cell: {exc}", path=where) from None
    out = {}
    for name, p in found.items():
        base, optional = _declared(str(p.get("inferred_type_name") or ""), str(p.get("default") or ""))
        out[name] = Parameter(name, base, str(p.get("default") or ""), str(p.get("help") or ""), optional)
    return out


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _fits(value: Any, base: str | None, optional: bool) -> bool:
    if value is None:
        return optional
    if base is None:
        return True
    return {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "list": isinstance(value, (list, tuple)),
        "dict": isinstance(value, dict),
    }[base]


def validate_parameters(notebook: str | os.PathLike[str] | nbformat.NotebookNode,
                        parameters: Mapping[str, Any] | None, *,
                        declared: dict[str, Parameter] | None = None,
                        allow: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``parameters`` against the notebook's parameters cell; return them as a plain dict.

    Raises :class:`ParameterError` naming the parameter for an unknown name, a wrong
    type, a reserved name (``scheduled_for``, ``run_id``, ``attempt``), or any parameter
    when the notebook has no parameters cell. Names in ``allow`` may be unknown.
    """
    params = dict(parameters or {})
    where = str(notebook) if isinstance(notebook, (str, os.PathLike)) else "<notebook>"
    if declared is None:
        declared = notebook_parameters(notebook) if params else {}
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ParameterError(f"parameter name {name!r} is not a Python identifier", path=where,
                                 parameter=str(name))
        if name in INJECTED_PARAMETERS:
            raise ParameterError(f"parameter {name!r} is set by Procestra for every run; do not pass it",
                                 path=where, parameter=name)
        if declared is None:
            raise ParameterError(
                f"parameter {name!r} given, but the notebook has no cell tagged 'parameters'; tag the cell "
                "that sets its defaults with 'parameters'", path=where, parameter=name)
        if not _plain(value):
            raise ParameterError(f"parameter {name!r} is a {type(value).__name__}; parameters must be str, "
                                 "int, float, bool, None, or lists/dicts of them", path=where, parameter=name)
        p = declared.get(name)
        if p is None:
            if name in allow:
                continue
            known = ", ".join(sorted(declared)) or "none"
            raise ParameterError(f"unknown parameter {name!r}; the parameters cell defines: {known}",
                                 path=where, parameter=name)
        if not _fits(value, p.type, p.optional):
            raise ParameterError(
                f"parameter {name!r} expects {p.type}{' or None' if p.optional else ''} (default {p.default}), "
                f"got {type(value).__name__} {value!r}", path=where, parameter=name)
    return params


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce_parameters(notebook: str | os.PathLike[str] | nbformat.NotebookNode,
                      raw: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``KEY=VALUE`` texts (the CLI's ``-p``) into values of the types the notebook declares.

    A ``str`` parameter keeps the text as it is (code stays text); numbers, booleans,
    lists and dicts are parsed (lists and dicts as JSON); an untyped parameter takes
    JSON when the text is JSON, else the text.
    """
    where = str(notebook) if isinstance(notebook, (str, os.PathLike)) else "<notebook>"
    declared = notebook_parameters(notebook) if raw else {}
    out: dict[str, Any] = {}
    for name, text in raw.items():
        p = (declared or {}).get(name)
        base, optional = (p.type, p.optional) if p else (None, True)
        if optional and base is not None and text in ("None", "null"):
            out[name] = None
            continue
        try:
            if base == "str":
                out[name] = text
            elif base == "int":
                out[name] = int(text)
            elif base == "float":
                out[name] = float(text)
            elif base == "bool":
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError(text)
                out[name] = text.lower() in _TRUE
            elif base in ("list", "dict"):
                value = json.loads(text)
                if not isinstance(value, list if base == "list" else dict):
                    raise ValueError(text)
                out[name] = value
            else:
                try:
                    out[name] = json.loads(text)
                except ValueError:
                    out[name] = text
        except ValueError:
            raise ParameterError(f"parameter {name!r} expects {base} (default {p.default if p else '?'}), "
                                 f"got {text!r}", path=where, parameter=name) from None
    return out


# -- outputs ---------------------------------------------------------------------------
def record_output(name: str, value: Any) -> None:
    """From inside a notebook: return ``value`` (JSON) under ``name`` to whoever runs it.

    Pipelines pass outputs to dependent jobs as parameters. Without importing Procestra
    a notebook can do the same with
    ``display({"application/vnd.procestra.output+json": {"name": name, "value": value}}, raw=True)``.
    """
    from IPython.display import display

    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgumentError(f"output name {name!r} must be a Python identifier", parameter="name")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"output {name!r} is not JSON-serialisable: {exc}", parameter="value") from None
    display({OUTPUT_MIME: {"name": name, "value": value},  # type: ignore[no-untyped-call]
             "text/plain": f"output {name} = {value!r}"}, raw=True)


def read_outputs(notebook: str | os.PathLike[str] | nbformat.NotebookNode) -> dict[str, Any]:
    """The values an executed notebook returned with :func:`record_output` (the last one per name)."""
    nb, _ = _load(notebook)
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
            item = data.get(OUTPUT_MIME)
            if isinstance(item, str):
                item = json.loads(item)
            if isinstance(item, dict) and "name" in item:
                found[str(item["name"])] = item.get("value")
    return found


# -- one run ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CellError:
    """Where and how a run failed: the cell's index in the input notebook, error name and value."""

    cell_index: int | None
    ename: str
    evalue: str
    execution_count: int | None = None
    traceback: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"cell {self.cell_index}" if self.cell_index is not None else "the notebook"
        return f"{where}: {self.ename}: {self.evalue}"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one notebook run.

    ``status`` is ``succeeded``, ``failed``, ``timed_out`` or ``cancelled``; ``output`` and
    ``html`` are the written files; ``outputs`` holds what the notebook recorded.
    """

    status: str
    started: datetime
    ended: datetime
    output: str | None
    html: str | None
    error: CellError | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    kernel_exit: int | None = None

    @property
    def seconds(self) -> float:
        return (self.ended - self.started).total_seconds()

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started"], d["ended"] = self.started.isoformat(), self.ended.isoformat()
        d["seconds"] = round(self.seconds, 3)
        return d


class _KernelHandle:
    """The kernel of one run, reachable from the watchdog thread: its process and a kill switch."""

    def __init__(self) -> None:
        self.km: Any = None
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path: str | None = None
        self.killed_for: str | None = None
        self.cell_index: int | None = None
        self.exiting = False

    def on_cell(self, cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        self.cell_index = cell_index  # nbclient's hook: the cell about to run

    def kill(self, reason: str) -> bool:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return False
        self.killed_for = self.killed_for or reason
        kill_kernel(proc)
        return True

    def exit_code(self) -> int | None:
        proc = self.process
        if proc is None:
            return None
        try:
            return proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None


def kill_kernel(proc: subprocess.Popen[bytes]) -> None:
    """Kill a kernel process and the processes it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel leads its own session: take its children too
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def _reap(proc: subprocess.Popen[bytes], wait: float = 5.0) -> None:
    """Wait for a kernel that was asked to exit; kill it if it does not within ``wait`` s."""
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        kill_kernel(proc)
        proc.wait()


def _kernel_manager_class(handle: _KernelHandle, pool: KernelPool | None = None, cwd: str = "") -> type:
    from jupyter_client.manager import AsyncKernelManager

    class _RunKernelManager(AsyncKernelManager):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            handle.km = self
            warm = pool.take(self.kernel_name, cwd) if pool is not None else None
            if warm is not None:  # adopt it: nbclient sees a started kernel and skips the start
                self.load_connection_info(warm.km.get_connection_info())
                self.connection_file = warm.km.connection_file
                self._connection_file_written = True
                self.provisioner = warm.km.provisioner
                handle.process, handle.stderr_path = warm.process, warm.stderr_path

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            # The kernel's own chatter goes to a file (read back when it dies), not our stdout.
            fd, path = tempfile.mkstemp(prefix="procestra-kernel-", suffix=".log")
            handle.stderr_path = path
            kw["stdout"] = subprocess.DEVNULL
            kw["stderr"] = fd
            try:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            finally:
                os.close(fd)
            handle.process = getattr(self.provisioner, "process", None)

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            proc = handle.process
            if now or restart or proc is None or proc.poll() is not None:
                await super()._async_shutdown_kernel(now=now, restart=restart)
                return
            # The run is over. Ask the kernel to exit (it still flushes files and runs its atexit
            # hooks) and let a reaper thread wait for it, rather than the run: ~0.3 s saved a run.
            self.shutting_down = True
            await self._async_request_shutdown()
            handle.exiting = True
            threading.Thread(target=_reap, args=(proc,), name="procestra-kernel-reaper", daemon=True).start()
            await self._async_cleanup_resources()

        shutdown_kernel = _async_shutdown_kernel

    return _RunKernelManager


_html_lock = threading.Lock()
_html_exporter: Any = None


def _export_html(nb: Any, path: Path) -> None:
    global _html_exporter
    from nbconvert import HTMLExporter

    with _html_lock:  # one exporter per process: its templates load once (~0.7 s)
        if _html_exporter is None:
            _html_exporter = HTMLExporter()  # type: ignore[no-untyped-call]
        body, _ = _html_exporter.from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")


def _kernel_name(nb: Any, kernel: str | None, where: str) -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise NotebookError(f"no Jupyter kernel named {name!r} (installed kernels: {known})", path=where) from None
    return name


def check_kernel(notebook: str | os.PathLike[str], kernel: str | None) -> str:
    """The kernel a run of ``notebook`` uses (``kernel``, else its kernelspec); it must be installed."""
    nb, where = _load(notebook)
    return _kernel_name(nb, kernel, where)


def _input_index(nb: Any, cell_index: int | None) -> int | None:
    """Map a cell index of the parameterised notebook back to the input notebook's."""
    if cell_index is None:
        return None
    tags = [c.get("metadata", {}).get("tags", []) for c in nb.cells]
    if any("injected-parameters" in t for t in tags):
        return cell_index  # replaced in place, no shift
    p = next((i for i, t in enumerate(tags) if "parameters" in t), None)
    injected = p + 1 if p is not None else 0
    return cell_index - 1 if cell_index > injected else cell_index


def _tail(path: str | None, lines: int = 5) -> str:
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    keep = [t for t in text if "without encryption" not in t]
    return " | ".join(keep[-lines:])


def run_notebook(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    timeout: float | None = None,
    html: bool | str | os.PathLike[str] = True,
    cwd: str | os.PathLike[str] | None = None,
    scheduled_for: datetime | None = None,
    run_id: str | None = None,
    attempt: int = 1,
    cancel: threading.Event | None = None,
    extra_parameters: Mapping[str, Any] | None = None,
    start_timeout: float = 60.0,
    pool: KernelPool | None = None,
) -> RunResult:
    """Run ``notebook`` in a fresh kernel and write the executed notebook to ``output``.

    ``parameters`` are validated against the parameters cell (:class:`ParameterError`
    before any kernel starts); ``extra_parameters`` (a pipeline's upstream outputs) are
    passed only where the notebook declares them. ``scheduled_for`` (ISO text), ``run_id``
    and ``attempt`` are always injected. ``timeout`` bounds the whole run; setting
    ``cancel`` stops it. ``html`` writes an HTML export beside ``output`` (or to the path
    given). The kernel starts in ``cwd``, else the notebook's directory; a ``pool`` supplies
    one started ahead of time.

    >>> r = run_notebook("report.ipynb", "out/report.ipynb", parameters={"region": "north"}, timeout=600)
    >>> r.status, r.error, r.outputs
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb, where = _load(notebook)
    declared = notebook_parameters(nb) if parameters else {}
    params = validate_parameters(where, parameters, declared=declared)
    if extra_parameters:
        declared = declared if declared else (notebook_parameters(nb) or {})
        params.update({k: v for k, v in extra_parameters.items() if k in declared and k not in params})
    if timeout is not None and timeout <= 0:
        raise InvalidArgumentError(f"timeout must be positive, not {timeout}", parameter="timeout")
    kernel_name = _kernel_name(nb, kernel, where)
    when = (scheduled_for or datetime.now(UTC)).astimezone(UTC)
    params.update(scheduled_for=when.isoformat(), run_id=run_id or "", attempt=int(attempt))
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    html_path = None if html is False else (out.with_suffix(".html") if html is True else Path(html))
    workdir = Path(cwd) if cwd is not None else (Path(where).resolve().parent if where != "<notebook>" else out.parent)

    handle = _KernelHandle()
    done = threading.Event()
    deadline = time.monotonic() + timeout if timeout else None

    def watchdog() -> None:
        while not done.wait(0.1):
            reason = ("cancelled" if cancel is not None and cancel.is_set()
                      else "timed_out" if deadline is not None and time.monotonic() >= deadline else None)
            if reason and handle.kill(reason):
                return

    dog = threading.Thread(target=watchdog, name=f"procestra-watchdog-{run_id or out.stem}", daemon=True)
    dog.start()
    started = datetime.now(UTC)
    error: CellError | None = None
    status = "succeeded"
    executed: Any = None
    kernel_exit: int | None = None
    try:
        executed = papermill.execute_notebook(
            where if where != "<notebook>" else nb, str(out), parameters=params, kernel_name=kernel_name, progress_bar=False,
            start_timeout=int(start_timeout), kernel_manager_class=_kernel_manager_class(handle, pool, str(workdir)),
            resources={"metadata": {"path": str(workdir)}}, on_cell_execute=handle.on_cell,
        )
    except PapermillExecutionError as exc:
        status = "failed"
        error = CellError(_input_index(nb, exc.cell_index), str(exc.ename), str(exc.evalue),
                          exc.exec_count, tuple(str(t) for t in (exc.traceback or ())))
    except Exception as exc:  # noqa: BLE001 - dead kernels, start-up failures: all become a failed run
        status = handle.killed_for or "failed"
        cell = _input_index(nb, handle.cell_index)
        kernel_exit = handle.exit_code()
        if status == "timed_out":
            error = CellError(cell, "TimeoutError", f"the run exceeded its timeout of {timeout:g} s; "
                              "the kernel was stopped")
        elif status == "cancelled":
            error = CellError(cell, "Cancelled", "the run was cancelled; the kernel was stopped")
        elif type(exc).__name__ == "DeadKernelError":
            how = (f"killed by signal {-kernel_exit} ({signal.Signals(-kernel_exit).name}; the out-of-memory "
                   "killer does this)" if kernel_exit is not None and kernel_exit < 0 else f"exit code {kernel_exit}")
            tail = _tail(handle.stderr_path)
            error = CellError(cell, "DeadKernelError", f"the kernel died ({how})" + (f": {tail}" if tail else ""))
        else:
            error = CellError(cell, type(exc).__name__, str(exc) or repr(exc))
        partial = _load(out)[0] if out.is_file() else None
        executed = _annotate(out, partial, status, error)
    finally:
        done.set()
        dog.join(timeout=1)
        if handle.process is not None and not handle.exiting and handle.process.poll() is None:
            handle.kill("cleanup")  # never leave a kernel behind (an exiting one has its reaper)
        if handle.stderr_path:
            Path(handle.stderr_path).unlink(missing_ok=True)
    if executed is None:
        executed = _load(out)[0] if out.is_file() else None
    outputs = read_outputs(executed) if executed is not None else {}
    if html_path is not None and executed is not None:
        _export_html(executed, html_path)
    ended = datetime.now(UTC)
    return RunResult(status, started, ended, str(out) if out.is_file() else None,
                     str(html_path) if html_path is not None and html_path.is_file() else None,
                     error, outputs, kernel_exit)


def _annotate(out: Path, nb: Any, status: str, error: CellError) -> Any:
    """Put a note at the top of a run's partial output saying why it stopped, and save it."""
    import nbformat

    if nb is None:
        return None
    note = nbformat.v4.new_markdown_cell(  # type: ignore[no-untyped-call]
        f"**Procestra: this run {status.replace('_', ' ')}** at "
        f"{'cell ' + str(error.cell_index) if error.cell_index is not None else 'start-up'}: "
        f"`{error.ename}`: {error.evalue}")
    note.metadata["tags"] = ["procestra-status"]
    nb.cells.insert(0, note)
    nbformat.write(nb, str(out))  # type: ignore[no-untyped-call]
    return nb


