"""SpiffWorkflow's own extensions that Procestra runs: event payloads and pre-/post-scripts, parsed as SpiffWorkflow does.

A to-be model may carry, as SpiffWorkflow's ``spiffworkflow:`` extension elements, a payload
expression on what a throw event sends (``messagePayload`` on a message throw, ``payloadExpression``
on a signal, error or escalation), the variable a catch stores the payload under
(``messageVariable``, ``variableName``), a receive's process correlations
(``processVariableCorrelation``) and a task's ``preScript``/``postScript``. :func:`parser_class`
extends SpiffWorkflow's plain BPMN parser to read them where SpiffWorkflow's own spiff parser reads
them, into that parser's own event definition and task spec classes (so they behave exactly as
there); an element without them parses as before. :func:`register` teaches the serializer those
classes under names of their own, so a case snapshot keeps them and old snapshots still load.
"""

from __future__ import annotations

import functools
from typing import Any

from procestra.engine.exceptions import EngineError

__all__ = ["SPIFF_NS", "caught_data", "parser_class", "register", "spiff_definition"]

SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
_NSMAP = {"spiffworkflow": SPIFF_NS, "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL"}
#: SpiffWorkflow's correlation key for a correlation property that no collaboration key names.
MAIN_KEY = "MainCorrelationKey"


def _ext(node: Any, name: str, deep: bool = False) -> str | None:
    """The text of ``node``'s ``spiffworkflow:name`` extension (at any depth below ``node`` if ``deep``), or None."""
    path = f".//spiffworkflow:{name}" if deep else f"./bpmn:extensionElements/spiffworkflow:{name}"
    found = node.xpath(path, namespaces=_NSMAP)
    return found[0].text if found else None


def spiff_definition(definition: Any) -> bool:
    """Whether an event definition is one of SpiffWorkflow's payload-aware ones (made from its extensions)."""
    from SpiffWorkflow.spiff.specs import event_definitions as s

    return isinstance(definition, (s.MessageEventDefinition, s.SpiffItemAwareEventDefinition))


def caught_data(definition: Any, payload: Any) -> dict[str, Any]:
    """What catching ``payload`` with ``definition`` adds to the data: the payload's keys (plain), the payload
    under the catch's variable (SpiffWorkflow's), or nothing (a SpiffWorkflow catch without a variable)."""
    if spiff_definition(definition):
        variable = getattr(definition, "message_var", None) or getattr(definition, "variable", None)
        return {variable: payload} if variable else {}
    if payload is not None and not isinstance(payload, dict):  # a SpiffWorkflow payload from another case
        raise EngineError(f"the {getattr(definition, 'name', '')!r} it caught carries a {type(payload).__name__}, "
                          "not an object of case data: a catch without a payload variable cannot keep it")
    return dict(payload) if isinstance(payload, dict) else {}


@functools.lru_cache(maxsize=1)
def _scripted() -> dict[Any, Any]:
    """Plain task spec classes -> SpiffWorkflow's spiff ones, which run a pre-script and a post-script."""
    from SpiffWorkflow.bpmn.specs import defaults as plain
    from SpiffWorkflow.spiff.specs import defaults as spiff

    names = ("NoneTask", "ManualTask", "UserTask", "SendTask", "ReceiveTask", "StandardLoopTask",
             "ParallelMultiInstanceTask", "SequentialMultiInstanceTask")  # fmt: skip
    return {getattr(plain, n): getattr(spiff, n) for n in names}


class _Scripts:
    """A task parser that gives a task with a pre- or post-script SpiffWorkflow's spiff spec class, and (as
    SpiffWorkflow's spiff parser does) moves the scripts of a multi-instance or loop task to the loop."""

    node: Any
    spec_class: Any
    STANDARD_LOOP_CLASS: Any
    PARALLEL_MI_CLASS: Any
    SEQUENTIAL_MI_CLASS: Any
    task: Any

    def create_task(self) -> Any:
        pre, post = _ext(self.node, "preScript"), _ext(self.node, "postScript")
        if pre is None and post is None:
            return super().create_task()  # type: ignore[misc]
        scripted = _scripted()
        self.spec_class = scripted[self.spec_class]
        self.STANDARD_LOOP_CLASS, self.PARALLEL_MI_CLASS, self.SEQUENTIAL_MI_CLASS = (
            scripted[self.STANDARD_LOOP_CLASS], scripted[self.PARALLEL_MI_CLASS], scripted[self.SEQUENTIAL_MI_CLASS])
        task = super().create_task()  # type: ignore[misc]
        task.prescript, task.postscript = pre, post
        return task

    def _copy_task_attrs(self, original: Any, loop_characteristics: Any = None) -> None:
        super()._copy_task_attrs(original, loop_characteristics)  # type: ignore[misc]
        if getattr(original, "prescript", None) is not None or getattr(original, "postscript", None) is not None:
            self.task.prescript, self.task.postscript = original.prescript, original.postscript
            original.prescript = original.postscript = None


