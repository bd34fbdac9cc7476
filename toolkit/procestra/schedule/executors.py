"""Executors run many notebooks: on this machine, or on a Dask cluster; warm kernels save start-up.

An :class:`Executor` takes :class:`RunSpec` s and returns futures of
:class:`~procestra.schedule.runner.RunResult`; ``capacity`` says how many run at once.

- :class:`LocalExecutor`: threads in this process, each run's kernel a local process, a
  concurrency limit; its :class:`KernelPool` starts the next kernels while runs go on.
- :class:`DaskExecutor`: a ``distributed`` cluster; notebooks and outputs travel with the
  task, so workers need no shared disk.

More can be added by name with :func:`register_executor`; :func:`get_executor` makes one
(the CLI's ``--executor``). jupyter_client and distributed load only when a kernel is
started or a cluster is reached.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from procestra.errors import InvalidArgumentError, ProcestraError
from procestra.schedule.exceptions import NotebookError
from procestra.schedule.runner import CellError, RunResult, kill_kernel, run_notebook

__all__ = [
    "DaskExecutor",
    "Executor",
    "KernelPool",
    "LocalExecutor",
    "RunSpec",
    "get_executor",
    "register_executor",
]


# -- warm kernels ------------------------------------------------------------------------
class _WarmKernel:
    """A kernel started ahead of its run: its (sync) manager, process and stderr file."""

    def __init__(self, km: Any, stderr_path: str) -> None:
        self.km = km
        self.process: subprocess.Popen[bytes] = km.provisioner.process
        self.stderr_path = stderr_path
        self.since = time.monotonic()

    def discard(self) -> None:
        kill_kernel(self.process)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.km.cleanup_connection_file()
        Path(self.stderr_path).unlink(missing_ok=True)


class KernelPool:
    """Kernels started ahead of time, so that a run does not wait ~0.8 s for one.

    A kernel is used once, for one run, and is as fresh as a cold one: nothing has run in
    it. Kernels are kept per (kernel name, working directory); the first run of each pays
    the start-up, and every run that takes a warm kernel starts its replacement in the
    background. At most ``size`` idle kernels per key and ``limit`` in all; :meth:`prune`
    stops those idle for more than ``max_idle`` seconds.
    """

    def __init__(self, size: int = 1, *, limit: int | None = None, max_idle: float = 600.0) -> None:
        self.size = max(int(size), 1)
        self.limit = limit or 2 * self.size
        self.max_idle = max_idle
        self._idle: dict[tuple[str, str], list[_WarmKernel]] = {}
        self._starting: dict[tuple[str, str], int] = {}
        self._order: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._requests: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._warmer: threading.Thread | None = None

    def take(self, kernel_name: str, cwd: str) -> _WarmKernel | None:
        """A started kernel for ``kernel_name`` in ``cwd`` (None if none is ready); refills in the background."""
        key = (kernel_name, cwd)
        found = None
        with self._lock:
            if self._closed:
                return None
            idle = self._idle.get(key, [])
            while idle and found is None:
                k = idle.pop(0)
                if k.process.poll() is None:
                    found = k
                else:
                    k.discard()
            if key in self._order:
                self._order.remove(key)
            self._order.append(key)
            want = self.size - len(idle) - self._starting.get(key, 0)
            for _ in range(max(want, 0)):
                self._starting[key] = self._starting.get(key, 0) + 1
                self._requests.put(key)
            if want > 0 and self._warmer is None:
                # One long-lived thread starts them all (one event loop, not one per kernel).
                self._warmer = threading.Thread(target=self._warm, name="procestra-kernel-warmer", daemon=True)
                self._warmer.start()
        return found

    def _warm(self) -> None:
        while True:
            key = self._requests.get()
            if key is None:
                return
            self._fill(key)

    def _fill(self, key: tuple[str, str]) -> None:
        from jupyter_client.manager import KernelManager

        warm = None
        try:
            fd, path = tempfile.mkstemp(prefix="procestra-kernel-", suffix=".log")
            try:
                km = KernelManager(kernel_name=key[0])
                km.start_kernel(cwd=key[1], stdout=subprocess.DEVNULL, stderr=fd,
                                extra_arguments=["--HistoryManager.hist_file=:memory:"])
            finally:
                os.close(fd)
            km._close_control_socket()  # the run's own manager talks to it from here on
            if getattr(km, "_created_context", False):
                km.context.destroy(linger=0)  # its zmq context (and I/O thread) is not needed any more
            warm = _WarmKernel(km, path)
        except Exception as exc:  # noqa: BLE001 - no warm kernel: runs start their own
            logging.getLogger(__name__).debug("could not warm a %s kernel: %s", key[0], exc)
        surplus: list[_WarmKernel] = []
        with self._lock:
            self._starting[key] -= 1
            if warm is not None:
                if self._closed:
                    surplus.append(warm)
                else:
                    self._idle.setdefault(key, []).append(warm)
                    while sum(len(v) for v in self._idle.values()) > self.limit:
                        oldest = next(k for k in self._order if self._idle.get(k))
                        surplus.append(self._idle[oldest].pop(0))
        for k in surplus:
            k.discard()

    def prune(self) -> int:
        """Stop kernels that waited more than ``max_idle`` seconds for a run; returns how many."""
        now = time.monotonic()
        old: list[_WarmKernel] = []
        with self._lock:
            for key, idle in self._idle.items():
                keep = [k for k in idle if now - k.since <= self.max_idle]
                old += [k for k in idle if now - k.since > self.max_idle]
                self._idle[key] = keep
        for k in old:
            k.discard()
        return len(old)

    def close(self) -> None:
        """Stop every idle kernel; later ``take`` calls return None."""
        with self._lock:
            self._closed = True
            idle = [k for v in self._idle.values() for k in v]
            self._idle.clear()
            while not self._requests.empty():
                self._requests.get_nowait()
            self._requests.put(None)
        for k in idle:
            k.discard()


# -- executors ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """Everything an executor needs to run one notebook (picklable; paths are the scheduler's)."""

    run_id: str
    notebook: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)
    extra_parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    timeout: float | None = None
    html: bool = True
    scheduled_for: datetime | None = None
    attempt: int = 1


