"""What a to-be model is made of: elements and flows, retries, forms and the declared case data.

:class:`~procestra.engine.tobe.ToBeModel` holds these; :mod:`procestra.engine.tobe_bpmn`
reads and writes them as executable BPMN, :mod:`procestra.engine.validate` checks them and
the runtime runs them. Every value type checks itself when made (:class:`InvalidArgumentError`
names the parameter).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from procestra.engine.connectors import Handler
from procestra.engine.exceptions import ConditionError, FormError
from procestra.engine.sandbox import compile_script
from procestra.errors import InvalidArgumentError

__all__ = [
    "ACTIVITIES",
    "EVENTS",
    "EVENT_TYPES",
    "FIELD_TYPES",
    "GATEWAYS",
    "ID",
    "KINDS",
    "TASKS",
    "VARIABLE_TYPES",
    "apply_answers",
    "Element",
    "Field",
    "Flow",
    "FormField",
    "HumanTask",
    "LOOP_KINDS",
    "Loop",
    "RemoveReport",
    "Retry",
    "Variable",
    "duration_seconds",
    "set_spiff",
    "slug",
    "undo_on_error",
]

#: What an element or flow id may be (an XML NCName, without ':').
ID = re.compile(r"^[A-Za-z_][\w.\-]*$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A form field's name: an identifier, or a dotted path of them into nested case data (``person.dog_friendly``).
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

TASKS = ("task", "serviceTask", "userTask", "scriptTask", "manualTask", "sendTask", "receiveTask")
ACTIVITIES = (*TASKS, "subProcess", "callActivity")
GATEWAYS = ("exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway")
EVENTS = ("startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent")
KINDS = (*ACTIVITIES, *GATEWAYS, *EVENTS)
EVENT_TYPES = ("timer", "error", "message", "signal", "terminate", "escalation", "conditional", "cancel",
               "compensate", "link")  # fmt: skip
VARIABLE_TYPES = ("any", "string", "number", "integer", "boolean", "date", "object", "list")
FIELD_TYPES = ("string", "text", "number", "integer", "boolean", "date", "enum")
LOOP_KINDS = ("parallel", "sequential", "standard")

def duration_seconds(text: str) -> float | None:
    """Seconds of an ISO 8601 duration (weeks, days, hours, minutes, seconds), or None if it is not one."""
    m = re.fullmatch(r"P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                     r"(?:(\d+(?:\.\d+)?)S)?)?", text.strip().upper())  # fmt: skip
    if not m or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        return None
    w, d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return (((w * 7 + d) * 24 + h) * 60 + mi) * 60 + s


def _check_duration(value: str | None, parameter: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or duration_seconds(value) is None:
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
    """One field of a human task's form.

    A dotted ``name`` (``person.dog_friendly``) is a path: the answer, given under that name, sets the
    key inside the nested case data (:func:`apply_answers`). An enum without ``allowed`` values takes no
    answer (as Camunda 7 accepts none), so it cannot be required.
    """

    name: str
    type: str = "string"
    required: bool = True
    allowed: tuple[Any, ...] = ()
    label: str = ""
    default: Any = None
    #: Bounds of a number (``minimum``/``maximum``) or of a text's length (``min_length``/``max_length``).
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PATH.match(self.name):
            raise InvalidArgumentError(f"form field name {self.name!r} must be an identifier, or identifiers "
                                       "joined by dots (a path into nested data)", parameter="name")  # fmt: skip
        for bound in ("minimum", "maximum", "min_length", "max_length"):
            v = getattr(self, bound)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise InvalidArgumentError(f"form field {self.name!r}: {bound} must be a number, not {v!r}",
                                           parameter=bound)
        if self.type not in FIELD_TYPES:
            raise InvalidArgumentError(f"form field {self.name!r}: type {self.type!r} is not one of "
                                       f"{', '.join(FIELD_TYPES)}", parameter="type")  # fmt: skip
        object.__setattr__(self, "allowed", tuple(self.allowed))
        if self.type == "enum" and not self.allowed and self.required:
            raise InvalidArgumentError(f"form field {self.name!r} is a required enum without values, so no answer "
                                       "could complete the task: give its allowed values", parameter="allowed")

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
        if t == "enum" and not self.allowed:
            raise ValueError("the enum has no values, so it takes no answer: leave it empty")
        if self.allowed and value not in self.allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, self.allowed))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{value!r} is less than the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{value!r} is more than the maximum {self.maximum:g}")
        if isinstance(value, str):
            if self.min_length is not None and len(value) < self.min_length:
                raise ValueError(f"{value!r} is shorter than {self.min_length:g} characters")
            if self.max_length is not None and len(value) > self.max_length:
                raise ValueError(f"{value!r} is longer than {self.max_length:g} characters")
        return value


def apply_answers(data: dict[str, Any], answers: Mapping[str, Any], *, task: str | None = None) -> None:
    """Put a completed form's ``answers`` into ``data``: a dotted name (``person.dog_friendly``) sets the key inside
    nested objects, made on the way and copied (as SpiffWorkflow's Camunda forms did); other keys as they are."""
    for key, value in answers.items():
        *path, last = key.split(".")
        here = data
        for i, part in enumerate(path):
            inner = here.get(part)
            if inner is not None and not isinstance(inner, Mapping):
                raise FormError({key: f"{'.'.join(path[: i + 1])!r} is a {type(inner).__name__} in the case data, "
                                      "not an object, so it has no keys to set"}, task=task)  # fmt: skip
            here[part] = dict(inner or {})  # a copy: whatever else holds the old object keeps it
            here = here[part]
        here[last] = value


#: The earlier name of :class:`FormField`, kept for code written against it.
Field = FormField


@dataclass(frozen=True)
class HumanTask:
    """A user task's form, who may claim it, and when it is due (ISO 8601 duration).

    A task without fields takes any JSON object on completion; its keys become case data.
    ``assignee`` is the person the task is for, ``form_key`` the form another tool shows for it
    (Camunda's ``formKey``), kept and shown, not rendered.
    """

    fields: tuple[FormField, ...] = ()
    candidate_group: str | None = None
    due: str | None = None
    assignee: str | None = None
    form_key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "due", _check_duration(self.due, "due"))
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgumentError(f"form fields {', '.join(dupes)} appear twice", parameter="form")

    @property
    def due_seconds(self) -> float | None:
        return duration_seconds(self.due) if self.due else None

    def check(self, data: Mapping[str, Any], *, task: str | None = None) -> dict[str, Any]:
        """The submitted ``data`` coerced to the form (defaults filled); :class:`FormError` lists what is wrong."""
        if not isinstance(data, Mapping):
            raise FormError({"(data)": f"expected an object of field values, got {type(data).__name__}"}, task=task)
        if not self.fields:  # no form: any object, its keys become case data
            bad = {str(k): "a key of the case data must be an identifier" for k in data
                   if not isinstance(k, str) or not _VAR.match(k)}  # fmt: skip
            if bad:
                raise FormError(bad, task=task)
            return dict(data)
        problems: dict[str, str] = {}
        out: dict[str, Any] = {}
        known = {f.name for f in self.fields}
        for key in data:
            if key not in known:
                problems[str(key)] = f"not a field of this form (fields: {', '.join(sorted(known)) or 'none'})"
        for f in self.fields:
            blank = data.get(f.name) == "" and (f.required or f.type not in ("string", "text"))  # an empty text box: not given
            if f.name not in data or data[f.name] is None or blank:
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


