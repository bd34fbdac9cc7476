"""Refine a discovered or drawn process into a to-be model that runs, and save it as executable BPMN.

:class:`ToBeModel` loads a discovery result, a BPMN file (Camunda Modeler, bpmn.io, Signavio,
ours) or a saved model, and edits it: rename and remove elements (reconnecting their
flows), add tasks, gateways, subprocesses, call activities and boundary events; bind
service tasks to handlers (:mod:`procestra.connectors`); set gateway conditions (checked by
:mod:`procestra.sandbox`); mark human tasks with a form, a candidate group and a due time;
give tasks retries with exponential backoff, error boundaries to a fallback path and timer
boundaries for SLA escalation. :meth:`ToBeModel.validate` lists :class:`Problem` s by
element; :meth:`ToBeModel.save` writes a new version to ``process_models/`` as BPMN 2.0
with ``isExecutable="true"``, a diagram, and our bindings in ``procestra:`` extension
elements, which Camunda Modeler and bpmn-js keep and ignore.

>>> model = ToBeModel.load(ws.discover("loans"), name="loans-to-be")
>>> model.simplify(); model.remove("Request documents")
>>> model.bind("Credit check", python("procestra.engine.examples:credit_check", outputs=["credit_score"]),
...            retry=Retry(max_attempts=3))
>>> model.on_error("Credit check", "Manual credit review", then="Fraud check")
>>> model.declare("amount", "number", required=True)
>>> for problem in model.validate(): print(problem)
error [missing-condition] Gateway_4: the branch to ... has no condition and is not the default flow: ...
>>> model.save(ws)              # refuses while validate() reports errors; check=False keeps a draft

:func:`procestra.examples.loan_to_be` builds the tutorial's complete loan process.

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
  ``due``: an ISO 8601 duration from when the task becomes ready) with ``procestra:field``
  children (``name``, ``type``: string|text|number|integer|boolean|date|enum, ``required``,
  ``label``, ``allowed``: JSON array, ``default``: JSON value).
- ``process/extensionElements/procestra:model`` (``format``, ``name``) marks our files.
- A call activity holds ``procestra:call`` (``model``, optional ``version``): the saved
  model it runs; its standard ``calledElement`` is that model's process id.
- Standard BPMN carries the rest: ``conditionExpression`` (sandbox syntax) on flows,
  ``default`` on gateways, ``timerEventDefinition/timeDuration`` (ISO 8601, e.g. ``PT8H``),
  ``boundaryEvent`` with ``cancelActivity``, and ``errorEventDefinition`` whose ``bpmn:error``
  has ``errorCode`` :attr:`Element.error_code` (the engine throws it when a task's retries are
  exhausted), ``scriptTask/script`` (sandbox script syntax).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import math
import os
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lxml import etree

from procestra.engine.connectors import Handler, check_handler
from procestra.engine.exceptions import ConditionError, FormError, ValidationError
from procestra.engine.sandbox import compile_expression, compile_script, is_iso_literal
from procestra.errors import InvalidArgumentError, ModelError, UserError
from procestra.models.bpmn import BPMN_NS, XSI_NS

if TYPE_CHECKING:
    from procestra.models.repository import ModelInfo
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

#: The namespace of our extension elements, and the version of their format.
NS = "https://procestra.dev/schema/bpmn/1.0"
FORMAT = 1
_P = f"{{{NS}}}"
_B = f"{{{BPMN_NS}}}"
_ID = re.compile(r"^[A-Za-z_][\w.\-]*$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TASKS = ("task", "serviceTask", "userTask", "scriptTask", "manualTask")
ACTIVITIES = (*TASKS, "subProcess", "callActivity")
GATEWAYS = ("exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway")
EVENTS = ("startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent")
KINDS = (*ACTIVITIES, *GATEWAYS, *EVENTS)
EVENT_TYPES = ("timer", "error", "message", "signal", "terminate", "escalation", "conditional", "cancel",
               "compensate", "link")  # fmt: skip
_READ_AS = {"transaction": "subProcess", "businessRuleTask": "serviceTask", "sendTask": "serviceTask",
            "receiveTask": "task"}  # fmt: skip
VARIABLE_TYPES = ("any", "string", "number", "integer", "boolean", "date", "object", "list")
FIELD_TYPES = ("string", "text", "number", "integer", "boolean", "date", "enum")


# -- value types ----------------------------------------------------------------------------------
def _duration_seconds(text: str) -> float | None:
    m = re.fullmatch(r"P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                     r"(?:(\d+(?:\.\d+)?)S)?)?", text.strip().upper())  # fmt: skip
    if not m or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        return None
    w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return (((w * 7 + d) * 24 + h) * 60 + mi) * 60 + s


def _check_duration(value: str | None, parameter: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or _duration_seconds(value) is None:
        raise InvalidArgumentError(f"{parameter} must be an ISO 8601 duration such as 'PT8H', 'P2D' or 'PT30M', not "
                                   f"{value!r} (months and years are not allowed: their length varies)",
                                   parameter=parameter)  # fmt: skip
    return value.strip().upper()


@dataclass(frozen=True)
class Retry:
    """Retries with exponential backoff: ``max_attempts`` in all, waiting ``initial * multiplier**(n-1)``
    seconds (at most ``max_delay``) after failed attempt ``n``."""

    max_attempts: int = 3
    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0

    def __post_init__(self) -> None:
        n = self.max_attempts
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
            raise InvalidArgumentError(f"max_attempts must be an integer from 1 to 100, not {self.max_attempts!r}",
                                       parameter="max_attempts")
        for name in ("initial", "multiplier", "max_delay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidArgumentError(f"{name} must be a non-negative number, not {v!r}", parameter=name)
        if self.multiplier < 1:
            raise InvalidArgumentError(f"multiplier must be at least 1, not {self.multiplier!r}",
                                       parameter="multiplier")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        return float(min(self.max_delay, self.initial * self.multiplier ** max(attempt - 1, 0)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Variable:
    """One variable of the case data a case starts with (the model's declared schema)."""

    name: str
    type: str = "any"
    required: bool = False
    allowed: tuple[Any, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _VAR.match(self.name):
            raise InvalidArgumentError(f"variable name {self.name!r} must be an identifier (letters, digits, '_')",
                                       parameter="name")
        if self.type not in VARIABLE_TYPES:
            raise InvalidArgumentError(f"variable type {self.type!r} is not one of {', '.join(VARIABLE_TYPES)}",
                                       parameter="type")
        object.__setattr__(self, "allowed", tuple(self.allowed))


@dataclass(frozen=True)
class FormField:
    """One field of a human task's form."""

    name: str
    type: str = "string"
    required: bool = True
    allowed: tuple[Any, ...] = ()
    label: str = ""
    default: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _VAR.match(self.name):
            raise InvalidArgumentError(f"form field name {self.name!r} must be an identifier", parameter="name")
        if self.type not in FIELD_TYPES:
            raise InvalidArgumentError(f"form field {self.name!r}: type {self.type!r} is not one of "
                                       f"{', '.join(FIELD_TYPES)}", parameter="type")  # fmt: skip
        object.__setattr__(self, "allowed", tuple(self.allowed))
        if self.type == "enum" and not self.allowed:
            raise InvalidArgumentError(f"form field {self.name!r} is an enum: give its allowed values",
                                       parameter="allowed")

    def coerce(self, value: Any) -> Any:
        """``value`` as this field's type; ValueError says why not."""
        t = self.type
        if t in ("string", "text"):
            if not isinstance(value, str):
                raise ValueError(f"expected text, got {type(value).__name__}")
        elif t == "integer":
            whole = isinstance(value, int) or isinstance(value, float) and value.is_integer()
            if isinstance(value, bool) or not whole:
                raise ValueError(f"expected a whole number, got {value!r}")
            value = int(value)
        elif t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected a number, got {value!r}")
        elif t == "boolean":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
        elif t == "date":
            try:
                date.fromisoformat(str(value)[:10]) if isinstance(value, str) else (_ for _ in ()).throw(ValueError())
            except ValueError:
                raise ValueError(f"expected a date like 2026-01-31, got {value!r}") from None
        if self.allowed and value not in self.allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, self.allowed))}")
        return value


