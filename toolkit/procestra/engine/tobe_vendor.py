"""What other tools write into BPMN, read for a to-be model: Camunda 7, Zeebe (Camunda 8) and SpiffWorkflow.

:func:`~procestra.engine.tobe_bpmn.read_xml` calls these for each flow node. What they read
becomes part of the element model, and the file keeps it exactly:

- human tasks (:func:`read_human`): ``camunda:formData``/``formField`` (types string, long,
  boolean, date, enum with its values; ``defaultValue``; ``required``, ``min``, ``max``,
  ``minlength``, ``maxlength`` and ``readonly`` constraints), ``camunda:assignee``,
  ``camunda:candidateGroups`` and ``camunda:formKey``, and Zeebe's ``assignmentDefinition`` and
  ``formDefinition``;
- service task bindings another engine would make (:func:`read_binding`): external task
  topics, Java classes, expressions, delegate expressions, connectors and Zeebe job types.
  They are reported, to be made with ``ToBeModel.bind``;
- loops (:func:`read_loop`): multi-instance and standard loop characteristics; Camunda's
  ``camunda:collection``/``camunda:elementVariable`` as SpiffWorkflow's CamundaParser reads them,
  saved as the standard BPMN they mean;
- what the engine would not run (:func:`unsupported`): listeners, input/output and call
  mappings, script result variables. Validation names each of them as an error;
- SpiffWorkflow's own extensions the engine runs (:func:`read_spiff`): pre-/post-scripts, event
  payload expressions and variables, process correlations.
"""

from __future__ import annotations

import re

from lxml import etree

from procestra.engine.elements import Element, FormField, HumanTask, Loop
from procestra.errors import UserError
from procestra.models.bpmn import BPMN_NS

__all__ = ["CAMUNDA_NS", "PYTHON_FORMATS", "SPIFF_NS", "ZEEBE_NS", "camunda_loop", "item_payloads",
           "loop_warnings", "names_language", "payload_extensions", "read_binding", "read_human", "read_loop",
           "read_spiff", "unsupported", "write_spiff"]

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
ZEEBE_NS = "http://camunda.org/schema/zeebe/1.0"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
_B = f"{{{BPMN_NS}}}"
_C = f"{{{CAMUNDA_NS}}}"
_Z = f"{{{ZEEBE_NS}}}"
_S = f"{{{SPIFF_NS}}}"
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")  # person.dog_friendly
#: Camunda form field types and ours.
_FIELD_TYPES = {"string": "string", "long": "integer", "boolean": "boolean", "date": "date", "enum": "enum",
                "textarea": "text"}


def _ext(x: etree._Element, tag: str) -> list[etree._Element]:
    """The ``tag`` elements in ``x``'s extension elements, at any depth."""
    return [n for ext in x.findall(_B + "extensionElements") for n in ext.iter(tag)]


def read_human(x: etree._Element, problems: list[str], warnings: list[str] | None = None) -> HumanTask | None:
    """A user task's form and assignment as Camunda or Zeebe wrote them, or None if neither did.

    What cannot be read exactly is appended to ``problems`` (the field is left out); what is read as
    SpiffWorkflow runs it but the drawing may mean otherwise, to ``warnings``.
    """
    fields: list[FormField] = []
    for f in _ext(x, _C + "formField"):
        field = _form_field(f, problems, warnings if warnings is not None else [])
        if field is not None:
            fields.append(field)
    assign = next(iter(_ext(x, _Z + "assignmentDefinition")), None)
    form = next(iter(_ext(x, _Z + "formDefinition")), None)
    assignee = x.get(_C + "assignee") or (assign.get("assignee") if assign is not None else None)
    group = x.get(_C + "candidateGroups") or (assign.get("candidateGroups") if assign is not None else None)
    form_key = x.get(_C + "formKey") or (form.get("formKey") or form.get("formId") if form is not None else None)
    if form_key and form_key.startswith("camunda-forms:bpmn:"):  # a Camunda Form embedded in the process
        fields += _zeebe_form(x, form_key.rpartition(":")[2], problems)
    if not fields and not assignee and not group and not form_key and not _ext(x, _C + "formData"):
        return None
    for who, value in (("assignee", assignee), ("candidate group", group)):
        if value and ("${" in value or "#{" in value or value.startswith("=")):
            problems.append(f"the {who} {value!r} is an expression, which the engine does not evaluate")
    if group and "," in group:
        problems.append(f"the candidate groups {group!r} are several; the inbox offers a task to one group")
    return HumanTask(tuple(fields), group or None, None, assignee or None, form_key or None)


