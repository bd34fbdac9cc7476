"""Checks of a to-be model before it is saved or run: :func:`check` lists :class:`Problem` s by element.

:meth:`ToBeModel.validate <procestra.engine.tobe.ToBeModel.validate>` says what is checked. The
one check with some theory in it is whether a gateway's conditions are exhaustive without a
default flow: conditions over one numeric variable are turned into sets of intervals
(``x < 10`` / ``x >= 10``), and ``==``/``in`` over a variable's declared ``allowed`` values
or a boolean into sets of values; the branches are exhaustive when their union covers every
value. Anything else is not proven, and the gateway needs a default.
"""

from __future__ import annotations

import ast
import contextvars
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from procestra.engine.connectors import check_handler
from procestra.engine.elements import ACTIVITIES, GATEWAYS, KINDS, Element, Flow, Variable, duration_seconds
from procestra.engine.exceptions import ConditionError
from procestra.engine.expressions import to_python
from procestra.engine.guards import always_guarded, proven, unguarded
from procestra.engine.iospec import IoSpec, call_data, process_io
from procestra.engine.sandbox import compile_expression, compile_script, is_iso_literal
from procestra.errors import InvalidArgumentError, ModelNotFoundError, ProcestraError
from procestra.models.repository import model_info

if TYPE_CHECKING:
    from procestra.engine.tobe import ToBeModel
    from procestra.store.home import Home

__all__ = ["Problem", "check"]


@dataclass(frozen=True)
class Problem:
    """One thing ``validate`` found: ``severity`` "error" (blocks saving) or "warning"."""

    severity: str
    code: str
    element: str | None
    name: str
    message: str

    def __str__(self) -> str:
        where = f"{self.element} {self.name!r}" if self.name else (self.element or "model")
        return f"{self.severity} [{self.code}] {where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(model: ToBeModel, ws: Home | None = None) -> list[Problem]:
    """Every problem of ``model``, errors first (``ws`` also checks notebooks and called models)."""
    return _Validator(model, ws).run()


#: Processes of one file being validated, through call activities between them (a cycle is not followed).
_VISITING: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("visiting", default=frozenset())

#: Element ids SpiffWorkflow gives its own task specs: a model element with one of them vanishes.
_RESERVED_IDS = frozenset({"Start", "End", "Root"})


