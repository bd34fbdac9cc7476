"""The peer suite: outside BPMN files run by SpiffWorkflow directly and by Procestra's Worker, compared.

Each :class:`Scenario` of ``peer_cases`` names a file under ``tests/data/bpmn/``, a process, the start
data, the answers to human tasks and the messages/signals to send when the case waits. :func:`run_spiff`
runs it with SpiffWorkflow's own parser; :func:`run_procestra` loads, validates, saves and runs it
through :class:`engine.Worker`; :func:`compare` says "same", "refused" or how they differ.

    python -m tests.engine.peer --check [FILES]   # actual outcome vs the manifest, per entry
    python -m tests.engine.peer --table [FILES]   # a markdown table per element type
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from lxml import etree

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0] / "data" / "bpmn"
for _p in (HERE, HERE.parent):  # peer_cases and engine_handlers when run as python -m tests.engine.peer
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


#: The task types both sides record, in completion order (events and gateways are not journaled alike).
TASK_TYPES = {"UserTask", "ManualTask", "NoneTask", "ScriptTask", "ServiceTask", "BusinessRuleTask", "SendTask",
              "ReceiveTask"}  # fmt: skip
SPIFF_STEP_CAP = 60
IDLE_HORIZON = 1.0  # seconds: Worker.run(until_idle=True) also waits for what is due this soon
TIMER_CAP = 3.0  # seconds a run waits for short timers before it counts as waiting


class KnownDifference(AssertionError):
    """Procestra and SpiffWorkflow differ on a file, as the manifest says they do."""


class PeerCrash(RuntimeError):
    """One side raised where it should have given an outcome."""


@dataclass(frozen=True)
class Scenario:
    """One (file, process) of the suite and how to drive it; ``expect`` is "same", "refused" or "differs"."""

    file: str
    process: str
    data: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id or name -> data
    events: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # ("message"|"signal", name, payload)
    deps: tuple[str, ...] = ()  # other files whose processes the call activities call
    parallel: bool = False
    expect: str = "same"
    reason: str = ""  # "refused": a substring of a problem; "differs": the cause

    @property
    def key(self) -> str:
        return f"{self.file}::{self.process}"

    @property
    def parser_kind(self) -> str:
        if self.file.startswith("camunda-examples/"):  # Camunda's example repository: Camunda Modeler files
            return "camunda"
        return self.file.split("/")[1]  # spiffworkflow/<bpmn|camunda|spiff>/...


@dataclass
class Outcome:
    """What one side did: status (completed/waiting/error/refused), the tasks it completed, its data."""

    status: str
    tasks: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)  # the human tasks in the order they were completed


# -- SpiffWorkflow directly ----------------------------------------------------------------------------
def _spiff_parser(kind: str) -> Any:
    if kind == "camunda":
        from SpiffWorkflow.camunda.parser import CamundaParser

        return CamundaParser()
    if kind == "spiff":
        from SpiffWorkflow.spiff.parser import SpiffBpmnParser

        return SpiffBpmnParser()
    from SpiffWorkflow.bpmn.parser import BpmnParser

    return BpmnParser()


def _answer(sc: Scenario, spec: Any) -> dict[str, Any]:
    return answer_for(sc, spec.bpmn_id, spec.bpmn_name)


def answer_for(sc: Scenario, element: str, name: str | None) -> dict[str, Any]:
    """The scenario's data for a human task: by id, by name, or the answer to every task ("*")."""
    return dict(sc.answers.get(element) or sc.answers.get(name or "") or sc.answers.get("*") or {})


