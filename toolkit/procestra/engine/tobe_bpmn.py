"""To-be models as executable BPMN 2.0: our ``procestra:`` extension format, read and written.

:func:`read_xml` reads any BPMN 2.0 file (Camunda Modeler, bpmn.io, Signavio, Zeebe, ours) into a
:class:`~procestra.engine.tobe.ToBeModel` and keeps the file itself (``model.document``):
saving patches it (:mod:`procestra.engine.tobe_patch`), so its layout, other pools, messages,
loops and vendor extensions survive. What the element model reads beyond flow nodes and
flows (loops, transactions, event subprocesses, conditional, message, signal and escalation
definitions, timer cycles, other tools' forms and bindings via :mod:`procestra.engine.tobe_vendor`)
is for validation and display; what the engine cannot run is kept in ``Element.unsupported``
and refused by validation, naming the element. :func:`write_xml` writes a model built
through the API (no file) anew, with ``isExecutable="true"``, a laid-out diagram, and our
bindings in extension elements, which Camunda Modeler and bpmn-js keep and ignore.

The diagram, the ids and the consistency check come from :mod:`procestra.models.bpmn`, the
package's one BPMN writer: :func:`pm4py_bpmn` mirrors the model as a pm4py BPMN object,
:func:`~procestra.models.bpmn.to_bpmn_xml` writes and lays it out, and :func:`write_xml`
adds what pm4py has no place for. Reading cannot go through
:func:`~procestra.models.bpmn.read_bpmn`: pm4py's BPMN objects drop conditions, default
flows, timers, error codes, scripts, call activities and every extension element, which
are the executable semantics, so this reader walks the XML itself.

**The extension format** (namespace :data:`NS`, format :data:`FORMAT`), read back by
:meth:`ToBeModel.load` and by the engine:

- ``process/extensionElements/procestra:caseData`` holds ``procestra:variable`` elements
  (``name``, ``type``: any|string|number|integer|boolean|date|object|list, ``required``,
  ``allowed``: a JSON array, ``description``): the case data a case starts with.
- A service task's ``extensionElements`` holds ``procestra:handler`` (``kind``,
  ``timeout`` in seconds) with ``procestra:config`` (a JSON object, the connector's
  settings), ``procestra:input`` (``name``, ``expression``), ``procestra:output`` (``name``)
  and ``procestra:secret`` (``name``) children; and ``procestra:retry`` (``maxAttempts``,
  ``initialDelay``, ``multiplier``, ``maxDelay``; seconds). ``Retry.delay(n)`` is the wait
  after failed attempt ``n``.
- A user task's ``extensionElements`` holds ``procestra:humanTask`` (``candidateGroup``,
  ``due``: an ISO 8601 duration from when the task becomes ready, ``assignee``, ``formKey``)
  with ``procestra:field`` children (``name``, ``type``: string|text|number|integer|boolean|
  date|enum, ``required``, ``label``, ``allowed``: JSON array, ``default``: JSON value,
  ``minimum``/``maximum``/``minLength``/``maxLength``: JSON numbers).
- ``process/extensionElements/procestra:model`` (``format``, ``name``) marks our files.
- A call activity holds ``procestra:call`` (``model``, optional ``version``): the saved
  model it runs; its standard ``calledElement`` is that model's process id.
- Standard BPMN carries the rest: ``conditionExpression`` (sandbox syntax) on flows,
  ``default`` on gateways, ``timerEventDefinition/timeDuration`` (ISO 8601, e.g. ``PT8H``),
  ``boundaryEvent`` with ``cancelActivity``, and ``errorEventDefinition`` whose ``bpmn:error``
  has ``errorCode`` :attr:`Element.error_code` (the engine throws it when a task's retries are
  exhausted), ``scriptTask/script`` (sandbox script syntax).
- SpiffWorkflow's own extension elements carry what it defines (:mod:`procestra.engine.spiff_ext` runs
  them as SpiffWorkflow does): ``spiffworkflow:preScript``/``postScript`` on a task,
  ``messagePayload``/``messageVariable``/``processVariableCorrelation`` on a message event's
  definition or a send/receive task, ``payloadExpression``/``variableName`` on a ``bpmn:signal``,
  ``bpmn:error`` or ``bpmn:escalation``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lxml import etree

from procestra.engine.connectors import Handler
from procestra.engine.elements import (
    ACTIVITIES,
    GATEWAYS,
    ID,
    KINDS,
    TASKS,
    Element,
    Flow,
    FormField,
    HumanTask,
    Loop,
    Retry,
    Variable,
    slug,
)
from procestra.engine.tobe_vendor import (
    SPIFF_NS,
    item_payloads,
    loop_warnings,
    payload_extensions,
    read_binding,
    read_human,
    read_loop,
    read_spiff,
    unsupported,
    write_spiff,
)
from procestra.errors import ModelError, UserError
from procestra.models.bpmn import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS, XSI_NS, check_diagram, to_bpmn_xml

if TYPE_CHECKING:
    from procestra.engine.tobe import ToBeModel

__all__ = [
    "BPMN_SUFFIXES", "FORMAT", "NODE_TAGS", "NS", "READ_AS", "flatten_for_replay", "is_bpmn_file", "our_extensions",
    "pm4py_bpmn", "process_extensions", "read_xml", "write_loop", "write_node", "write_xml",
]

#: The namespace of our extension elements, and the version of their format.
NS = "https://procestra.dev/schema/bpmn/1.0"
FORMAT = 1
_P = f"{{{NS}}}"
_B = f"{{{BPMN_NS}}}"
READ_AS = {"transaction": "subProcess", "businessRuleTask": "serviceTask"}
NODE_TAGS = frozenset(KINDS) | frozenset(READ_AS) | {"adHocSubProcess", "complexGateway"}
#: Flow nodes the engine does not run: read as elements that validation refuses, named.
_NOT_RUN = {"adHocSubProcess": "ad-hoc subprocesses are not supported: the engine has no way to choose which of "
                               "their activities run",
            "complexGateway": "complex gateways are not supported: SpiffWorkflow does not run them"}  # fmt: skip


#: The file names BPMN models come in (Camunda and Activiti write ``.bpmn20.xml``).
BPMN_SUFFIXES = (".bpmn", ".bpmn20.xml")


def is_bpmn_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a BPMN file (``.bpmn`` or ``.bpmn20.xml``, any case)."""
    return str(path).lower().endswith(BPMN_SUFFIXES)


