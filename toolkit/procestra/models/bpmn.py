"""BPMN 2.0 in and out: XML with a diagram that opens in bpmn-js and Camunda Modeler.

:func:`to_bpmn_xml` / :func:`write_bpmn` write a pm4py BPMN model (from
``pm4py.convert_to_bpmn(tree)`` or a discovery) as BPMN 2.0 XML with a complete
diagram interchange section: every flow node gets a ``BPMNShape``, every sequence
flow a ``BPMNEdge`` with waypoints. The layout is Graphviz's (``dot -Tjson``, left to
right, orthogonal edges); ids are made valid XML NCNames (pm4py's flow ids are bare
UUIDs, which may start with a digit). The result is checked before it is returned.

:func:`read_bpmn` reads files made by other tools (Signavio, BIMP simulation models
with ``qbp:`` extensions, pm4py, bpmn-js) into a pm4py BPMN object. It rejects what
is not BPMN, and flows that point nowhere, with a :class:`~procestra.errors.ModelError`
that names the element; vendor extensions are dropped, not trusted.
:func:`bpmn_to_petri` turns a model into an accepting Petri net for conformance.

>>> from procestra.models.bpmn import read_bpmn, write_bpmn, bpmn_to_petri
>>> model = read_bpmn("claims.bpmn")
>>> net, im, fm = bpmn_to_petri(model)
>>> write_bpmn(model, "claims-relaid.bpmn")
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from procestra.errors import InvalidArgumentError, ModelError, ProcestraError
from procestra.models.render import AcceptingPetriNet, run_dot
from procestra.version import __version__

__all__ = [
    "BPMN_NS", "bpmn_to_petri", "check_diagram", "read_bpmn", "save_model", "to_bpmn_xml", "write_bpmn",
    "write_pnml", "write_ptml",
]  # fmt: skip

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
TARGET_NAMESPACE = "urn:procestra:bpmn"
_NSMAP = {"bpmn": BPMN_NS, "bpmndi": BPMNDI_NS, "dc": DC_NS, "di": DI_NS, "xsi": XSI_NS}
_NCNAME = re.compile(r"^[^\W\d][\w.\-]*$")
_ID_CHARS = re.compile(r"[^\w.\-]")
_OFFSET = (150.0, 80.0)  # where the diagram starts on the canvas, as modelers place it

# Flow node element names by BPMN 2.0, and what read_bpmn makes of those pm4py does not know.
_FLOW_NODES = {
    "task", "userTask", "serviceTask", "scriptTask", "manualTask", "businessRuleTask", "receiveTask",
    "sendTask", "subProcess", "adHocSubProcess", "transaction", "callActivity", "startEvent", "endEvent",
    "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "implicitThrowEvent",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
}  # fmt: skip
_RENAMED = {"callActivity": "task", "transaction": "subProcess", "implicitThrowEvent": "intermediateThrowEvent"}
_UNSUPPORTED = {"complexGateway": "complex gateways"}


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


# -- reading -------------------------------------------------------------------------
def _parse(path: Path) -> etree._Element:
    if not path.is_file():
        raise ModelError("no such file", path=str(path))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except etree.XMLSyntaxError as exc:
        raise ModelError(f"not a BPMN file: it is not well-formed XML ({exc})", path=str(path)) from exc
    if root.tag != _q(BPMN_NS, "definitions"):
        qname = etree.QName(root)
        where = f" in namespace {qname.namespace}" if qname.namespace else " (no namespace)"
        raise ModelError(f"not a BPMN 2.0 file: the root element is <{qname.localname}>{where}, expected "
                         f"<definitions> in {BPMN_NS}", path=str(path))  # fmt: skip
    return root


def _sanitise(root: etree._Element, path: str) -> None:
    """Check references and strip what pm4py's importer would trip over, in place."""
    ids: dict[str, etree._Element] = {}
    for el in root.iter():
        if isinstance(el.tag, str) and el.get("id") is not None:
            seen = ids.get(el.get("id"))
            if seen is not None and etree.QName(el).namespace == BPMN_NS == etree.QName(seen).namespace:
                raise ModelError(f"the id {el.get('id')!r} is used twice (line {seen.sourceline} and line "
                                 f"{el.sourceline}); ids must be unique in a file", path=path,
                                 element=el.get("id"))  # fmt: skip
            ids[el.get("id")] = el
    nodes = {i for i, el in ids.items() if etree.QName(el).namespace == BPMN_NS
             and etree.QName(el).localname in _FLOW_NODES}  # fmt: skip
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        qn = etree.QName(el)
        if qn.namespace not in (BPMN_NS, BPMNDI_NS, DC_NS, DI_NS):  # vendor extensions: qbp:, signavio:, ...
            el.getparent().remove(el)
            continue
        local = qn.localname
        if local in _UNSUPPORTED:
            raise ModelError(f"{_UNSUPPORTED[local]} are not supported (element {el.get('id')!r})",
                             path=path, element=el.get("id"))  # fmt: skip
        if local in _RENAMED and qn.namespace == BPMN_NS:
            el.tag = _q(BPMN_NS, _RENAMED[local])
        elif local in ("sequenceFlow", "messageFlow") and qn.namespace == BPMN_NS:
            kind = "sequence flow" if local == "sequenceFlow" else "message flow"
            fid = el.get("id")
            for attr in ("sourceRef", "targetRef"):
                ref = el.get(attr)
                if not ref:
                    raise ModelError(f"{kind} {fid!r} has no {attr}", path=path, element=fid)
                if ref not in ids:
                    raise ModelError(f"{kind} {fid!r} has {attr}={ref!r}, which names no element in the file",
                                     path=path, element=fid)  # fmt: skip
                if local == "sequenceFlow" and ref not in nodes:
                    other = etree.QName(ids[ref]).localname
                    raise ModelError(f"sequence flow {fid!r} has {attr}={ref!r}, a <{other}>, which is not a "
                                     "flow node (task, event or gateway)", path=path, element=fid)  # fmt: skip
        elif local == "association" and qn.namespace == BPMN_NS:
            ends = (el.get("sourceRef"), el.get("targetRef"))
            known = nodes | {i for i, e in ids.items() if etree.QName(e).localname == "textAnnotation"}
            if not all(ref in known for ref in ends):  # e.g. annotations on sequence flows
                el.getparent().remove(el)
        elif local in ("incoming", "outgoing") and not (el.text or "").strip():
            el.getparent().remove(el)
    if not nodes:
        raise ModelError("the file has no process elements (no task, event or gateway)", path=path)