#: The earlier name of :class:`FormField`, kept for code written against it.
Field = FormField


@dataclass(frozen=True)
class HumanTask:
    """A user task's form, who may claim it, and when it is due (ISO 8601 duration)."""

    fields: tuple[FormField, ...] = ()
    candidate_group: str | None = None
    due: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "due", _check_duration(self.due, "due"))
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgumentError(f"form fields {', '.join(dupes)} appear twice", parameter="form")

    @property
    def due_seconds(self) -> float | None:
        return _duration_seconds(self.due) if self.due else None

    def check(self, data: Mapping[str, Any], *, task: str | None = None) -> dict[str, Any]:
        """The submitted ``data`` coerced to the form (defaults filled); :class:`FormError` lists what is wrong."""
        if not isinstance(data, Mapping):
            raise FormError({"(data)": f"expected an object of field values, got {type(data).__name__}"}, task=task)
        problems: dict[str, str] = {}
        out: dict[str, Any] = {}
        known = {f.name for f in self.fields}
        for key in data:
            if key not in known:
                problems[str(key)] = f"not a field of this form (fields: {', '.join(sorted(known)) or 'none'})"
        for f in self.fields:
            if f.name not in data or data[f.name] is None or data[f.name] == "":
                if f.default is not None:
                    out[f.name] = f.default
                elif f.required:
                    problems[f.name] = "required"
                continue
            try:
                out[f.name] = f.coerce(data[f.name])
            except ValueError as exc:
                problems[f.name] = str(exc)
        if problems:
            raise FormError(problems, task=task)
        return out