@dataclass(frozen=True)
class Loop:
    """An activity's loop as drawn: multi-instance (``parallel``/``sequential``) or a ``standard`` loop.

    Multi-instance runs ``cardinality`` times, or once per item of ``collection`` (the item in
    ``element_variable``), collecting ``output_element`` of each into ``output_collection``, until
    ``completion_condition``. ``vendor`` names vendor attributes that gave collection or element variable
    and are not run ("zeebe"; "camunda" for a ``camunda:collection`` without ``camunda:elementVariable``,
    other Camunda loops are read as standard BPMN), "" for standard BPMN. A
    standard loop repeats while ``condition`` holds, at most ``maximum`` times, testing first with
    ``test_before``.
    """

    kind: str
    cardinality: str | None = None
    collection: str | None = None
    element_variable: str | None = None
    output_collection: str | None = None
    output_element: str | None = None
    completion_condition: str | None = None
    condition: str | None = None
    maximum: int | None = None
    test_before: bool = False
    vendor: str = ""

    def __post_init__(self) -> None:
        if self.kind not in LOOP_KINDS:
            raise InvalidArgumentError(f"loop kind {self.kind!r} is not one of {', '.join(LOOP_KINDS)}",
                                       parameter="kind")

    def __str__(self) -> str:
        if self.kind == "standard":
            parts = [f"while {self.condition!r}" if self.condition else "",
                     f"at most {self.maximum} times" if self.maximum is not None else "",
                     "tested before each pass" if self.test_before else ""]
            return "standard loop " + ", ".join(p for p in parts if p)
        how = f"{self.cardinality!r} times" if self.cardinality else f"over {self.collection!r}"
        item = f" as {self.element_variable!r}" if self.element_variable else ""
        out = f", collecting {self.output_element or 'each result'!r} into {self.output_collection!r}" \
            if self.output_collection else ""
        until = f", until {self.completion_condition!r}" if self.completion_condition else ""
        via = f" ({self.vendor} attributes)" if self.vendor else ""
        return f"{self.kind} multi-instance, {how}{item}{out}{until}{via}"