#: Camunda Forms (Zeebe) input components and our field types; other components only show text.
_ZEEBE_TYPES = {"textfield": "string", "textarea": "text", "number": "number", "checkbox": "boolean",
                "select": "enum", "radio": "enum", "datetime": "date"}  # fmt: skip
_ZEEBE_DISPLAY = frozenset({"text", "button", "separator", "spacer", "image", "html", "group", "iframe"})


def _zeebe_form(x: etree._Element, form_id: str, problems: list[str]) -> list[FormField]:
    """The fields of the Camunda Form ``form_id`` (``zeebe:userTaskForm`` JSON in the process)."""
    import json

    proc = next((a for a in x.iterancestors() if a.tag == _B + "process"), None)
    node = next((n for n in (_ext(proc, _Z + "userTaskForm") if proc is not None else ()) if n.get("id") == form_id),
                None)  # fmt: skip
    if node is None:
        problems.append(f"the Camunda Form {form_id!r} is not in the file")
        return []
    try:
        components = json.loads(node.text or "{}").get("components", [])
    except (ValueError, AttributeError):
        problems.append(f"the Camunda Form {form_id!r} is not a JSON form")
        return []
    out = []
    for c in components:
        kind, key = c.get("type"), c.get("key")
        if kind in _ZEEBE_DISPLAY:
            continue
        if kind not in _ZEEBE_TYPES or not isinstance(key, str) or not _VAR.match(key):
            problems.append(f"form component {key or kind!r} ({kind}) is not a field the engine checks")
            continue
        check = c.get("validate") or {}
        bounds = {k: check[src] for k, src in (("minimum", "min"), ("maximum", "max"), ("min_length", "minLength"),
                                                ("max_length", "maxLength")) if isinstance(check.get(src), (int, float))}
        allowed = tuple(v.get("value") for v in c.get("values", []) if isinstance(v, dict))
        if _ZEEBE_TYPES[kind] == "enum" and not allowed:  # options from data (valuesKey), or none
            problems.append(f"form component {key!r} ({kind}) has no fixed values; the engine checks a fixed list")
            continue
        try:
            out.append(FormField(key, _ZEEBE_TYPES[kind], bool(check.get("required")), allowed, c.get("label", ""),
                                 c.get("defaultValue"), **bounds))  # fmt: skip
        except UserError as exc:
            problems.append(f"form component {key!r}: {exc}")
    return out