@dataclass
class Element:
    """One flow node of the model (task, gateway, event, subprocess, call activity)."""

    id: str
    kind: str
    name: str = ""
    #: The subprocess this element is inside, if any.
    parent: str | None = None
    handler: Handler | None = None
    retry: Retry | None = None
    human: HumanTask | None = None
    script: str | None = None
    #: Call activities: the called model, "name" or "name@version".
    called: str | None = None
    #: Events: the event definition (timer, error, message, ...), or None.
    event: str | None = None
    #: Timer events: an ISO 8601 duration/date/cycle, or a sandbox expression giving one.
    timer: str | None = None
    timer_kind: str = "duration"
    error_code: str | None = None
    attached_to: str | None = None
    interrupting: bool = True
    #: Gateways: the id of the default outgoing flow.
    default: str | None = None
    documentation: str = ""

    @property
    def label(self) -> str:
        return f"{self.id} {self.name!r}" if self.name else self.id

    def outputs(self) -> frozenset[str]:
        """Variables this element adds to the case data when it completes."""
        out: set[str] = set()
        if self.handler is not None:
            out |= set(self.handler.outputs)
        if self.human is not None:
            out |= {f.name for f in self.human.fields}
        if self.script:
            try:
                out |= compile_script(self.script).assigned
            except ConditionError:
                pass
        return frozenset(out)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("handler", "retry", "human")}
        d["handler"] = self.handler.to_dict() if self.handler else None
        d["retry"] = self.retry.to_dict() if self.retry else None
        d["human"] = None if self.human is None else {
            "fields": [asdict(f) | {"allowed": list(f.allowed)} for f in self.human.fields],
            "candidate_group": self.human.candidate_group, "due": self.human.due}  # fmt: skip
        return d


@dataclass
class Flow:
    """A sequence flow, with its condition (sandbox syntax) if any."""

    id: str
    source: str
    target: str
    name: str = ""
    condition: str | None = None


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


@dataclass(frozen=True)
class RemoveReport:
    """What :meth:`ToBeModel.remove` did: removed ids, new flows, and what was left disconnected."""

    removed: tuple[str, ...]
    reconnected: tuple[tuple[str, str], ...]
    broken: tuple[str, ...]


# -- the model --------------------------------------------------------------------------------------
_F = TypeVar("_F", bound=Callable[..., Any])


def _atomic(method: _F) -> _F:
    """An edit that fails leaves the model as it was."""

    @functools.wraps(method)
    def wrapper(self: ToBeModel, *args: Any, **kwargs: Any) -> Any:
        saved = copy.deepcopy((self.elements, self.flows, self.variables))
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.elements, self.flows, self.variables = saved
            raise

    return wrapper  # type: ignore[return-value]


def _slug(text: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "_", ascii_).strip("_").lower()[:40]