class _Payloads:
    """An event parser that reads SpiffWorkflow's payload extensions where its spiff parser does, into its
    spiff event definitions; an event without them gets the plain definition."""

    def _definition_node(self, tag: str, ref: str | None) -> Any:
        if not ref:
            return None
        found = self.doc_xpath(f'.//bpmn:{tag}[@id="{ref}"]')  # type: ignore[attr-defined]
        return found[0] if found else None

    def parse_message_event(self, message_event: Any) -> Any:
        plain = super().parse_message_event(message_event)  # type: ignore[misc]
        expression, variable = _ext(message_event, "messagePayload", True), _ext(message_event, "messageVariable", True)
        process = message_event.xpath(".//spiffworkflow:processVariableCorrelation", namespaces=_NSMAP)
        if expression is None and variable is None and not process:
            return plain
        from SpiffWorkflow.bpmn.specs.event_definitions.message import CorrelationProperty
        from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition

        correlations = [CorrelationProperty(p.name, p.retrieval_expression, list(p.correlation_keys) or [MAIN_KEY])
                        for p in plain.correlation_properties]  # fmt: skip
        mine = []
        for prop in process:
            key = prop.xpath("./spiffworkflow:propertyId", namespaces=_NSMAP)[0].text
            expr = prop.xpath("./spiffworkflow:expression", namespaces=_NSMAP)[0].text
            used_by = [ck.getparent().get("name") for ck in self.xpath(  # type: ignore[attr-defined]
                f"//bpmn:collaboration//bpmn:correlationPropertyRef[text()='{key}']")]
            mine.append(CorrelationProperty(key, expr, used_by or [MAIN_KEY]))
        return MessageEventDefinition(plain.name, correlations, expression, variable, mine,
                                      description=plain.description)  # fmt: skip

    def _item_aware(self, plain: Any, tag: str, node: Any, ref_attr: str) -> Any:
        found = self._definition_node(tag, node.get(ref_attr))
        expression = _ext(found, "payloadExpression") if found is not None else None
        variable = _ext(found, "variableName") if found is not None else None
        if expression is None and variable is None:
            return plain
        from SpiffWorkflow.spiff.specs import event_definitions as s

        cls = {"signal": s.SignalEventDefinition, "error": s.ErrorEventDefinition,
               "escalation": s.EscalationEventDefinition}[tag]  # fmt: skip
        code = {} if tag == "signal" else {"code": plain.code}
        return cls(plain.name, expression=expression, variable=variable, description=plain.description, **code)

    def parse_signal_event(self, node: Any) -> Any:
        return self._item_aware(super().parse_signal_event(node), "signal", node, "signalRef")  # type: ignore[misc]

    def parse_error_event(self, node: Any) -> Any:
        return self._item_aware(super().parse_error_event(node), "error", node, "errorRef")  # type: ignore[misc]

    def parse_escalation_event(self, node: Any) -> Any:
        return self._item_aware(super().parse_escalation_event(node), "escalation", node,  # type: ignore[misc]
                                "escalationRef")


@functools.lru_cache(maxsize=1)
def parser_class() -> Any:
    """SpiffWorkflow's plain ``BpmnParser``, reading the extensions of this module as its spiff parser does."""
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.parser import event_parsers as ev
    from SpiffWorkflow.bpmn.parser.TaskParser import TaskParser
    from SpiffWorkflow.bpmn.parser.util import full_tag

    def mixed(name: str, *bases: Any) -> Any:
        return type(name, bases, {})

    overrides = {}
    for tag, base, mixins in (
            ("task", TaskParser, (_Scripts,)), ("userTask", TaskParser, (_Scripts,)),
            ("manualTask", TaskParser, (_Scripts,)),  # a script task's are ignored by SpiffWorkflow: refused
            ("sendTask", ev.SendTaskParser, (_Scripts, _Payloads)),
            ("receiveTask", ev.ReceiveTaskParser, (_Scripts, _Payloads)),
            ("startEvent", ev.StartEventParser, (_Payloads,)), ("endEvent", ev.EndEventParser, (_Payloads,)),
            ("intermediateCatchEvent", ev.IntermediateCatchEventParser, (_Payloads,)),
            ("intermediateThrowEvent", ev.IntermediateThrowEventParser, (_Payloads,)),
            ("boundaryEvent", ev.BoundaryEventParser, (_Payloads,))):  # fmt: skip
        key = full_tag(tag)
        _, spec_class = BpmnParser.PARSER_CLASSES[key]
        overrides[key] = (mixed(base.__name__, *mixins, base), spec_class)

    class Parser(BpmnParser):  # type: ignore[misc]
        """SpiffWorkflow's plain parser, with SpiffWorkflow's payload and script extensions read."""

        OVERRIDE_PARSER_CLASSES = {**BpmnParser.OVERRIDE_PARSER_CLASSES, **overrides}

    return Parser


def register(registry: Any) -> None:
    """Add the serializer conversions of SpiffWorkflow's spiff classes this module parses into, each under a
    name of its own ("Spiff" + its class name), beside the plain classes of the same class names."""
    from SpiffWorkflow.spiff.serializer import config as sc
    from SpiffWorkflow.spiff.specs import defaults as spiff
    from SpiffWorkflow.spiff.specs import event_definitions as s

    pairs = [(spiff.NoneTask, sc.SpiffBpmnTaskConverter), (spiff.ManualTask, sc.SpiffBpmnTaskConverter),
             (spiff.UserTask, sc.UserTaskConverter),
             (spiff.SendTask, sc.SendReceiveTaskConverter), (spiff.ReceiveTask, sc.SendReceiveTaskConverter),
             (spiff.StandardLoopTask, sc.StandardLoopTaskConverter),
             (spiff.ParallelMultiInstanceTask, sc.SpiffMultiInstanceConverter),
             (spiff.SequentialMultiInstanceTask, sc.SpiffMultiInstanceConverter),
             (s.MessageEventDefinition, sc.MessageEventDefinitionConverter),
             (s.SignalEventDefinition, sc.ItemAwareEventDefinitionConverter),
             (s.ErrorEventDefinition, sc.ErrorEscalationEventDefinitionConverter),
             (s.EscalationEventDefinition, sc.ErrorEscalationEventDefinitionConverter)]  # fmt: skip
    for cls, converter in pairs:
        converter(cls, registry, "Spiff" + cls.__name__)