class Executor(Protocol):
    """Runs :class:`RunSpec` s; ``capacity`` runs at once. ``cancel`` asks one to stop."""

    name: str
    capacity: int

    def submit(self, spec: RunSpec) -> Future[RunResult]: ...

    def cancel(self, run_id: str) -> None: ...

    def close(self) -> None: ...


def _run_spec(spec: RunSpec, cancel: threading.Event | None, pool: KernelPool | None = None) -> RunResult:
    return run_notebook(spec.notebook, spec.output, parameters=spec.parameters, kernel=spec.kernel,
                        timeout=spec.timeout, html=spec.html, scheduled_for=spec.scheduled_for,
                        run_id=spec.run_id, attempt=spec.attempt, cancel=cancel,
                        extra_parameters=spec.extra_parameters, pool=pool)


def _failed(spec: RunSpec, exc: BaseException) -> RunResult:
    now = datetime.now(UTC)
    return RunResult("failed", now, now, None, None,
                     CellError(None, getattr(exc, "ename", type(exc).__name__), str(exc)))


class LocalExecutor:
    """Runs notebooks on this machine, at most ``concurrency`` at once (each kernel its own process).

    With ``warm_kernels`` (the default) the next kernels start while runs go on (:class:`KernelPool`).
    """

    name = "local"

    def __init__(self, concurrency: int = 2, *, warm_kernels: bool = True) -> None:
        if int(concurrency) < 1:
            raise InvalidArgumentError(f"concurrency must be at least 1, not {concurrency}", parameter="concurrency")
        self.capacity = int(concurrency)
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="procestra-run")
        self._cancels: dict[str, threading.Event] = {}
        self.kernels = KernelPool(self.capacity) if warm_kernels else None

    def submit(self, spec: RunSpec) -> Future[RunResult]:
        cancel = self._cancels.setdefault(spec.run_id, threading.Event())

        def job() -> RunResult:
            try:
                return _run_spec(spec, cancel, self.kernels)
            except ProcestraError as exc:  # bad parameters, missing notebook: a failed run, no kernel
                return _failed(spec, exc)
            finally:
                self._cancels.pop(spec.run_id, None)

        return self._pool.submit(job)

    def cancel(self, run_id: str) -> None:
        ev = self._cancels.get(run_id)
        if ev is not None:
            ev.set()

    def close(self) -> None:
        for ev in list(self._cancels.values()):
            ev.set()
        self._pool.shutdown(wait=True)
        if self.kernels is not None:
            self.kernels.close()