# -- reading --------------------------------------------------------------------------------------
def read_xml(make: type[ToBeModel], xml: str | bytes, *, source: str = "(xml)", process: str | None = None,
             ) -> ToBeModel:  # fmt: skip
    """A model (made by ``make``) from BPMN 2.0 XML; :class:`ModelError` names what is broken."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ModelError(f"not a BPMN file: it is not well-formed XML ({exc})", path=source) from None
    if root.tag != _B + "definitions":
        raise ModelError(f"not a BPMN 2.0 file: the root element is <{etree.QName(root).localname}>, expected "
                         f"<definitions> in {BPMN_NS}", path=source)  # fmt: skip
    procs = list(root.iter(_B + "process"))
    nodes_in = {p: sum(1 for c in p.iter() if isinstance(c.tag, str) and etree.QName(c).localname in NODE_TAGS)
                for p in procs}  # fmt: skip
    candidates = [p for p in procs if nodes_in[p]]
    if process is not None:
        candidates = [p for p in procs if process in (p.get("id"), p.get("name"))]
        if not candidates:
            raise ModelError(f"no process {process!r} (processes: {', '.join(_proc_label(p) for p in procs)})",
                             path=source)  # fmt: skip
    if len(candidates) > 1:  # one we saved: the process with our marker is the one that runs
        ours = [p for p in candidates if p.find(f"{_B}extensionElements/{_P}model") is not None]
        candidates = ours if len(ours) == 1 else candidates
    if len(candidates) > 1 and process is None:  # pools drawn only to show a partner are not executable
        executable = [p for p in candidates if p.get("isExecutable", "true") != "false"]
        candidates = executable if len(executable) == 1 else candidates
    if not candidates:
        raise ModelError("the file has no process elements (no task, event or gateway)", path=source)
    if len(candidates) > 1:
        raise ModelError("the file has several processes (pools): " + ", ".join(map(_proc_label, candidates))
                         + "; pick one with process=", path=source)  # fmt: skip
    proc = candidates[0]
    marker = proc.find(f"{_B}extensionElements/{_P}model")  # a file we saved: the name it was saved under
    model = make((marker.get("name") if marker is not None else None) or proc.get("name") or proc.get("id")
                 or "Process", process_id=proc.get("id") or "Process_1")  # fmt: skip
    model.source = source
    if not ID.match(model.process_id):
        model.process_id = "Process_" + (slug(model.process_id) or "1")
    others = [p for p in procs if p is not proc]
    if others:
        model.notes.append(f"{len(others)} other process(es) (pools) are kept in the file but do not run: "
                           + ", ".join(map(_proc_label, others)) + f"; cases run process {model.process_id!r}")
    used: set[str] = set()
    idmap: dict[str, str] = {}
    for el in root.iter():
        old = el.get("id") if isinstance(el.tag, str) and etree.QName(el).namespace == BPMN_NS else None
        if old is None:  # vendor elements' ids are theirs (Camunda repeats property ids)
            continue
        if ID.match(old) or old in idmap:  # a repeated id stays repeated: a flow node's is refused below
            used.add(old)
            continue
        new = "Id_" + re.sub(r"[^\w.\-]", "_", old)
        while new in used:
            new += "_"
        used.add(new)
        idmap[old] = new
    if idmap:
        model.notes.append(f"{len(idmap)} ids that are not valid XML names were renamed (e.g. "
                           f"{next(iter(idmap))!r} -> {idmap[next(iter(idmap))]!r})")  # fmt: skip
    if proc.get("id") != model.process_id:
        idmap[proc.get("id") or ""] = model.process_id
    names = _referenced_names(root)
    reader = _Reader(model, names, idmap, source)
    reader.payloads, reader.items = payload_extensions(root), item_payloads(root)
    reader.container(proc, None)
    reader.flows()
    for ext in proc.findall(_B + "extensionElements"):
        for v in ext.iter(_P + "variable"):
            var = reader.guard(proc, lambda v=v: Variable(
                v.get("name", ""), v.get("type", "any"), v.get("required") == "true",
                tuple(_json_attr(v, "allowed", [])), v.get("description", "")))  # fmt: skip
            model.variables[var.name] = var
    model.document, model.document_ids = data, idmap
    model.other_pools = {p.get("id") or "": p.get("name") or "" for p in others}
    return model


def _referenced_names(root: etree._Element) -> dict[str, tuple[str | None, str | None]]:
    """Errors, escalations, messages and signals of the file by id: (name, code)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for tag, code in (("error", "errorCode"), ("escalation", "escalationCode"), ("message", ""), ("signal", "")):
        for e in root.iter(_B + tag):
            out[e.get("id") or ""] = (e.get("name"), e.get(code) if code else None)
    return out