def read_bpmn(path: str | Path) -> Any:
    """Read a BPMN 2.0 file into a pm4py BPMN object, with clear errors for broken files.

    Raises :class:`ModelError` when the file is not XML, not BPMN (no ``definitions`` in
    the BPMN namespace), or when a sequence flow's ``sourceRef``/``targetRef`` names no
    flow node. Vendor extension elements are ignored; call activities are read as tasks.
    """
    path = Path(path)
    root = _parse(path)
    _sanitise(root, str(path))
    from pm4py.objects.bpmn.importer.variants import lxml as importer

    try:
        return importer.import_xml_tree_from_root(root)
    except Exception as exc:  # pm4py's importer fails with bare AttributeErrors on odd files
        raise ModelError(f"pm4py could not import the model: {type(exc).__name__}: {exc}", path=str(path)) from exc


def bpmn_to_petri(bpmn: Any) -> tuple[Any, Any, Any]:
    """``(net, initial_marking, final_marking)`` for ``bpmn`` (pm4py's converter), e.g. for conformance."""
    import pm4py

    try:
        net, im, fm = pm4py.convert_to_petri_net(bpmn)
    except Exception as exc:
        raise ModelError(f"cannot convert the BPMN model to a Petri net: {type(exc).__name__}: {exc}") from exc
    return net, im, fm