def _form_field(f: etree._Element, problems: list[str], warnings: list[str]) -> FormField | None:
    fid, ftype = f.get("id", ""), f.get("type") or "string"
    where = f"form field {fid!r}"
    if not _PATH.match(fid):
        problems.append(f"{where}: the id is not an identifier (or identifiers joined by dots, a path into nested "
                        "data), so it cannot be a key of the case data")  # fmt: skip
        return None
    if f.get("type") == "":
        warnings.append(f"{where} has an empty type (a custom type left blank), so it is read as a string field")
    if ftype not in _FIELD_TYPES:
        problems.append(f"{where}: type {ftype!r} is not one the engine checks (string, long, boolean, date, enum, textarea)")
        return None
    kind = _FIELD_TYPES[ftype]
    allowed = tuple(v.get("id") for v in f.iter(_C + "value") if v.get("id") is not None)
    bounds: dict[str, float | int] = {}
    required = False
    for c in f.iter(_C + "constraint"):
        name, config = c.get("name", ""), c.get("config")
        if name == "required":
            required = True
        elif name == "readonly":
            continue
        elif name in ("min", "max", "minlength", "maxlength"):
            try:
                value = float(config or "")
            except ValueError:
                problems.append(f"{where}: constraint {name} has config {config!r}, not a number")
                continue
            key = {"min": "minimum", "max": "maximum", "minlength": "min_length", "maxlength": "max_length"}[name]
            bounds[key] = int(value) if key.endswith("length") else value
        else:
            problems.append(f"{where}: the validation constraint {name!r} is not one the engine checks")
    raw = f.get("defaultValue")
    default: object = raw
    if raw is not None and ("${" in raw or "#{" in raw):
        problems.append(f"{where}: the default {raw!r} is an expression, which the engine does not evaluate")
        default = None
    elif raw is not None and kind in ("integer", "boolean"):
        default = int(raw) if kind == "integer" and re.fullmatch(r"-?\d+", raw.strip()) else \
            {"true": True, "false": False}.get(raw.strip().lower()) if kind == "boolean" else None
        if default is None:  # SpiffWorkflow ignores defaults: unanswered, the field sets nothing
            warnings.append(f"{where}: the default {raw!r} is not a {ftype} (true/false or a whole number), so the "
                            "field has no default: left unanswered, it sets nothing")
    if kind == "enum" and not allowed and not required:
        warnings.append(f"{where} is an enum without values, so it takes no answer (as Camunda 7 accepts none) and "
                        "sets nothing")  # fmt: skip
    try:
        return FormField(fid, kind, required, allowed, f.get("label", ""), default, **bounds)  # type: ignore[arg-type]
    except UserError as exc:
        problems.append(f"{where}: {exc}")
        return None


def read_binding(x: etree._Element) -> str | None:
    """The binding another engine gives service task ``x`` ("external topic 'x'", ...), or None."""
    if x.get(_C + "type") == "external":
        return f"external topic {x.get(_C + 'topic') or '?'!r}"
    for attr, what in (("class", "Java class"), ("delegateExpression", "delegate expression"),
                       ("expression", "expression")):  # fmt: skip
        if x.get(_C + attr):
            return f"{what} {x.get(_C + attr)!r}"
    connector = next(iter(_ext(x, _C + "connectorId")), None)
    if connector is not None:
        return f"connector {(connector.text or '').strip()!r}"
    job = next(iter(_ext(x, _Z + "taskDefinition")), None)
    if job is not None:
        return f"Zeebe job type {job.get('type') or '?'!r}"
    op = next(iter(_ext(x, _S + "serviceTaskOperator")), None)
    if op is not None:
        return f"SpiffWorkflow operator {op.get('id') or '?'!r}"
    return None


def read_loop(x: etree._Element) -> Loop | None:
    """Activity ``x``'s multi-instance or standard loop characteristics as drawn, or None."""
    std = x.find(_B + "standardLoopCharacteristics")
    if std is not None:
        cond = std.find(_B + "loopCondition")
        maximum = std.get("loopMaximum")
        return Loop("standard", condition=_text(cond), maximum=int(maximum) if maximum and maximum.isdigit() else None,
                    test_before=std.get("testBefore", "false") == "true")  # fmt: skip
    mi = x.find(_B + "multiInstanceLoopCharacteristics")
    if mi is None:
        return None
    if camunda_loop(mi):
        return _camunda_loop(mi)
    collection, element = _text(mi.find(_B + "loopDataInputRef")), None
    item = mi.find(_B + "inputDataItem")
    if item is not None:
        element = item.get("id") or item.get("name")  # the id is the variable (SpiffWorkflow), the name a label
    out_item = mi.find(_B + "outputDataItem")
    vendor = ""  # set when a vendor attribute stands in for standard BPMN (which the engine reads)
    zeebe = next(iter(_ext(mi, _Z + "loopCharacteristics")), None)
    for who, coll, elem in (("camunda", mi.get(_C + "collection"), mi.get(_C + "elementVariable")),
                            ("zeebe", *((zeebe.get("inputCollection"), zeebe.get("inputElement")) if zeebe is not None
                                        else (None, None)))):  # fmt: skip
        if (coll and not collection) or (elem and not element):
            collection, element, vendor = collection or coll, element or elem, who
    return Loop("sequential" if mi.get("isSequential") == "true" else "parallel",
                cardinality=_text(mi.find(_B + "loopCardinality")), collection=collection, element_variable=element,
                output_collection=_text(mi.find(_B + "loopDataOutputRef")) or (zeebe.get("outputCollection") if
                                                                              zeebe is not None else None),
                output_element=(out_item.get("id") or out_item.get("name")) if out_item is not None else None,
                completion_condition=_text(mi.find(_B + "completionCondition")), vendor=vendor)  # fmt: skip


