"""Loading to-be models to run: SpiffWorkflow, imported once and patched, and saved model versions parsed once.

:func:`spiff` imports SpiffWorkflow once and patches what costs: state lookups read the task
dict instead of walking the tree, and state changes skip building log records nobody reads.
:func:`runnable` parses a saved model version once per process, with every model it calls at
any depth (each once, however often it is called; a cycle of calls is refused naming its
models). On a PostgreSQL store shared by several machines it runs the version published to
the store, so a version number means one model everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.engine import journal, spiff_ext, waiting
from procestra.engine.elements import ACTIVITIES, Element
from procestra.engine.exceptions import EngineError
from procestra.engine.tobe import ToBeModel
from procestra.errors import ModelNotFoundError
from procestra.models.repository import ModelRef, model_info
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Runnable", "runnable", "script_engine", "spiff"]

log = logging.getLogger(__name__)



# -- models: SpiffWorkflow specs and our bindings ----------------------------------------------
@dataclass
class Runnable:
    """A saved version of a to-be model, ready to run: its SpiffWorkflow specs and our bindings by element."""

    name: str
    version: int
    tobe: ToBeModel
    spec: Any
    subprocess_specs: dict[str, Any]
    elements: dict[str, Element]
    bpmn: bytes = b""
    calls: tuple[Runnable, ...] = field(default=())  # the models its call activities call, directly
    #: Whether it (or a model it calls) catches messages or signals: its cases' waits are kept in the store.
    listens: bool = False

    @property
    def label(self) -> str:
        return str(ModelRef(self.name, self.version))

    def closure(self) -> list[Runnable]:
        """Every model it calls, at any depth, each once (in the order first reached)."""
        seen: dict[tuple[str, int], Runnable] = {}
        todo = list(self.calls)
        while todo:
            r = todo.pop(0)
            if (r.name, r.version) not in seen:
                seen[(r.name, r.version)] = r
                todo += r.calls
        return list(seen.values())


@functools.lru_cache(maxsize=1)
def spiff() -> Any:
    """SpiffWorkflow's parts, imported once (0.2 s), with a fast workflow class and a serializer."""
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG
    from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
    from SpiffWorkflow.bpmn.specs.defaults import ServiceTask
    from SpiffWorkflow.util.task import TaskState

    class Workflow(BpmnWorkflow):  # type: ignore[misc]
        """SpiffWorkflow's workflow with state lookups over its task dicts instead of tree walks
        (the same tasks, 2x faster), and timers fired by the engine, explicitly and journaled."""

        completed: bool

        def _every_task(self) -> Iterable[Any]:
            """Its own tasks and those inside its subprocesses and call activities, at any depth, as
            SpiffWorkflow's tree walk finds them: each subprocess keeps its tasks in a dict of its own,
            and the top workflow holds every subprocess in ``subprocesses``."""
            own: Iterable[Any] = self.tasks.values()
            if not self.subprocesses:
                return own
            return itertools.chain(own, *(sp.tasks.values() for sp in self.subprocesses.values()))

        def get_tasks(self, first_task: Any = None, **kwargs: Any) -> list[Any]:
            if first_task is None and kwargs and set(kwargs) <= {"state", "spec_name"}:
                state, name = kwargs.get("state"), kwargs.get("spec_name")
                if name is None:  # the hot case (every engine step): one attribute test per task
                    return [t for t in self._every_task() if t._state & state]
                return [t for t in self._every_task()
                        if (state is None or t._state & state) and t.task_spec.name == name]
            tasks: list[Any] = super().get_tasks(first_task, **kwargs)
            return tasks

        def update_waiting_tasks(self) -> None:
            for task in [t for t in self._every_task() if t.state == TaskState.WAITING]:
                task.task_spec._update(task)

        def is_completed(self) -> bool:
            if not self.completed:
                self.completed = not any(t.state & TaskState.NOT_FINISHED_MASK for t in self.tasks.values())
            return self.completed

        def refresh_timers(self) -> None:  # the engine fires timers itself (Runner._fire_timers)
            return None

    import SpiffWorkflow.task as spiff_task

    if not getattr(spiff_task.Task, "_procestra_quiet", False):
        # SpiffWorkflow builds a dict of logging extras on every state change, even when its
        # logger drops the record: a tenth of its run time. Build it only when it is logged.
        extras = spiff_task.Task.collect_log_extras

        def collect_log_extras(self: Any, dct: Any = None) -> dict[str, Any]:
            return extras(self, dct) if spiff_task.logger.isEnabledFor(logging.DEBUG) or \
                spiff_task.logger.isEnabledFor(logging.INFO) else {}

        set_state = spiff_task.Task._set_state

        def _set_state(self: Any, value: int) -> None:  # the same, without naming the state for a dropped record
            if spiff_task.logger.isEnabledFor(logging.INFO):
                set_state(self, value)
            elif value != self._state:
                self.last_state_change = time.time()
                self._state = value

        spiff_task.Task.collect_log_extras = collect_log_extras
        spiff_task.Task._set_state = _set_state
        spiff_task.Task._procestra_quiet = True
    waiting.allow_cron_cycles()

    config = dict(DEFAULT_CONFIG)
    config[ServiceTask] = BpmnTaskSpecConverter
    config[Workflow] = config[BpmnWorkflow]  # snapshots restore as our class
    registry = BpmnWorkflowSerializer.configure(config)
    spiff_ext.register(registry)  # SpiffWorkflow's payload and script extensions, parsed by spiff_ext's parser
    serializer = BpmnWorkflowSerializer(registry)
    return spiff_ext.parser_class(), Workflow, serializer, TaskState