class _Validator:
    """One pass over a model; :func:`check` runs it."""

    def __init__(self, model: ToBeModel, ws: Home | None) -> None:
        self.m, self.ws = model, ws
        self.problems: list[Problem] = []
        self.out: dict[str, list[Flow]] = {e: [] for e in model.elements}
        self.inc: dict[str, list[Flow]] = {e: [] for e in model.elements}
        for f in model.flows.values():
            self.out.setdefault(f.source, []).append(f)
            self.inc.setdefault(f.target, []).append(f)

    def add(self, severity: str, code: str, e: Element | None, message: str) -> None:
        self.problems.append(Problem(severity, code, e.id if e else None, e.name if e else "", message))

    def run(self) -> list[Problem]:
        m = self.m
        tops = [e for e in m.elements.values() if e.parent is None]
        if not any(e.kind == "startEvent" for e in tops):
            self.add("error", "no-start", None, f"process {m.process_id!r} has no start event: add one with "
                                                "model.add_event('start', before=<first task>)")  # fmt: skip
        if not any(e.kind == "endEvent" for e in tops):
            self.add("warning", "no-end", None, "the process has no end event (branches end where they stop)")
        for e in m.elements.values():
            self.element(e)
        self.data_items()
        self.messages()
        self.joins()
        self.gateways()
        self.reachability()
        self.variables()
        if not any(p.severity == "error" for p in self.problems):
            self.engine_parse()
        order = {"error": 0, "warning": 1}
        return sorted(self.problems, key=lambda p: order.get(p.severity, 2))

    def element(self, e: Element) -> None:
        ins, outs = self.inc.get(e.id, []), self.out.get(e.id, [])
        if e.id in _RESERVED_IDS or e.id.endswith(".EndJoin"):
            self.add("error", "reserved-id", e, f"the id {e.id!r} is reserved by the BPMN engine for its own "
                     "start and end steps; rename the element's id (e.g. to 'StartEvent_1')")
        if e.kind == "startEvent" and ins:
            self.add("error", "start-with-incoming", e, "a start event cannot have incoming flows")
        if e.kind == "endEvent" and outs:
            self.add("error", "end-with-outgoing", e, "an end event cannot have outgoing flows")
        if e.kind == "boundaryEvent":
            if ins:
                self.add("error", "boundary-with-incoming", e, "a boundary event cannot have incoming flows")
            if e.attached_to not in self.m.elements:
                self.add("error", "boundary-without-host", e, f"it is attached to {e.attached_to!r}, which is missing")
            if not outs:
                self.add("warning", "boundary-without-path", e, "it leads nowhere, so when it fires the branch ends "
                                                                "there: connect it to the fallback or "
                                                              "escalation path")  # fmt: skip
        if e.kind not in (*GATEWAYS, "boundaryEvent", "startEvent") and len(outs) > 1:  # a start: parallel split
            self.add("error", "multiple-outgoing", e, f"it has {len(outs)} outgoing flows; split with a parallel or "
                                                      "exclusive gateway instead")  # fmt: skip
        for what in e.unsupported:
            self.add("error", "unsupported-construct", e, f"{what}; the engine cannot run it as drawn, so the model "
                                                          "is refused (remove or redraw it)")  # fmt: skip
        for what in e.warnings:
            self.add("warning", "read-as-spiffworkflow", e, what)
        if e.kind not in KINDS and not e.unsupported:
            self.add("error", "unsupported-construct", e, f"a {e.kind} is not run by the engine")
        if e.loop is not None:
            self.loop(e)
        if e.event == "conditional":
            self.expression(e, "bad-condition", "the conditional event's condition", e.condition)
        if e.event == "cancel" and not self.in_transaction(e):
            self.add("error", "cancel-outside-transaction", e, "cancel events belong inside a transaction or on its "
                                                               "border")  # fmt: skip
        if e.triggered_by_event:
            starts = [c for c in self.m.elements.values() if c.parent == e.id and c.kind == "startEvent"]
            if any(c.event is None for c in starts):
                self.add("error", "event-subprocess-start", e, "an event subprocess starts with an event (message, "
                                                               "timer, error, signal...), not a plain start event")
        if e.kind not in ("endEvent", "boundaryEvent") and not outs and e.kind != "startEvent" and \
                not e.triggered_by_event:
            self.add("warning", "dead-end", e, "no outgoing flow: the branch ends here without an end event")
        if e.kind == "serviceTask" and e.handler is None:
            drawn = f" (the file binds it to {e.vendor_binding}, which the engine does not run)" \
                if e.vendor_binding else ""
            self.add("error", "unbound-service-task", e, f"the service task has no handler{drawn}: bind one with "
                     f"`procestra model bind MODEL {e.id} --python pkg.mod:func` or "
                     "model.bind(task, python('pkg.mod:func'))")  # fmt: skip
        if e.kind in ("task", "manualTask") and e.handler is None:
            self.add("warning", "untyped-task", e, "neither bound to a handler nor a human task: the engine will "
                                                   "wait for someone to complete it")  # fmt: skip
        if e.handler is not None:
            for problem in check_handler(e.handler):
                self.add("error", "bad-handler", e, problem)
            nb = e.handler.config.get("path") if e.handler.kind == "notebook" else None
            if isinstance(nb, str) and self.ws is not None and not (self.ws.path / nb).is_file():
                self.add("error", "bad-handler", e, f"the notebook {nb!r} is not in the workspace ({self.ws.path})")
        if e.retry is not None and e.handler is None and e.kind != "callActivity":
            self.add("warning", "retry-unbound", e, "retries apply to bound service tasks only")
        if e.kind == "scriptTask":
            if not e.script:
                self.add("error", "empty-script", e, "the script task has no script")
            else:
                try:
                    compile_script(e.script)
                except ConditionError as exc:
                    self.add("error", "bad-script", e, str(exc))
        if e.event == "timer" or (e.kind == "boundaryEvent" and e.timer):
            self.timer(e)
        if e.kind == "subProcess":
            starts = [c for c in self.m.elements.values() if c.parent == e.id and c.kind == "startEvent"]
            if len(starts) != 1:
                self.add("error", "subprocess-start", e, f"a subprocess needs exactly one start event inside, it has "
                                                         f"{len(starts)}")  # fmt: skip
        if e.kind == "callActivity":
            self.call(e)
        self.spiff(e)

    def spiff(self, e: Element) -> None:
        """SpiffWorkflow's pre-/post-scripts, payloads and process correlations: where the engine runs them, and
        in the sandbox's syntax."""
        for what, text in (("pre-script", e.pre_script), ("post-script", e.post_script)):
            if text is None:
                continue
            if e.kind not in _SCRIPTED:  # SpiffWorkflow ignores a script task's; the engine runs no other kind's
                self.add("error", "unsupported-construct", e, f"a SpiffWorkflow {what} on a {e.kind}, which "
                         f"SpiffWorkflow and the engine run on {', '.join(_SCRIPTED)} only; move it to a script "
                         "task")  # fmt: skip
            try:
                compile_script(text)
            except ConditionError as exc:
                self.add("error", "bad-script", e, f"the {what}: {exc}")
        kinds = ("message", "signal", "error", "escalation")
        throws = e.kind == "sendTask" or (e.event in kinds and e.kind in ("intermediateThrowEvent", "endEvent"))
        catches = e.kind == "receiveTask" or (e.event in kinds and e.kind in _CATCHING)
        if e.payload is not None:
            if throws:
                self.expression(e, "bad-payload", "the payload expression", e.payload)
            else:
                self.add("error", "bad-payload", e, "a payload expression belongs on a throw event or send task")
        if e.payload_variable is not None and (not catches or not e.payload_variable.isidentifier()):
            self.add("error", "bad-payload", e, f"the payload variable {e.payload_variable!r} must be an identifier, "
                     "on a catch event or receive task")  # fmt: skip
        if e.correlations and (e.event != "message" and e.kind != "receiveTask" or not catches):
            self.add("error", "bad-payload", e, "process correlations belong on a message catch or receive task")
        for prop, text in e.correlations:
            self.expression(e, "bad-payload", f"the correlation of {prop!r}", text)
        key = e.event_ref or e.error_code
        for o in self.m.elements.values() if e.event in kinds[1:] else ():  # one definition carries them for all
            if o.event == e.event and (o.event_ref or o.error_code) == key and o.id < e.id \
                    and (o.kind in _CATCHING) == (e.kind in _CATCHING) and \
                    (o.payload, o.payload_variable) != (e.payload, e.payload_variable):  # fmt: skip
                self.add("error", "payload-mismatch", e, f"the {e.event} {key!r} has one SpiffWorkflow payload "
                         f"expression and variable, for all its events, and {o.label} gives it other ones")
        if e.event in kinds[1:] and e.payload is None and e.payload_variable is None:
            mine = e.event_ref if e.event == "signal" else e.error_code
            for o in self.m.elements.values():  # SpiffWorkflow's payload-aware definitions match only each other
                theirs = o.event_ref if o.event == "signal" else o.error_code
                if o.event == e.event and (o.payload is not None or o.payload_variable is not None) and (
                        mine is None or theirs is None or mine == theirs):  # fmt: skip
                    self.add("error", "payload-mismatch", e, f"its {e.event} {mine or '(any)'!r} has no SpiffWorkflow "
                             f"payload extensions, while {o.label}'s {theirs or '(any)'!r} has: SpiffWorkflow would "
                             "match them, the engine would not; give both the same definition")  # fmt: skip
                    break

    def in_transaction(self, e: Element) -> bool:
        p = self.m.elements.get(e.attached_to or "") if e.kind == "boundaryEvent" else None
        if p is not None and p.transaction:
            return True
        parent = e.parent
        while parent is not None and parent in self.m.elements:
            if self.m.elements[parent].transaction:
                return True
            parent = self.m.elements[parent].parent
        return False

    def expression(self, e: Element, code: str, what: str, text: str | None) -> None:
        """An error ``code`` on ``e`` when ``text`` (``what``) is missing or not an expression the sandbox runs."""
        if not text:
            self.add("error", code, e, f"{what} is missing")
            return
        try:
            compile_expression(text, what=what.removeprefix("the "))
        except ConditionError as exc:
            self.add("error", code, e, f"{what} {text!r}: {exc}")

    def loop(self, e: Element) -> None:
        lp = e.loop
        assert lp is not None
        if e.kind not in ACTIVITIES:
            self.add("error", "bad-loop", e, f"a {e.kind} cannot loop")
            return
        if lp.kind == "standard":
            if lp.condition is None and lp.maximum is None:
                self.add("error", "bad-loop", e, "a standard loop needs a loopCondition or a loopMaximum")
            if lp.condition is not None:
                self.expression(e, "bad-loop", "the loop condition", lp.condition)
            return
        if lp.vendor == "camunda":  # read as SpiffWorkflow's CamundaParser reads it, but for this case
            self.add("error", "unsupported-construct", e, f"{lp}: a camunda:collection without a loopCardinality "
                     "needs a camunda:elementVariable (SpiffWorkflow's CamundaParser fails without one); give it")
        elif lp.vendor:
            self.add("error", "unsupported-construct", e, f"{lp}: the collection and element variable are given only "
                     f"as {lp.vendor} attributes, which the engine does not read; give the task a standard "
                     "loopDataInputRef and inputDataItem (or a loopCardinality)")  # fmt: skip
        elif bool(lp.cardinality) == bool(lp.collection):
            self.add("error", "bad-loop", e, "a multi-instance activity needs exactly one of a loopCardinality and a "
                                             "loopDataInputRef (collection)")  # fmt: skip
        if lp.cardinality:
            self.expression(e, "bad-loop", "the loop cardinality", lp.cardinality)
        if lp.completion_condition:
            self.expression(e, "bad-loop", "the completion condition", lp.completion_condition)

    def messages(self) -> None:
        """A message thrown by a throw or end event, or by a send task with no handler, reaches a catch of the same case
        waiting for it (as SpiffWorkflow delivers it); one that nothing in the model catches goes out of the case."""
        caught = {e.event_ref for e in self.m.elements.values() if e.event_ref and (
            (e.event == "message" and e.kind in ("startEvent", "intermediateCatchEvent", "boundaryEvent"))
            or e.kind == "receiveTask")}  # fmt: skip
        for e in self.m.elements.values():
            if e.kind == "sendTask" and e.handler is None and not e.event_ref:
                self.add("error", "unbound-send-task", e, "the send task has no handler and no message, so it would "
                         f"send nothing: bind one with `procestra model bind MODEL {e.id} --http URL` (or --python)")
            thrown = (e.event == "message" and e.kind in ("intermediateThrowEvent", "endEvent")) or \
                (e.kind == "sendTask" and e.handler is None and e.event_ref)
            mixed = [c for c in self.m.elements.values() if thrown and c.event_ref == e.event_ref and (
                c.event == "message" or c.kind == "receiveTask") and c.kind in (*_CATCHING, "receiveTask") and
                (c.payload_variable is None) != (e.payload is None)]  # fmt: skip
            for c in mixed[:1]:
                self.add("error", "payload-mismatch", e, f"it throws the message {e.event_ref!r} "
                         f"{'with' if e.payload else 'without'} a payload expression, and {c.label} catches it "
                         f"{'without' if e.payload else 'with'} a payload variable: SpiffWorkflow matches only "
                         "both or neither (the throw would not be caught); give both or neither")  # fmt: skip
            if thrown and e.event_ref not in caught:
                self.add("warning", "message-leaves-case", e, f"it throws the message {e.event_ref!r}, which nothing "
                         "in this model catches: it goes out of the case with the case data as its payload, to "
                         f"every other case waiting for it (as `procestra message {e.event_ref}` does), else it "
                         "starts a case of each model whose start event catches it; one that reaches nothing is "
                         "journaled on the throw step as 'not delivered'")  # fmt: skip

    def joins(self) -> None:
        """A parallel join waits for every incoming branch: one that only a boundary event starts may never come,
        and the case would wait at the join for ever (SpiffWorkflow waits; the engine would fail it)."""
        els = self.m.elements
        starts = [e.id for e in els.values() if e.kind == "startEvent" and not (
            e.parent in els and els[e.parent].triggered_by_event)]  # fmt: skip
        normal, todo = set(starts), list(starts)
        while todo:
            for f in self.out.get(todo.pop(), []):
                if f.target not in normal:
                    normal.add(f.target)
                    todo.append(f.target)
        for g in els.values():
            ins = self.inc.get(g.id, [])
            if g.kind != "parallelGateway" or len(ins) < 2:
                continue
            for f in ins:
                if f.source not in normal:
                    self.add("error", "join-after-boundary", g, f"the parallel join waits for the branch from "
                             f"{els[f.source].label if f.source in els else f.source}, which only a boundary event "
                             "starts: a case where it does not fire would wait here for ever; join that branch with "
                             "an exclusive gateway, or end it on its own")  # fmt: skip

    def data_items(self) -> None:
        """Multi-instance element variables are written as data items whose id is the variable (as SpiffWorkflow
        reads them), and ids are unique in a file: two loops, or a loop and an element, cannot share one."""
        owner: dict[str, Element] = {}
        for e in self.m.elements.values():
            if e.loop is None or e.loop.kind == "standard":
                continue
            for role, var in (("element variable", e.loop.element_variable),
                              ("output element", e.loop.output_element)):  # fmt: skip
                if not var:
                    continue
                other = owner.get(var) or self.m.elements.get(var)
                if other is e and role == "output element":  # its own item, updated in place (Camunda's collection)
                    self.add("warning", "shared-data-item", e, f"its element variable {var!r} is also its output "
                             "element (as SpiffWorkflow's CamundaParser reads camunda:elementVariable): the saved file "
                             "gives both data items that id, which SpiffWorkflow reads as one variable but BPMN "
                             "schema checkers and bpmn-js report as a duplicate id")  # fmt: skip
                    continue
                if other is not None:
                    self.add("error", "duplicate-data-item", e, f"its {role} {var!r} is also "
                             f"{'the id of' if other.id == var else 'a loop variable of'} {other.label}: a loop "
                             "variable is the id of its data item and ids are unique in a file; rename one")
                owner.setdefault(var, e)

    def engine_parse(self) -> None:
        """What SpiffWorkflow's parser, as the engine configures it, refuses in the XML that would be saved."""
        from procestra.engine.loading import deep_recursion  # both import this module: import when it is used
        from procestra.engine.runtime import spiff

        try:
            xml = self.m.to_xml()
        except ProcestraError as exc:
            self.add("error", "cannot-write", None, str(exc))
            return
        parser = spiff()[0]()
        try:
            parser.add_bpmn_str(xml.encode("utf-8"), filename=self.m.name)
            with deep_recursion(len(self.m.elements) + len(self.m.flows)):
                parser.get_spec(self.m.process_id)
        except Exception as exc:  # noqa: BLE001 - SpiffWorkflow's ValidationException and what its parser raises
            el = self.m.elements.get(getattr(exc, "id", "") or "")
            message = str(getattr(exc, "message", "") or exc).split("\n")[0]
            self.add("error", "engine-refuses", el, f"the BPMN engine cannot run this: {message}")

    def timer(self, e: Element) -> None:
        text = e.timer or ""
        if not text:
            self.add("error", "bad-timer", e, "the timer has no duration, date or cycle")
        elif is_iso_literal(text):
            if e.timer_kind == "duration" and duration_seconds(text) is None:
                self.add("error", "bad-timer", e, f"{text!r} is not an ISO 8601 duration such as PT8H (months and "
                                                  "years are not allowed)")  # fmt: skip
        else:
            try:
                compile_expression(text, what="timer")
            except ConditionError as exc:
                self.add("error", "bad-timer", e, str(exc))

    def call(self, e: Element) -> None:
        if not e.called:
            self.add("error", "call-without-model", e, "the call activity names no model to call")
            return
        if e.called in self.m.other_pools:  # a process of the same file: it runs, so it is checked here
            visiting = _VISITING.get()
            if e.called in visiting or self.m.process_id in visiting:
                return  # the cycle is refused when the case is loaded, naming it
            token = _VISITING.set(visiting | {self.m.process_id})
            try:
                for p in self.m.pool(e.called).validate(ws=self.ws):
                    if p.severity == "error":
                        self.add("error", p.code, e, f"in process {e.called!r}, which it calls: {p}")
            except ProcestraError as exc:
                self.add("error", "call-in-file", e, f"process {e.called!r} of the same file: {exc}")
            finally:
                _VISITING.reset(token)
            return
        if self.ws is not None:
            try:
                model_info(self.ws, e.called)
            except (ModelNotFoundError, InvalidArgumentError) as exc:
                self.add("error", "call-unknown-model", e, str(exc))

    def gateways(self) -> None:
        for e in self.m.elements.values():
            outs = self.out.get(e.id, [])
            conditional = [f for f in outs if f.condition]
            for f in conditional:
                try:
                    expr = compile_expression(f.condition or "")
                except ConditionError as exc:
                    code = "unsafe-condition" if type(exc).__name__ == "UnsafeExpressionError" else "bad-condition"
                    self.add("error", code, e, f"flow {f.id!r}: {exc}")
                    continue
                if not expr.variables:
                    self.add("warning", "constant-condition", e, f"flow {f.id!r}: the condition {f.condition!r} uses "
                                                                 "no case data, so it always gives the same answer")
            if e.default is not None and e.default not in {f.id for f in outs}:
                self.add("error", "bad-default", e, f"the default flow {e.default!r} does not leave this element")
            if conditional and e.kind not in ("exclusiveGateway", "inclusiveGateway"):
                self.add("error", "condition-ignored", e, f"conditions on flows out of a {e.kind} are not evaluated; "
                                                          "put an exclusive or inclusive gateway before the branches")
            if e.kind not in ("exclusiveGateway", "inclusiveGateway") or len(outs) < 2:
                continue
            bare = [f for f in outs if not f.condition and f.id != e.default]
            for f in bare:
                self.add("error", "missing-condition", e, f"the branch to {self.m.elements[f.target].label} has no "
                                                          "condition and is not the default flow: "
                                                          "set_condition() or set_default()")  # fmt: skip
            if e.default is None and not bare and conditional:
                conds = [f.condition or "" for f in conditional]
                if not _exhaustive(conds, self.m.variables):
                    self.add("warning", "no-default", e, "no default flow, and the conditions "
                             + "; ".join(repr(c) for c in conds) + " are not provably exhaustive: a case matching "
                             "none fails here, as BPMN says; add a default with set_default() to route it")  # fmt: skip

    def reachability(self) -> None:
        m = self.m
        succ: dict[str, set[str]] = {e: set() for e in m.elements}
        for f in m.flows.values():
            succ[f.source].add(f.target)
        for e in m.elements.values():
            if e.attached_to in succ:
                succ[e.attached_to].add(e.id)
            if e.parent in succ and (e.kind == "startEvent" or e.triggered_by_event):
                succ[e.parent].add(e.id)
        seen: set[str] = set()
        stack = [e.id for e in m.elements.values() if (e.kind == "startEvent" or e.triggered_by_event)
                 and e.parent is None]  # fmt: skip
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(succ[n] - seen)
        if not any(e.kind == "startEvent" and e.parent is None for e in m.elements.values()):
            return  # reported as no-start
        for e in m.elements.values():
            if e.id not in seen and (e.parent is None or e.parent in seen):
                self.add("error", "unreachable", e, "no path from the start event leads here")

    def variables(self) -> None:
        m = self.m
        pred: dict[str, set[str]] = {e: set() for e in m.elements}
        edges: dict[str, list[tuple[str, str | None]]] = {e: [] for e in m.elements}  # with the flows between
        for f in m.flows.values():
            pred[f.target].add(f.source)
            edges[f.target].append((f.source, f.id))
        for e in m.elements.values():
            if e.attached_to in pred:  # a boundary path starts where its host started
                pred[e.id] |= pred[e.attached_to]
                edges[e.id].append((e.attached_to, None))
            if e.kind == "startEvent" and e.parent in pred:  # a subprocess starts where it is entered
                pred[e.id] |= pred[e.parent]
                edges[e.id].append((e.parent, None))
        guards = {f.id: proven(f.condition) for f in m.flows.values() if f.condition}
        outputs = {e.id: set(e.outputs()) for e in m.elements.values()}
        calls = {e.id: call_data(m, e.called, self.ws) for e in m.elements.values() if e.kind == "callActivity"
                 and e.called}  # fmt: skip
        for eid, data in calls.items():
            outputs[eid] |= data.outputs if data is not None else set()
        for e in m.elements.values():  # a subprocess produces what its content produces
            p = e.parent
            while p is not None and p in outputs:
                outputs[p] |= outputs[e.id]
                p = m.elements[p].parent
        declared = set(m.variables) | set((process_io(m) or IoSpec()).inputs)  # a call passes its data inputs
        memo: dict[str, set[str]] = {}

        def ancestors(eid: str) -> set[str]:
            if eid in memo:
                return memo[eid]
            seen: set[str] = set()
            stack = list(pred[eid])
            while stack:
                n = stack.pop()
                if n not in seen:
                    seen.add(n)
                    stack.extend(pred[n] - seen)
            memo[eid] = seen
            return seen

        for e in m.elements.values():
            used: dict[str, str] = {}
            for f in self.out.get(e.id, []):
                if f.condition:
                    try:
                        free = unguarded(f.condition)  # 'x' in vars() and x > 1: x is tested before it is read
                        for v in compile_expression(f.condition).variables:
                            if free is None or v in free:
                                used.setdefault(v, f"the condition of flow {f.id!r}")
                    except ConditionError:
                        pass
            if e.handler is not None:
                for v in e.handler.variables():
                    used.setdefault(v, "the handler's inputs")
            if e.script:
                try:
                    expr = compile_script(e.script)
                    for v in expr.variables:
                        used.setdefault(v, "the script")
                except ConditionError:
                    pass
            for text, after in ((e.pre_script, False), (e.post_script, True), (e.payload, False),
                                *((x, False) for _, x in e.correlations)):  # fmt: skip
                try:
                    for v in compile_script(text).variables if text else ():
                        if not (after and (v in outputs[e.id] or _free_form(e))):  # a post-script: the task's data
                            used.setdefault(v, "the SpiffWorkflow script or payload")
                except ConditionError:
                    pass
            call = calls.get(e.id)
            for v in sorted(call.inputs if call is not None else ()):
                used.setdefault(v, f"the call of {e.called!r} (its data input)")
            if e.timer and not is_iso_literal(e.timer):
                try:
                    for v in compile_expression(e.timer, what="timer").variables:
                        used.setdefault(v, "the timer")
                except ConditionError:
                    pass
            if e.loop is not None:
                for text, after in ((e.loop.cardinality, False), (e.loop.completion_condition, True),
                                     (e.loop.condition, not e.loop.test_before)):  # fmt: skip
                    try:
                        for v in compile_expression(text).variables if text else ():
                            if not (after and v in outputs[e.id]):  # tested after a pass: the pass's outputs count
                                used.setdefault(v, "the loop")
                    except ConditionError:
                        pass
                if e.loop.collection and e.loop.collection.isidentifier():
                    used.setdefault(e.loop.collection, "the multi-instance collection")
            if not used:
                continue
            available = set(declared)
            host: Element | None = e
            while host is not None:  # each instance of a multi-instance activity (and what it holds) has its item
                if host.loop is not None and host.loop.element_variable:
                    available.add(host.loop.element_variable)
                host = m.elements.get(host.parent) if host.parent else None
            if any(_free_form(m.elements[a]) for a in ancestors(e.id)):
                continue  # a task without a form may set any case data
            for a in ancestors(e.id):
                available |= outputs.get(a, set())
            for v, where in sorted(used.items()):
                if v not in available and not always_guarded(e.id, v, edges, guards):
                    self.add("error", "unknown-variable", e, f"{where} uses {v!r}, which is neither declared case data "
                             f"(model.declare({v!r}, ...)) nor an output of a task before it")  # fmt: skip