_STANDARD_DATA = ("loopDataInputRef", "inputDataItem", "loopDataOutputRef", "outputDataItem")


def camunda_loop(mi: etree._Element) -> bool:
    """Whether multi-instance characteristics ``mi`` give their data only as Camunda attributes (read as
    SpiffWorkflow's CamundaParser reads them, then written as standard BPMN)."""
    camunda = mi.get(_C + "collection") is not None or mi.get(_C + "elementVariable") is not None
    return camunda and not any(mi.find(_B + tag) is not None for tag in _STANDARD_DATA)


def _camunda_loop(mi: etree._Element) -> Loop:
    """SpiffWorkflow's CamundaParser reading of ``camunda:collection``/``camunda:elementVariable``, as standard parts.

    With a loopCardinality, each instance gets its index in the element variable, whose final value is
    collected into the collection; without one, the collection is both input and output: each instance gets
    its item in the element variable and its final value replaces that item (the collection updated in place).
    """
    collection, element = mi.get(_C + "collection") or None, mi.get(_C + "elementVariable") or None
    cardinality = _text(mi.find(_B + "loopCardinality"))
    return Loop("sequential" if mi.get("isSequential") == "true" else "parallel", cardinality=cardinality,
                collection=None if cardinality else collection, element_variable=element,
                output_collection=collection, output_element=element if collection else None,
                completion_condition=_text(mi.find(_B + "completionCondition")),
                vendor="camunda" if not cardinality and not element else "")  # fmt: skip


def loop_warnings(x: etree._Element) -> list[str]:
    """What activity ``x``'s Camunda multi-instance runs otherwise than SpiffWorkflow's CamundaParser may run it."""
    mi = x.find(_B + "multiInstanceLoopCharacteristics")
    cardinality = _text(mi.find(_B + "loopCardinality")) if mi is not None and camunda_loop(mi) else None
    if cardinality is None or re.fullmatch(r"\d+", cardinality):
        return []
    return [f"the loopCardinality {cardinality!r} is taken as a count, as Camunda 7 takes it: a case where it gives "
            "a collection (which SpiffWorkflow's CamundaParser would loop over) fails there"]


def _text(node: etree._Element | None) -> str | None:
    return (node.text or "").strip() or None if node is not None else None


#: Vendor extensions that change what runs, which the engine does not run.
_IGNORED_CODE = {
    _C + "executionListener": "a Camunda execution listener (code run on start or end)",
    _C + "taskListener": "a Camunda task listener (code run on task events)",
    _C + "in": "a Camunda call mapping (camunda:in), copying data into the called process",
    _C + "out": "a Camunda call mapping (camunda:out), copying data back from the called process",
    _Z + "executionListener": "a Zeebe execution listener",
    _Z + "ioMapping": "a Zeebe input/output mapping",
}


#: SpiffWorkflow's payload extensions on a ``bpmn:message`` itself, its deprecated place for them (SpiffWorkflow
#: then applies them to every event of the message); the engine reads them on the event or task only.
_SPIFF_PAYLOAD = {"messagePayload": "a SpiffWorkflow message payload expression (spiffworkflow:messagePayload)",
                  "messageVariable": "a SpiffWorkflow message variable (spiffworkflow:messageVariable)"}  # fmt: skip