def _proc_label(p: etree._Element) -> str:
    return f"{p.get('id')!r}" + (f" ({p.get('name')!r})" if p.get("name") else "")


def _json_attr(node: etree._Element, attr: str, default: Any) -> Any:
    raw = node.get(attr)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"attribute {attr}={raw!r} is not JSON") from None


class _Reader:
    """Fills a ToBeModel from a BPMN process element."""

    def __init__(self, model: ToBeModel, names: Mapping[str, tuple[str | None, str | None]], idmap: Mapping[str, str],
                 source: str) -> None:  # fmt: skip
        self.model, self.names, self.idmap, self.source = model, names, idmap, source
        self.payloads: dict[str, list[str]] = {}  # messages with SpiffWorkflow payload extensions on themselves
        self.items: dict[str, tuple[str | None, str | None]] = {}  # errors, escalations, signals: their payloads
        self.flow_nodes: list[tuple[etree._Element, str | None]] = []

    def rid(self, raw: str | None) -> str | None:
        return self.idmap.get(raw, raw) if raw is not None else None

    def guard(self, node: etree._Element, make: Any, what: str = "") -> Any:
        try:
            return make()
        except (ValueError, TypeError, KeyError, UserError) as exc:
            prefix = f"<{etree.QName(node).localname}> {node.get('id') or node.get('name')!r}: "
            raise ModelError(prefix + (f"procestra:{what}: " if what else "") + str(exc), path=self.source,
                             element=self.rid(node.get("id"))) from None  # fmt: skip

    def container(self, holder: etree._Element, parent: str | None) -> None:
        for child in holder:
            if not isinstance(child.tag, str) or etree.QName(child).namespace != BPMN_NS:
                continue
            local = etree.QName(child).localname
            if local == "sequenceFlow":
                self.flow_nodes.append((child, parent))
            elif local in NODE_TAGS:
                eid = self.node(child, local, parent)
                if self.model.elements[eid].kind == "subProcess":
                    self.container(child, eid)

    def node(self, x: etree._Element, local: str, parent: str | None) -> str:
        eid = self.rid(x.get("id"))
        if not eid:
            raise ModelError(f"a <{local}> has no id", path=self.source)
        kind = READ_AS.get(local, local)
        if local == "businessRuleTask":
            self.model.notes.append(f"<businessRuleTask> {eid!r} was read as a service task: bind it to a handler")
        el = Element(eid, kind, " ".join((x.get("name") or "").split()), parent)
        problems = [_NOT_RUN[local]] if local in _NOT_RUN else []
        warnings: list[str] = []
        el.transaction = local == "transaction"
        el.triggered_by_event = x.get("triggeredByEvent") == "true"
        doc = x.find(_B + "documentation")
        el.documentation = (doc.text or "").strip() if doc is not None else ""
        el.default = self.rid(x.get("default"))
        if kind == "boundaryEvent":
            el.attached_to = self.rid(x.get("attachedToRef"))
            el.interrupting = x.get("cancelActivity", "true").lower() != "false"
        definitions = [d for d in x if isinstance(d.tag, str) and etree.QName(d).localname.endswith("EventDefinition")]
        for d in definitions[:1]:
            self.event(el, d)
        if len(definitions) > 1:  # a multiple event: SpiffWorkflow runs it as drawn, the file keeps each
            el.event, el.event_ref = "multiple", ", ".join(etree.QName(d).localname[: -len("EventDefinition")]
                                                          for d in definitions)  # fmt: skip
        if kind == "scriptTask":
            script = x.find(_B + "script")
            el.script = script.text if script is not None and script.text else None
        if kind == "callActivity":
            el.called = x.get("calledElement")
        if kind in ("sendTask", "receiveTask") and x.get("messageRef"):
            el.event_ref = self.names.get(x.get("messageRef") or "", (None, None))[0] or x.get("messageRef")
            problems += [f"{what} on the message {x.get('messageRef')!r} it refers to, which the engine does not "
                         "apply" for what in self.payloads.get(x.get("messageRef") or "", ())]  # fmt: skip
        el.loop = self.guard(x, lambda: read_loop(x))
        warnings += loop_warnings(x)
        if kind == "userTask":
            el.human = read_human(x, problems, warnings)
        if kind == "serviceTask":
            el.vendor_binding = read_binding(x)
        problems += unsupported(x, local, warnings)
        spiff = read_spiff(x, kind, self.items)  # SpiffWorkflow's scripts and payloads, which the engine runs
        problems += spiff.pop("problems")  # type: ignore[arg-type]
        for key, value in spiff.items():
            setattr(el, key, value)
        for ext in x.findall(_B + "extensionElements"):
            self.extensions(ext, el)
        el.unsupported, el.warnings = (*el.unsupported, *problems), tuple(warnings)  # event() may have added some
        if eid in self.model.elements:
            raise ModelError(f"the id {eid!r} is used twice", path=self.source, element=eid)
        self.model.elements[eid] = el
        return eid

    def event(self, el: Element, d: etree._Element) -> None:
        """Read event definition ``d`` of ``el``: its kind, timer, condition, error code or referenced name."""
        kind_ = etree.QName(d).localname[: -len("EventDefinition")]
        el.event = kind_
        if kind_ == "timer":
            for tag, tk in (("timeDuration", "duration"), ("timeDate", "date"), ("timeCycle", "cycle")):
                t = d.find(_B + tag)
                if t is not None:
                    el.timer, el.timer_kind = (t.text or "").strip(), tk
        elif kind_ == "conditional":
            cond = d.find(_B + "condition")
            el.condition = (cond.text or "").strip() or None if cond is not None else None
        ref = d.get({"error": "errorRef", "escalation": "escalationRef", "message": "messageRef",
                     "signal": "signalRef"}.get(kind_, "-"))  # fmt: skip
        if ref is not None:
            el.unsupported += tuple(f"{what} on the {kind_} {ref!r} it refers to, which the engine does not apply"
                                    for what in self.payloads.get(ref, ()))  # fmt: skip
            name, code = self.names.get(ref, (None, None))
            if kind_ == "error":
                el.error_code = code or name
            else:
                el.event_ref = name or ref
                el.error_code = code if kind_ == "escalation" else None

    def extensions(self, ext: etree._Element, el: Element) -> None:
        owner = ext.getparent()
        for node in ext:
            if not isinstance(node.tag, str) or etree.QName(node).namespace != NS:
                continue
            local = etree.QName(node).localname
            if local == "handler":
                el.handler = self.guard(owner, lambda node=node: _read_handler(node), local)
            elif local == "retry":
                el.retry = self.guard(owner, lambda node=node: Retry(int(node.get("maxAttempts", "3")),
                                                          float(node.get("initialDelay", "1")),
                                                          float(node.get("multiplier", "2")),
                                                          float(node.get("maxDelay", "300"))), local)  # fmt: skip
            elif local == "humanTask":
                el.human = self.guard(owner, lambda node=node: HumanTask(
                    tuple(FormField(f.get("name", ""), f.get("type", "string"), f.get("required", "true") == "true",
                                tuple(_json_attr(f, "allowed", [])), f.get("label", ""), _json_attr(f, "default", None),
                                _json_attr(f, "minimum", None), _json_attr(f, "maximum", None),
                                _json_attr(f, "minLength", None), _json_attr(f, "maxLength", None))
                          for f in node.findall(_P + "field")),
                    node.get("candidateGroup"), node.get("due"), node.get("assignee"), node.get("formKey")),
                    local)  # fmt: skip
            elif local == "call":
                el.called = node.get("model", "") + (f"@{node.get('version')}" if node.get("version") else "")

    def flows(self) -> None:
        m = self.model
        for x, _parent in self.flow_nodes:
            fid = self.rid(x.get("id"))
            if not fid:
                raise ModelError("a <sequenceFlow> has no id", path=self.source)
            ends = []
            for attr in ("sourceRef", "targetRef"):
                ref = self.rid(x.get(attr))
                if ref not in m.elements:
                    raise ModelError(f"sequence flow {fid!r} has {attr}={x.get(attr)!r}, which names no flow node",
                                     path=self.source, element=fid)  # fmt: skip
                ends.append(ref)
            cond = x.find(_B + "conditionExpression")
            text = (cond.text or "").strip() if cond is not None else ""
            m.flows[fid] = Flow(fid, ends[0], ends[1], " ".join((x.get("name") or "").split()), text or None)
        for e in m.elements.values():  # a default naming no flow stays: validation refuses it (bad-default)
            if e.attached_to is not None and e.attached_to not in m.elements:
                raise ModelError(f"boundary event {e.id!r} is attached to {e.attached_to!r}, which is not in the "
                                 "process", path=self.source, element=e.id)  # fmt: skip