class ToBeModel:
    """An executable process model under construction. Holds no workspace state until saved.

    Elements are referred to by id or by (unique) name everywhere.
    """

    def __init__(self, name: str = "Process", *, process_id: str | None = None) -> None:
        self.name = name
        self.process_id = process_id or "Process_" + (_slug(name) or "1")
        self.elements: dict[str, Element] = {}
        self.flows: dict[str, Flow] = {}
        self.variables: dict[str, Variable] = {}
        #: What loading changed or dropped (vendor extensions, lanes, renamed ids...).
        self.notes: list[str] = []
        self.source: str = "(new)"

    def __repr__(self) -> str:
        tasks = sum(1 for e in self.elements.values() if e.kind in ACTIVITIES)
        return f"<ToBeModel {self.name!r}: {tasks} activities, {len(self.elements)} elements, {len(self.flows)} flows>"

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: Any, *, ws: Home | None = None, version: int | None = None, name: str | None = None,
             process: str | None = None) -> ToBeModel:  # fmt: skip
        """A model from a discovery result, a pm4py BPMN/tree/Petri net, a ``.bpmn`` file or a saved model.

        ``ws`` is needed for saved model names (``"loans"``, ``"loans@2"``). ``process``
        picks one process (id or name) of a file with several pools. Diagrams of files are
        re-laid out on save; vendor extensions and lanes are dropped (see :attr:`notes`).
        """
        from procestra.models.repository import LoadedModel, is_model_path, model_info, model_parts

        if isinstance(source, ToBeModel):
            return source.copy()
        if isinstance(source, LoadedModel) and source.path is not None:  # read the file: it keeps our bindings
            file = source.path / "model.bpmn" if source.path.is_dir() else source.path
            if file.suffix.lower() == ".bpmn" and file.is_file():
                model = cls.from_xml(file.read_bytes(), source=source.ref)
                if source.info is not None:
                    model.name = source.info.name
                if name is not None:
                    model.name = name
                return model
        if isinstance(source, (str, os.PathLike)) and is_model_path(source):
            path = Path(source)
            if path.suffix.lower() != ".bpmn":
                raise InvalidArgumentError(f"{path.name!r}: a to-be model is read from a .bpmn file",
                                           parameter="source")
            if not path.is_file():
                raise ModelError("no such file", path=str(path))
            model = cls.from_xml(path.read_bytes(), source=str(path), process=process)
            if model.name == model.process_id:  # an unnamed process: call it after the file
                model.name = path.stem
        elif isinstance(source, str):
            if ws is None:
                raise InvalidArgumentError(f"{source!r} is not a .bpmn path; saved models need ws=", parameter="ws")
            info = model_info(ws, source, version)
            model = cls.from_xml((info.path / "model.bpmn").read_bytes(), source=info.ref)
            model.name = info.name
        else:
            parts = model_parts(source)
            from procestra.models.bpmn import to_bpmn_xml

            if parts.bpmn is None:
                raise InvalidArgumentError("the model has no BPMN form to refine", parameter="source")
            model = cls.from_xml(to_bpmn_xml(parts.bpmn, executable=True).encode(), source=type(source).__name__)
            model._readable_ids()
            model.name = parts.source_log or "Process"
            if parts.source_log:
                model.source = f"discovered from log {parts.source_log!r}"
            if name is not None:
                model.name = name
            model.process_id = "Process_" + (_slug(model.name) or "1")
        if name is not None:
            model.name = name
        return model

    @classmethod
    def from_xml(cls, xml: str | bytes, *, source: str = "(xml)", process: str | None = None) -> ToBeModel:
        """Parse BPMN 2.0 XML (see :meth:`load`); :class:`ModelError` names what is broken."""
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
        nodes_in = {p: sum(1 for c in p.iter() if isinstance(c.tag, str) and etree.QName(c).localname in _NODE_TAGS)
                    for p in procs}  # fmt: skip
        candidates = [p for p in procs if nodes_in[p]]
        if process is not None:
            candidates = [p for p in procs if process in (p.get("id"), p.get("name"))]
            if not candidates:
                raise ModelError(f"no process {process!r} (processes: {', '.join(_proc_label(p) for p in procs)})",
                                 path=source)  # fmt: skip
        if not candidates:
            raise ModelError("the file has no process elements (no task, event or gateway)", path=source)
        if len(candidates) > 1:
            raise ModelError("the file has several processes (pools): " + ", ".join(map(_proc_label, candidates))
                             + "; pick one with process=", path=source)  # fmt: skip
        proc = candidates[0]
        model = cls(proc.get("name") or proc.get("id") or "Process", process_id=proc.get("id") or "Process_1")
        model.source = source
        if not _ID.match(model.process_id):
            model.process_id = "Process_" + (_slug(model.process_id) or "1")
        if len(procs) > 1 or root.find(_B + "collaboration") is not None:
            model.notes.append("pools, participants and message flows were dropped (one process is kept)")
        errors = {e.get("id"): (e.get("name"), e.get("errorCode")) for e in root.iter(_B + "error")}
        used: set[str] = set()
        idmap: dict[str, str] = {}
        for el in proc.iter():
            old = el.get("id") if isinstance(el.tag, str) else None
            if old is None:
                continue
            new = old if _ID.match(old) else "Id_" + re.sub(r"[^\w.\-]", "_", old)
            while new in used:
                new += "_"
            used.add(new)
            if new != old:
                idmap[old] = new
        if idmap:
            model.notes.append(f"{len(idmap)} ids that are not valid XML names were renamed (e.g. "
                               f"{next(iter(idmap))!r} -> {idmap[next(iter(idmap))]!r})")  # fmt: skip
        reader = _Reader(model, errors, idmap, source)
        reader.container(proc, None)
        reader.flows()
        for ext in proc.findall(_B + "extensionElements"):
            for v in ext.iter(_P + "variable"):
                var = reader.guard(proc, lambda v=v: Variable(
                    v.get("name", ""), v.get("type", "any"), v.get("required") == "true",
                    tuple(_json_attr(v, "allowed", [])), v.get("description", "")))  # fmt: skip
                model.variables[var.name] = var
            reader.vendor(ext)
        if reader.vendors[0]:
            model.notes.append(f"{reader.vendors[0]} vendor extension elements were dropped (namespaces: "
                               f"{', '.join(sorted(reader.vendors[1]))})")  # fmt: skip
        if reader.dropped:
            model.notes.append("dropped: " + ", ".join(f"{n} <{t}>" for t, n in sorted(reader.dropped.items())))
        return model

    # -- plain data -----------------------------------------------------------------------------
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
            human_d = e.pop("human", None)
            human = None
            if human_d:
                fields = tuple(FormField(**{**f, "allowed": tuple(f.get("allowed") or ())}) for f in human_d["fields"])
                human = HumanTask(fields, human_d.get("candidate_group"), human_d.get("due"))
            e.pop("handler", None), e.pop("retry", None)
            model.elements[e["id"]] = Element(**e, handler=handler, retry=retry, human=human)
        for f in d.get("flows", []):
            model.flows[f["id"]] = Flow(**f)
        return model

    def copy(self) -> ToBeModel:
        """An independent copy."""
        other = ToBeModel.from_dict(self.to_dict())
        other.notes, other.source = list(self.notes), self.source
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
        base = prefix + (_slug(name) or str(len(self.elements) + len(self.flows) + 1))
        new, k = base, 2
        while new in self.elements or new in self.flows or new == self.process_id:
            new, k = f"{base}_{k}", k + 1
        return new

    def _check_new_id(self, id: str | None, prefix: str, name: str) -> str:
        if id is None:
            return self._new_id(prefix, name)
        if not isinstance(id, str) or not _ID.match(id):
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
        from procestra.models.repository import split_ref, validate_model_name

        ref, _ = split_ref(called, None)
        validate_model_name(ref, parameter="called")
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

    def set_retry(self, task: str, retry: Retry | None = None, **options: Any) -> Element:
        """Give ``task`` retries with exponential backoff: a :class:`Retry`, or its fields as keywords."""
        el = self.element(task)
        if el.kind not in ACTIVITIES:
            raise InvalidArgumentError(f"{el.label} is a {el.kind}; only activities retry", parameter="task")
        el.retry = retry if retry is not None else Retry(**options)
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
        from pm4py.objects.bpmn.obj import BPMN

        model = self.copy() if conformance else self
        if conformance:
            model._flatten_for_replay()
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

    def _flatten_for_replay(self) -> None:
        for sub in [e for e in self.elements.values() if e.kind == "subProcess"]:
            inner = [e for e in self.elements.values() if e.parent == sub.id]
            starts = [e.id for e in inner if e.kind == "startEvent"]
            ends = [e.id for e in inner if e.kind == "endEvent"]
            if len(starts) != 1 or not ends:
                sub.kind = "task"  # an empty or odd subprocess: one step
                continue
            entry = self._add("exclusiveGateway", "", None, sub.parent, "Gateway_")
            leave = self._add("exclusiveGateway", "", None, sub.parent, "Gateway_")
            for f in self.flows.values():
                f.target = entry.id if f.target == sub.id else f.target
                f.source = leave.id if f.source == sub.id else f.source
            for e in inner:
                e.parent = sub.parent
            self.connect(entry.id, starts[0])
            for end in ends:
                self.connect(end, leave.id)
            for b in self.boundary_events(sub.id):  # approximation: the fallback follows the whole content
                b.attached_to = leave.id
            del self.elements[sub.id]
        for e in [e for e in self.elements.values() if e.kind in ("intermediateCatchEvent", "intermediateThrowEvent")
                  or (e.kind in ("startEvent", "endEvent") and self.incoming(e.id) and self.outgoing(e.id))]:
            self.remove(e.id)  # invisible in logs: bridge them
        for b in [e for e in self.elements.values() if e.kind == "boundaryEvent"]:
            host = self.elements.get(b.attached_to or "")
            if host is None:
                continue
            split = self._add("exclusiveGateway", "", None, host.parent, "Gateway_")
            if b.event == "timer":  # before the host: the task may be cancelled before completing
                for f in list(self.flows.values()):
                    if f.target == host.id:
                        f.target = split.id
                self.connect(split.id, host.id)
            else:
                for f in list(self.flows.values()):
                    if f.source == host.id:
                        f.source = split.id
                self.connect(host.id, split.id)
            for f in list(self.flows.values()):
                if f.source == b.id:
                    f.source = split.id
            del self.elements[b.id]
        for e in list(self.elements.values()):
            if e.kind in ACTIVITIES:
                e.kind = "task"
            ins = [f for f in self.flows.values() if f.target == e.id]
            if e.kind not in GATEWAYS and len(ins) > 1:  # BPMN merges uncontrolled flows exclusively; say so
                join = self._add("exclusiveGateway", "", None, e.parent, "Gateway_")
                for f in ins:
                    f.target = join.id
                self.connect(join.id, e.id)

    def to_xml(self, *, name: str | None = None, called: Mapping[str, str] | None = None) -> str:
        """The model as executable BPMN 2.0 XML with a laid-out diagram and our extension elements.

        ``called`` maps call activities' model references to the called process ids
        (``save`` looks them up; default ``Process_<name>``).
        """
        from procestra.models.bpmn import check_diagram, to_bpmn_xml

        for e in self.elements.values():
            if e.kind not in KINDS:
                raise ModelError(f"{e.label} has kind {e.kind!r}, which cannot be written", element=e.id)
        mirror = self.to_pm4py()
        for f in self.flows.values():
            if f.source not in self.elements or f.target not in self.elements:
                raise ModelError(f"flow {f.id!r} connects {f.source!r} and {f.target!r}, not both elements",
                                 element=f.id)
        xml = to_bpmn_xml(mirror, name=name or self.name, executable=True)
        parser = etree.XMLParser(remove_blank_text=True)
        root = etree.fromstring(xml.encode("utf-8"), parser)
        by_id = {el.get("id"): el for el in root.iter() if isinstance(el.tag, str) and el.get("id")}
        process = root.find(_B + "process")
        assert process is not None
        errors: list[etree._Element] = []
        rank = {k: i for i, k in enumerate([*self.elements, *self.flows])}
        for holder in [process, *(by_id[e.id] for e in self.elements.values() if e.kind == "subProcess")]:
            kids = [c for c in holder if c.get("id") in rank]  # keep the model's order in the file
            for c in kids:
                holder.remove(c)
            for c in sorted(kids, key=lambda c: rank[c.get("id")]):
                holder.append(c)
        for e in self.elements.values():
            node = by_id[e.id]
            node.tag = _B + e.kind
            _write_node(node, e, errors, called or {})
        _route_boundary_flows(root, self)
        for f in self.flows.values():
            node = by_id[f.id]
            if f.condition:
                cond = etree.SubElement(node, _B + "conditionExpression")
                cond.set(f"{{{XSI_NS}}}type", "bpmn:tFormalExpression")
                cond.text = f.condition
        ext = etree.Element(_B + "extensionElements")
        etree.SubElement(ext, _P + "model", format=str(FORMAT), name=name or self.name)
        if self.variables:
            holder = etree.SubElement(ext, _P + "caseData")
            for v in self.variables.values():
                node = etree.SubElement(holder, _P + "variable", name=v.name, type=v.type)
                if v.required:
                    node.set("required", "true")
                if v.allowed:
                    node.set("allowed", json.dumps(list(v.allowed)))
                if v.description:
                    node.set("description", v.description)
        process.insert(0, ext)
        for i, err in enumerate(errors):
            root.insert(i, err)
        etree.cleanup_namespaces(root, top_nsmap={"procestra": NS})
        out = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode("utf-8")
        problems = check_diagram(out)
        if problems:
            raise ModelError("the BPMN XML we wrote is inconsistent: " + "; ".join(problems[:5]))
        return out

    def _called_ids(self, ws: Home) -> dict[str, str]:
        """Process ids of the saved models the call activities name (those that exist)."""
        from procestra.models.repository import model_info

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
        from procestra.models.bpmn import bpmn_to_petri, write_pnml
        from procestra.models.repository import validate_model_name

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
        """Every problem that would keep the model from running as meant, errors first.

        Errors: no start event; an unbound service task; a condition that does not parse or is
        not allowed; a branch of an exclusive/inclusive gateway without condition that is not
        the default; a gateway without default whose conditions are not provably exhaustive
        (only ``x < 10`` / ``x >= 10``-style comparisons of one variable, ``c`` / ``not c``, and
        ``==``/``in`` over a variable's declared ``allowed`` values are proven); an unreachable
        element; an unknown variable (not declared and not an output of an upstream task); bad
        handler settings; timers that are no ISO 8601 duration; a task with several outgoing
        flows; a subprocess without exactly one start event; a call activity without a model
        (or, given ``ws``, naming an unknown one). Warnings: tasks that are neither bound nor
        human, dead ends, constant conditions, retries on unbound tasks, no end event.
        """
        return _Validator(self, ws).run()

    def _repr_html_(self) -> str:
        import html

        from procestra.errors import ProcestraError

        head = f"<p>to-be model <b>{html.escape(self.name)}</b>: {len(self.tasks())} activities</p>"
        try:
            from procestra.models.render import as_svg

            return head + as_svg(self.to_pm4py())
        except (ImportError, ProcestraError):
            return head


