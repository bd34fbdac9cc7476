"""Messages and signals into cases: :func:`send_message` and :func:`send_signal`.

A message goes to the running cases that wait for it (a message catch event, receive task,
message boundary event or event-based gateway branch) and whose case data matches
``correlate``; a signal goes to every case of every model that waits for it. A model whose
start event catches the message (when no case waits for it) or the signal starts a new case
with the data as its case data. A message or signal that reaches no case is an error naming
it (:class:`NotDeliveredError`), never silently lost. A message a case throws and nothing in it
catches goes the same way (:func:`route_thrown`, in the worker's commit); the throw step in the
journal says where it went, "not delivered" when nowhere, since the thrower goes on.

**Durable, exactly once.** Sending queues one row per case in the operational store's
``deliveries`` table, in the transaction that makes those cases runnable (and inserts the
cases it starts). A worker delivers it to the case's workflow as SpiffWorkflow's ``catch``
does, journals the catch (which element caught it, the payload), and marks the row applied
in the same round's transaction: killed before that commit, the next worker delivers it again
to the workflow rebuilt from the journal; after it, the journal replays it and the row is done.
Which cases wait for what is kept in ``waits`` by the workers, from SpiffWorkflow's own list
of waiting events, in the transaction of the round that changed it.

>>> send_message(ws, "Payment received", correlate={"order": "A-17"}, data={"paid": 120.0})
Delivery(kind='message', name='Payment received', delivered=('c-...',), started=())
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from procestra.engine import journal, waiting
from procestra.engine.cases import _case_data
from procestra.engine.exceptions import EngineError
from procestra.engine.loading import Runnable, runnable
from procestra.errors import InvalidArgumentError, ModelNotFoundError, UserError
from procestra.models.repository import list_models
from procestra.store import ops

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["Delivery", "NotDeliveredError", "route_thrown", "send_message", "send_signal", "starters_of"]


@dataclass(frozen=True)
class Delivery:
    """Where a message or signal went: the waiting cases it was queued for, and the cases it started."""

    kind: str
    name: str
    delivered: tuple[str, ...]
    started: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delivered"], d["started"] = list(self.delivered), list(self.started)
        return d


class NotDeliveredError(UserError):
    """A message or signal that no case waits for (with that correlation) and no model starts with."""

    def __init__(self, kind: str, name: str, correlate: Mapping[str, Any] | None) -> None:
        self.kind, self.name, self.correlate = kind, name, dict(correlate or {})
        where = (" with " + ", ".join(f"{k}={v!r}" for k, v in self.correlate.items())) if self.correlate else ""
        super().__init__(f"no running case waits for the {kind} {name!r}{where}, and no model starts with it; "
                         "nothing was sent (`procestra cases --status waiting` lists the waiting cases)")


def send_message(ws: Home, name: str, *, correlate: Mapping[str, Any] | None = None,
                 data: Mapping[str, Any] | str | None = None) -> Delivery:
    """Send the message ``name`` with ``data`` to the cases waiting for it whose case data has
    every ``correlate`` key at that value (text also matches a number or truth value written
    the same); if none waits, start a case of each model whose start event catches it. A
    worker delivers it; the data becomes case data. :class:`NotDeliveredError` if it goes nowhere.
    """
    return _send(ws, "message", name, correlate, data)


def send_signal(ws: Home, name: str, *, data: Mapping[str, Any] | str | None = None) -> Delivery:
    """Broadcast the signal ``name`` with ``data`` to every case (of every model) waiting for it, and
    start a case of each model whose start event catches it. :class:`NotDeliveredError` if it goes nowhere."""
    return _send(ws, "signal", name, None, data)


def _send(ws: Home, kind: str, name: str, correlate: Mapping[str, Any] | None,
          data: Mapping[str, Any] | str | None) -> Delivery:  # fmt: skip
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"the {kind} needs a name, not {name!r}", parameter="name")
    if correlate is not None and (not isinstance(correlate, Mapping) or not all(isinstance(k, str) for k in correlate)):
        raise InvalidArgumentError("correlate must map case data names to values", parameter="correlate")
    payload = _payload(data)
    journal.prepare(ws)
    starters: list[Runnable] | None = None
    if kind == "signal":  # a signal also starts cases beside the waiting ones: know the models first
        starters = _starting(ws, kind, name)
    while True:
        with ops.transaction(ws) as con:
            targets = [r["case_id"] for r in journal.waiting_for(con, kind, name)
                       if _matches(json.loads(r["data"]), correlate)]
            if kind == "message" and targets:
                starters = []
            if starters is not None:
                started = _start(con, starters, payload, kind, name) if starters else []
                rows = [(journal.new_event_id(), case, kind, name, journal.dumps(payload), journal.iso(journal.now()))
                        for case in [*targets, *started]]
                if not rows:
                    raise NotDeliveredError(kind, name, correlate)
                journal.deliver(con, rows)
                return Delivery(kind, name, tuple(targets), tuple(started))
        starters = _starting(ws, kind, name)  # no case waits for the message: the models it starts, then again


def starters_of(ws: Home, names: set[str]) -> dict[str, list[Runnable]]:
    """For messages that cases threw out of themselves: the models each one starts (read before the round's commit)."""
    return {name: _starting(ws, "message", name) for name in sorted(names)}


def route_thrown(con: Any, sender: str, name: str, payload: Any, starters: list[Runnable],
                 stamp: str) -> tuple[Delivery, list[str]]:  # fmt: skip
    """Queue a message that case ``sender`` threw and nothing in it caught, as :func:`send_message` without
    ``correlate`` does: to every other case waiting for it, else a new case of each model that starts on it.

    Inside the worker's commit, so it cannot raise for the payload: a model whose declared case data the
    payload does not fit starts no case, and why is returned (the caller journals it on the throw step)."""
    targets = [r["case_id"] for r in journal.waiting_for(con, "message", name) if r["case_id"] != sender]
    started: list[str] = []
    refused: list[str] = []
    for model in [] if targets else starters:
        try:
            started += _start(con, [model], payload, "message", name)
        except UserError as exc:
            refused.append(f"{model.name}: {exc}")
    rows = [(journal.new_event_id(), case, "message", name, journal.dumps(payload), stamp)
            for case in [*targets, *started]]
    if rows:
        journal.deliver(con, rows)
    return Delivery("message", name, tuple(targets), tuple(started)), refused


def _payload(data: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                                       parameter="data") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise InvalidArgumentError(f"data must be a JSON object with text keys, not {type(data).__name__}",
                                   parameter="data")
    out = dict(data)
    try:
        json.dumps(out)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"data must be JSON: {exc}", parameter="data") from None
    return out