_models: dict[tuple[str, str, int], Runnable] = {}
_models_lock = threading.Lock()


def runnable(ws: Home, name: str, version: int | None = None) -> Runnable:
    """The saved to-be model ``name`` (latest or ``version``), parsed once per process with the models it calls.

    On a PostgreSQL store shared by several machines, see :func:`_shared`.
    """
    return _runnable(ws, name, version, ())


def _runnable(ws: Home, name: str, version: int | None, via: tuple[str, ...]) -> Runnable:
    """:func:`runnable`, reached through the calls ``via`` (labels ``name@version``, to refuse a cycle)."""
    stamp = None
    if version is None:  # the latest version: known while the model's directory is unchanged
        stamp = _models_stamp(ws, name)
        cached = _latest.get((str(ws.path), name))
        if stamp is not None and cached is not None and cached[0] == stamp:
            version = cached[1]
    if version is not None:  # saved versions never change: no need to read meta.json again
        with _models_lock:
            found = _models.get((str(ws.path), name, int(version)))
        if found is not None:
            return found
    if ops.backend(ws) == "postgresql":
        return _shared(ws, name, version, via)
    info = model_info(ws, name, version)  # ModelNotFoundError
    if stamp is not None:  # taken before meta.json was read: a version saved since changes it
        _latest[(str(ws.path), name)] = (stamp, info.version)
    key = (str(ws.path), info.name, info.version)
    with _models_lock:
        if key in _models:
            return _models[key]
    via = _check_cycle(via, info.name, info.version)
    path = Path(info.path) / "model.bpmn"
    if not path.is_file():
        raise ModelNotFoundError(f"model {info.name!r} version {info.version} has no model.bpmn: save a to-be "
                                 "model with ToBeModel.save() to run it")
    tobe = ToBeModel.load(info.ref, ws=ws)
    calls: dict[str, Runnable] = {}
    pools = _in_file(tobe)
    for called in _call_activities(tobe, pools):  # the called models and what they call
        ref = ModelRef.parse(called)
        calls[called] = _runnable(ws, ref.name, ref.version, via)
    model = _assemble(info.name, info.version, tobe, path.read_bytes(), tuple(calls.values()), pools)
    with _models_lock:
        _models[key] = model
    return model


def _in_file(tobe: ToBeModel) -> list[ToBeModel]:
    """The processes of ``tobe``'s own file that its call activities call, at any depth, as models (SpiffWorkflow
    finds them in the file; the engine needs their elements)."""
    out: list[ToBeModel] = []
    done, todo = {tobe.process_id}, [tobe]
    while todo:
        for e in todo.pop().elements.values():
            if e.kind == "callActivity" and e.called in tobe.other_pools and e.called not in done:
                done.add(e.called)
                out.append(tobe.pool(e.called))
                todo.append(out[-1])
    return out