_NODE_TAGS = frozenset(KINDS) | frozenset(_READ_AS) | {"adHocSubProcess", "complexGateway"}
_DROPPED = {"laneSet": "lanes", "textAnnotation": "text annotations", "association": "associations",
            "dataObject": "data objects", "dataObjectReference": "data objects", "dataStoreReference": "data stores",
            "group": "groups", "property": "properties"}  # fmt: skip
_SKIP = {"extensionElements", "documentation", "incoming", "outgoing", "ioSpecification", "dataInputAssociation",
         "dataOutputAssociation", "sequenceFlow", "script", "multiInstanceLoopCharacteristics",
         "standardLoopCharacteristics", "conditionExpression", "auditing", "monitoring"}  # fmt: skip


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


class _Reader:
    """Fills a ToBeModel from a BPMN process element."""

    def __init__(self, model: ToBeModel, errors: Mapping[str, tuple[str | None, str | None]], idmap: Mapping[str, str],
                 source: str) -> None:  # fmt: skip
        self.model, self.errors, self.idmap, self.source = model, errors, idmap, source
        self.flow_nodes: list[tuple[etree._Element, str | None]] = []
        self.dropped: dict[str, int] = {}
        self.vendors: tuple[int, set[str]] = (0, set())

    def vendor(self, ext: etree._Element) -> None:
        spaces = [etree.QName(c).namespace or "" for c in ext
                  if isinstance(c.tag, str) and etree.QName(c).namespace != NS]
        if spaces:
            self.vendors = (self.vendors[0] + len(spaces), self.vendors[1] | set(spaces))

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
            elif local in _NODE_TAGS:
                eid = self.node(child, local, parent)
                if self.model.elements[eid].kind == "subProcess":
                    self.container(child, eid)
            elif local in _DROPPED:
                self.dropped[_DROPPED[local]] = self.dropped.get(_DROPPED[local], 0) + 1
            elif local not in _SKIP:
                self.dropped[local] = self.dropped.get(local, 0) + 1

    def node(self, x: etree._Element, local: str, parent: str | None) -> str:
        eid = self.rid(x.get("id"))
        if not eid:
            raise ModelError(f"a <{local}> has no id", path=self.source)
        event_sub = local == "subProcess" and x.get("triggeredByEvent") == "true"
        if local in ("adHocSubProcess", "complexGateway") or event_sub:
            what = {"adHocSubProcess": "ad-hoc subprocesses", "complexGateway": "complex gateways"}.get(
                local, "event subprocesses")
            raise ModelError(f"{what} are not supported (element {eid!r})", path=self.source, element=eid)
        kind = _READ_AS.get(local, local)
        if kind != local:
            self.model.notes.append(f"<{local}> {eid!r} was read as a {kind}")
        el = Element(eid, kind, " ".join((x.get("name") or "").split()), parent)
        doc = x.find(_B + "documentation")
        el.documentation = (doc.text or "").strip() if doc is not None else ""
        el.default = self.rid(x.get("default"))
        if kind == "boundaryEvent":
            el.attached_to = self.rid(x.get("attachedToRef"))
            el.interrupting = x.get("cancelActivity", "true").lower() != "false"
        for d in x:
            if isinstance(d.tag, str) and etree.QName(d).localname.endswith("EventDefinition"):
                kind_ = etree.QName(d).localname[: -len("EventDefinition")]
                if el.event is not None:
                    self.model.notes.append(f"{eid!r} has several event definitions; only the first ({el.event}) "
                                            "is kept")
                    continue
                el.event = kind_
                if kind_ == "timer":
                    for tag, tk in (("timeDuration", "duration"), ("timeDate", "date"), ("timeCycle", "cycle")):
                        t = d.find(_B + tag)
                        if t is not None:
                            el.timer, el.timer_kind = (t.text or "").strip(), tk
                elif kind_ == "error":
                    name, code = self.errors.get(d.get("errorRef") or "", (None, None))
                    el.error_code = code or name
        if kind == "scriptTask":
            script = x.find(_B + "script")
            el.script = script.text if script is not None and script.text else None
        if kind == "callActivity":
            el.called = x.get("calledElement")
        for ext in x.findall(_B + "extensionElements"):
            self.extensions(ext, el)
        if eid in self.model.elements:
            raise ModelError(f"the id {eid!r} is used twice", path=self.source, element=eid)
        self.model.elements[eid] = el
        return eid

    def extensions(self, ext: etree._Element, el: Element) -> None:
        self.vendor(ext)
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
                                tuple(_json_attr(f, "allowed", [])), f.get("label", ""), _json_attr(f, "default", None))
                          for f in node.findall(_P + "field")),
                    node.get("candidateGroup"), node.get("due")), local)  # fmt: skip
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
        for e in m.elements.values():
            if e.default is not None and e.default not in m.flows:
                m.notes.append(f"{e.id!r} named default flow {e.default!r}, which does not exist; dropped")
                e.default = None
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