def _read_handler(node: etree._Element) -> Handler:
    config_node = node.find(_P + "config")
    config = json.loads(config_node.text or "{}") if config_node is not None else {}
    timeout = node.get("timeout")
    return Handler(
        kind=node.get("kind", ""), config=config,
        inputs={i.get("name", ""): i.get("expression", "") for i in node.findall(_P + "input")},
        outputs=tuple(o.get("name", "") for o in node.findall(_P + "output")),
        timeout=float(timeout) if timeout else None,
        secrets=tuple(s.get("name", "") for s in node.findall(_P + "secret")),
    )  # fmt: skip


# -- writing --------------------------------------------------------------------------------------
def pm4py_bpmn(model: ToBeModel) -> Any:
    """``model`` as a pm4py BPMN object: what :func:`~procestra.models.bpmn.to_bpmn_xml` writes and lays out."""
    from pm4py.objects.bpmn.obj import BPMN

    bpmn = BPMN(process_id=model.process_id, name=model.name)
    nodes: dict[str, Any] = {}
    pending = list(model.elements.values())
    while pending:
        later = []
        for e in pending:
            if e.parent is not None and e.parent not in nodes:
                later.append(e)
                continue
            proc = e.parent or model.process_id
            nodes[e.id] = _pm4py_node(BPMN, e, proc)
            bpmn.add_node(nodes[e.id])
        if len(later) == len(pending):
            raise ModelError("subprocess nesting is cyclic", element=later[0].id)
        pending = later
    for f in model.flows.values():
        src = nodes[f.source]
        bpmn.add_flow(BPMN.SequenceFlow(src, nodes[f.target], id=f.id, name=f.name, process=src.get_process()))
    return bpmn