_THROWS = ("intermediateThrowEvent", "endEvent", "sendTask")
_CATCHES = ("startEvent", "intermediateCatchEvent", "boundaryEvent", "receiveTask")


def payload_extensions(root: etree._Element) -> dict[str, list[str]]:
    """The messages of the file, by id, that carry SpiffWorkflow payload extensions themselves (deprecated there)."""
    out: dict[str, list[str]] = {}
    for d in root.iter(_B + "message"):
        found = [f"{_SPIFF_PAYLOAD[n]} on the message itself (SpiffWorkflow's deprecated place: put it on the "
                 "event or task)" for n in _SPIFF_PAYLOAD if _ext(d, _S + n)]  # fmt: skip
        if found:
            out[d.get("id") or ""] = found
    return out


def item_payloads(root: etree._Element) -> dict[str, tuple[str | None, str | None]]:
    """The errors, escalations and signals of the file, by id, with SpiffWorkflow's payload expression and
    variable (``spiffworkflow:payloadExpression``, ``spiffworkflow:variableName``) on them."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for tag in ("error", "escalation", "signal"):
        for d in root.iter(_B + tag):
            expr, var = _spiff_text(d, "payloadExpression"), _spiff_text(d, "variableName")
            if expr is not None or var is not None:
                out[d.get("id") or ""] = (expr, var)
    return out


def _spiff_text(x: etree._Element, name: str, deep: bool = False) -> str | None:
    """The text of ``x``'s ``spiffworkflow:name`` extension element (anywhere below ``x`` if ``deep``), or None,
    where SpiffWorkflow's own parser looks for it."""
    found = next(x.iter(_S + name), None) if deep else \
        next((n for e in x.findall(_B + "extensionElements") for n in e.findall(_S + name)), None)
    return None if found is None else found.text or ""


def read_spiff(x: etree._Element, kind: str, items: dict[str, tuple[str | None, str | None]]) -> dict[str, object]:
    """SpiffWorkflow's pre-/post-scripts, payloads and process correlations on flow node ``x``, read where
    SpiffWorkflow's spiff parser reads them, as :class:`Element` fields; ``"problems"`` lists what the engine
    would not run exactly."""
    out: dict[str, object] = {"pre_script": _spiff_text(x, "preScript"), "post_script": _spiff_text(x, "postScript")}
    problems: list[str] = []
    defs = [d for d in x if isinstance(d.tag, str) and etree.QName(d).localname.endswith("EventDefinition")]
    local = etree.QName(defs[0]).localname if len(defs) == 1 else ""
    message = x if kind in ("sendTask", "receiveTask") else defs[0] if local == "messageEventDefinition" else None
    if message is not None:
        correlations = tuple((_spiff_text(c, "propertyId", True) or "", _spiff_text(c, "expression", True) or "")
                             for c in message.iter(_S + "processVariableCorrelation"))  # fmt: skip
        if kind in _THROWS:
            out["payload"] = _spiff_text(message, "messagePayload", True)
        elif kind in _CATCHES:
            out["payload_variable"], out["correlations"] = _spiff_text(message, "messageVariable", True), correlations
            if correlations and out["payload_variable"] is None:
                problems.append("SpiffWorkflow process correlations (spiffworkflow:processVariableCorrelation) on a "
                                "catch without a spiffworkflow:messageVariable: SpiffWorkflow then drops the message's "
                                "payload, the engine would merge it; add a message variable")  # fmt: skip
    elif len(defs) == 1:
        kind_ = local[: -len("EventDefinition")]
        ref = defs[0].get(f"{kind_}Ref")
        if ref in items:
            expr, var = items[ref]
            if kind in _THROWS:  # SpiffWorkflow sends None without an expression (not a copy of the data)
                out["payload"] = expr if expr is not None else "None"
            elif kind in _CATCHES and var is None:
                problems.append(f"a SpiffWorkflow payload expression on the {kind_} {ref!r} but no "
                                "spiffworkflow:variableName: SpiffWorkflow drops the payload it catches, the engine "
                                f"would merge it; add a variable name to the {kind_}")  # fmt: skip
            elif kind in _CATCHES:
                out["payload_variable"] = var
    elif len(defs) > 1 and any(True for d in defs for n in ("messagePayload", "messageVariable") if _ext(d, _S + n)):
        problems.append("SpiffWorkflow payload extensions on a multiple event, which the engine does not apply")
    out["problems"] = problems
    return out