def _write_node(node: etree._Element, e: Element, errors: list[etree._Element], called: Mapping[str, str]) -> None:
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
    if e.handler is not None:
        h = e.handler
        hn = etree.SubElement(ext, _P + "handler", kind=h.kind)
        if h.timeout is not None:
            hn.set("timeout", f"{h.timeout:g}")
        etree.SubElement(hn, _P + "config").text = json.dumps(dict(h.config), sort_keys=True)
        for k, v in h.inputs.items():
            etree.SubElement(hn, _P + "input", name=k, expression=v)
        for o in h.outputs:
            etree.SubElement(hn, _P + "output", name=o)
        for s in h.secrets:
            etree.SubElement(hn, _P + "secret", name=s)
    if e.retry is not None:
        r = e.retry
        etree.SubElement(ext, _P + "retry", maxAttempts=str(r.max_attempts), initialDelay=f"{r.initial:g}",
                         multiplier=f"{r.multiplier:g}", maxDelay=f"{r.max_delay:g}")  # fmt: skip
    if e.human is not None:
        hn = etree.SubElement(ext, _P + "humanTask")
        if e.human.candidate_group:
            hn.set("candidateGroup", e.human.candidate_group)
        if e.human.due:
            hn.set("due", e.human.due)
        for f in e.human.fields:
            fn = etree.SubElement(hn, _P + "field", name=f.name, type=f.type,
                                  required="true" if f.required else "false")
            if f.label:
                fn.set("label", f.label)
            if f.allowed:
                fn.set("allowed", json.dumps(list(f.allowed)))
            if f.default is not None:
                fn.set("default", json.dumps(f.default))
    if e.kind == "callActivity" and e.called:
        ref, _, version = e.called.partition("@")
        call = etree.SubElement(ext, _P + "call", model=ref)
        if version:
            call.set("version", version)
        node.set("calledElement", called.get(e.called, "Process_" + (_slug(ref) or "1")))
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
    if e.kind not in GATEWAYS and "gatewayDirection" in node.attrib:
        del node.attrib["gatewayDirection"]