def _event(wf: Any, kind: str, name: str, payload: dict[str, Any]) -> Any:
    """The event as a waiting task's own definition names it (so correlation properties match), else a plain one.

    SpiffWorkflow's Camunda message events take ``{"payload": ..., "result_var": ...}`` and store the
    payload under ``result_var`` (default ``<task>_Response``); other definitions take the payload."""
    from SpiffWorkflow.bpmn.specs.event_definitions import MessageEventDefinition, SignalEventDefinition
    from SpiffWorkflow.bpmn.util.event import BpmnEvent

    cls = MessageEventDefinition if kind == "message" else SignalEventDefinition
    for w in wf.get_tasks():
        d = getattr(w.task_spec, "event_definition", None)
        if isinstance(d, cls) and d.name == name:
            if type(d).__module__.startswith("SpiffWorkflow.camunda") and kind == "message":
                return BpmnEvent(d, {"payload": payload, "result_var": None})
            props = getattr(d, "correlation_properties", None)
            correlations = d.calculate_correlations(wf.script_engine, props, payload) if props else None
            return BpmnEvent(d, payload, correlations)
    return BpmnEvent(cls(name), payload)


def _timer_due_in(wf: Any) -> float | None:
    """Seconds until SpiffWorkflow's earliest pending timer with a known due time is due; None without one."""
    from datetime import datetime

    best: float | None = None
    for ev in wf.waiting_events():
        if "Timer" not in ev.event_type:
            continue
        value = ev.value.get("next") if isinstance(ev.value, dict) else ev.value
        try:
            due = datetime.fromisoformat(str(value))
        except ValueError:
            continue
        left = (due - datetime.now(due.tzinfo or UTC)).total_seconds()
        best = left if best is None else min(best, left)
    return best


def _may_have_timer(wf: Any) -> bool:
    """Whether something waits that may be a timer (a timer, or a multiple event such as an event gateway's)."""
    return any("Timer" in ev.event_type or "Multiple" in ev.event_type for ev in wf.waiting_events())


def _settle(wf: Any, did: Any) -> None:
    """Engine steps, and timers due within the worker's idle horizon fired, as ``Worker.run(until_idle=True)`` does."""
    while True:
        wf.do_engine_steps(did_complete_task=did)
        wf.refresh_waiting_tasks()
        wf.do_engine_steps(did_complete_task=did)
        left = _timer_due_in(wf)
        if wf.is_completed() or left is None or left > IDLE_HORIZON:
            return
        time.sleep(max(left, 0.0) + 0.01)


def run_spiff(sc: Scenario) -> Outcome:
    """Run ``sc`` in SpiffWorkflow with the parser its directory names; errors of the run are status "error"."""
    from SpiffWorkflow import TaskState
    from SpiffWorkflow.bpmn import BpmnWorkflow

    parser = _spiff_parser(sc.parser_kind)
    parser.add_bpmn_files([str(DATA / f) for f in (sc.file, *sc.deps)])
    wf = BpmnWorkflow(parser.get_spec(sc.process), parser.get_subprocess_specs(sc.process))
    done: list[str] = []

    def did(task: Any) -> None:
        if type(task.task_spec).__name__ in TASK_TYPES and task.task_spec.bpmn_id:
            done.append(task.task_spec.bpmn_id)

    for t in wf.get_tasks(state=TaskState.READY):
        t.data.update(sc.data)
    events = list(sc.events)
    manual: list[str] = []
    try:
        waited = 0.0
        for _ in range(SPIFF_STEP_CAP):
            _settle(wf, did)
            if wf.is_completed():
                break
            ready = wf.get_tasks(state=TaskState.READY, manual=True)
            if ready:
                t = ready[0]
                t.data.update(_answer(sc, t.task_spec))
                t.run()
                did(t)
                manual.append(t.task_spec.bpmn_id)
                continue
            if events:
                kind, name, payload = events.pop(0)
                wf.catch(_event(wf, kind, name, payload))
                continue
            started = [t for t in wf.get_tasks(state=TaskState.STARTED) if type(t.task_spec).__name__ == "ServiceTask"]
            if started:  # SpiffWorkflow's plain service task waits for the application: it does nothing, as ours
                started[0].complete()  # already recorded: engine steps report a task once it has run
                continue
            if waited < TIMER_CAP and _may_have_timer(wf):
                time.sleep(0.1)
                waited += 0.1
                continue
            break
    except Exception as exc:  # noqa: BLE001 - the file's own failure is an outcome
        return Outcome("error", done, dict(wf.data), error=f"{type(exc).__name__}: {exc}", manual=manual)
    status = "completed" if wf.is_completed() else "waiting"
    data = dict(wf.data) if wf.is_completed() else dict(wf.last_task.data if wf.last_task else {})
    return Outcome(status, done, _camunda_responses(wf, data), manual=manual)