def flatten_for_replay(model: ToBeModel) -> None:
    """``model`` flattened for replay, in place: subprocesses inlined between exclusive gateways, boundary
    events turned into exclusive choices (see :meth:`ToBeModel.to_pm4py <procestra.engine.tobe.ToBeModel.to_pm4py>`)."""
    for sub in [e for e in model.elements.values() if e.kind == "subProcess"]:
        inner = [e for e in model.elements.values() if e.parent == sub.id]
        starts = [e.id for e in inner if e.kind == "startEvent"]
        ends = [e.id for e in inner if e.kind == "endEvent"]
        if len(starts) != 1 or not ends:
            sub.kind = "task"  # an empty or odd subprocess: one step
            continue
        entry = model.elements[model.add_gateway(parent=sub.parent)]
        leave = model.elements[model.add_gateway(parent=sub.parent)]
        for f in model.flows.values():
            f.target = entry.id if f.target == sub.id else f.target
            f.source = leave.id if f.source == sub.id else f.source
        for e in inner:
            e.parent = sub.parent
        model.connect(entry.id, starts[0])
        for end in ends:
            model.connect(end, leave.id)
        for b in model.boundary_events(sub.id):  # approximation: the fallback follows the whole content
            b.attached_to = leave.id
        del model.elements[sub.id]
    for e in [e for e in model.elements.values() if e.kind in ("intermediateCatchEvent", "intermediateThrowEvent")
              or (e.kind in ("startEvent", "endEvent") and model.incoming(e.id) and model.outgoing(e.id))]:
        model.remove(e.id)  # invisible in logs: bridge them
    for b in [e for e in model.elements.values() if e.kind == "boundaryEvent"]:
        host = model.elements.get(b.attached_to or "")
        if host is None:
            continue
        split = model.elements[model.add_gateway(parent=host.parent)]
        if b.event == "timer":  # before the host: the task may be cancelled before completing
            for f in list(model.flows.values()):
                if f.target == host.id:
                    f.target = split.id
            model.connect(split.id, host.id)
        else:
            for f in list(model.flows.values()):
                if f.source == host.id:
                    f.source = split.id
            model.connect(host.id, split.id)
        for f in list(model.flows.values()):
            if f.source == b.id:
                f.source = split.id
        del model.elements[b.id]
    for e in list(model.elements.values()):
        if e.kind in ACTIVITIES:
            e.kind = "task"
        ins = [f for f in model.flows.values() if f.target == e.id]
        if e.kind not in GATEWAYS and len(ins) > 1:  # BPMN merges uncontrolled flows exclusively; say so
            join = model.elements[model.add_gateway(parent=e.parent)]
            for f in ins:
                f.target = join.id
            model.connect(join.id, e.id)