def _set_spiff(holder: etree._Element, name: str, text: str | None) -> None:
    """Set (or with None remove) ``holder``'s ``spiffworkflow:name`` extension element, changing nothing if it is so."""
    exts = holder.findall(_B + "extensionElements")
    found = next((n for x in exts for n in x.findall(_S + name)), None)
    if text is None:
        if found is not None:
            found.getparent().remove(found)
        return
    if found is not None:
        if found.text != text:
            found.text = text
        return
    etree.SubElement(_extensions(holder), _S + name, nsmap={"spiffworkflow": SPIFF_NS}).text = text


def _extensions(holder: etree._Element) -> etree._Element:
    """``holder``'s ``extensionElements``, made (after its documentation, as the schema orders) if it has none."""
    ext = holder.find(_B + "extensionElements")
    if ext is None:
        docs = [i for i, c in enumerate(holder) if isinstance(c.tag, str) and etree.QName(c).localname == "documentation"]
        ext = etree.Element(_B + "extensionElements")
        holder.insert(docs[-1] + 1 if docs else 0, ext)
    return ext


def write_spiff(node: etree._Element, e: Element, pending: list[etree._Element] | None = None) -> None:
    """``e``'s SpiffWorkflow scripts, payloads and correlations into its flow node ``node``, where :func:`read_spiff`
    reads them (a signal's, error's or escalation's on the definition it refers to, in the document or in
    ``pending``, those to be added; made if there is none)."""
    _set_spiff(node, "preScript", e.pre_script)
    _set_spiff(node, "postScript", e.post_script)
    defs = [d for d in node if isinstance(d.tag, str) and etree.QName(d).localname.endswith("EventDefinition")]
    kind = etree.QName(defs[0]).localname[: -len("EventDefinition")] if len(defs) == 1 else ""
    message = node if e.kind in ("sendTask", "receiveTask") else defs[0] if kind == "message" else None
    if message is not None:
        if e.kind in _THROWS:
            _set_spiff(message, "messagePayload", e.payload)
        elif e.kind in _CATCHES:
            _set_spiff(message, "messageVariable", e.payload_variable)
            mine = tuple((_spiff_text(c, "propertyId", True) or "", _spiff_text(c, "expression", True) or "")
                         for c in message.iter(_S + "processVariableCorrelation"))  # fmt: skip
            if mine != tuple(e.correlations):
                for c in list(message.iter(_S + "processVariableCorrelation")):
                    c.getparent().remove(c)
                for prop, expr in e.correlations:
                    c = etree.SubElement(_extensions(message), _S + "processVariableCorrelation",
                                         nsmap={"spiffworkflow": SPIFF_NS})  # fmt: skip
                    etree.SubElement(c, _S + "propertyId").text = prop
                    etree.SubElement(c, _S + "expression").text = expr
        return
    if kind not in ("signal", "error", "escalation"):
        return
    root = node.getroottree().getroot()
    ref = defs[0].get(f"{kind}Ref")
    target = next((d for d in (*root.iter(_B + kind), *(pending or ())) if ref and d.get("id") == ref), None)
    if target is None:
        if e.payload is None and e.payload_variable is None:
            return
        ref = f"{kind.capitalize()}_{e.id}"
        target = etree.Element(_B + kind, id=ref, name=e.event_ref or e.name or e.id)
        if kind != "signal" and e.error_code:
            target.set(f"{kind}Code", e.error_code)
        root.insert(0, target)
        defs[0].set(f"{kind}Ref", ref)
    if e.kind in _THROWS and not (e.payload == "None" and _spiff_text(target, "payloadExpression") is None):
        _set_spiff(target, "payloadExpression", e.payload)
    elif e.kind in _CATCHES:
        _set_spiff(target, "variableName", e.payload_variable)