def _camunda_responses(wf: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the payloads SpiffWorkflow's CamundaParser kept under ``<catching task>_Response`` merged in.

    That key is SpiffWorkflow's own convention for Camunda files (its ``camunda`` message definition):
    Camunda 7 itself, SpiffWorkflow's BpmnParser and Procestra merge a message's variables into the data,
    and files with ``camunda:expression``/``camunda:resultVariable`` on a message, where the convention
    carries meaning, are refused by Procestra. So this folds one reading of the same fact into the other;
    every other key is compared as it is."""
    from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition as CamundaMessage

    out = dict(data)
    specs = [wf.spec, *wf.subprocess_specs.values()]
    for spec in specs:
        for ts in spec.task_specs.values():
            d = getattr(ts, "event_definition", None)
            key = f"{ts.name}_Response"
            if isinstance(d, CamundaMessage) and isinstance(out.get(key), dict):
                payload = out.pop(key)
                out.update(payload)
    return out


# -- Procestra -----------------------------------------------------------------------------------------
def _process_ids(path: Path) -> list[str]:
    root = etree.parse(str(path)).getroot()
    return [p.get("id") for p in root.iter("{http://www.omg.org/spec/BPMN/20100524/MODEL}process")]


def _prepare(model: Any) -> None:
    """Bind service tasks to a handler that does nothing, as SpiffWorkflow's default service task does."""
    from procestra.engine.connectors import python

    for task in model.tasks():
        if task.kind == "serviceTask" and task.handler is None:
            model.bind(task.id, python("engine_handlers:noop"))


def run_procestra(sc: Scenario, root: Path, order: list[str] | None = None) -> Outcome:
    """Load, validate, save and run ``sc`` through a real Worker in a workspace under ``root``.

    Of several open human tasks, the one SpiffWorkflow's run completed next (``order``) is completed
    first, so both runs are offered the same choices and the person makes the same ones."""
    order = list(order or [])
    from procestra import Workspace, engine
    from procestra.engine.tobe import ToBeModel

    ws = Workspace.init(root / "ws")
    pending = [(dep, pid) for dep in sc.deps for pid in _process_ids(DATA / dep)]
    refused: dict[str, list[str]] = {}
    while pending:  # the called processes, each saved as a model named by its process id, callees first
        left = []
        for dep, pid in pending:
            m = ToBeModel.load(DATA / dep, process=pid, name=pid)
            _prepare(m)
            errors = [str(p) for p in m.validate(ws=ws) if p.severity == "error"]
            if errors:
                left.append((dep, pid))
                refused[pid] = errors
            else:
                m.save(ws)
                refused.pop(pid, None)
        if len(left) == len(pending):
            break
        pending = left
    model = ToBeModel.load(DATA / sc.file, process=sc.process, name="peer")
    _prepare(model)
    for key in [*sc.data, *(k for a in sc.answers.values() for k in a)]:  # what the scenario brings in
        if key not in model.variables:
            model.declare(key)
    errors = [p for p in model.validate(ws=ws) if p.severity == "error"]
    if errors:
        called = [f"called {pid}: {p}" for pid, ps in refused.items() for p in ps]
        return Outcome("refused", problems=[str(p) for p in errors] + called)
    model.save(ws)
    case = engine.start_case(ws, "peer", sc.data)
    events = list(sc.events)
    started = time.monotonic()
    for _ in range(SPIFF_STEP_CAP):
        engine.Worker(ws, poll=0.02).run(until_idle=True, max_seconds=10)
        info = engine.get_case(ws, case)
        if info.status not in ("running", "waiting"):
            break
        open_tasks = engine.list_tasks(ws, case=case)
        if open_tasks:
            item = next((t for t in open_tasks if order and t.element == order[0]), open_tasks[0])
            if order and item.element == order[0]:
                order.pop(0)
            answer = answer_for(sc, item.element, item.name)
            engine.complete_task(ws, item.task, answer, user=item.assignee or "peer")  # as whom the drawing assigns it
            continue
        if events:
            kind, name, payload = events.pop(0)
            if kind == "message":
                engine.send_message(ws, name, data=payload)
            else:
                engine.send_signal(ws, name, data=payload)
            continue
        if info.wake_at is not None and time.monotonic() - started < TIMER_CAP:
            time.sleep(0.1)
            continue
        break
    info = engine.get_case(ws, case)
    receive = {e.id for e in model.elements.values() if e.kind == "receiveTask"}  # journaled as the catch
    tasks = [s.element for s in engine.case_history(ws, case) if s.element and (
        (s.kind in ("service", "user", "script") and s.outcome == "completed") or
        (s.kind == "message" and s.element in receive))]  # fmt: skip
    status = {"failed": "error"}.get(info.status, info.status)
    return Outcome(status, tasks, dict(info.data), error=info.error)


# -- comparing -----------------------------------------------------------------------------------------
def _jsonish(v: Any) -> Any:
    import json

    return json.loads(json.dumps(v, default=str))


def compare(sc: Scenario, spiff: Outcome, ours: Outcome) -> str:
    """"same", "refused: <problems>" or "differs: <what>" for one scenario's two outcomes."""
    if ours.status == "refused":
        return "refused: " + " | ".join(ours.problems)
    if spiff.status == "error":  # not a peer case: the scenario must let SpiffWorkflow itself run the file
        return f"invalid: SpiffWorkflow itself fails ({spiff.error}); fix the scenario or drop the entry"
    diffs = []
    if spiff.status != ours.status:
        diffs.append(f"status spiff={spiff.status} ({spiff.error}) procestra={ours.status} ({ours.error})")
    same_tasks = Counter(spiff.tasks) == Counter(ours.tasks) if sc.parallel else spiff.tasks == ours.tasks
    if not same_tasks:
        diffs.append(f"tasks spiff={spiff.tasks} procestra={ours.tasks}")
    theirs = _jsonish(spiff.data)
    mine = _jsonish({k: ours.data[k] for k in theirs if k in ours.data})
    if theirs != mine:
        wrong = sorted(k for k in theirs if mine.get(k, "<missing>") != theirs[k])
        diffs.append("data " + ", ".join(f"{k}: spiff={theirs[k]!r} procestra={mine.get(k, '<missing>')!r}"
                                         for k in wrong[:5]))  # fmt: skip
    return "same" if not diffs else "differs: " + "; ".join(diffs)


def run(sc: Scenario, root: Path) -> str:
    """Both sides of ``sc`` and their comparison; a crash of either side raises :class:`PeerCrash`."""
    try:
        spiff = run_spiff(sc)
    except Exception as exc:
        raise PeerCrash(f"SpiffWorkflow could not load {sc.key}: {type(exc).__name__}: {exc}") from exc
    try:
        ours = run_procestra(sc, root, spiff.manual)
    except Exception as exc:
        raise PeerCrash(f"Procestra crashed on {sc.key}: {type(exc).__name__}: {exc}") from exc
    return compare(sc, spiff, ours)


def element_types(path: Path) -> set[str]:
    """The BPMN element types a file uses (event definitions and loop markers count as types too)."""
    root = etree.parse(str(path)).getroot()
    skip = {"definitions", "process", "sequenceFlow", "incoming", "outgoing", "extensionElements", "documentation",
            "conditionExpression", "script", "text", "laneSet", "lane", "flowNodeRef", "collaboration",
            "participant", "messageFlow", "timeDuration", "timeCycle", "timeDate", "loopCardinality",
            "completionCondition", "formalExpression", "inputDataItem", "outputDataItem", "loopDataInputRef", "loopDataOutputRef",
            "property", "dataInputAssociation", "dataOutputAssociation", "sourceRef", "targetRef", "condition",
            "correlationKey", "correlationPropertyRef", "correlationProperty", "correlationPropertyRetrievalExpression",
            "messagePath", "correlationPropertyBinding", "dataPath", "textAnnotation", "association",
            "ioSpecification", "inputSet", "outputSet", "dataInputRefs", "dataOutputRefs", "multiInstanceLoopCharacteristics",
            "standardLoopCharacteristics", "dataObjectReference", "dataStoreReference", "category", "categoryValue",
            "group", "loopCondition"}  # fmt: skip
    out = set()
    for el in root.iter("{http://www.omg.org/spec/BPMN/20100524/MODEL}*"):
        name = etree.QName(el).localname
        if name.endswith("EventDefinition"):
            out.add(name)
        elif name == "multiInstanceLoopCharacteristics":
            out.add("multiInstance (sequential)" if el.get("isSequential") == "true" else "multiInstance (parallel)")
        elif name == "standardLoopCharacteristics":
            out.add("standardLoop")
        elif name == "subProcess" and el.get("triggeredByEvent") == "true":
            out.add("eventSubProcess")
        elif name not in skip and not any(p in name for p in ("Shape", "Edge", "Plane", "Diagram", "Bounds")):
            out.add(name)
    return out


def verdict(sc: Scenario, result: str) -> str:
    """Whether ``result`` is what the manifest expects for ``sc`` ("ok" or what differs)."""
    kind = result.split(":", 1)[0]
    if sc.expect == "same":
        return "ok" if kind == "same" else "UNEXPECTED"
    if sc.expect == "refused":
        return "ok" if kind == "refused" and sc.reason in result else "UNEXPECTED"
    return "ok" if kind == "differs" else "UNEXPECTED"


def cases() -> list[Scenario]:
    """The manifest (``peer_cases.CASES``), imported late: it builds its entries from this module."""
    import peer_cases

    return list(peer_cases.CASES)


def _selected(files: list[str]) -> list[Scenario]:
    return [sc for sc in cases() if not files or any(f in sc.file for f in files)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.engine.peer", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="each entry's actual outcome against the manifest")
    ap.add_argument("--table", action="store_true", help="a markdown table per element type, and the totals")
    ap.add_argument("files", nargs="*", help="substrings of the files to run (default: all)")
    args = ap.parse_args(argv)
    results: dict[str, str] = {}
    bad = 0
    for sc in _selected(args.files):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = run(sc, Path(tmp))
            except PeerCrash as exc:
                result = f"crash: {exc}"
        results[sc.key] = result
        v = verdict(sc, result)
        bad += v != "ok"
        if args.check or not args.table:
            print(f"{v:10} {sc.key}  expect={sc.expect}  actual={result[:400]}")
    if args.table:
        print(table(results))
    return 1 if bad else 0


def table(results: dict[str, str]) -> str:
    """Markdown: per element type, the entries whose file uses it and how many ran the same, were refused or differ."""
    rows: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    by_key = {sc.key: sc for sc in cases()}
    for key, result in results.items():
        kind = result.split(":", 1)[0]
        kind = {"same": "same", "refused": "refused"}.get(kind, "differ")
        totals[kind] += 1
        for t in element_types(DATA / by_key[key].file):
            rows.setdefault(t, Counter())[kind] += 1
    lines = ["| element type | entries | same | refused | differ |", "|---|---:|---:|---:|---:|"]
    for t in sorted(rows):
        c = rows[t]
        lines.append(f"| {t} | {sum(c.values())} | {c['same']} | {c['refused']} | {c['differ']} |")
    n = sum(totals.values())
    lines.append(f"| **all** | {n} | {totals['same']} | {totals['refused']} | {totals['differ']} |")
    files = len({by_key[k].file for k in results})
    lines.append(f"\nAn entry is one (file, process); {n} entries from {files} files. A row counts the entries whose "
                 "file uses the element type.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
