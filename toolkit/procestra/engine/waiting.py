"""What a case's SpiffWorkflow workflow waits for, and making it happen: timers, messages and signals.

SpiffWorkflow keeps every waiting catch event (intermediate, boundary, start, and an
event-based gateway, which holds its branches' events in one *multiple* definition) in its
workflow's event manager. The engine fires timers itself (so that it can journal them) and
delivers messages and signals from the operational store's inbox; these functions do it the
way SpiffWorkflow's own ``refresh_timers`` and ``catch`` do, and say which element caught.

Timers: a duration or date is due at its ``event_value``; a cycle (``R3/PT10M``) holds its
repetitions left and its next due time in its ``event_value`` and fires one repetition per
call, so each repetition is one journaled step, and after a restart the remaining ones fire
from the snapshot. A cycle may also be a cron expression (:func:`allow_cron_cycles`), which
SpiffWorkflow alone does not read: five fields (minute first) or Quartz's six (seconds first,
``?`` for either day field, as Camunda writes them), repeating without end, in UTC.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from procestra.engine.exceptions import EngineError
from procestra.engine.spiff_ext import caught_data, spiff_definition

__all__ = ["allow_cron_cycles", "catches_events", "cron_next", "deliver", "fire_timer", "has_timer", "replay_timer", "signal_payloads", "start_data", "start_events", "thrown_messages", "throws", "thrown_signals", "timer_due", "uncaught_messages", "waits_of", "waiting_tasks"]


def _timer_classes() -> tuple[Any, Any, Any]:
    from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition, TimerEventDefinition

    return TimerEventDefinition, CycleTimerEventDefinition, MultipleEventDefinition


def _definitions(evdef: Any) -> Iterator[Any]:
    """The event definition and, for a multiple one (an event-based gateway), each inside it."""
    if evdef is None:
        return
    yield evdef
    for d in getattr(evdef, "event_definitions", None) or ():
        yield from _definitions(d)


def waiting_tasks(wf: Any) -> list[Any]:
    """The catch events (and event-based gateways) the workflow waits on, at any depth."""
    return list(wf.event_manager.tasks.values())


def has_timer(task: Any) -> bool:
    timer, _, _ = _timer_classes()
    return any(isinstance(d, timer) for d in _definitions(getattr(task.task_spec, "event_definition", None)))


def _parse(value: Any) -> datetime:
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    t: datetime
    try:
        t = TimerEventDefinition.get_datetime(str(value))
    except ValueError:  # a date timer's raw expression (an ISO week date, say)
        t = TimerEventDefinition.parse_time_or_duration(str(value))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def timer_due(task: Any, now: datetime) -> datetime | None:
    """When the waiting ``task``'s timer comes due: ``now`` if a finished cycle must close, None if not armed."""
    if not has_timer(task):
        return None
    value = task._get_internal_data("event_value")
    if value is None:
        return now if task._get_internal_data("event_fired") else None
    if isinstance(value, dict):  # a cycle: repetitions left and the next one's time
        return now if value.get("cycles") == 0 else _parse(value["next"])
    return _parse(value)


def fire_timer(task: Any) -> tuple[str, bool] | None:
    """Fire ``task``'s timer if it is due now: ``(element that fired, whether it is a journaled firing)``.

    A cycle fires one repetition (its next one is then armed); a cycle with none left closes
    (not a firing: it happens again on replay by itself). In an event-based gateway the element
    is the timer event of the branch taken.
    """
    timer, cycle, multiple = _timer_classes()
    evdef = task.task_spec.event_definition
    element = str(task.task_spec.bpmn_id)
    if isinstance(evdef, cycle):
        value = task._get_internal_data("event_value")
        before = dict(value) if value is not None else None  # SpiffWorkflow changes it in place
        task.task_spec._update(task)
        if before is None or before.get("cycles") == 0:
            return element, False  # closing a finished cycle
        after = task._get_internal_data("event_value")
        fired = after is None or (after.get("cycles"), after.get("next")) != (before.get("cycles"), before.get("next"))
        return (element, True) if fired else None
    if not evdef.has_fired(task):
        return None
    if isinstance(evdef, multiple):
        for seen in task.internal_data.get("seen_events", []):
            if isinstance(seen.event_definition, timer):
                element = _branch(task, seen.event_definition)
    task.task_spec._update(task)
    return element, True


def _branch(task: Any, definition: Any) -> str:
    """The element of an event-based gateway's branch whose event is ``definition``."""
    defs = task.task_spec.event_definition.event_definitions
    for i, d in enumerate(defs):
        if d is definition or d == definition:
            return str(task.task_spec.outputs[i].bpmn_id)
    return str(task.task_spec.bpmn_id)