# -- layout ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def _kind(node: Any) -> tuple[str, list[str], tuple[int, int]]:
    """BPMN element name, event definitions and default size (as bpmn-js draws them) of a node."""
    from pm4py.objects.bpmn.obj import BPMN

    checks: list[tuple[type, str, list[str], tuple[int, int]]] = [
        (BPMN.MessageStartEvent, "startEvent", ["messageEventDefinition"], (36, 36)),
        (BPMN.StartEvent, "startEvent", [], (36, 36)),
        (BPMN.MessageEndEvent, "endEvent", ["messageEventDefinition"], (36, 36)),
        (BPMN.TerminateEndEvent, "endEvent", ["terminateEventDefinition"], (36, 36)),
        (BPMN.ErrorEndEvent, "endEvent", ["errorEventDefinition"], (36, 36)),
        (BPMN.CancelEndEvent, "endEvent", ["cancelEventDefinition"], (36, 36)),
        (BPMN.EndEvent, "endEvent", [], (36, 36)),
        (BPMN.MessageIntermediateCatchEvent, "intermediateCatchEvent", ["messageEventDefinition"], (36, 36)),
        (BPMN.ErrorIntermediateCatchEvent, "intermediateCatchEvent", ["errorEventDefinition"], (36, 36)),
        (BPMN.CancelIntermediateCatchEvent, "intermediateCatchEvent", ["cancelEventDefinition"], (36, 36)),
        (BPMN.IntermediateCatchEvent, "intermediateCatchEvent", [], (36, 36)),
        (BPMN.MessageIntermediateThrowEvent, "intermediateThrowEvent", ["messageEventDefinition"], (36, 36)),
        (BPMN.IntermediateThrowEvent, "intermediateThrowEvent", [], (36, 36)),
        (BPMN.MessageBoundaryEvent, "boundaryEvent", ["messageEventDefinition"], (36, 36)),
        (BPMN.ErrorBoundaryEvent, "boundaryEvent", ["errorEventDefinition"], (36, 36)),
        (BPMN.CancelBoundaryEvent, "boundaryEvent", ["cancelEventDefinition"], (36, 36)),
        (BPMN.BoundaryEvent, "boundaryEvent", [], (36, 36)),
        (BPMN.UserTask, "userTask", [], (100, 80)),
        (BPMN.SendTask, "sendTask", [], (100, 80)),
        (BPMN.Task, "task", [], (100, 80)),
        (BPMN.SubProcess, "subProcess", [], (100, 80)),
        (BPMN.ExclusiveGateway, "exclusiveGateway", [], (50, 50)),
        (BPMN.ParallelGateway, "parallelGateway", [], (50, 50)),
        (BPMN.InclusiveGateway, "inclusiveGateway", [], (50, 50)),
        (BPMN.EventBasedGateway, "eventBasedGateway", [], (50, 50)),
        (BPMN.TextAnnotation, "textAnnotation", [], (100, 30)),
    ]
    for cls, tag, definitions, size in checks:
        if isinstance(node, cls):
            return tag, definitions, size
    raise InvalidArgumentError(f"cannot write a {type(node).__name__} ({node.get_id()!r}) to BPMN XML: pools, "
                               "lanes and collaborations are not supported", parameter="model")  # fmt: skip


def _points(pos: str, height: float) -> list[tuple[float, float]]:
    """Corner points of a Graphviz edge ``pos`` (a B-spline of straight pieces), y flipped."""
    start = end = None
    spline: list[tuple[float, float]] = []
    for token in pos.split():
        if token.startswith(("e,", "s,")):
            sx, sy = token[2:].split(",")
            if token[0] == "e":
                end = (float(sx), float(sy))
            else:
                start = (float(sx), float(sy))
        else:
            sx, sy = token.split(",")
            spline.append((float(sx), float(sy)))
    pts = ([start] if start else []) + spline[::3] + ([end] if end else [])
    out: list[tuple[float, float]] = []
    for x, y in pts:
        p = (round(x + _OFFSET[0]), round(height - y + _OFFSET[1]))
        if out and p == out[-1]:
            continue
        if len(out) >= 2 and (out[-2][0] == out[-1][0] == p[0] or out[-2][1] == out[-1][1] == p[1]):
            out[-1] = p  # collinear: extend the last segment
            continue
        out.append(p)
    return out