_UNDO: contextvars.ContextVar[dict[int, tuple[Any, dict[str, Any]]] | None] = contextvars.ContextVar(
    "procestra_undo", default=None)


class _Undoable:
    """Elements and flows note their attributes before the first change inside :func:`undo_on_error`."""

    def __setattr__(self, name: str, value: Any) -> None:
        log = _UNDO.get()
        if log is not None and name in self.__dict__ and id(self) not in log:
            log[id(self)] = (self, dict(self.__dict__))
        object.__setattr__(self, name, value)


@contextlib.contextmanager
def undo_on_error(model: Any) -> Iterator[None]:
    """An edit of ``model`` (its ``elements``, ``flows``, ``variables``) that raises leaves it as it was.

    Copies the three dicts (not their elements: a deep copy per edit made building a model quadratic,
    50 s for 1,000 tasks) and the attributes of each element or flow the edit changes, when it first
    changes them; an edit inside another is the outer one's."""
    if _UNDO.get() is not None:
        yield
        return
    log: dict[int, tuple[Any, dict[str, Any]]] = {}
    saved = (dict(model.elements), dict(model.flows), dict(model.variables))
    token = _UNDO.set(log)
    try:
        yield
    except BaseException:
        model.elements, model.flows, model.variables = saved
        for obj, attrs in log.values():
            obj.__dict__.clear()
            obj.__dict__.update(attrs)
        raise
    finally:
        _UNDO.reset(token)