#: The scriptFormat values of Python scripts, and words that name other script languages (refused: SpiffWorkflow
#: would run their text as Python). A scriptFormat naming neither (``reset``) runs as Python, with a warning.
PYTHON_FORMATS = frozenset({"python", "py", "python3", "text/x-python", "text/python", "application/x-python"})
_LANGUAGES = frozenset({"javascript", "js", "ecmascript", "es6", "nashorn", "graal.js", "graaljs", "groovy", "juel",
                        "feel", "ruby", "jruby", "jython", "kotlin", "kts", "lua", "php", "r", "scala", "clojure",
                        "bsh", "beanshell", "jexl", "mvel", "el", "spel", "freemarker", "velocity", "xpath", "xquery",
                        "xslt", "sql", "bash", "sh", "shell", "powershell", "perl", "java", "python2", "jinja",
                        "jinja2"})  # fmt: skip


def names_language(fmt: str) -> bool:
    """Whether scriptFormat ``fmt`` (lowercase) names a script language other than Python."""
    word = fmt.rpartition("/")[2].removeprefix("x-")
    return word in _LANGUAGES or "script" in word


def unsupported(x: etree._Element, local: str, warnings: list[str] | None = None) -> list[str]:
    """The constructs on flow node ``x`` (a ``local`` element) that change what runs and that the engine ignores;
    what it runs as SpiffWorkflow does but the drawing may mean otherwise goes to ``warnings``."""
    found: list[str] = []
    for tag, what in _IGNORED_CODE.items():
        if _ext(x, tag):
            found.append(f"{what}, which the engine does not run")
    for d in x.iter(_B + "messageEventDefinition"):
        attrs = [f"camunda:{a}={d.get(_C + a)!r}" for a in ("expression", "resultVariable") if d.get(_C + a)]
        if attrs:
            found.append(f"a Camunda message payload ({', '.join(attrs)}): SpiffWorkflow sends the expression's value "
                         "and the catch keeps it under resultVariable (else '<task>_Response'), Camunda 7 runs it as "
                         "the event's implementation; the engine sends the case data, so it would do neither")
    loops = [*x.findall(_B + "multiInstanceLoopCharacteristics"), *x.findall(_B + "standardLoopCharacteristics")]
    if any(lp.get(_S + "scriptsOnInstances") == "true" for lp in loops):
        found.append("SpiffWorkflow pre-/post-scripts run on each instance (spiffworkflow:scriptsOnInstances), "
                     "which the engine does not do (it runs them once around the instances)")
    if _ext(x, _C + "inputOutput") and local not in ("serviceTask", "businessRuleTask", "sendTask"):
        found.append("a Camunda input/output mapping (camunda:inputOutput), which the engine does not apply")
    fmt = (x.get("scriptFormat") or "python").strip().lower()
    if local == "scriptTask" and fmt not in PYTHON_FORMATS and names_language(fmt):
        found.append(f"a {fmt} script (scriptFormat {x.get('scriptFormat')!r}); the engine runs Python scripts only")
    elif local == "scriptTask" and fmt not in PYTHON_FORMATS and warnings is not None:
        warnings.append(f"the scriptFormat {x.get('scriptFormat')!r} names no script language: the script runs as "
                        "Python, as SpiffWorkflow runs every script, and is saved with scriptFormat 'python'")
    if local == "scriptTask" and x.get(_C + "resultVariable"):
        found.append(f"a Camunda script result variable {x.get(_C + 'resultVariable')!r}, which the engine does "
                     "not set (assign the variable in the script)")
    return found