def replay_timer(wf: Any, element: str) -> bool:
    """Fire again, on replay, the journaled firing of the timer ``element``; False if nothing waits for it."""
    from SpiffWorkflow.bpmn.util.event import BpmnEvent

    timer, cycle, multiple = _timer_classes()
    for task in waiting_tasks(wf):
        evdef = task.task_spec.event_definition
        if task.task_spec.bpmn_id == element:
            if not isinstance(evdef, cycle):  # a cycle's next repetition was due: its update fires it
                task._set_internal_data(event_fired=True)
            task.task_spec._update(task)
            return True
        if isinstance(evdef, multiple):
            for d in evdef.event_definitions:
                if isinstance(d, timer) and _branch(task, d) == element:
                    task.internal_data["seen_events"] = [*task.internal_data.get("seen_events", []), BpmnEvent(d)]
                    task.task_spec._update(task)
                    return True
    return False


@functools.lru_cache(maxsize=1)
def _message_signal() -> tuple[Any, Any]:
    from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
    from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition

    return MessageEventDefinition, SignalEventDefinition


def _kind(d: Any) -> str | None:
    message, signal = _message_signal()
    if isinstance(d, message):
        return "message"
    return "signal" if isinstance(d, signal) else None


def catches_events(spec: Any) -> bool:
    """Whether the process ``spec`` has an event that catches a message or a signal."""
    from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent

    return any(isinstance(ts, CatchingEvent) and any(_kind(d) for d in _definitions(ts.event_definition))
               for ts in spec.task_specs.values())


def start_events(spec: Any) -> set[tuple[str, str]]:
    """The messages and signals that the start events of the process ``spec`` itself catch, as ``(kind, name)``."""
    from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent

    return {(k, str(d.name)) for ts in spec.start.outputs if isinstance(ts, StartEvent)
            for d in _definitions(ts.event_definition) if (k := _kind(d)) and d.name}


def start_data(spec: Any, kind: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The case data a case of the process ``spec`` starts with when the ``kind`` ``name`` starts it: what its start
    event's catch adds (the payload's keys, or the payload under a SpiffWorkflow payload variable)."""
    from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent

    for ts in spec.start.outputs:
        for d in _definitions(ts.event_definition) if isinstance(ts, StartEvent) else ():
            if _kind(d) == kind and d.name == name:
                return caught_data(d, payload)
    return payload


@functools.lru_cache(maxsize=1)
def _throwing() -> Any:
    from SpiffWorkflow.bpmn.specs.mixins.events.event_types import ThrowingEvent

    return ThrowingEvent


def throws(task: Any) -> bool:
    """Whether ``task`` is a throw event or send task (one test, for every task engine steps run)."""
    return isinstance(task.task_spec, _throwing())


def _thrown(task: Any, kind: str) -> list[str]:
    if not throws(task):
        return []
    return [str(d.name) for d in _definitions(task.task_spec.event_definition) if _kind(d) == kind and d.name]


def thrown_signals(task: Any) -> list[str]:
    """The signals a completed throw event (intermediate or end) threw (called for every task engine steps run)."""
    return _thrown(task, "signal")


def thrown_messages(task: Any) -> list[str]:
    """The messages a completed throw event or send task threw (called for every task engine steps run)."""
    return _thrown(task, "message")


def uncaught_messages(wf: Any) -> list[tuple[str, Any]]:
    """The messages thrown in ``wf`` that nothing in it caught, as ``(name, payload)``, taken from its queue.

    SpiffWorkflow keeps them for the application (``get_events``); other uncaught events (signals,
    which the engine broadcasts itself) are dropped from the queue here."""
    return [(str(ev.event_definition.name), ev.payload) for ev in wf.get_events()
            if _kind(ev.event_definition) == "message" and ev.event_definition.name]


def signal_payloads(task: Any) -> list[tuple[str, Any]]:
    """The signals a completed throw event threw, each with the payload it sent other cases: none (``{}``),
    or what its SpiffWorkflow payload expression gives in the task's data (None without one), as thrown."""
    out: list[tuple[str, Any]] = []
    for d in _definitions(task.task_spec.event_definition):
        if _kind(d) == "signal" and d.name:
            spiff = spiff_definition(d)
            expression = getattr(d, "expression", None) if spiff else None
            payload = task.workflow.script_engine.evaluate(task, expression) if expression is not None else None
            out.append((str(d.name), payload if spiff else {}))
    return out


