"""A process's ``bpmn:ioSpecification``: the variables a call passes in and takes back.

SpiffWorkflow's call activity copies into the called process only the variables its data inputs
name (failing when one is missing) and, when it has data outputs, copies back only those;
without inputs (outputs) it copies all the data in (back). The ioSpecification stays in the
saved BPMN, so SpiffWorkflow's parser applies it at run time; validate reads it from the model's
document here: the inputs are variables the called model may use, the outputs what its call gives.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from lxml import etree

from procestra.models.bpmn import BPMN_NS

__all__ = ["IoSpec", "process_io"]

_B = f"{{{BPMN_NS}}}"


@dataclass(frozen=True)
class IoSpec:
    """The data inputs and outputs of a process's ioSpecification, by the names the task data uses (their ids)."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


def process_io(model: Any) -> IoSpec | None:
    """The ioSpecification of ``model``'s process in the document it was read from, or None if it has none."""
    document = getattr(model, "document", None)
    if document is None:
        return None
    ids = getattr(model, "document_ids", {}) or {}
    return _read(document, model.process_id, tuple(sorted(ids.items())))


@functools.lru_cache(maxsize=256)
def _read(document: bytes, process_id: str, renamed: tuple[tuple[str, str], ...]) -> IoSpec | None:
    ids = dict(renamed)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError:
        return None
    for proc in root.iter(f"{_B}process"):
        if ids.get(proc.get("id") or "", proc.get("id")) != process_id:
            continue
        spec = proc.find(f"{_B}ioSpecification")
        if spec is None:
            return None
        return IoSpec(_refs(spec, "dataInput", "inputSet", "dataInputRefs", ids),
                      _refs(spec, "dataOutput", "outputSet", "dataOutputRefs", ids))  # fmt: skip
    return None


def _refs(spec: Any, kind: str, group: str, ref: str, ids: dict[str, str]) -> tuple[str, ...]:
    """The ids of the ``kind`` elements that a ``group``'s refs name, in order (as SpiffWorkflow reads them)."""
    known = {e.get("id") for e in spec.findall(f"{_B}{kind}")}
    out: list[str] = []
    for r in spec.iterfind(f"{_B}{group}/{_B}{ref}"):
        name = (r.text or "").strip()
        if name in known and name not in out:
            out.append(ids.get(name, name))
    return tuple(out)


@dataclass(frozen=True)
class CallData:
    """What a call activity needs from the case (the called process's data inputs) and what it gives back."""

    inputs: frozenset[str]
    outputs: frozenset[str]


def call_data(model: Any, called: str, ws: Any) -> CallData | None:
    """The inputs and outputs of calling ``called`` from ``model`` (another pool of its file, or a saved model
    of ``ws``), or None if it cannot be read (the call's own check says why)."""
    from procestra.errors import ProcestraError
    from procestra.models.repository import ModelRef

    try:
        if called in getattr(model, "other_pools", {}):
            callee = model.pool(called)
        elif ws is not None:
            ref = ModelRef.parse(called)
            callee = type(model).load(ref.name, ws=ws, version=ref.version)
        else:
            return None
    except ProcestraError:
        return None
    io = process_io(callee) or IoSpec()
    outputs = set(io.outputs)
    if not outputs:  # all its data comes back: what its tasks set
        for e in callee.elements.values():
            outputs |= e.outputs()
    return CallData(frozenset(io.inputs), frozenset(outputs))


def data_error(exc: BaseException) -> str | None:
    """A message naming the call activity and the variable for SpiffWorkflow's missing data input (or output)
    of a call, or None for any other error."""
    data_input, data_output = getattr(exc, "data_input", None), getattr(exc, "data_output", None)
    var = data_input if data_input is not None else data_output
    if var is None:
        return None
    spec = getattr(getattr(exc, "task", None), "task_spec", None)
    where = getattr(spec, "bpmn_id", None) or getattr(spec, "name", None) or "a call activity"
    if data_input is not None:
        return (
            f"{where}: the called process's data input {var.bpmn_id!r} is missing from the case data "
            "(a call passes its ioSpecification's inputs, and each must be there)"
        )
    return (
        f"{where}: the called process ended without its data output {var.bpmn_id!r} "
        "(a call gives back its ioSpecification's outputs, and each must be set)"
    )