def _layout(nodes: list[Any], flows: list[Any], parent: dict[Any, Any], children: dict[Any, list[Any]],
            ) -> tuple[dict[Any, _Box], dict[Any, list[tuple[float, float]]]]:  # fmt: skip
    """Boxes of nodes and waypoints of flows, laid out by ``dot`` left to right."""
    import graphviz
    from pm4py.objects.bpmn.obj import BPMN

    dot_id = {n: f"n{i}" for i, n in enumerate(nodes)}
    cluster_of = {sub: f"cluster_{i}" for i, sub in enumerate(n for n in nodes if children.get(n))}
    boundary = [n for n in nodes if isinstance(n, BPMN.BoundaryEvent)]
    notes = [n for n in nodes if isinstance(n, BPMN.TextAnnotation)]  # placed beside their element afterwards
    by_id = {n.get_id(): n for n in nodes}

    def anchor(node: Any, incoming: bool) -> Any:
        """A dot node standing for ``node``: an expanded subprocess is entered at a start, left at an end."""
        while children.get(node):
            kids = children[node]
            want = BPMN.StartEvent if incoming else BPMN.EndEvent
            node = next((k for k in kids if isinstance(k, want)), kids[0] if incoming else kids[-1])
        return node

    def fill(graph: Any, container: Any) -> None:
        for n in nodes:
            if parent[n] is not container:
                continue
            if n in notes:
                continue
            if n in cluster_of:
                with graph.subgraph(name=cluster_of[n]) as sub:
                    sub.attr(margin="24", label="")
                    fill(sub, n)
                continue
            _, _, (w, h) = _kind(n)
            graph.node(dot_id[n], width=f"{w / 72:.4f}", height=f"{h / 72:.4f}")

    def source(splines: str) -> str:
        g = graphviz.Digraph("bpmn", graph_attr={"rankdir": "LR", "splines": splines, "compound": "true",
                                                 "nodesep": "0.45", "ranksep": "0.55"},
                             node_attr={"shape": "box", "fixedsize": "true", "label": ""})  # fmt: skip
        fill(g, None)
        for i, f in enumerate(flows):
            src, tgt = f.get_source(), f.get_target()
            attrs = {"id": f"e{i}"}
            if src in cluster_of:
                attrs["ltail"] = cluster_of[src]
            if tgt in cluster_of:
                attrs["lhead"] = cluster_of[tgt]
            if isinstance(f, BPMN.Association):
                continue
            g.edge(dot_id[anchor(src, False)], dot_id[anchor(tgt, True)], **attrs)
        for b in boundary:  # keep a boundary event's targets right of its host
            host = by_id.get(b.get_activity())
            if host is not None:
                g.edge(dot_id[anchor(host, False)], dot_id[b], style="invis")
        return str(g.source)

    try:
        data = json.loads(run_dot(source("ortho"), "json"))
    except ProcestraError:  # Graphviz's orthogonal router fails on some graphs: straight lines then
        data = json.loads(run_dot(source("polyline"), "json"))
    height = float(data["bb"].split(",")[3])
    objects = {o["_gvid"]: o for o in data.get("objects", [])}
    by_name = {o["name"]: o for o in objects.values()}
    boxes: dict[Any, _Box] = {}
    for n in nodes:
        if n in notes:
            continue
        if n in cluster_of:
            llx, lly, urx, ury = (float(v) for v in by_name[cluster_of[n]]["bb"].split(","))
            boxes[n] = _Box(llx + _OFFSET[0], height - ury + _OFFSET[1], urx - llx, ury - lly)
        else:
            x, y = (float(v) for v in by_name[dot_id[n]]["pos"].split(","))
            _, _, (w, h) = _kind(n)
            boxes[n] = _Box(x - w / 2 + _OFFSET[0], height - y - h / 2 + _OFFSET[1], w, h)
    waypoints: dict[Any, list[tuple[float, float]]] = {}
    for edge in data.get("edges", []):
        if "id" in edge and edge["id"].startswith("e"):
            waypoints[flows[int(edge["id"][1:])]] = _points(edge["pos"], height)
    for f, pts in waypoints.items():  # dot routes to bounding boxes; end on the diamond or circle itself
        if len(pts) >= 2:
            pts[0] = _clip(pts[0], pts[1], boxes[f.get_source()], _outline(f.get_source(), cluster_of))
            pts[-1] = _clip(pts[-1], pts[-2], boxes[f.get_target()], _outline(f.get_target(), cluster_of))
    _attach_boundary(boundary, by_id, boxes, waypoints)
    _place_notes(notes, boxes, waypoints)
    for f in flows:  # a flow Graphviz did not route (should not happen): centre to centre
        pts = waypoints.get(f, [])
        if len(pts) < 2:
            a, b = boxes[f.get_source()], boxes[f.get_target()]
            waypoints[f] = [(round(a.cx), round(a.cy)), (round(b.cx), round(b.cy))]
    return boxes, waypoints


def _outline(node: Any, cluster_of: dict[Any, str]) -> str:
    from pm4py.objects.bpmn.obj import BPMN

    if isinstance(node, BPMN.Gateway):
        return "diamond"
    if isinstance(node, BPMN.Event) and node not in cluster_of:
        return "circle"
    return "box"