def _call_activities(tobe: ToBeModel, pools: Sequence[ToBeModel]) -> list[str]:
    """The saved models that the call activities of ``tobe`` and of the processes of its file it calls name."""
    called = [e.called for m in (tobe, *pools) for e in m.elements.values() if e.kind == "callActivity" and e.called]
    return list(dict.fromkeys(c for c in called if c is not None and c not in tobe.other_pools))


def _check_cycle(via: tuple[str, ...], name: str, version: int) -> tuple[str, ...]:
    """``via`` with ``name@version`` added; an :class:`EngineError` naming the cycle if it is there already."""
    label = str(ModelRef(name, version))
    if label in via:
        cycle = " -> ".join((*via[via.index(label):], label))
        raise EngineError(f"model {via[0]!r} cannot be run: its call activities call each other in a cycle, "
                          f"{cycle}; a model may not call itself, directly or through others")
    return (*via, label)


def _assemble(name: str, version: int, tobe: ToBeModel, bpmn: bytes, calls: tuple[Runnable, ...],
              pools: Sequence[ToBeModel] = ()) -> Runnable:  # fmt: skip
    """Parse ``bpmn`` with the files of every model it calls at any depth, each once."""
    parser = _parser()
    label = str(ModelRef(name, version))
    parser.add_bpmn_str(bpmn, filename=label)
    model = Runnable(name, version, tobe, None, {}, {}, bpmn, calls)
    called = model.closure()
    processes = {tobe.process_id: label}
    for c in called:
        other = processes.setdefault(c.tobe.process_id, c.label)
        if other != c.label:  # e.g. two versions of one model: SpiffWorkflow knows a process by its id only
            raise EngineError(f"model {name!r} version {version} cannot be run: {other} and {c.label}, which it "
                              f"calls, both define the process {c.tobe.process_id!r}; call one version of a model "
                              "throughout")
        parser.add_bpmn_str(c.bpmn, filename=c.label)
    model.spec, model.subprocess_specs = _specs(parser, tobe.process_id, name, version)
    model.elements = _elements(name, version, tobe, called, pools)
    model.listens = any(waiting.catches_events(s) for s in (model.spec, *model.subprocess_specs.values()))
    return model


def _elements(name: str, version: int, tobe: ToBeModel, calls: list[Runnable],
              pools: Sequence[ToBeModel] = ()) -> dict[str, Element]:  # fmt: skip
    """The elements a case of the model runs on, by id: its own and those of the models it calls.

    SpiffWorkflow names a task by its element id alone, so the engine finds the binding, form
    and boundary events of a task inside a call activity by that id. An activity or boundary
    event id that the model and a model it calls (or two called models) both use is refused,
    naming both, rather than one task running with the other's binding.
    """
    looked_up = (*ACTIVITIES, "boundaryEvent")
    out: dict[str, Element] = {}
    owner: dict[str, str] = {}
    sources = [(str(ModelRef(name, version)), tobe.elements),
               *((f"process {p.process_id!r} of its file", p.elements) for p in pools),
               *((c.label, c.tobe.elements) for c in calls)]
    for source, elements in sources:
        for eid, e in elements.items():
            if eid not in out:
                out[eid], owner[eid] = e, source
            elif owner[eid] != source and (e.kind in looked_up or out[eid].kind in looked_up):
                raise EngineError(f"model {name!r} version {version} cannot be run: the element id {eid!r} is used "
                                  f"by {owner[eid]} and by {source}, which it calls; the engine finds a task by its "
                                  "id, so rename one of them")
    return out


def _parser() -> Any:
    BpmnParser, _, _, _ = spiff()
    return BpmnParser()