def waits_of(wf: Any) -> set[tuple[str, str]]:
    """The messages and signals the workflow waits for now, as ``(kind, name)``."""
    return {(k, str(d.name)) for task in waiting_tasks(wf) for d in _definitions(task.task_spec.event_definition)
            if (k := _kind(d)) and d.name}


def deliver(wf: Any, kind: str, name: str, payload: Any) -> tuple[str, str, dict[str, Any]] | None:
    """Deliver a message or signal to the workflow as SpiffWorkflow's ``catch`` does; the element that
    caught it, its name (the first, for a signal several catch) and what the catch adds to the data (the
    payload's keys, or the payload under the catch's variable), or None if nothing waits for it.

    A message's correlation properties (when the file defines them) are computed from the payload
    as SpiffWorkflow computes them when a message is thrown, and checked by its ``catches``.
    """
    from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import SignalEventDefinition
    from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
    from SpiffWorkflow.bpmn.util.event import BpmnEvent

    wanted = MessageEventDefinition if kind == "message" else SignalEventDefinition
    for task in waiting_tasks(wf):
        for d in _definitions(task.task_spec.event_definition):
            if not isinstance(d, wanted) or d.name != name:
                continue
            correlations = {}
            if kind == "message" and d.correlation_properties:
                correlations = d.calculate_correlations(wf.script_engine, d.correlation_properties, payload)
            event = BpmnEvent(d, payload=payload, correlations=correlations)
            if not task.task_spec.catches(task, event):
                continue
            spec = task.task_spec
            element = _branch(task, d) if d is not spec.event_definition else str(spec.bpmn_id)
            label = _name_of(task, element) or name
            wf.catch(event)
            return element, label, caught_data(d, payload)
    return None


def _name_of(task: Any, element: str) -> str | None:
    spec = task.task_spec
    if spec.bpmn_id == element:
        return spec.bpmn_name or None
    for out in spec.outputs:
        if out.bpmn_id == element:
            return out.bpmn_name or None
    return None


# -- cron cycles -----------------------------------------------------------------------------------
def _cron(expression: Any) -> tuple[str, bool] | None:
    """``(fields, seconds first)`` if ``expression`` is a cron expression rather than an ISO 8601 cycle."""
    if not isinstance(expression, str) or expression.strip().upper().startswith("R"):
        return None
    fields = expression.split()
    if len(fields) == 7 and fields[6] in ("*", "?"):  # Quartz's optional year, any year
        fields = fields[:6]
    if len(fields) not in (5, 6):
        return None
    return " ".join(fields), len(fields) == 6


def _valid_cron(expression: str) -> bool:
    from croniter import croniter

    parsed = _cron(expression)
    return parsed is not None and bool(croniter.is_valid(parsed[0], second_at_beginning=parsed[1]))


def cron_next(expression: str, after: datetime) -> datetime:
    """The first time after ``after`` (UTC) that the cron ``expression`` names; an :class:`EngineError` if it is not one."""
    from croniter import croniter

    parsed = _cron(expression)
    if parsed is None or not _valid_cron(expression):
        raise EngineError(f"the timer cycle {expression!r} is neither an ISO 8601 cycle such as R3/PT10M nor a cron "
                          "expression (five fields, or six with seconds first)")
    found: datetime = croniter(parsed[0], after.astimezone(UTC), second_at_beginning=parsed[1]).get_next(datetime)
    return found


@functools.lru_cache(maxsize=1)
def allow_cron_cycles() -> None:
    """Teach SpiffWorkflow's cycle timer cron expressions: the next repetition is the next time the
    expression names after the last one (no end), kept in the same ``event_value`` as an ISO cycle."""
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition

    iso_cycle = CycleTimerEventDefinition.cycle_complete

    def cycle_complete(self: Any, my_task: Any) -> bool:
        value = my_task._get_internal_data("event_value")
        now = datetime.now(UTC)
        if value is None:  # a cron expression as Camunda writes it (no quotes) is no sandbox expression
            raw = str(self.expression).strip()
            expression = raw if _valid_cron(raw) else my_task.workflow.script_engine.evaluate(my_task, self.expression)
            if _cron(expression) is None:
                return bool(iso_cycle(self, my_task))
            value = {"cycles": -1, "next": cron_next(expression, now).isoformat(), "duration": 0, "cron": expression}
            my_task._set_internal_data(event_value=value)
            return False
        if "cron" not in value:
            return bool(iso_cycle(self, my_task))
        due = datetime.fromisoformat(value["next"])
        if due >= now:
            return False
        value["next"] = cron_next(value["cron"], due).isoformat()
        my_task._set_internal_data(event_value=value)
        return True

    CycleTimerEventDefinition.cycle_complete = cycle_complete
