"""Refine a discovered or drawn process into a to-be model that runs, and save it as executable BPMN.

:class:`ToBeModel` loads a discovery result, a BPMN file (Camunda Modeler, bpmn.io, Signavio,
ours) or a saved model, and edits it: rename and remove elements (reconnecting their
flows), add tasks, gateways, subprocesses, call activities and boundary events; bind
service tasks to handlers (:mod:`procestra.engine.connectors`); set gateway conditions (checked by
:mod:`procestra.engine.sandbox`); mark human tasks with a form, a candidate group and a due time;
give tasks retries with exponential backoff, error boundaries to a fallback path and timer
boundaries for SLA escalation. :meth:`ToBeModel.validate` lists :class:`Problem` s by
element; :meth:`ToBeModel.save` writes a new version to ``process_models/`` as BPMN 2.0
with ``isExecutable="true"``, a diagram, and our bindings in ``procestra:`` extension
elements, which Camunda Modeler and bpmn-js keep and ignore. A model loaded from a file
saves that file, patched: the author's layout, pools and extensions stay.

>>> model = ToBeModel.load(ws.discover("loans"), name="loans-to-be")
>>> model.simplify(); model.remove("Request documents")
>>> model.bind("Credit check", python("procestra.engine.examples:credit_check", outputs=["credit_score"]),
...            retry=Retry(max_attempts=3))
>>> model.on_error("Credit check", "Manual credit review", then="Fraud check")
>>> model.declare("amount", "number", required=True)
>>> for problem in model.validate(): print(problem)
error [missing-condition] Gateway_4: the branch to ... has no condition and is not the default flow: ...
>>> model.save(ws)              # refuses while validate() reports errors; check=False keeps a draft

:func:`procestra.engine.examples.loan_to_be` builds the tutorial's complete loan process.

The parts of a model are in :mod:`procestra.engine.elements`, its checks in
:mod:`procestra.engine.validate`, and its file format (BPMN 2.0 with ``procestra:``
extension elements) in :mod:`procestra.engine.tobe_bpmn`.
"""

from __future__ import annotations