@dataclass
class Element(_Undoable):
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
    #: Activities: multi-instance or standard loop, as drawn.
    loop: Loop | None = None
    #: Subprocesses: a transaction (with cancel), or an event subprocess (started by its start event).
    transaction: bool = False
    triggered_by_event: bool = False
    #: Conditional events: the condition; message, signal and escalation events: the name they refer to.
    condition: str | None = None
    event_ref: str | None = None
    #: What the engine cannot run exactly, as read from the file: validation names each as an error.
    unsupported: tuple[str, ...] = ()
    #: Bindings another tool gave a service task (``camunda:topic`` ...), to be made with :meth:`bind`.
    vendor_binding: str | None = None
    #: Tasks: scripts (sandbox syntax) run when the task becomes ready and when it completes (SpiffWorkflow's
    #: ``preScript``/``postScript``); on a multi-instance or loop task, once around all its instances.
    pre_script: str | None = None
    post_script: str | None = None
    #: Message, signal, error and escalation throws (and send tasks): an expression whose value is the payload
    #: sent (instead of a copy of the data). Catches (and receive tasks): the variable the payload caught is
    #: stored under (instead of merged into the data).
    payload: str | None = None
    payload_variable: str | None = None
    #: Message catches and receive tasks: SpiffWorkflow process correlations, ``(property, expression)``: the
    #: values (from the case data) a message's correlation properties must have to be caught.
    correlations: tuple[tuple[str, str], ...] = ()

    #: What the engine reads from the file as SpiffWorkflow runs it, not as the drawing may look: validation warns.
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.unsupported, self.warnings = tuple(self.unsupported), tuple(self.warnings)
        self.correlations = tuple((str(p), str(x)) for p, x in self.correlations)  # from_dict gives lists

    @property
    def label(self) -> str:
        return f"{self.id} {self.name!r}" if self.name else self.id

    def describe(self) -> list[str]:
        """What the element does beyond its kind, in words (for ``model show``): loop, event, form, binding."""
        out: list[str] = []
        if self.transaction:
            out.append("transaction")
        if self.triggered_by_event:
            out.append("event subprocess")
        if self.loop is not None:
            out.append(str(self.loop))
        if self.event:
            what = f"{self.event} event"
            if self.event == "timer" and self.timer:
                what += f" ({self.timer_kind} {self.timer})"
            elif self.event == "conditional":
                what += f" (when {self.condition!r})"
            elif self.event_ref:
                what += f" {self.event_ref!r}"
            if self.error_code and self.event in ("error", "escalation"):
                what += f" code {self.error_code!r}"
            out.append(what + ("" if self.interrupting else ", non-interrupting"))
        if self.human is not None:
            h = self.human
            who = ", ".join(x for x in (f"group {h.candidate_group!r}" if h.candidate_group else "",
                                        f"assignee {h.assignee!r}" if h.assignee else "",
                                        f"form key {h.form_key!r}" if h.form_key else "") if x)  # fmt: skip
            fields = ", ".join(f.name for f in h.fields) or "none: takes any data"
            out.append(f"human task ({who})" if who else "human task")
            out.append(f"form fields: {fields}")
        if self.handler is not None:
            out.append(f"{self.handler.kind} handler")
        elif self.vendor_binding:
            out.append(f"to bind (the file has {self.vendor_binding})")
        if self.called:
            out.append(f"calls {self.called!r}")
        out += [f"{what}: {text!r}" for what, text in (
            ("pre-script", self.pre_script), ("post-script", self.post_script), ("sends the payload", self.payload),
            ("stores the payload caught in", self.payload_variable)) if text]  # fmt: skip
        out += [f"correlates {p} = {x!r}" for p, x in self.correlations]
        out += [f"not run: {u}" for u in self.unsupported]
        out += [f"note: {w}" for w in self.warnings]
        return out

    def outputs(self) -> frozenset[str]:
        """Variables this element adds to the case data when it completes."""
        out: set[str] = set()
        if self.handler is not None:
            out |= set(self.handler.outputs)
        if self.human is not None:
            out |= {f.name.partition(".")[0] for f in self.human.fields}
        for script in (self.script, self.pre_script, self.post_script):
            try:
                out |= compile_script(script).assigned if script else set()
            except ConditionError:
                pass
        if self.payload_variable:
            out.add(self.payload_variable)
        if self.loop is not None and self.loop.output_collection:
            out.add(self.loop.output_collection)
        return frozenset(out)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("handler", "retry", "human", "loop")}
        d["unsupported"], d["warnings"] = list(self.unsupported), list(self.warnings)
        d["correlations"] = [list(c) for c in self.correlations]
        d["loop"] = asdict(self.loop) if self.loop else None
        d["handler"] = self.handler.to_dict() if self.handler else None
        d["retry"] = self.retry.to_dict() if self.retry else None
        d["human"] = None if self.human is None else {
            "fields": [asdict(f) | {"allowed": list(f.allowed)} for f in self.human.fields],
            "candidate_group": self.human.candidate_group, "due": self.human.due, "assignee": self.human.assignee,
            "form_key": self.human.form_key}  # fmt: skip
        return d


@dataclass
class Flow(_Undoable):
    """A sequence flow, with its condition (sandbox syntax) if any."""

    id: str
    source: str
    target: str
    name: str = ""
    condition: str | None = None


@dataclass(frozen=True)
class RemoveReport:
    """What :meth:`ToBeModel.remove` did: removed ids, new flows, and what was left disconnected."""

    removed: tuple[str, ...]
    reconnected: tuple[tuple[str, str], ...]
    broken: tuple[str, ...]


#: The SpiffWorkflow extensions of an element (see :class:`Element`), settable with :func:`set_spiff`.
SPIFF_FIELDS = ("pre_script", "post_script", "payload", "payload_variable", "correlations")


def set_spiff(el: Element, fields: Mapping[str, Any]) -> Element:
    """Set ``el``'s SpiffWorkflow extensions (:data:`SPIFF_FIELDS`; None removes one), each checked as it is made:
    scripts and expressions in sandbox syntax, the variable an identifier. Validation checks where they belong."""
    for key, value in fields.items():
        if key not in SPIFF_FIELDS:
            raise InvalidArgumentError(f"{key!r} is not one of {', '.join(SPIFF_FIELDS)}", parameter=key)
        if key == "correlations":
            value = tuple((str(p), str(x)) for p, x in (value or ()))
            for _, x in value:
                compile_script(x)
        elif value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidArgumentError(f"{key} must be text, not {value!r}", parameter=key)
        elif value is not None and key == "payload_variable" and not _VAR.match(value):
            raise InvalidArgumentError(f"payload_variable {value!r} must be an identifier", parameter=key)
        elif value is not None and key != "payload_variable":
            compile_script(value)
        setattr(el, key, value)
    return el


def slug(text: str) -> str:
    """``text`` as a short ASCII identifier part: "Credit check" -> "credit_check"."""
    ascii_ = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "_", ascii_).strip("_").lower()[:40]