def _clip(p: tuple[float, float], q: tuple[float, float], box: _Box, outline: str) -> tuple[float, float]:
    """Move the end ``p`` of the straight piece ``q``-``p`` from the bounding box onto the shape's outline."""
    if outline == "box":
        return p
    horizontal = p[1] == q[1]
    if not horizontal and p[0] != q[0]:
        return p
    centre, across = (box.cx, box.cy) if horizontal else (box.cy, box.cx)
    radius, half = (box.w / 2, box.h / 2) if horizontal else (box.h / 2, box.w / 2)
    offset = abs((p[1] if horizontal else p[0]) - across)
    if offset >= half:
        return p
    reach = radius * (1 - offset / half) if outline == "diamond" else math.sqrt(radius**2 - (offset * radius / half) ** 2)
    towards = q[0] if horizontal else q[1]
    value = round(centre - reach if towards < centre else centre + reach)
    return (value, p[1]) if horizontal else (p[0], value)


def _place_notes(notes: list[Any], boxes: dict[Any, _Box], waypoints: dict[Any, list[tuple[float, float]]]) -> None:
    """Put each text annotation above and right of the element it annotates, linked by a short line."""
    from pm4py.objects.bpmn.obj import BPMN

    stacked: dict[Any, int] = {}
    top = min((b.y for b in boxes.values()), default=_OFFSET[1])
    loose = 0
    for note in notes:
        links = [f for f in [*note.get_in_arcs(), *note.get_out_arcs()] if isinstance(f, BPMN.Association)]
        other = next((f.get_source() if f.get_target() is note else f.get_target() for f in links
                      if (f.get_source() if f.get_target() is note else f.get_target()) in boxes), None)  # fmt: skip
        if other is None:  # nothing to sit next to: a row above the diagram
            boxes[note] = _Box(_OFFSET[0] + 130 * loose, top - 70, 100, 30)
            loose += 1
            continue
        host, k = boxes[other], stacked.get(other, 0)
        stacked[other] = k + 1
        boxes[note] = _Box(host.x + host.w * 0.6, host.y - 60 - 40 * k, 100, 30)
    for note in notes:
        for f in [*note.get_in_arcs(), *note.get_out_arcs()]:
            if isinstance(f, BPMN.Association) and f.get_source() in boxes and f.get_target() in boxes:
                a, b = boxes[f.get_source()], boxes[f.get_target()]
                lower, upper = (a, b) if a.y > b.y else (b, a)
                line: list[tuple[float, float]] = [(round(lower.cx), round(lower.y)), (round(upper.x), round(upper.y + upper.h))]
                waypoints[f] = line if lower is a else line[::-1]


def _attach_boundary(boundary: list[Any], by_id: dict[str, Any], boxes: dict[Any, _Box],
                     waypoints: dict[Any, list[tuple[float, float]]]) -> None:  # fmt: skip
    """Move boundary events onto their host's bottom border and route their flows down and across."""
    per_host: dict[Any, list[Any]] = {}
    for b in boundary:
        host = by_id.get(b.get_activity())
        if host is not None:
            per_host.setdefault(host, []).append(b)
    for host, events in per_host.items():
        hb = boxes[host]
        for i, b in enumerate(events):
            cx = hb.x + hb.w * (i + 1) / (len(events) + 1)
            box = _Box(cx - 18, hb.y + hb.h - 18, 36, 36)
            boxes[b] = box
            for f in b.get_out_arcs():
                t = boxes[f.get_target()]
                side = t.x if t.cx >= cx else t.x + t.w
                bottom = box.y + box.h
                if t.y > bottom:  # target below: straight down, then across to its top centre
                    waypoints[f] = [(round(cx), round(bottom)), (round(cx), round(t.y - 20)),
                                    (round(t.cx), round(t.y - 20)), (round(t.cx), round(t.y))]  # fmt: skip
                else:
                    waypoints[f] = [(round(cx), round(bottom)), (round(cx), round(max(t.cy, bottom + 20))),
                                    (round(side), round(max(t.cy, bottom + 20)))]  # fmt: skip


# -- writing ------------------------------------------------------------------------------
def _ncname(raw: Any, prefix: str, used: set[str]) -> str:
    """``raw`` as a valid, unused XML NCName (ids must not start with a digit)."""
    text = str(raw)  # pm4py's own flow ids are UUID objects: always prefixed, for a uniform look
    name = text if isinstance(raw, str) and _NCNAME.match(text) else prefix + _ID_CHARS.sub("_", text)
    unique, k = name, 2
    while unique in used:
        unique, k = f"{name}_{k}", k + 1
    used.add(unique)
    return unique