@contextlib.contextmanager
def deep_recursion(size: int) -> Iterator[None]:
    """Let SpiffWorkflow recurse along a model of ``size`` elements: its parser follows each sequence flow by a
    call, so a chain of 500 tasks overflowed Python's default limit. Python 3.11 runs these Python-to-Python
    calls without the C stack; the limit goes back when the block ends."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 1_000 + 8 * size))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _specs(parser: Any, process_id: str, name: str, version: int) -> tuple[Any, Any]:
    """The workflow spec and subprocess specs ``parser`` read, or an :class:`EngineError` naming the version."""
    try:
        with deep_recursion(sum(sum(1 for _ in pp.node.iter()) for pp in parser.process_parsers.values())):
            return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)
    except Exception as exc:  # SpiffWorkflow's ValidationException and friends
        raise EngineError(f"model {name!r} version {version} cannot be run: {exc}") from exc


_latest: dict[tuple[str, str], tuple[Any, int]] = {}  # (workspace, model) -> (directory stamp, latest version)


def _models_stamp(ws: Home, name: str) -> Any:
    """When ``name``'s directory last changed (saving a version renames a new ``v<N>`` into it)."""
    try:
        st = (Path(ws.models_dir) / name).stat()
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_mtime_ns)


def _shared(ws: Home, name: str, version: int | None, via: tuple[str, ...]) -> Runnable:
    """:func:`runnable` on a shared store: the workspace's saved version, published to the store's
    ``model_versions`` on first use so that every machine runs the very same model, else (a
    worker on another machine) the published copy. A version number means one model on every
    machine: a local version that differs from the published one of that number is not run
    (the published one is, with a warning), so cases never change model between machines.
    """
    journal.prepare(ws)
    try:
        info = model_info(ws, name, version)
    except ModelNotFoundError as exc:
        info, missing = None, exc
        if "@" in name:  # "name@3", checked by model_info
            ref = ModelRef.parse(name)
            name, version = ref.name, ref.version
    if info is not None:
        name = info.name
    with ops.connect(ws) as con:
        if info is None and version is None:
            version = journal.latest_published(con, name)
        v = info.version if info is not None else version
        stored = None if v is None else journal.published(con, name, v)
    if info is None and stored is None:
        raise missing
    assert v is not None
    key = (str(ws.path), name, int(v))
    with _models_lock:
        if key in _models:
            return _models[key]
    if info is not None:
        path = Path(info.path) / "model.bpmn"
        if not path.is_file():
            raise ModelNotFoundError(f"model {name!r} version {v} has no model.bpmn: save a to-be model with "
                                     "ToBeModel.save() to run it")
        bpmn = path.read_bytes()
        if stored is not None and stored["sha256"] != hashlib.sha256(bpmn).hexdigest():
            log.warning("model %r version %s of %s differs from the version %s published to the shared operational "
                        "store %s by another workspace; the published one runs. Save your model as a new version "
                        "(and copy process_models/%s/ to the other workspaces) to run it", name, v, ws.path, v,
                        ops.display_location(ws), name)
            info = None
    if info is None:
        assert stored is not None
        bpmn = stored["bpmn"].encode("utf-8")
    digest = hashlib.sha256(bpmn).hexdigest()
    tobe = ToBeModel.from_xml(bpmn, source=str(ModelRef(name, v)))
    tobe.name = name
    via = _check_cycle(via, name, int(v))
    pinned = json.loads(stored["called"]) if stored is not None else {}
    called_refs: dict[str, str] = {}
    calls: dict[str, Runnable] = {}
    pools = _in_file(tobe)
    for name_ in _call_activities(tobe, pools):  # the versions the publisher resolved
        ref = ModelRef.parse(pinned.get(name_) or name_)
        called = _runnable(ws, ref.name, ref.version, via)
        calls[name_] = called
        called_refs[name_] = called.label
    model = _assemble(name, int(v), tobe, bpmn, tuple(calls.values()), pools)
    if stored is None:  # publish it, before any case of it can be stored
        assert info is not None
        meta = Path(info.path) / "meta.json"
        with ops.transaction(ws) as con:
            theirs = journal.publish(con, name, v, bpmn.decode("utf-8"), digest, journal.dumps(called_refs),
                                     meta.read_text(encoding="utf-8") if meta.is_file() else "{}",
                                     journal.iso(journal.now()))
        if theirs != digest:  # another workspace published a different one meanwhile: that one runs
            return _shared(ws, name, v, via[:-1])
    with _models_lock:
        _models[key] = model
    return model


@functools.lru_cache(maxsize=1)
def script_engine() -> Any:
    from procestra.engine.sandbox import SandboxScriptEngine

    return SandboxScriptEngine()