import functools
import html
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from procestra.engine.connectors import Handler, check_handler
from procestra.engine.elements import (
    ACTIVITIES,
    GATEWAYS,
    ID,
    TASKS,
    Element,
    Flow,
    FormField,
    HumanTask,
    Loop,
    RemoveReport,
    Retry,
    Variable,
    set_spiff,
    slug,
    undo_on_error,
)
from procestra.engine.exceptions import ConditionError, FormError, ValidationError
from procestra.engine.sandbox import compile_expression, compile_script, is_iso_literal
from procestra.engine.tobe_bpmn import (
    FORMAT,
    NS,
    flatten_for_replay,
    is_bpmn_file,
    pm4py_bpmn,
    read_xml,
    write_xml,
)
from procestra.engine.tobe_patch import patch_xml
from procestra.engine.validate import Problem, check
from procestra.errors import InvalidArgumentError, ModelError, ProcestraError, UserError
from procestra.models.bpmn import bpmn_to_petri, to_bpmn_xml, write_pnml
from procestra.models.repository import (
    LoadedModel,
    ModelInfo,
    ModelRef,
    is_model_path,
    model_info,
    model_parts,
    validate_model_name,
    write_version,
)
from procestra.version import __version__

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "FORMAT",
    "NS",
    "Element",
    "Flow",
    "FormError",
    "FormField",
    "HumanTask",
    "Problem",
    "RemoveReport",
    "Retry",
    "ToBeModel",
    "ValidationError",
    "Variable",
    "validate_model",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def _atomic(method: _F) -> _F:
    """An edit that fails leaves the model as it was."""

    @functools.wraps(method)
    def wrapper(self: ToBeModel, *args: Any, **kwargs: Any) -> Any:
        with undo_on_error(self):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ToBeModel:
    """An executable process model under construction. Holds no workspace state until saved.

    Elements are referred to by id or by (unique) name everywhere.
    """

    def __init__(self, name: str = "Process", *, process_id: str | None = None) -> None:
        self.name = name
        self.process_id = process_id or "Process_" + (slug(name) or "1")
        self.elements: dict[str, Element] = {}
        self.flows: dict[str, Flow] = {}
        self.variables: dict[str, Variable] = {}
        #: What loading changed or did not run (other pools, renamed ids...).
        self.notes: list[str] = []
        self.source: str = "(new)"
        #: The BPMN document the model was read from, which :meth:`to_xml` patches (None: written anew),
        #: and the ids the reader renamed in it.
        self.document: bytes | None = None
        self.document_ids: dict[str, str] = {}
        #: The document's other processes (pools), id to name: kept in the file, not run.
        self.other_pools: dict[str, str] = {}

    def __repr__(self) -> str:
        tasks = sum(1 for e in self.elements.values() if e.kind in ACTIVITIES)
        return f"<ToBeModel {self.name!r}: {tasks} activities, {len(self.elements)} elements, {len(self.flows)} flows>"

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: Any, *, ws: Home | None = None, version: int | None = None, name: str | None = None,
             process: str | None = None) -> ToBeModel:  # fmt: skip
        """A model from a discovery result, a pm4py BPMN/tree/Petri net, a ``.bpmn`` file or a saved model.

        ``ws`` is needed for saved model names (``"loans"``, ``"loans@2"``). ``process``
        picks one process (id or name) of a file with several pools. A model read from a file
        keeps the file: saving patches it (:mod:`procestra.engine.tobe_patch`), so the layout,
        the other pools and vendor extensions survive. ``.bpmn`` and ``.bpmn20.xml`` files are read.
        """
        if isinstance(source, ToBeModel):
            return source.copy()
        if isinstance(source, LoadedModel) and source.path is not None:  # read the file: it keeps our bindings
            file = source.path / "model.bpmn" if source.path.is_dir() else source.path
            if is_bpmn_file(file) and file.is_file():
                model = cls.from_xml(file.read_bytes(), source=source.ref)
                if source.info is not None:
                    model.name = source.info.name
                if name is not None:
                    model.name = name
                return model
        if isinstance(source, (str, os.PathLike)) and (is_model_path(source) or is_bpmn_file(source)):
            path = Path(source)
            if not is_bpmn_file(path):
                raise InvalidArgumentError(f"{path.name!r}: a to-be model is read from a .bpmn or .bpmn20.xml file",
                                           parameter="source")
            if not path.is_file():
                raise ModelError("no such file", path=str(path))
            model = cls.from_xml(path.read_bytes(), source=str(path), process=process)
            if model.name == model.process_id:  # an unnamed process: call it after the file
                model.name = path.name[: -len(".bpmn20.xml")] if path.name.lower().endswith(".bpmn20.xml") \
                    else path.stem
        elif isinstance(source, str):
            if ws is None:
                raise InvalidArgumentError(f"{source!r} is not a .bpmn path; saved models need ws=", parameter="ws")
            info = model_info(ws, source, version)
            model = cls.from_xml((info.path / "model.bpmn").read_bytes(), source=info.ref)
            model.name = info.name
        else:
            parts = model_parts(source)
            if parts.bpmn is None:
                raise InvalidArgumentError("the model has no BPMN form to refine", parameter="source")
            model = cls.from_xml(to_bpmn_xml(parts.bpmn, executable=True).encode(), source=type(source).__name__)
            model.document, model.other_pools = None, {}  # a drawing we made: laid out anew on save
            model._readable_ids()
            model.name = parts.source_log or "Process"
            if parts.source_log:
                model.source = f"discovered from log {parts.source_log!r}"
            if name is not None:
                model.name = name
            model.process_id = "Process_" + (slug(model.name) or "1")
        if name is not None:
            model.name = name
        return model

    @classmethod
    def from_xml(cls, xml: str | bytes, *, source: str = "(xml)", process: str | None = None) -> ToBeModel:
        """Parse BPMN 2.0 XML (see :meth:`load`); :class:`ModelError` names what is broken."""
        return read_xml(cls, xml, source=source, process=process)

    def pool(self, process: str) -> ToBeModel:
        """Another pool of this model's file as a model (what a call to it runs), seeing the caller's case data."""
        if self.document is None or process not in self.other_pools:
            raise InvalidArgumentError(f"{process!r} is not another process of {self.source}", parameter="process")
        pool = ToBeModel.from_xml(self.document, source=f"{self.source} (process {process})", process=process)
        pool.variables = {**self.variables, **pool.variables}
        return pool

    def to_dict(self) -> dict[str, Any]:
        """Everything in the model as JSON data (what :meth:`from_dict` reads; round-trips exactly)."""
        return {
            "format": FORMAT, "name": self.name, "process_id": self.process_id,
            "variables": [asdict(v) | {"allowed": list(v.allowed)} for v in self.variables.values()],
            "elements": [e.to_dict() for e in self.elements.values()],
            "flows": [asdict(f) for f in self.flows.values()],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToBeModel:
        model = cls(str(d["name"]), process_id=str(d["process_id"]))
        for v in d.get("variables", []):
            model.variables[v["name"]] = Variable(**{**v, "allowed": tuple(v.get("allowed") or ())})
        for e in d.get("elements", []):
            e = dict(e)
            handler = Handler.from_dict(e.pop("handler")) if e.get("handler") else None
            retry = Retry(**e.pop("retry")) if e.get("retry") else None
            loop = Loop(**e.pop("loop")) if e.get("loop") else None
            human_d = e.pop("human", None)
            human = None
            if human_d:
                fields = tuple(FormField(**{**f, "allowed": tuple(f.get("allowed") or ())}) for f in human_d["fields"])
                human = HumanTask(fields, **{k: v for k, v in human_d.items() if k != "fields"})
            e.pop("handler", None), e.pop("retry", None), e.pop("loop", None)
            e["unsupported"] = tuple(e.get("unsupported") or ())
            model.elements[e["id"]] = Element(**e, handler=handler, retry=retry, human=human, loop=loop)
        for f in d.get("flows", []):
            model.flows[f["id"]] = Flow(**f)
        return model

    def copy(self) -> ToBeModel:
        """An independent copy."""
        other = ToBeModel.from_dict(self.to_dict())
        other.notes, other.source = list(self.notes), self.source
        other.document, other.document_ids = self.document, dict(self.document_ids)
        other.other_pools = dict(self.other_pools)
        return other

    # -- lookup ---------------------------------------------------------------------------------
    def element(self, ref: str | Element) -> Element:
        """The element with id ``ref``, else the one named ``ref``; :class:`ModelError` if none or several."""
        if isinstance(ref, Element):
            ref = ref.id
        if ref in self.elements:
            return self.elements[ref]
        named = [e for e in self.elements.values() if e.name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise ModelError(f"{len(named)} elements are named {ref!r} ({', '.join(e.id for e in named)}); use an id",
                             element=ref)  # fmt: skip
        import difflib

        pool = list(self.elements) + [e.name for e in self.elements.values() if e.name]
        close = difflib.get_close_matches(str(ref), pool, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelError(f"no element with id or name {ref!r} in model {self.name!r}{hint}", element=str(ref))

    def outgoing(self, ref: str) -> list[Flow]:
        eid = self.element(ref).id
        return [f for f in self.flows.values() if f.source == eid]

    def incoming(self, ref: str) -> list[Flow]:
        eid = self.element(ref).id
        return [f for f in self.flows.values() if f.target == eid]

    def flow(self, source: str, target: str) -> Flow:
        """The flow from ``source`` to ``target``."""
        s, t = self.element(source).id, self.element(target).id
        found = [f for f in self.flows.values() if f.source == s and f.target == t]
        if not found:
            raise ModelError(f"no flow from {s!r} to {t!r}", element=s)
        return found[0]

    def boundary_events(self, ref: str) -> list[Element]:
        eid = self.element(ref).id
        return [e for e in self.elements.values() if e.attached_to == eid]

    def tasks(self) -> list[Element]:
        """The activities (tasks, subprocesses, call activities), in model order."""
        return [e for e in self.elements.values() if e.kind in ACTIVITIES]

    # -- ids --------------------------------------------------------------------------------------
    def _new_id(self, prefix: str, name: str = "") -> str:
        base = prefix + (slug(name) or str(len(self.elements) + len(self.flows) + 1))
        new, k = base, 2
        while new in self.elements or new in self.flows or new == self.process_id:
            new, k = f"{base}_{k}", k + 1
        return new

    def _check_new_id(self, id: str | None, prefix: str, name: str) -> str:
        if id is None:
            return self._new_id(prefix, name)
        if not isinstance(id, str) or not ID.match(id):
            raise InvalidArgumentError(f"id {id!r} must start with a letter or '_' and hold letters, digits, '_', "
                                       "'.' or '-'", parameter="id")  # fmt: skip
        if id in self.elements or id in self.flows:
            raise InvalidArgumentError(f"id {id!r} is already used", parameter="id")
        return id

    def _rename_id(self, old: str, new: str) -> None:
        if old in self.elements:
            el = self.elements.pop(old)
            el.id = new
            self.elements[new] = el
            for e in self.elements.values():
                e.parent = new if e.parent == old else e.parent
                e.attached_to = new if e.attached_to == old else e.attached_to
            for f in self.flows.values():
                f.source = new if f.source == old else f.source
                f.target = new if f.target == old else f.target
        elif old in self.flows:
            f = self.flows.pop(old)
            f.id = new
            self.flows[new] = f
            for e in self.elements.values():
                e.default = new if e.default == old else e.default

    def _readable_ids(self) -> None:
        """Ids made from names (mined models come with uuids): Activity_credit_check, Gateway_1, Flow_1..."""
        counts: dict[str, int] = {}
        plan = []
        for e in list(self.elements.values()):
            if e.kind in ACTIVITIES and e.name:
                prefix, label = "Activity_", e.name
            else:
                prefix = {"startEvent": "StartEvent_", "endEvent": "EndEvent_"}.get(e.kind, "Gateway_" if e.kind in
                                                                                     GATEWAYS else "Event_")
                counts[prefix] = counts.get(prefix, 0) + 1
                label = str(counts[prefix])
            plan.append((e.id, prefix, label))
        temp = {old: f"tmp_{uuid.uuid4().hex}" for old, _, _ in plan}
        for old, tmp in temp.items():
            self._rename_id(old, tmp)
        for old, prefix, label in plan:
            self._rename_id(temp[old], self._new_id(prefix, label))
        for i, fid in enumerate(list(self.flows), start=1):
            self._rename_id(fid, f"tmpflow_{i}")
        for i in range(1, len(self.flows) + 1):
            self._rename_id(f"tmpflow_{i}", f"Flow_{i}")

    # -- editing ----------------------------------------------------------------------------------
    def rename(self, ref: str, name: str) -> Element:
        """Give element ``ref`` the label ``name``."""
        el = self.element(ref)
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("the new name must be non-empty text", parameter="name")
        el.name = name.strip()
        return el

    @_atomic
    def remove(self, ref: str, *, reconnect: bool = True) -> RemoveReport:
        """Remove an element (with its boundary events, and its content if a subprocess).

        With ``reconnect``, an element with one incoming or one outgoing flow is bridged: each
        predecessor is connected to each successor, keeping the conditions of the flows. What
        cannot be bridged is listed in ``broken`` (and :meth:`validate` reports it).
        """
        el = self.element(ref)
        gone = {el.id}
        changed = True
        while changed:
            before = len(gone)
            gone |= {e.id for e in self.elements.values() if e.attached_to in gone or e.parent in gone}
            changed = len(gone) != before
        ins = [f for f in self.flows.values() if f.target == el.id and f.source not in gone]
        outs = [f for f in self.flows.values() if f.source == el.id and f.target not in gone]
        touching = [f for f in self.flows.values() if f.source in gone or f.target in gone]
        neighbours = {f.source for f in touching if f.source not in gone} | {f.target for f in touching
                                                                           if f.target not in gone}
        defaults = {f.id: f for f in ins if self.elements[f.source].default == f.id}
        for f in touching:
            del self.flows[f.id]
        for eid in gone:
            del self.elements[eid]
        for e in self.elements.values():
            if e.default and e.default not in self.flows:
                e.default = None
        reconnected: list[tuple[str, str]] = []
        if reconnect and ins and outs and (len(ins) == 1 or len(outs) == 1):
            for i in ins:
                for o in outs:
                    if any(f.source == i.source and f.target == o.target for f in self.flows.values()):
                        continue
                    fid = self._new_id("Flow_")
                    self.flows[fid] = Flow(fid, i.source, o.target, i.name or o.name, i.condition or o.condition)
                    if i.id in defaults:
                        self.elements[i.source].default = fid
                    reconnected.append((i.source, o.target))
        broken = []
        lost_in = {f.target for f in touching if f.target not in gone}
        lost_out = {f.source for f in touching if f.source not in gone}
        for nid in sorted(neighbours):
            n = self.elements[nid]
            if nid in lost_in and not any(f.target == nid for f in self.flows.values()):
                broken.append(f"{n.label} has no incoming flow any more")
            if nid in lost_out and not any(f.source == nid for f in self.flows.values()):
                broken.append(f"{n.label} has no outgoing flow any more")
        return RemoveReport(tuple(sorted(gone)), tuple(reconnected), tuple(broken))

    @_atomic
    def simplify(self) -> list[str]:
        """Remove gateways with one incoming and one outgoing flow (miners leave many); return their ids."""
        removed = []
        for e in list(self.elements.values()):
            if e.kind in GATEWAYS and e.id in self.elements:
                ins = [f for f in self.flows.values() if f.target == e.id]
                outs = [f for f in self.flows.values() if f.source == e.id]
                if len(ins) == 1 and len(outs) == 1 and not outs[0].condition:
                    self.remove(e.id)
                    removed.append(e.id)
        return removed

    def _add(self, kind: str, name: str, id: str | None, parent: str | None, prefix: str, **attrs: Any) -> Element:
        if parent is not None:
            p = self.element(parent)
            if p.kind != "subProcess":
                raise InvalidArgumentError(f"parent {p.label} is a {p.kind}, not a subprocess", parameter="parent")
            parent = p.id
        el = Element(self._check_new_id(id, prefix, name), kind, (name or "").strip(), parent, **attrs)
        self.elements[el.id] = el
        return el

    def _splice(self, el: Element, after: str | None, before: str | None) -> None:
        if after is not None and before is not None:
            raise InvalidArgumentError("give after= or before=, not both", parameter="after")
        if after is not None:
            a = self.element(after)
            outs = [f for f in self.flows.values() if f.source == a.id]
            if len(outs) > 1:
                raise InvalidArgumentError(f"{a.label} has {len(outs)} outgoing flows: connect the new element with "
                                           "connect() instead of after=", parameter="after")  # fmt: skip
            el.parent = a.parent
            for f in outs:
                f.source = el.id
            self.connect(a.id, el.id)
        elif before is not None:
            b = self.element(before)
            ins = [f for f in self.flows.values() if f.target == b.id]
            if len(ins) > 1:
                raise InvalidArgumentError(f"{b.label} has {len(ins)} incoming flows: connect the new element with "
                                           "connect() instead of before=", parameter="before")  # fmt: skip
            el.parent = b.parent
            for f in ins:
                f.target = el.id
            self.connect(el.id, b.id)

    @_atomic
    def add_task(self, name: str, *, kind: str = "task", id: str | None = None, after: str | None = None,
                 before: str | None = None, parent: str | None = None) -> str:
        """Add a task (``kind``: task, service, user, script or manual) and return its id.

        ``after``/``before`` splice it into the flow after or before an element.
        """
        bpmn_kind = {"service": "serviceTask", "user": "userTask", "script": "scriptTask", "manual": "manualTask",
                     "human": "userTask"}.get(kind, kind)  # fmt: skip
        if bpmn_kind not in TASKS:
            raise InvalidArgumentError(f"task kind {kind!r} is not one of task, service, user, script, manual",
                                       parameter="kind")
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("a task needs a name", parameter="name")
        el = self._add(bpmn_kind, name, id, parent, "Activity_")
        self._splice(el, after, before)
        return el.id

    @_atomic
    def add_gateway(self, kind: str = "exclusive", *, name: str = "", id: str | None = None,
                    parent: str | None = None, after: str | None = None, before: str | None = None) -> str:
        """Add a gateway (``kind``: exclusive, parallel, inclusive or event-based) and return its id."""
        bpmn_kind = {"exclusive": "exclusiveGateway", "xor": "exclusiveGateway", "parallel": "parallelGateway",
                     "and": "parallelGateway", "inclusive": "inclusiveGateway", "or": "inclusiveGateway",
                     "event-based": "eventBasedGateway", "event": "eventBasedGateway"}.get(kind, kind)  # fmt: skip
        if bpmn_kind not in GATEWAYS:
            raise InvalidArgumentError(f"gateway kind {kind!r} is not exclusive, parallel, inclusive or event-based",
                                       parameter="kind")
        el = self._add(bpmn_kind, name, id, parent, "Gateway_")
        self._splice(el, after, before)
        return el.id

    @_atomic
    def add_event(self, kind: str, *, name: str = "", id: str | None = None, parent: str | None = None,
                  timer: str | None = None, after: str | None = None, before: str | None = None) -> str:
        """Add an event: start, end, terminate (end), timer (intermediate, with ``timer``), message; return its id."""
        spec = {"start": ("startEvent", None), "end": ("endEvent", None), "terminate": ("endEvent", "terminate"),
                "timer": ("intermediateCatchEvent", "timer"), "message": ("intermediateCatchEvent", "message"),
                "timer-start": ("startEvent", "timer"), "error-end": ("endEvent", "error")}.get(kind)  # fmt: skip
        if spec is None:
            raise InvalidArgumentError(f"event kind {kind!r} is not start, end, terminate, timer, message, "
                                       "timer-start or error-end", parameter="kind")  # fmt: skip
        if spec[1] == "timer":
            _check_timer(timer, "timer")
        el = self._add(spec[0], name, id, parent, "Event_", event=spec[1], timer=timer)
        if spec[1] == "error":
            el.error_code = el.id
        self._splice(el, after, before)
        return el.id

    @_atomic
    def add_subprocess(self, name: str, *, tasks: Sequence[str] = (), id: str | None = None,
                       after: str | None = None, before: str | None = None, parent: str | None = None) -> str:
        """Add an embedded subprocess holding start -> ``tasks`` (in sequence) -> end; return its id."""
        sub = self._add("subProcess", name, id, parent, "Activity_")
        self._splice(sub, after, before)
        prev = self._add("startEvent", "", None, sub.id, "StartEvent_").id
        for t in tasks:
            tid = self._add("task", t, None, sub.id, "Activity_").id
            self.connect(prev, tid)
            prev = tid
        self.connect(prev, self._add("endEvent", "", None, sub.id, "EndEvent_").id)
        return sub.id

    @_atomic
    def add_call_activity(self, name: str, called: str, *, id: str | None = None, after: str | None = None,
                          before: str | None = None, parent: str | None = None) -> str:
        """Add a call activity running the saved model ``called`` ("name" or "name@version")."""
        validate_model_name(ModelRef.parse(called).name, parameter="called")
        el = self._add("callActivity", name, id, parent, "Activity_", called=called)
        self._splice(el, after, before)
        return el.id

    def connect(self, source: str, target: str, *, condition: str | None = None, default: bool = False,
                name: str = "", id: str | None = None) -> str:
        """Add a sequence flow; ``condition`` (sandbox syntax) or ``default`` for gateway branches. Returns its id."""
        s, t = self.element(source), self.element(target)
        if s.parent != t.parent:
            raise InvalidArgumentError(f"{s.label} and {t.label} are in different (sub)processes; flows cannot cross "
                                       "a subprocess border", parameter="target")  # fmt: skip
        if condition is not None:
            compile_expression(condition)  # raises ConditionError with the position
        fid = self._check_new_id(id, "Flow_", "")
        self.flows[fid] = Flow(fid, s.id, t.id, name, condition)
        if default:
            s.default = fid
        return fid

    def disconnect(self, source: str, target: str) -> None:
        """Remove the flow(s) from ``source`` to ``target``."""
        f = self.flow(source, target)
        for fid in [x.id for x in self.flows.values() if x.source == f.source and x.target == f.target]:
            del self.flows[fid]
        for e in self.elements.values():
            if e.default and e.default not in self.flows:
                e.default = None

    def set_condition(self, gateway: str, target: str, condition: str | None) -> None:
        """Set (or with None clear) the condition of the flow from ``gateway`` to ``target``."""
        f = self.flow(gateway, target)
        if condition is not None:
            compile_expression(condition)
        f.condition = condition
        src = self.elements[f.source]
        if condition is not None and src.default == f.id:
            src.default = None

    def set_default(self, gateway: str, target: str) -> None:
        """Make the flow from ``gateway`` to ``target`` the default (taken when no condition holds)."""
        f = self.flow(gateway, target)
        f.condition = None
        self.elements[f.source].default = f.id

    def _task(self, ref: str, what: str) -> Element:
        el = self.element(ref)
        if el.kind not in TASKS:
            raise InvalidArgumentError(f"{el.label} is a {el.kind}; only tasks can be {what}", parameter="task")
        return el

    def bind(self, task: str, handler: Handler, *, retry: Retry | None = None) -> Element:
        """Make ``task`` a service task run by ``handler`` (see :mod:`procestra.connectors`)."""
        if not isinstance(handler, Handler):
            raise InvalidArgumentError("bind() takes a Handler, e.g. connectors.python('pkg.mod:func')",
                                       parameter="handler")
        el = self._task(task, "bound to a handler")
        from procestra.engine.connectors import connectors

        if handler.kind in connectors():
            problems = check_handler(handler)
            if problems:
                raise InvalidArgumentError(f"cannot bind {el.label}: " + "; ".join(problems), parameter="handler")
        el.kind, el.handler, el.human, el.script = "serviceTask", handler, None, None
        if retry is not None:
            el.retry = retry
        return el

    def human(self, task: str, fields: Sequence[FormField] = (), *, group: str | None = None,
              due: str | None = None) -> Element:
        """Make ``task`` a human (user) task with a form, a candidate group and a due time (ISO 8601 duration)."""
        el = self._task(task, "human tasks")
        el.kind, el.human, el.handler, el.script = "userTask", HumanTask(tuple(fields), group, due), None, None
        return el

    def set_script(self, task: str, script: str) -> Element:
        """Make ``task`` a script task running ``script`` (sandbox syntax: assignments and if/else)."""
        el = self._task(task, "script tasks")
        compile_script(script)
        el.kind, el.script, el.handler, el.human = "scriptTask", script, None, None
        return el

    def set_spiff(self, element: str, **fields: Any) -> Element:
        """Set ``element``'s SpiffWorkflow extensions: scripts, payloads, correlations (see :func:`set_spiff`)."""
        return set_spiff(self.element(element), fields)

    def set_retry(self, task: str, retry: Retry | None = None, **options: Any) -> Element:
        """Give ``task`` retries with exponential backoff: a :class:`Retry`, or its fields as keywords."""
        el = self.element(task)
        if el.kind not in ACTIVITIES:
            raise InvalidArgumentError(f"{el.label} is a {el.kind}; only activities retry", parameter="task")
        el.retry = retry if retry is not None else Retry(**options)
        return el

    def set_loop(self, task: str, loop: Loop | None = None, **fields: Any) -> Element:
        """Make ``task`` loop as drawn: a :class:`Loop` or its fields as keywords (``kind="parallel",
        collection="documents", element_variable="document"``); ``None`` and no fields removes the loop."""
        el = self.element(task)
        if el.kind not in ACTIVITIES:
            raise InvalidArgumentError(f"{el.label} is a {el.kind}; only activities loop", parameter="task")
        el.loop = loop if loop is not None or not fields else Loop(**fields)
        return el

    @_atomic
    def _boundary(self, task: str, to: str, then: str | None, name: str, event: str, **attrs: Any) -> str:
        host = self.element(task)
        if host.kind not in ACTIVITIES:
            raise InvalidArgumentError(f"{host.label} is a {host.kind}; boundary events attach to activities",
                                       parameter="task")
        b = self._add("boundaryEvent", name, None, host.parent, "Event_", event=event, attached_to=host.id, **attrs)
        if event == "error":
            b.error_code = b.error_code or f"{host.id}_failed"
        try:
            target = self.element(to)
        except ModelError:
            target = self.elements[self.add_task(to, parent=host.parent)]
        self.connect(b.id, target.id)
        if then is not None:
            self.connect(target.id, then)
        return b.id

    def on_error(self, task: str, to: str, *, then: str | None = None, name: str = "",
                 error_code: str | None = None) -> str:
        """When ``task`` fails for good (retries exhausted), go to ``to`` (an element, or the name of a new task,
        then connected to ``then``). Returns the error boundary event's id."""
        return self._boundary(task, to, then, name or "Failed", "error", error_code=error_code)

    def on_timeout(self, task: str, after: str, to: str, *, then: str | None = None, interrupting: bool = True,
                   name: str = "") -> str:
        """When ``task`` is not done ``after`` (ISO 8601 duration, e.g. 'PT8H') it became ready, go to ``to``.

        ``interrupting`` cancels the task; otherwise it stays open and ``to`` runs beside it.
        """
        _check_timer(after, "after")
        return self._boundary(task, to, then, name or f"{after} passed", "timer", timer=after,
                              interrupting=bool(interrupting))

    def declare(self, name: str, type: str = "any", *, required: bool = False, allowed: Sequence[Any] = (),
                description: str = "") -> Variable:
        """Declare a variable of the case data that cases start with (used to check conditions and mappings)."""
        var = Variable(name, type, required, tuple(allowed), description)
        self.variables[name] = var
        return var

    # -- BPMN out ---------------------------------------------------------------------------------
    def to_pm4py(self, *, conformance: bool = False) -> Any:
        """The model as a pm4py BPMN object (for drawing), or, with ``conformance``, flattened for replay.

        The conformance form inlines subprocesses and turns boundary events into exclusive
        choices: an error boundary after its task (the failed task is logged, then the
        fallback), a timer boundary before it (an interrupted task may never complete).
        """
        model = self.copy() if conformance else self
        if conformance:
            flatten_for_replay(model)
        return pm4py_bpmn(model)

    def to_xml(self, *, name: str | None = None, called: Mapping[str, str] | None = None) -> str:
        """The model as executable BPMN 2.0 XML with a diagram and our extension elements.

        A model read from a file patches that file (the author's layout, pools and extensions
        stay); one built through the API is laid out anew. ``called`` maps call activities'
        model references to the called process ids (``save`` looks them up; default ``Process_<name>``).
        """
        if self.document is not None:
            return patch_xml(self, name=name, called=called)
        return write_xml(self, name=name, called=called)

    def _called_ids(self, ws: Home) -> dict[str, str]:
        """Process ids of the saved models the call activities name (those that exist)."""
        out = {}
        for e in self.elements.values():
            if e.kind == "callActivity" and e.called:
                try:
                    meta = json.loads((model_info(ws, e.called).path / "meta.json").read_text(encoding="utf-8"))
                except (UserError, OSError, ValueError):
                    continue
                if meta.get("process_id"):
                    out[e.called] = str(meta["process_id"])
        return out

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_xml` to a ``.bpmn`` file (opens in Camunda Modeler and bpmn-js)."""
        path = Path(path)
        path.write_text(self.to_xml(), encoding="utf-8")
        return path

    def save(self, ws: Home, name: str | None = None, *, check: bool = True) -> ModelInfo:
        """Save as the next version of ``name`` (default: the model's name) in ``process_models/``.

        With ``check``, :meth:`validate` runs first and errors raise :class:`ValidationError`
        (warnings do not). Writes ``model.bpmn`` (executable, with bindings) and, when the
        model converts, ``model.pnml``: the Petri net conformance replays runs against.
        """
        name = validate_model_name(name if name is not None else self.name)
        if check:
            problems = self.validate(ws=ws)
            if any(p.severity == "error" for p in problems):
                raise ValidationError(problems, name=name)
        xml = self.to_xml(name=name, called=self._called_ids(ws))

        def extra(tmp: Path) -> None:
            try:
                net, im, fm = bpmn_to_petri(self.to_pm4py(conformance=True))
                write_pnml(net, im, fm, tmp / "model.pnml")
            except Exception:  # noqa: BLE001 - conformance then converts model.bpmn itself
                (tmp / "model.pnml").unlink(missing_ok=True)

        meta = {
            "kind": "BPMN", "executable": True, "format": FORMAT, "process_id": self.process_id,
            "activities": sorted({e.name for e in self.tasks() if e.name}),
            "variables": [v.name for v in self.variables.values()],
            "handlers": {e.id: e.handler.kind for e in self.elements.values() if e.handler},
            "human_tasks": [e.id for e in self.elements.values() if e.human is not None],
            "source": self.source,
        }  # fmt: skip
        return _save_version(ws, name, xml, meta, extra)

    # -- checks -----------------------------------------------------------------------------------
    def validate(self, *, ws: Home | None = None) -> list[Problem]:
        """Every problem that would keep the model from running as drawn, errors first (see
        :mod:`procestra.engine.validate` for each check); ``ws`` also checks the called models exist."""
        return check(self, ws)

    def _repr_html_(self) -> str:
        head = f"<p>to-be model <b>{html.escape(self.name)}</b>: {len(self.tasks())} activities</p>"
        try:
            from procestra.models.render import as_svg

            return head + as_svg(self.to_pm4py())
        except (ImportError, ProcestraError):
            return head


def _check_timer(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{parameter} must be an ISO 8601 duration like 'PT8H' (or an expression giving "
                                   "one)", parameter=parameter)  # fmt: skip
    if not is_iso_literal(value):
        try:
            compile_expression(value, what="timer")
        except ConditionError as exc:
            raise InvalidArgumentError(f"{parameter} must be an ISO 8601 duration like 'PT8H', or an expression over "
                                       f"the case data giving one; {value!r} is neither ({exc.reason})",
                                       parameter=parameter) from None  # fmt: skip
    return value


def _save_version(ws: Home, name: str, xml: str, meta: dict[str, Any], extra: Any) -> ModelInfo:
    """Write a new version directory with :func:`procestra.models._write_version` (atomic rename under lock)."""
    full = {"name": name, "version": None, "created": None, "source_log": None, "filter": None, "miner": None,
            "params": {}, "quality": {}, **meta, "files": [], "procestra_version": __version__}  # fmt: skip

    def write(tmp: Path) -> None:
        (tmp / "model.bpmn").write_text(xml, encoding="utf-8")
        extra(tmp)

    return write_version(ws, name, full, write)


def validate_model(source: Any, *, ws: Home | None = None, process: str | None = None) -> list[Problem]:
    """:meth:`ToBeModel.validate` of a BPMN file (``process``: which pool), a saved model name or a model."""
    return ToBeModel.load(source, ws=ws, process=process).validate(ws=ws)