def _ordered(bpmn: Any) -> tuple[list[Any], list[Any]]:
    """Nodes in breadth-first order from the start events (stable output), and flows in source order."""
    all_nodes = list(bpmn.get_nodes())
    key = {n: (type(n).__name__, str(n.get_name()), str(n.get_id())) for n in all_nodes}
    seen: dict[Any, None] = {}
    queue = sorted((n for n in all_nodes if not n.get_in_arcs()), key=lambda n: key[n])
    while queue or len(seen) < len(all_nodes):
        if not queue:
            queue = [min((n for n in all_nodes if n not in seen), key=lambda n: key[n])]
        node = queue.pop(0)
        if node in seen:
            continue
        seen[node] = None
        queue.extend(f.get_target() for f in node.get_out_arcs() if f.get_target() not in seen)
    nodes = list(seen)
    rank = {n: i for i, n in enumerate(nodes)}
    flows = sorted(bpmn.get_flows(), key=lambda f: (rank[f.get_source()], rank[f.get_target()], str(f.get_id())))
    return nodes, flows


def to_bpmn_xml(bpmn: Any, *, name: str | None = None, executable: bool = False) -> str:
    """``bpmn`` (a pm4py BPMN object) as BPMN 2.0 XML with a complete, laid-out diagram.

    ``name`` names the process (default: the model's name, else "Process").
    ``executable`` sets ``isExecutable``: mined models have no gateway conditions, so
    they are documentation, not programs, by default; pass ``True`` to hand a model to
    an engine (SpiffWorkflow, Camunda) that refuses non-executable processes.
    """
    from pm4py.objects.bpmn.obj import BPMN

    if not isinstance(bpmn, BPMN):
        raise InvalidArgumentError(f"to_bpmn_xml needs a pm4py BPMN object, got {type(bpmn).__name__} "
                                   "(convert a process tree with pm4py.convert_to_bpmn)", parameter="bpmn")  # fmt: skip
    nodes, flows = _ordered(bpmn)
    for n in nodes:
        _kind(n)  # rejects pools and collaborations early, with a clear message
    subs = {n.get_id(): n for n in nodes if isinstance(n, BPMN.SubProcess)}
    parent = {n: subs.get(n.get_process()) if subs.get(n.get_process()) is not n else None for n in nodes}
    children: dict[Any, list[Any]] = {}
    for n in nodes:
        if parent[n] is not None:
            children.setdefault(parent[n], []).append(n)
    boxes, waypoints = _layout(nodes, flows, parent, children) if nodes else ({}, {})

    used: set[str] = set()
    ids = {n: _ncname(n.get_id(), _id_prefix(n), used) for n in nodes}
    fids = {f: _ncname(f.get_id(), "Flow_" if isinstance(f, BPMN.SequenceFlow) else "Association_", used)
            for f in flows}  # fmt: skip
    digest = hashlib.sha1("".join(sorted(used)).encode()).hexdigest()[:8]
    process_id = _ncname(bpmn.get_process_id(), "Process_", used)
    root = etree.Element(_q(BPMN_NS, "definitions"), nsmap=_NSMAP)
    root.set("id", f"Definitions_{digest}")
    root.set("targetNamespace", TARGET_NAMESPACE)
    root.set("exporter", "Procestra")
    root.set("exporterVersion", __version__)
    process = etree.SubElement(root, _q(BPMN_NS, "process"), id=process_id,
                               isExecutable="true" if executable else "false")  # fmt: skip
    title = name if name is not None else (bpmn.get_name() or "Process")
    if title:
        process.set("name", title)
    element: dict[Any, etree._Element] = {}
    container = {None: process}
    pending = list(nodes)
    while pending:  # parents before children
        later = []
        for n in pending:
            if parent[n] is not None and parent[n] not in element:
                later.append(n)
                continue
            tag, definitions, _ = _kind(n)
            holder = container[parent[n]] if parent[n] is None else element[parent[n]]
            el = etree.SubElement(holder, _q(BPMN_NS, tag), id=ids[n])
            label = str(n.get_name() or "").strip()
            if tag == "textAnnotation":
                etree.SubElement(el, _q(BPMN_NS, "text")).text = str(getattr(n, "text", "") or label)
            else:
                if label:
                    el.set("name", label)
                if tag == "boundaryEvent":
                    host = next((h for h in nodes if h.get_id() == n.get_activity()), None)
                    if host is not None:
                        el.set("attachedToRef", ids[host])
                if isinstance(n, BPMN.Gateway):
                    el.set("gatewayDirection", n.get_gateway_direction().value)
                for f in n.get_in_arcs():
                    if isinstance(f, BPMN.SequenceFlow) and f in fids:
                        etree.SubElement(el, _q(BPMN_NS, "incoming")).text = fids[f]
                for f in n.get_out_arcs():
                    if isinstance(f, BPMN.SequenceFlow) and f in fids:
                        etree.SubElement(el, _q(BPMN_NS, "outgoing")).text = fids[f]
                for d in definitions:
                    etree.SubElement(el, _q(BPMN_NS, d))
            element[n] = el
        if len(later) == len(pending):
            raise ProcestraError("subprocess nesting in the BPMN model is cyclic")
        pending = later
    for f in flows:
        src, tgt = f.get_source(), f.get_target()
        holder = process if parent[src] is None else element[parent[src]]
        tag = "sequenceFlow" if isinstance(f, BPMN.SequenceFlow) else "association"
        el = etree.SubElement(holder, _q(BPMN_NS, tag), id=fids[f], sourceRef=ids[src], targetRef=ids[tgt])
        if tag == "sequenceFlow" and str(f.get_name() or "").strip():
            el.set("name", str(f.get_name()).strip())
    for holder in [process, *element.values()]:  # XSD order: flow elements first, then artifacts
        for el in [c for c in holder if etree.QName(c).localname in ("textAnnotation", "association")]:
            holder.remove(el)
            holder.append(el)

    diagram = etree.SubElement(root, _q(BPMNDI_NS, "BPMNDiagram"), id="BPMNDiagram_1")
    plane = etree.SubElement(diagram, _q(BPMNDI_NS, "BPMNPlane"), id="BPMNPlane_1", bpmnElement=process_id)
    for n in nodes:
        box = boxes[n]
        shape = etree.SubElement(plane, _q(BPMNDI_NS, "BPMNShape"), id=f"{ids[n]}_di", bpmnElement=ids[n])
        if isinstance(n, BPMN.ExclusiveGateway):
            shape.set("isMarkerVisible", "true")
        if isinstance(n, BPMN.SubProcess):
            shape.set("isExpanded", "true" if children.get(n) else "false")
        etree.SubElement(shape, _q(DC_NS, "Bounds"), x=_num(box.x), y=_num(box.y), width=_num(box.w),
                         height=_num(box.h))  # fmt: skip
    for f in flows:
        edge = etree.SubElement(plane, _q(BPMNDI_NS, "BPMNEdge"), id=f"{fids[f]}_di", bpmnElement=fids[f])
        for x, y in waypoints[f]:
            etree.SubElement(edge, _q(DI_NS, "waypoint"), x=_num(x), y=_num(y))
    problems = _problems(root)
    if problems:  # a bug of ours: never hand out a file that modelers would choke on
        raise ProcestraError("the BPMN XML we wrote is inconsistent: " + "; ".join(problems[:5]))
    return str(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode("utf-8"))