def _pm4py_node(BPMN: Any, e: Element, proc: str) -> Any:
    if e.kind in TASKS or e.kind == "callActivity":
        return BPMN.Task(id=e.id, name=e.name, process=proc)
    if e.kind == "subProcess":
        return BPMN.SubProcess(id=e.id, name=e.name, process=proc)
    cls = {"exclusiveGateway": BPMN.ExclusiveGateway, "parallelGateway": BPMN.ParallelGateway,
           "inclusiveGateway": BPMN.InclusiveGateway, "eventBasedGateway": BPMN.EventBasedGateway,
           "startEvent": BPMN.StartEvent, "endEvent": BPMN.EndEvent,
           "intermediateCatchEvent": BPMN.IntermediateCatchEvent,
           "intermediateThrowEvent": BPMN.IntermediateThrowEvent}.get(e.kind)  # fmt: skip
    if e.kind == "boundaryEvent":
        return BPMN.BoundaryEvent(id=e.id, name=e.name, process=proc, activity=e.attached_to)
    if cls is None:
        raise ModelError(f"{e.label} has kind {e.kind!r}, which cannot be drawn", element=e.id)
    return cls(id=e.id, name=e.name, process=proc)


def write_xml(model: ToBeModel, *, name: str | None = None, called: Mapping[str, str] | None = None) -> str:
    """``model`` as executable BPMN 2.0 XML with a laid-out diagram and our extension elements
    (see :meth:`ToBeModel.to_xml <procestra.engine.tobe.ToBeModel.to_xml>`)."""
    for e in model.elements.values():
        if e.kind not in KINDS:
            raise ModelError(f"{e.label} has kind {e.kind!r}, which cannot be written", element=e.id)
    mirror = model.to_pm4py()
    for f in model.flows.values():
        if f.source not in model.elements or f.target not in model.elements:
            raise ModelError(f"flow {f.id!r} connects {f.source!r} and {f.target!r}, not both elements",
                             element=f.id)
    xml = to_bpmn_xml(mirror, name=name or model.name, executable=True)
    parser = etree.XMLParser(remove_blank_text=True)
    root = etree.fromstring(xml.encode("utf-8"), parser)
    by_id = {el.get("id"): el for el in root.iter() if isinstance(el.tag, str) and el.get("id")}
    process = root.find(_B + "process")
    assert process is not None
    errors: list[etree._Element] = []
    rank = {k: i for i, k in enumerate([*model.elements, *model.flows])}
    for holder in [process, *(by_id[e.id] for e in model.elements.values() if e.kind == "subProcess")]:
        kids = [c for c in holder if c.get("id") in rank]  # keep the model's order in the file
        for c in kids:
            holder.remove(c)
        for c in sorted(kids, key=lambda c: rank[c.get("id")]):
            holder.append(c)
    for e in model.elements.values():
        node = by_id[e.id]
        node.tag = _B + e.kind
        write_node(node, e, errors, called or {})
    _route_boundary_flows(root, model)
    for f in model.flows.values():
        node = by_id[f.id]
        if f.condition:
            cond = etree.SubElement(node, _B + "conditionExpression")
            cond.set(f"{{{XSI_NS}}}type", "bpmn:tFormalExpression")
            cond.text = f.condition
    ext = etree.Element(_B + "extensionElements")
    ext.extend(process_extensions(model, name))
    process.insert(0, ext)
    for i, err in enumerate(errors):
        root.insert(i, err)
    spiff = {"spiffworkflow": SPIFF_NS} if next(root.iter(f"{{{SPIFF_NS}}}*"), None) is not None else {}
    etree.cleanup_namespaces(root, top_nsmap={"procestra": NS, **spiff})
    out = str(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode("utf-8"))
    problems = check_diagram(out)
    if problems:
        raise ModelError("the BPMN XML we wrote is inconsistent: " + "; ".join(problems[:5]))
    return out