def _remote_run(payload: dict[str, Any]) -> dict[str, Any]:
    """On a Dask worker: run the shipped notebook in a scratch directory, ship the outputs back."""
    import nbformat

    spec = RunSpec(**payload["spec"])
    cancel = threading.Event()
    done = threading.Event()

    try:  # a cancel from the scheduler arrives as a distributed Event; the client is this task's
        from distributed import Event as DEvent
        from distributed import get_client

        ev: Any = DEvent(f"procestra-cancel-{spec.run_id}", client=get_client())  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - not on a worker: the timeout still applies
        ev = None

    def watch() -> None:
        while ev is not None and not done.is_set():
            try:
                if ev.wait(timeout=1):
                    cancel.set()
                    return
            except Exception:  # noqa: BLE001 - the scheduler went away
                return

    threading.Thread(target=watch, daemon=True).start()
    # One scratch directory per worker process, so that its kernels can be started ahead of time there.
    scratch = Path(tempfile.gettempdir()) / f"procestra-worker-{os.getpid()}"
    nb_path = scratch / f"{spec.run_id}-{Path(spec.notebook).name}"
    out = scratch / "out" / f"{spec.run_id}.ipynb"
    try:
        scratch.mkdir(exist_ok=True)
        nbformat.write(nbformat.reads(payload["notebook"], as_version=4), str(nb_path))  # type: ignore[no-untyped-call]
        local = replace(spec, notebook=str(nb_path), output=str(out))
        try:
            result = _run_spec(local, cancel, _worker_pool())
        except ProcestraError as exc:
            result = _failed(spec, exc)
        files = {}
        for kind, path in (("output", result.output), ("html", result.html)):
            if path:
                files[kind] = Path(path).read_text(encoding="utf-8")
        return {"result": result, "files": files}
    finally:
        done.set()
        for p in (nb_path, out, out.with_suffix(".html")):
            p.unlink(missing_ok=True)


_worker_kernels: KernelPool | None = None


def _worker_pool() -> KernelPool:
    """The kernel pool of this (Dask worker) process, stopped when the process exits."""
    global _worker_kernels
    if _worker_kernels is None:
        import atexit

        _worker_kernels = KernelPool(1)
        atexit.register(_worker_kernels.close)
    return _worker_kernels


class DaskExecutor:
    """Runs notebooks on a Dask ``distributed`` cluster at ``address`` (``tcp://host:8786``).

    The notebook's content and its outputs travel with the task, so workers need the
    kernels but not the workspace. ``concurrency`` defaults to the cluster's threads.
    """

    name = "dask"

    def __init__(self, address: str, *, concurrency: int | None = None, timeout: float = 30.0) -> None:
        from distributed import Client

        if not isinstance(address, str) or not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://", address):
            raise InvalidArgumentError(f"--address {address!r} is not a Dask scheduler address; "
                                       "use tcp://HOST:PORT", parameter="address")
        try:
            self.client: Any = Client(  # type: ignore[no-untyped-call]
                address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InvalidArgumentError(f"cannot reach the Dask scheduler at {address}: {exc}",
                                       parameter="address") from None
        threads = sum(self.client.nthreads().values()) or 1  # type: ignore[no-untyped-call]
        self.capacity = int(concurrency or threads)
        self._pool = ThreadPoolExecutor(self.capacity, thread_name_prefix="procestra-dask")

    def submit(self, spec: RunSpec) -> Future[RunResult]:
        return self._pool.submit(self._run, spec)

    def _run(self, spec: RunSpec) -> RunResult:
        path = Path(spec.notebook)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            return _failed(spec, NotebookError(f"cannot read: {exc.strerror}", path=str(path)))
        fut = self.client.submit(_remote_run, {"spec": asdict(spec), "notebook": text}, pure=False,
                                 key=f"procestra-run-{spec.run_id}")
        try:
            packed = fut.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker or a cancelled task
            return _failed(spec, exc)
        result: RunResult = packed["result"]
        out = Path(spec.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        written: dict[str, str | None] = {"output": None, "html": None}
        for kind, text_out in packed["files"].items():
            target = out if kind == "output" else out.with_suffix(".html")
            target.write_text(text_out, encoding="utf-8")
            written[kind] = str(target)
        return replace(result, output=written["output"], html=written["html"])

    def cancel(self, run_id: str) -> None:
        from distributed import Event as DEvent

        try:
            DEvent(f"procestra-cancel-{run_id}", client=self.client).set()  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 - best effort; the run's timeout still applies
            logging.getLogger(__name__).warning("could not cancel run %s on Dask: %s", run_id, exc)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


_EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "dask": DaskExecutor}


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    """Make ``factory(**options)`` available as executor ``name`` (CLI ``--executor NAME``)."""
    _EXECUTORS[name] = factory


def get_executor(name: str = "local", **options: Any) -> Executor:
    """A new executor: ``local`` (``concurrency=``) or ``dask`` (``address=``, ``concurrency=``)."""
    factory = _EXECUTORS.get(name)
    if factory is None:
        raise InvalidArgumentError(f"unknown executor {name!r}; use one of {', '.join(sorted(_EXECUTORS))}",
                                   parameter="executor")
    if name == "dask" and not options.get("address"):
        raise InvalidArgumentError("--executor dask needs --address tcp://HOST:PORT", parameter="address")
    if name == "local":
        options.pop("address", None)
    options = {k: v for k, v in options.items() if v is not None}
    return factory(**options)