def _num(value: float) -> str:
    return str(round(value))


def _id_prefix(node: Any) -> str:
    from pm4py.objects.bpmn.obj import BPMN

    if isinstance(node, BPMN.Gateway):
        return "Gateway_"
    if isinstance(node, BPMN.Event):
        return "Event_"
    if isinstance(node, BPMN.TextAnnotation):
        return "TextAnnotation_"
    return "Activity_"


def _problems(root: etree._Element) -> list[str]:
    problems: list[str] = []
    ids: dict[str, etree._Element] = {}
    for el in root.iter():
        if not isinstance(el.tag, str) or el.get("id") is None:
            continue
        i = el.get("id")
        if not _NCNAME.match(i):
            problems.append(f"id {i!r} is not a valid XML NCName")
        if i in ids:
            problems.append(f"id {i!r} is used twice")
        ids[i] = el
    shapes = {s.get("bpmnElement") for s in root.iter(_q(BPMNDI_NS, "BPMNShape"))}
    edges = {e.get("bpmnElement"): e for e in root.iter(_q(BPMNDI_NS, "BPMNEdge"))}
    for i, el in ids.items():
        qn = etree.QName(el)
        if qn.namespace != BPMN_NS:
            continue
        if qn.localname in _FLOW_NODES or qn.localname == "textAnnotation":
            if i not in shapes:
                problems.append(f"<{qn.localname}> {i!r} has no BPMNShape")
        elif qn.localname in ("sequenceFlow", "association"):
            for attr in ("sourceRef", "targetRef"):
                if el.get(attr) not in ids:
                    problems.append(f"<{qn.localname}> {i!r} has {attr}={el.get(attr)!r}, which names no element")
            edge = edges.get(i)
            if edge is None:
                problems.append(f"<{qn.localname}> {i!r} has no BPMNEdge")
            elif len(edge.findall(_q(DI_NS, "waypoint"))) < 2:
                problems.append(f"the BPMNEdge of {i!r} has fewer than two waypoints")
    for ref in shapes | set(edges):
        if ref not in ids:
            problems.append(f"a diagram element refers to {ref!r}, which is not in the model")
    return problems