def _route_boundary_flows(root: etree._Element, model: ToBeModel) -> None:
    """Draw each flow leaving a boundary event down, across, and into the near side of its target."""
    from procestra.models.bpmn import BPMNDI_NS, DC_NS, DI_NS

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


def _save_version(ws: Home, name: str, xml: str, meta: dict[str, Any], extra: Any) -> ModelInfo:
    """Write a new version directory with :func:`procestra.models._write_version` (atomic rename under lock)."""
    from procestra.models.repository import write_version
    from procestra.version import __version__

    full = {"name": name, "version": None, "created": None, "source_log": None, "filter": None, "miner": None,
            "params": {}, "quality": {}, **meta, "files": [], "procestra_version": __version__}  # fmt: skip

    def write(tmp: Path) -> None:
        (tmp / "model.bpmn").write_text(xml, encoding="utf-8")
        extra(tmp)

    return write_version(ws, name, full, write)


def validate_model(source: Any, *, ws: Home | None = None) -> list[Problem]:
    """:meth:`ToBeModel.validate` of a ``.bpmn`` file, a saved model name or a model (for the CLI)."""
    return ToBeModel.load(source, ws=ws).validate(ws=ws)


# -- validation ---------------------------------------------------------------------------------------
#: Element ids SpiffWorkflow gives its own task specs: a model element with one of them vanishes.
_RESERVED_IDS = frozenset({"Start", "End", "Root"})