#: The tasks a SpiffWorkflow pre-/post-script runs on (SpiffWorkflow's spiff spec classes of these kinds).
_SCRIPTED = ("task", "userTask", "manualTask", "sendTask", "receiveTask")
_CATCHING = ("startEvent", "intermediateCatchEvent", "boundaryEvent")


def _free_form(e: Element) -> bool:
    """A user task without form fields: completing it may set any case data."""
    return e.kind == "userTask" and (e.human is None or not e.human.fields)


# -- exhaustiveness of gateway conditions -----------------------------------------------------------
_Interval = tuple[float, bool, float, bool]  # lo, lo included, hi, hi included
_INF = math.inf


def _norm(ivs: Iterable[_Interval]) -> list[_Interval]:
    items = sorted((i for i in ivs if i[0] < i[2] or (i[0] == i[2] and i[1] and i[3])), key=lambda i: (i[0], not i[1]))
    out: list[_Interval] = []
    for lo, li, hi, hi_inc in items:
        if out:
            plo, pli, phi, phi_inc = out[-1]
            if lo < phi or (lo == phi and (li or phi_inc)):
                if hi > phi or (hi == phi and hi_inc):
                    out[-1] = (plo, pli, hi, hi_inc)
                continue
        out.append((lo, li, hi, hi_inc))
    return out