def check_diagram(xml: str | bytes) -> list[str]:
    """What keeps a BPMN XML document from opening cleanly: missing shapes or edges, bad ids.

    An empty list means every flow node has a shape, every flow an edge with waypoints,
    every reference resolves and every id is a unique NCName.
    """
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return _problems(etree.fromstring(data, parser))


def write_bpmn(bpmn: Any, path: str | Path, *, name: str | None = None, executable: bool = False) -> Path:
    """Write :func:`to_bpmn_xml` of ``bpmn`` to ``path``."""
    path = Path(path)
    path.write_text(to_bpmn_xml(bpmn, name=name, executable=executable), encoding="utf-8")
    return path


def write_pnml(net: Any, initial_marking: Any, final_marking: Any, path: str | Path) -> Path:
    """Write a Petri net with its markings as PNML (pm4py's writer)."""
    import pm4py

    path = Path(path)
    pm4py.write_pnml(net, initial_marking, final_marking, str(path))
    return path


def write_ptml(tree: Any, path: str | Path) -> Path:
    """Write a process tree as PTML (pm4py's writer)."""
    import pm4py

    path = Path(path)
    pm4py.write_ptml(tree, str(path))
    return path


def _kind_of(model: Any) -> str:
    names = {"BPMN": "bpmn", "ProcessTree": "tree", "PetriNet": "petri", "AcceptingPetriNet": "petri"}
    for cls in type(model).__mro__:
        if cls.__name__ in names and cls.__module__.startswith(("pm4py.", "procestra.")):
            return names[cls.__name__]
    return type(model).__name__


def save_model(model: Any, path: str | Path) -> Path:
    """Write ``model`` as ``.bpmn``, ``.pnml`` or ``.ptml``, converting between model kinds where pm4py can."""
    import pm4py
    from pm4py.objects.petri_net.obj import Marking

    path = Path(path)
    ext, kind = path.suffix.lower(), _kind_of(model)
    if kind == "petri" and not isinstance(model, AcceptingPetriNet):
        model = AcceptingPetriNet(model, Marking(), Marking())
    wrong = InvalidArgumentError(f"cannot save a {type(model).__name__} as {ext}: {ext} holds "
                                 + {".bpmn": "a BPMN model, process tree or Petri net",
                                    ".pnml": "a Petri net, process tree or BPMN model",
                                    ".ptml": "a process tree"}.get(ext, "another kind of model")
                                 + "; drawings go to .svg, .png, .pdf or .dot", parameter="path")  # fmt: skip
    if ext == ".bpmn":
        if kind == "tree":
            model = pm4py.convert_to_bpmn(model)
        elif kind == "petri":
            model = pm4py.convert_to_bpmn(model.net, model.initial_marking, model.final_marking)
        elif kind != "bpmn":
            raise wrong
        return write_bpmn(model, path)
    if ext == ".pnml":
        if kind == "petri":
            return write_pnml(model.net, model.initial_marking, model.final_marking, path)
        if kind == "bpmn":
            net, im, fm = bpmn_to_petri(model)
            return write_pnml(net, im, fm, path)
        if kind == "tree":
            net, im, fm = pm4py.convert_to_petri_net(model)
            return write_pnml(net, im, fm, path)
        raise wrong
    if ext == ".ptml" and kind == "tree":
        return write_ptml(model, path)
    raise wrong