def _matches(case_data: Mapping[str, Any], correlate: Mapping[str, Any] | None) -> bool:
    """Whether the case data has every ``correlate`` key at its value (text matches a scalar written the same)."""
    for key, want in (correlate or {}).items():
        if key not in case_data:
            return False
        have = case_data[key]
        if have == want and isinstance(have, bool) == isinstance(want, bool):
            continue
        if isinstance(want, str) and not isinstance(have, str) and have is not None and \
                not isinstance(have, (dict, list)) and json.dumps(have) == want:
            continue
        return False
    return True


def _starting(ws: Home, kind: str, name: str) -> list[Runnable]:
    """The latest versions of the saved to-be models whose start event catches the message or signal ``name``."""
    out = []
    for info in list_models(ws):
        if "model.bpmn" not in info.files:
            continue
        try:
            model = runnable(ws, info.name, info.version)
        except (ModelNotFoundError, EngineError):
            continue  # not a to-be model, or one that cannot run: it starts nothing
        if (kind, name) in waiting.start_events(model.spec):
            out.append(model)
    return out


def _start(con: Any, models: list[Runnable], payload: dict[str, Any], kind: str, name: str) -> list[str]:
    """Insert one new case per model, with ``payload`` as its case data (checked against the model's declared
    data); a start event with a SpiffWorkflow payload variable starts it with the payload under that variable."""
    now = journal.iso(journal.now())
    rows = [(journal.new_case_id(), m.name, m.version, None,
             journal.dumps(_case_data(m, waiting.start_data(m.spec, kind, name, payload))), now, now)
            for m in models]  # fmt: skip
    journal.insert_cases(con, rows)
    return [r[0] for r in rows]