class _Validator:
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
        self.gateways()
        self.reachability()
        self.variables()
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
                self.add("error", "boundary-without-path", e, "it leads nowhere: connect it to the fallback or "
                                                              "escalation path")  # fmt: skip
        if e.kind not in GATEWAYS and e.kind != "boundaryEvent" and len(outs) > 1:
            self.add("error", "multiple-outgoing", e, f"it has {len(outs)} outgoing flows; split with a parallel or "
                                                      "exclusive gateway instead")  # fmt: skip
        if e.kind not in ("endEvent", "boundaryEvent") and not outs and e.kind != "startEvent":
            self.add("warning", "dead-end", e, "no outgoing flow: the branch ends here without an end event")
        if e.kind == "serviceTask" and e.handler is None:
            self.add("error", "unbound-service-task", e, "the service task has no handler: bind one with "
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
        if e.event in ("message", "signal", "escalation", "conditional", "compensate", "link", "cancel"):
            self.add("warning", "unsupported-event", e, f"{e.event} events need a sender the engine does not provide")
        if e.kind == "subProcess":
            starts = [c for c in self.m.elements.values() if c.parent == e.id and c.kind == "startEvent"]
            if len(starts) != 1:
                self.add("error", "subprocess-start", e, f"a subprocess needs exactly one start event inside, it has "
                                                         f"{len(starts)}")  # fmt: skip
        if e.kind == "callActivity":
            self.call(e)

    def timer(self, e: Element) -> None:
        text = e.timer or ""
        if not text:
            self.add("error", "bad-timer", e, "the timer has no duration, date or cycle")
        elif is_iso_literal(text):
            if e.timer_kind == "duration" and _duration_seconds(text) is None:
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
        if self.ws is not None:
            from procestra.errors import ModelNotFoundError
            from procestra.models.repository import model_info

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
                    self.add("error", "no-default", e, "no default flow, and the conditions "
                             + "; ".join(repr(c) for c in conds) + " are not provably exhaustive: a case matching "
                             "none would stop here; add a default with set_default()")  # fmt: skip

    def reachability(self) -> None:
        m = self.m
        succ: dict[str, set[str]] = {e: set() for e in m.elements}
        for f in m.flows.values():
            succ[f.source].add(f.target)
        for e in m.elements.values():
            if e.attached_to in succ:
                succ[e.attached_to].add(e.id)
            if e.parent in succ and e.kind == "startEvent":
                succ[e.parent].add(e.id)
        seen: set[str] = set()
        stack = [e.id for e in m.elements.values() if e.kind == "startEvent" and e.parent is None]
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
        for f in m.flows.values():
            pred[f.target].add(f.source)
        for e in m.elements.values():
            if e.attached_to in pred:  # a boundary path starts where its host started
                pred[e.id] |= pred[e.attached_to]
            if e.kind == "startEvent" and e.parent in pred:  # a subprocess starts where it is entered
                pred[e.id] |= pred[e.parent]
        outputs = {e.id: set(e.outputs()) for e in m.elements.values()}
        for e in m.elements.values():  # a subprocess produces what its content produces
            p = e.parent
            while p is not None and p in outputs:
                outputs[p] |= outputs[e.id]
                p = m.elements[p].parent
        declared = set(m.variables)
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
                        for v in compile_expression(f.condition).variables:
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
            if e.timer and not is_iso_literal(e.timer):
                try:
                    for v in compile_expression(e.timer, what="timer").variables:
                        used.setdefault(v, "the timer")
                except ConditionError:
                    pass
            if not used:
                continue
            available = set(declared)
            for a in ancestors(e.id):
                available |= outputs.get(a, set())
            for v, where in sorted(used.items()):
                if v not in available:
                    self.add("error", "unknown-variable", e, f"{where} uses {v!r}, which is neither declared case data "
                             f"(model.declare({v!r}, ...)) nor an output of a task before it")  # fmt: skip


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
    try:
        trees = [ast.parse(c.strip(), mode="eval").body for c in conditions]
    except SyntaxError:
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