def write_node(node: etree._Element, e: Element, errors: list[etree._Element], called: Mapping[str, str]) -> None:
    """Our parts of one flow node: documentation, extension elements, event definition, script, attributes."""
    for child in list(node):
        if etree.QName(child).localname.endswith("EventDefinition"):
            node.remove(child)
    head = 0
    if e.documentation:
        doc = etree.Element(_B + "documentation")
        doc.text = e.documentation
        node.insert(head, doc)
        head += 1
    ext = etree.Element(_B + "extensionElements")
    ext.extend(our_extensions(e))
    if e.kind == "callActivity" and e.called:
        node.set("calledElement", called.get(e.called, "Process_" + (slug(e.called.partition("@")[0]) or "1")))
    if len(ext):
        node.insert(head, ext)
    if e.default:
        node.set("default", e.default)
    if e.kind == "boundaryEvent" and not e.interrupting:
        node.set("cancelActivity", "false")
    if e.kind == "scriptTask" and e.script:
        node.set("scriptFormat", "python")
        etree.SubElement(node, _B + "script").text = e.script
    if e.event:
        d = etree.SubElement(node, _B + f"{e.event}EventDefinition", id=f"{e.id}_def")
        if e.event == "timer" and e.timer:
            tag = {"duration": "timeDuration", "date": "timeDate", "cycle": "timeCycle"}[e.timer_kind]
            t = etree.SubElement(d, _B + tag)
            t.set(f"{{{XSI_NS}}}type", "bpmn:tFormalExpression")
            t.text = e.timer
        if e.event == "error":
            err_id = f"Error_{e.id}"
            d.set("errorRef", err_id)
            errors.append(etree.Element(_B + "error", id=err_id, name=e.name or e.error_code or e.id,
                                        errorCode=e.error_code or e.id))  # fmt: skip
    if e.event == "conditional":
        d = node.find(_B + "conditionalEventDefinition")
        if d is not None and e.condition:
            etree.SubElement(d, _B + "condition").text = e.condition
    if e.loop is not None:
        write_loop(node, e.loop)
    if e.transaction:
        node.tag = _B + "transaction"
    if e.triggered_by_event:
        node.set("triggeredByEvent", "true")
    if e.kind not in GATEWAYS and "gatewayDirection" in node.attrib:
        del node.attrib["gatewayDirection"]
    write_spiff(node, e, errors)


def write_loop(node: etree._Element, loop: Loop) -> None:
    """``loop`` as standard BPMN loop characteristics of ``node`` (before its script, as the schema orders)."""
    if loop.kind == "standard":
        x = etree.Element(_B + "standardLoopCharacteristics")
        if loop.test_before:
            x.set("testBefore", "true")
        if loop.maximum is not None:
            x.set("loopMaximum", str(loop.maximum))
        if loop.condition:
            etree.SubElement(x, _B + "loopCondition").text = loop.condition
    else:
        x = etree.Element(_B + "multiInstanceLoopCharacteristics")
        if loop.kind == "sequential":
            x.set("isSequential", "true")
        for tag, value in (("loopCardinality", loop.cardinality), ("loopDataInputRef", loop.collection),
                           ("loopDataOutputRef", loop.output_collection)):  # fmt: skip
            if value:
                etree.SubElement(x, _B + tag).text = value
        for tag, value in (("inputDataItem", loop.element_variable), ("outputDataItem", loop.output_element)):
            if value:
                etree.SubElement(x, _B + tag, id=value, name=value)
        if loop.completion_condition:
            etree.SubElement(x, _B + "completionCondition").text = loop.completion_condition
    script = node.find(_B + "script")
    if script is not None:
        script.addprevious(x)
    else:
        node.append(x)