def _complement(ivs: list[_Interval]) -> list[_Interval]:
    out: list[_Interval] = []
    lo, li = -_INF, False
    for a, ai, b, bi in _norm(ivs):
        out.append((lo, li, a, not ai))
        lo, li = b, not bi
    out.append((lo, li, _INF, False))
    return _norm(out)


def _intervals(node: ast.AST, subject: list[str]) -> list[_Interval] | None:
    """The set of real values of the one compared variable for which ``node`` holds, or None if not that form."""
    if isinstance(node, ast.BoolOp):
        parts = [_intervals(v, subject) for v in node.values]
        if any(p is None for p in parts):
            return None
        if isinstance(node.op, ast.Or):
            return _norm([i for p in parts for i in p or []])
        acc = _complement([])  # empty set's complement: everything
        for p in parts:
            acc = _complement(_norm(_complement(acc) + _complement(p or [])))
        return acc
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _intervals(node.operand, subject)
        return None if inner is None else _complement(inner)
    if not isinstance(node, ast.Compare):
        return None
    acc = [(-_INF, False, _INF, False)]
    operands = [node.left, *node.comparators]
    for op, a, b in zip(node.ops, operands, operands[1:]):
        flip = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq,
                ast.NotEq: ast.NotEq}
        if type(op) not in flip:
            return None
        if _number(b) is not None and _number(a) is None:
            var, c, kind = a, _number(b), type(op)
        elif _number(a) is not None and _number(b) is None:
            var, c, kind = b, _number(a), flip[type(op)]
        else:
            return None
        key = ast.dump(var)
        if subject and subject[0] != key:
            return None
        subject[:1] = [key]
        assert c is not None
        piece = {ast.Lt: [(-_INF, False, c, False)], ast.LtE: [(-_INF, False, c, True)],
                 ast.Gt: [(c, False, _INF, False)], ast.GtE: [(c, True, _INF, False)], ast.Eq: [(c, True, c, True)],
                 ast.NotEq: [(-_INF, False, c, False), (c, False, _INF, False)]}[kind]  # fmt: skip
        acc = _complement(_norm(_complement(acc) + _complement(piece)))
    return acc


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _number(node.operand)
        return -v if v is not None else None
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _values(node: ast.AST, subject: list[str]) -> set[Any] | None:
    """The constants ``x == c`` / ``x in (c, ...)`` / ``or`` of them accept, for one variable ``x``."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        parts = [_values(v, subject) for v in node.values]
        return None if any(p is None for p in parts) else set().union(*(p or set() for p in parts))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Eq, ast.In)):
        var, right = node.left, node.comparators[0]
        if isinstance(node.ops[0], ast.Eq) and isinstance(var, ast.Constant):
            var, right = right, var
        key = ast.dump(var)
        if subject and subject[0] != key:
            return None
        subject[:1] = [key]
        if isinstance(node.ops[0], ast.Eq) and isinstance(right, ast.Constant):
            return {right.value}
        if isinstance(right, (ast.Tuple, ast.List, ast.Set)) and all(isinstance(x, ast.Constant) for x in right.elts):
            return {x.value for x in right.elts if isinstance(x, ast.Constant)}
    return None


def _exhaustive(conditions: Sequence[str], variables: Mapping[str, Variable]) -> bool:
    """Whether at least one of ``conditions`` holds for every value of the case data (as far as we can prove)."""
    try:  # JUEL and FEEL are analysed as their translation (null and type mismatches fail loudly there too)
        trees = [ast.parse(to_python(c).python.strip(), mode="eval").body for c in conditions]
    except (SyntaxError, ConditionError):
        return False
    dumps = [ast.dump(t) for t in trees]
    for t in trees:  # c / not c
        if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not) and ast.dump(t.operand) in dumps:
            return True
    subject: list[str] = []
    parts = [_intervals(t, subject) for t in trees]
    if all(p is not None for p in parts) and not _complement(_norm([i for p in parts for i in p or []])):
        return True
    subject = []
    sets = [_values(t, subject) for t in trees]
    if all(s is not None for s in sets) and subject:
        for var in variables.values():
            if subject[0] == ast.dump(ast.Name(id=var.name, ctx=ast.Load())):
                accepted = set().union(*(s or set() for s in sets))
                if var.type == "boolean" and {True, False} <= accepted:
                    return True
                if var.allowed and set(var.allowed) <= accepted:
                    return True
    return False