def process_extensions(model: ToBeModel, name: str | None) -> list[etree._Element]:
    """The process's extension elements: our marker (format, saved name) and the declared case data."""
    out = [etree.Element(_P + "model", format=str(FORMAT), name=name or model.name)]
    if model.variables:
        holder = etree.Element(_P + "caseData")
        for v in model.variables.values():
            node = etree.SubElement(holder, _P + "variable", name=v.name, type=v.type)
            if v.required:
                node.set("required", "true")
            if v.allowed:
                node.set("allowed", json.dumps(list(v.allowed)))
            if v.description:
                node.set("description", v.description)
        out.append(holder)
    return out


def our_extensions(e: Element) -> list[etree._Element]:
    """Our extension elements of ``e`` (handler, retry, human task, called model), in the format above."""
    out: list[etree._Element] = []
    if e.handler is not None:
        h = e.handler
        hn = etree.Element(_P + "handler", kind=h.kind)
        if h.timeout is not None:
            hn.set("timeout", f"{h.timeout:g}")
        etree.SubElement(hn, _P + "config").text = json.dumps(dict(h.config), sort_keys=True)
        for k, v in h.inputs.items():
            etree.SubElement(hn, _P + "input", name=k, expression=v)
        for o in h.outputs:
            etree.SubElement(hn, _P + "output", name=o)
        for s in h.secrets:
            etree.SubElement(hn, _P + "secret", name=s)
        out.append(hn)
    if e.retry is not None:
        r = e.retry
        out.append(etree.Element(_P + "retry", maxAttempts=str(r.max_attempts), initialDelay=f"{r.initial:g}",
                                 multiplier=f"{r.multiplier:g}", maxDelay=f"{r.max_delay:g}"))  # fmt: skip
    if e.human is not None:
        hn = etree.Element(_P + "humanTask")
        for attr, value in (("candidateGroup", e.human.candidate_group), ("due", e.human.due),
                            ("assignee", e.human.assignee), ("formKey", e.human.form_key)):  # fmt: skip
            if value:
                hn.set(attr, value)
        for f in e.human.fields:
            fn = etree.SubElement(hn, _P + "field", name=f.name, type=f.type,
                                  required="true" if f.required else "false")
            if f.label:
                fn.set("label", f.label)
            if f.allowed:
                fn.set("allowed", json.dumps(list(f.allowed)))
            if f.default is not None:
                fn.set("default", json.dumps(f.default))
            for attr, bound in (("minimum", f.minimum), ("maximum", f.maximum), ("minLength", f.min_length),
                                ("maxLength", f.max_length)):  # fmt: skip
                if bound is not None:
                    fn.set(attr, json.dumps(bound))
        out.append(hn)
    if e.kind == "callActivity" and e.called:
        ref, _, version = e.called.partition("@")
        call = etree.Element(_P + "call", model=ref)
        if version:
            call.set("version", version)
        out.append(call)
    return out


def _route_boundary_flows(root: etree._Element, model: ToBeModel) -> None:
    """Draw each flow leaving a boundary event down, across, and into the near side of its target."""
    bounds = {}
    for shape in root.iter(f"{{{BPMNDI_NS}}}BPMNShape"):
        b = shape.find(f"{{{DC_NS}}}Bounds")
        if b is not None:
            bounds[shape.get("bpmnElement")] = tuple(float(b.get(k, "0")) for k in ("x", "y", "width", "height"))
    edges = {e.get("bpmnElement"): e for e in root.iter(f"{{{BPMNDI_NS}}}BPMNEdge")}
    for f in model.flows.values():
        if model.elements[f.source].kind != "boundaryEvent" or f.id not in edges:
            continue
        if f.source not in bounds or f.target not in bounds:
            continue
        bx, by, bw, bh = bounds[f.source]
        tx, ty, tw, th = bounds[f.target]
        cx, low = bx + bw / 2, by + bh + 15
        tcx = tx + tw / 2
        points = [(cx, by + bh), (cx, low), (tcx, low), (tcx, ty + th if ty + th <= low else ty)]
        if ty >= low:  # target below the detour line: straight down into its top
            points = [(cx, by + bh), (cx, ty - 15), (tcx, ty - 15), (tcx, ty)]
        edge = edges[f.id]
        for w in edge.findall(f"{{{DI_NS}}}waypoint"):
            edge.remove(w)
        for x, y in points:
            etree.SubElement(edge, f"{{{DI_NS}}}waypoint", x=str(round(x)), y=str(round(y)))
