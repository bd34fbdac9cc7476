"""Write a to-be model read from a file by patching that file, so what the author drew survives.

:meth:`ToBeModel.to_xml <procestra.engine.tobe.ToBeModel.to_xml>` of a model loaded from BPMN
XML calls :func:`patch_xml`: it starts from the document as read (every pool, the diagram,
messages, signals, errors, vendor extensions, loop characteristics, data objects...) and
changes only what the model changed: names, element kinds (a task bound to a handler becomes a
service task), our ``procestra:`` extension elements, scripts, conditions and default flows,
added and removed elements and flows. Elements and flows the file has no diagram for get one:
a new element is put next to a neighbour that has a shape (below it when that place is taken),
a flow whose ends changed is drawn again; removed ones lose their shapes and edges. Patching
an unchanged model gives the document back, so saving what was loaded from a save gives the
same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from lxml import etree

from procestra.engine.elements import GATEWAYS, Element, slug
from procestra.engine.tobe_bpmn import (
    NODE_TAGS,
    NS,
    READ_AS,
    our_extensions,
    process_extensions,
    write_loop,
    write_node,
)
from procestra.engine.tobe_vendor import PYTHON_FORMATS, camunda_loop, names_language, read_loop, write_spiff
from procestra.errors import ModelError
from procestra.models.bpmn import BPMN_NS, BPMNDI_NS, DC_NS, DI_NS, XSI_NS

if TYPE_CHECKING:
    from procestra.engine.tobe import ToBeModel

__all__ = ["patch_xml"]

_B, _P = f"{{{BPMN_NS}}}", f"{{{NS}}}"
_DI, _DC, _W = f"{{{BPMNDI_NS}}}", f"{{{DC_NS}}}", f"{{{DI_NS}}}"
_Box = tuple[float, float, float, float]  # x, y, width, height
_GAP = 50.0


def patch_xml(model: ToBeModel, *, name: str | None = None, called: Mapping[str, str] | None = None) -> str:
    """``model`` written into the document it was read from (see the module docstring)."""
    assert model.document is not None
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(model.document, parser)
    _rename_ids(root, model.document_ids)
    root = _with_namespaces(root)
    procs = [p for p in root.iter(_B + "process") if p.get("id") == model.process_id]
    if len(procs) != 1:
        raise ModelError(f"the document this model was read from has no process {model.process_id!r}")
    proc = procs[0]
    proc.set("isExecutable", "true")
    for other in root.iter(_B + "process"):  # only the process that runs carries our marker
        stale = other.find(f"{_B}extensionElements/{_P}model") if other is not proc else None
        if stale is not None:
            stale.getparent().remove(stale)
    prefix = root.prefix
    nodes: dict[str, etree._Element] = {}
    flows: dict[str, etree._Element] = {}
    for x in proc.iter():
        if isinstance(x.tag, str) and etree.QName(x).namespace == BPMN_NS and x.get("id"):
            local = etree.QName(x).localname
            if local in NODE_TAGS:
                nodes[x.get("id") or ""] = x
            elif local == "sequenceFlow":
                flows[x.get("id") or ""] = x
    gone = _remove_gone(root, proc, model, nodes, flows)
    errors: list[etree._Element] = []
    for e in _parents_first(model):
        node = nodes.get(e.id)
        if node is None:
            holder = proc if e.parent is None else nodes[e.parent]
            node = nodes[e.id] = etree.SubElement(holder, _B + e.kind, id=e.id)
            _new_node(node, e, errors, called or {})
        else:
            _patch_node(node, e, called or {})
        if e.name and " ".join((node.get("name") or "").split()) != e.name:  # as written when only spacing differs
            node.set("name", e.name)
        elif not e.name and "name" in node.attrib:
            del node.attrib["name"]
    changed: set[str] = set()
    for f in model.flows.values():
        x = flows.get(f.id)
        if x is None:
            holder = proc if model.elements[f.source].parent is None else nodes[model.elements[f.source].parent or ""]
            x = flows[f.id] = etree.SubElement(holder, _B + "sequenceFlow", id=f.id)
        for attr, value in (("sourceRef", f.source), ("targetRef", f.target)):
            if x.get(attr) != value:
                x.set(attr, value)
                changed.add(f.id)
        if f.name and " ".join((x.get("name") or "").split()) != f.name:
            x.set("name", f.name)
        elif not f.name and "name" in x.attrib:
            del x.attrib["name"]
        _patch_condition(x, f.condition, prefix)
    _sync_flow_refs(model, nodes)
    first_proc = next(c for c in root if etree.QName(c).localname in ("process", "collaboration"))
    for err in errors:
        first_proc.addprevious(err)
    _set_ours(proc, process_extensions(model, name))
    _Diagram(root, model, proc, gone).draw(changed)
    return str(etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")) + "\n"


def _rename_ids(root: etree._Element, ids: Mapping[str, str]) -> None:
    """Apply the reader's renames of ids that were not XML names, to ids and references alike."""
    if not ids:
        return
    for x in root.iter():
        if not isinstance(x.tag, str) or etree.QName(x).namespace not in (BPMN_NS, BPMNDI_NS):
            continue
        for attr, value in x.attrib.items():
            if value in ids and attr in ("id", "sourceRef", "targetRef", "bpmnElement", "default", "attachedToRef",
                                         "processRef", "calledElement", "sourceElement", "targetElement"):
                x.set(attr, ids[value])
        if etree.QName(x).localname in ("incoming", "outgoing", "flowNodeRef", "sourceRef", "targetRef") and \
                (x.text or "").strip() in ids:
            x.text = ids[(x.text or "").strip()]


def _with_namespaces(root: etree._Element) -> etree._Element:
    """``root``, declaring our namespace and the diagram's at the top (a new root element only if one is missing)."""
    want = {"procestra": NS, "bpmndi": BPMNDI_NS, "dc": DC_NS, "di": DI_NS}
    have = set(root.nsmap.values())
    missing = {k: v for k, v in want.items() if v not in have and k not in root.nsmap}
    if not missing:
        return root
    new = etree.Element(root.tag, attrib=dict(root.attrib), nsmap={**root.nsmap, **missing})
    new.text = root.text
    for child in list(root):
        new.append(child)
    return new


def _parents_first(model: ToBeModel) -> list[Element]:
    done: set[str | None] = {None}
    out: list[Element] = []
    pending = list(model.elements.values())
    while pending:
        ready = [e for e in pending if e.parent in done]
        if not ready:
            raise ModelError("subprocess nesting is cyclic", element=pending[0].id)
        out += ready
        done |= {e.id for e in ready}
        pending = [e for e in pending if e.id not in done]
    return out


def _remove_gone(root: etree._Element, proc: etree._Element, model: ToBeModel, nodes: dict[str, etree._Element],
                 flows: dict[str, etree._Element]) -> set[str]:  # fmt: skip
    """Remove the elements and flows the model no longer has, and everything that refers to them."""
    gone: set[str] = set()
    for eid, node in list(nodes.items()):
        if eid not in model.elements and node.getparent() is not None:
            gone |= {x.get("id") or "" for x in node.iter() if isinstance(x.tag, str) and x.get("id")}
            node.getparent().remove(node)
    for fid, x in list(flows.items()):
        if fid not in model.flows and x.getparent() is not None:
            gone.add(fid)
            x.getparent().remove(x)
    for store in (nodes, flows):
        for key in [k for k in store if k in gone]:
            del store[key]
    if not gone:
        return gone
    for assoc in list(proc.iter(_B + "association")):
        if assoc.get("sourceRef") in gone or assoc.get("targetRef") in gone:
            gone.add(assoc.get("id") or "")
            assoc.getparent().remove(assoc)
    for flow in list(root.iter(_B + "messageFlow")):  # a message flow to or from a removed element
        if flow.get("sourceRef") in gone or flow.get("targetRef") in gone:
            gone.add(flow.get("id") or "")
            flow.getparent().remove(flow)
    for ref in list(proc.iter(_B + "flowNodeRef")):
        if (ref.text or "").strip() in gone:
            ref.getparent().remove(ref)
    for di in list(root.iter(_DI + "BPMNShape", _DI + "BPMNEdge")):
        if di.get("bpmnElement") in gone:
            di.getparent().remove(di)
    for plane in list(root.iter(_DI + "BPMNPlane")):  # a removed collapsed subprocess's own diagram
        if plane.get("bpmnElement") in gone and plane.getparent() is not None:
            diagram = plane.getparent()
            diagram.getparent().remove(diagram)
    return gone


def _head(node: etree._Element) -> int:
    """Where content after documentation and extension elements starts in ``node``."""
    i = 0
    while i < len(node) and isinstance(node[i].tag, str) and etree.QName(node[i]).localname in (
            "documentation", "extensionElements"):
        i += 1
    return i


def _set_ours(holder: etree._Element, ours: list[etree._Element]) -> None:
    """Replace ``holder``'s ``procestra:`` extension elements by ``ours`` (creating extensionElements if needed)."""
    ext = holder.find(_B + "extensionElements")
    if ext is None:
        if not ours:
            return
        ext = etree.Element(_B + "extensionElements")
        i = 0
        while i < len(holder) and isinstance(holder[i].tag, str) and etree.QName(holder[i]).localname == \
                "documentation":
            i += 1
        holder.insert(i, ext)
    old = [c for c in ext if isinstance(c.tag, str) and etree.QName(c).namespace == NS]
    if [_sig(c) for c in old] == [_sig(c) for c in ours]:  # the same, however indented: leave it as written
        return
    at = ext.index(old[0]) if old else len(ext)
    for c in old:
        ext.remove(c)
    for i, c in enumerate(ours):
        ext.insert(at + i, c)
    if not len(ext) and not (ext.text or "").strip():
        holder.remove(ext)


def _sig(x: etree._Element) -> tuple[object, ...]:
    """What an element says, without the whitespace between elements."""
    return (x.tag, sorted(x.attrib.items()), (x.text or "").strip(), [_sig(c) for c in x if isinstance(c.tag, str)])


def _new_node(node: etree._Element, e: Element, errors: list[etree._Element], called: Mapping[str, str]) -> None:
    write_node(node, e, errors, called)
    prefix = node.prefix  # the file's prefix for BPMN (None: the default namespace), in xsi:type values
    for x in node.iter():
        value = x.get(f"{{{XSI_NS}}}type") if isinstance(x.tag, str) else None
        if value is not None and value.startswith("bpmn:") and prefix != "bpmn":
            x.set(f"{{{XSI_NS}}}type", f"{prefix}:{value[5:]}" if prefix else value[5:])


def _patch_node(node: etree._Element, e: Element, called: Mapping[str, str]) -> None:
    """Bring an element the file has up to date with ``e``: kind, our extensions, script, call, default flow."""
    local = etree.QName(node).localname
    read_as = READ_AS.get(local, local)
    if read_as != e.kind or (local == "businessRuleTask" and e.handler is not None):
        node.tag = _B + e.kind
    _set_ours(node, our_extensions(e))
    script = node.find(_B + "script")
    if e.kind == "scriptTask" and e.script:
        if script is None:
            node.set("scriptFormat", node.get("scriptFormat") or "python")
            script = etree.SubElement(node, _B + "script")
        if script.text != e.script:
            script.text = e.script
        fmt = (node.get("scriptFormat") or "python").strip().lower()
        if fmt not in PYTHON_FORMATS and not names_language(fmt):  # a word read as Python: the file says Python
            node.set("scriptFormat", "python")
    elif e.kind != "scriptTask" and script is not None:
        node.remove(script)
        node.attrib.pop("scriptFormat", None)
    ours = node.find(f"{_B}extensionElements/{_P}call") is not None  # (after _set_ours: the model's call)
    if e.kind == "callActivity" and e.called and ours:  # a saved model: its process id, as save looks it up
        target = called.get(e.called) or node.get("calledElement") or "Process_" + (slug(e.called.partition("@")[0])
                                                                                    or "1")  # fmt: skip
        if node.get("calledElement") != target:
            node.set("calledElement", target)
    if e.default:
        if node.get("default") != e.default:
            node.set("default", e.default)
    elif "default" in node.attrib:
        del node.attrib["default"]
    write_spiff(node, e)
    _patch_loop(node, e)


_LOOPS = (_B + "multiInstanceLoopCharacteristics", _B + "standardLoopCharacteristics")


def _patch_loop(node: etree._Element, e: Element) -> None:
    """The element's loop as the model has it, in place of the file's when the model changed it or the file gave
    it as Camunda attributes (then written as the standard BPMN it was read as)."""
    old = next((c for c in node if c.tag in _LOOPS), None)
    if old is None and e.loop is None:
        return
    if old is not None and not camunda_loop(old) and read_loop(node) == e.loop:
        return
    index = node.index(old) if old is not None else None
    if old is not None:
        node.remove(old)
    if e.loop is not None:
        write_loop(node, e.loop)
        new = next(c for c in node if c.tag in _LOOPS)
        if index is not None:
            node.insert(index, new)  # where the file had it (lxml moves the element)


def _patch_condition(x: etree._Element, condition: str | None, prefix: str | None) -> None:
    cond = x.find(_B + "conditionExpression")
    if condition is None:
        if cond is not None:
            x.remove(cond)
        return
    if cond is None:
        cond = etree.SubElement(x, _B + "conditionExpression")
        cond.set(f"{{{XSI_NS}}}type", f"{prefix}:tFormalExpression" if prefix else "tFormalExpression")
    if (cond.text or "").strip() != condition:
        cond.text = condition


def _sync_flow_refs(model: ToBeModel, nodes: Mapping[str, etree._Element]) -> None:
    """Each node's ``incoming``/``outgoing`` children, where the file writes them, match the flows."""
    ins: dict[str, list[str]] = {}
    outs: dict[str, list[str]] = {}
    for f in model.flows.values():
        outs.setdefault(f.source, []).append(f.id)
        ins.setdefault(f.target, []).append(f.id)
    for eid, node in nodes.items():
        old = [c for c in node if isinstance(c.tag, str) and etree.QName(c).localname in ("incoming", "outgoing")]
        have = [(etree.QName(c).localname, (c.text or "").strip()) for c in old]
        want = [("incoming", f) for f in ins.get(eid, [])] + [("outgoing", f) for f in outs.get(eid, [])]
        if set(have) == set(want) or (not old and _original(node)):  # as drawn, or the file lists none
            continue
        order = [k for k in have if k in want]
        order += [k for k in want if k not in order]
        order.sort(key=lambda k: k[0] != "incoming")  # stable: incoming first, each in its order
        at = node.index(old[0]) if old else _head(node)
        for c in old:
            node.remove(c)
        for i, (tag, fid) in enumerate(order):
            ref = etree.Element(_B + tag)
            ref.text = fid
            node.insert(at + i, ref)


def _original(node: etree._Element) -> bool:
    """Whether ``node`` came from the file (which then decides whether it lists its flows)."""
    return node.sourceline is not None


class _Diagram:
    """Shapes and edges: kept as drawn, made for what has none, removed with what is gone."""

    def __init__(self, root: etree._Element, model: ToBeModel, proc: etree._Element, gone: set[str]) -> None:
        self.root, self.m, self.proc, self.gone = root, model, proc, gone
        self.shapes = {s.get("bpmnElement"): s for s in root.iter(_DI + "BPMNShape")}
        self.edges = {s.get("bpmnElement"): s for s in root.iter(_DI + "BPMNEdge")}
        self.boxes: dict[str, _Box] = {}
        for ref, shape in self.shapes.items():
            b = shape.find(_DC + "Bounds")
            if b is not None and ref:
                self.boxes[ref] = tuple(float(b.get(k, "0")) for k in ("x", "y", "width", "height"))  # type: ignore[assignment]
        self.ids = {x.get("id") for x in root.iter() if isinstance(x.tag, str) and x.get("id")}
        #: New subprocesses' content relative to them (parent, x, y, w, h), and their sizes.
        self.rel: dict[str, tuple[str, float, float, float, float]] = {}
        self.sizes: dict[str, tuple[float, float]] = {}

    def plane(self, e: Element) -> etree._Element:
        """The plane ``e``'s shape belongs on: where its siblings are drawn, else its subprocess, else the first."""
        for other in self.m.elements.values():
            if other.parent == e.parent and other.id in self.shapes:
                return self.shapes[other.id].getparent()
        if e.parent is not None and e.parent in self.shapes:
            return self.shapes[e.parent].getparent()
        planes = list(self.root.iter(_DI + "BPMNPlane"))
        if planes:
            return planes[0]
        collab = next((c for c in self.root if etree.QName(c).localname == "collaboration"), None)
        diagram = etree.SubElement(self.root, _DI + "BPMNDiagram", id=self.new_id("BPMNDiagram_1"))
        return etree.SubElement(diagram, _DI + "BPMNPlane", id=self.new_id("BPMNPlane_1"),
                                bpmnElement=(collab if collab is not None else self.proc).get("id") or "")

    def new_id(self, base: str) -> str:
        new, k = base, 2
        while new in self.ids:
            new, k = f"{base}_{k}", k + 1
        self.ids.add(new)
        return new

    def draw(self, changed: set[str]) -> None:
        missing = [e for e in _parents_first(self.m) if e.id not in self.boxes]
        self.place(missing)
        for e in missing:
            if e.id not in self.boxes:
                continue
            x, y, w, h = self.boxes[e.id]
            shape = etree.SubElement(self.plane(e), _DI + "BPMNShape", id=self.new_id(f"{e.id}_di"),
                                     bpmnElement=e.id)
            if e.kind == "subProcess":
                shape.set("isExpanded", "true")
            if e.kind == "exclusiveGateway":
                shape.set("isMarkerVisible", "true")
            etree.SubElement(shape, _DC + "Bounds", x=_num(x), y=_num(y), width=_num(w), height=_num(h))
            self.shapes[e.id] = shape
        if missing:
            self.grow_pool([self.boxes[e.id] for e in missing if e.id in self.boxes])
        for f in self.m.flows.values():
            if f.id in self.edges and f.id not in changed:
                continue
            points = self.route(f.source, f.target)
            edge = self.edges.get(f.id)
            if edge is None:
                plane = self.shapes[f.source].getparent()
                edge = self.edges[f.id] = etree.SubElement(plane, _DI + "BPMNEdge", id=self.new_id(f"{f.id}_di"),
                                                           bpmnElement=f.id)
            for w in edge.findall(_W + "waypoint"):
                edge.remove(w)
            label = edge.find(_DI + "BPMNLabel")
            for i, (px, py) in enumerate(points):
                wp = etree.Element(_W + "waypoint", x=_num(px), y=_num(py))
                edge.insert(i, wp) if label is not None else edge.append(wp)

    def grow_pool(self, new: list[_Box]) -> None:
        """Make the pool of the process (if drawn) hold the new shapes, with a margin."""
        pools = [p.get("id") for p in self.root.iter(_B + "participant") if p.get("processRef") == self.proc.get("id")]
        shape = self.shapes.get(pools[0]) if pools else None
        bounds = shape.find(_DC + "Bounds") if shape is not None else None
        if bounds is None or not new:
            return
        x, y, w, h = (float(bounds.get(k, "0")) for k in ("x", "y", "width", "height"))
        right = max([x + w, *(bx + bw + 30 for bx, _, bw, _ in new)])
        bottom = max([y + h, *(by + bh + 30 for _, by, _, bh in new)])
        left, top = min([x, *(bx - 30 for bx, _, _, _ in new)]), min([y, *(by - 30 for _, by, _, _ in new)])
        if (left, top, right, bottom) != (x, y, x + w, y + h):
            bounds.set("x", _num(left)), bounds.set("y", _num(top))
            bounds.set("width", _num(right - left)), bounds.set("height", _num(bottom - top))

    # -- placing what has no shape -----------------------------------------------------------------
    def place(self, missing: list[Element]) -> None:
        todo = [e for e in missing if not (e.parent is not None and any(p.id == e.parent for p in missing))]
        for e in [e for e in missing if e.kind == "subProcess"]:
            self.inner(e, [c for c in missing if c.parent == e.id])
        while True:
            left = [e for e in todo if e.id not in self.boxes]
            if not left:
                return
            progress = False
            for e in left:
                box = self.near(e)
                if box is not None:
                    self.boxes[e.id] = self.free(box, e)
                    self.shift_inside(e)
                    progress = True
            if not progress:  # nothing drawn near the rest: start a row below the drawing, from a start if any
                first = next((e for e in left if e.kind == "startEvent"), left[0])
                w, h = self.sizes.get(first.id) or self.size(first)
                bottom = max((y + bh for _, y, _, bh in self.boxes.values()), default=0.0) + 2 * _GAP
                x = min((bx for bx, _, _, _ in self.boxes.values()), default=150.0)
                self.boxes[first.id] = (x, bottom, w, h)
                self.shift_inside(first)

    def size(self, e: Element) -> tuple[float, float]:
        if e.id in self.boxes:
            return self.boxes[e.id][2], self.boxes[e.id][3]
        if e.kind in GATEWAYS:
            return 50.0, 50.0
        if e.kind in ("startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"):
            return 36.0, 36.0
        return 100.0, 80.0

    def inner(self, sub: Element, children: list[Element]) -> None:
        """Lay a new subprocess's content out in a row, relative to (0, 0); its size fits around it."""
        x, tallest = 30.0, 80.0
        rel: dict[str, _Box] = {}
        for c in [c for c in children if c.kind != "boundaryEvent"]:
            w, h = self.size(c)
            rel[c.id] = (x, 0.0, w, h)
            x += w + _GAP
            tallest = max(tallest, h)
        width, height = max(x - _GAP + 30.0, 350.0), tallest + 120.0
        for cid, (cx, _, w, h) in rel.items():
            self.rel[cid] = (sub.id, cx, (height - h) / 2, w, h)
        self.sizes[sub.id] = (width, height)

    def shift_inside(self, e: Element) -> None:
        for cid, (parent, cx, cy, w, h) in self.rel.items():
            if parent == e.id:
                px, py, _, _ = self.boxes[e.id]
                self.boxes[cid] = (px + cx, py + cy, w, h)
                child = self.m.elements[cid]
                if child.kind == "subProcess":
                    self.shift_inside(child)

    def near(self, e: Element) -> _Box | None:
        """Where ``e`` goes: right of a drawn predecessor, left of a drawn successor, on its host, in its parent."""
        w, h = self.sizes.get(e.id) or self.size(e)
        if e.kind == "boundaryEvent" and e.attached_to in self.boxes:
            hx, hy, hw, hh = self.boxes[e.attached_to]
            k = sum(1 for b in self.m.elements.values() if b.attached_to == e.attached_to and b.id in self.boxes)
            return (hx + hw - w - 10 - k * (w + 10), hy + hh - h / 2, w, h)
        for f in self.m.flows.values():
            if f.target == e.id and f.source in self.boxes:
                sx, sy, sw, sh = self.boxes[f.source]
                return (sx + sw + _GAP, sy + sh / 2 - h / 2, w, h)
        for f in self.m.flows.values():
            if f.source == e.id and f.target in self.boxes:
                tx, ty, tw, th = self.boxes[f.target]
                return (tx - _GAP - w, ty + th / 2 - h / 2, w, h)
        if e.parent is not None and e.parent in self.boxes:
            px, py, pw, ph = self.boxes[e.parent]
            return (px + 30, py + ph / 2 - h / 2, w, h)
        return None

    def free(self, box: _Box, e: Element) -> _Box:
        """``box`` moved down until it overlaps no drawn shape (other than the subprocesses it is in)."""
        if e.kind == "boundaryEvent":
            return box
        ancestors = set()
        p = e.parent
        while p is not None:
            ancestors.add(p)
            p = self.m.elements[p].parent if p in self.m.elements else None
        x, y, w, h = box
        others = [b for k, b in self.boxes.items() if k not in ancestors and k != e.id and k in self.m.elements]
        for _ in range(200):
            if not any(_overlap((x, y, w, h), b) for b in others):
                break
            y += max(h, 80.0) + 30.0
        return (x, y, w, h)

    # -- edges ------------------------------------------------------------------------------------
    def route(self, source: str, target: str) -> list[tuple[float, float]]:
        sx, sy, sw, sh = self.boxes[source]
        tx, ty, tw, th = self.boxes[target]
        scx, scy, tcx, tcy = sx + sw / 2, sy + sh / 2, tx + tw / 2, ty + th / 2
        if self.m.elements[source].kind == "boundaryEvent":
            if ty >= sy + sh:
                return [(scx, sy + sh), (scx, tcy), (tx, tcy)] if tx > scx else [(scx, sy + sh), (scx, ty), ]
            low = max(sy + sh, ty + th) + 20
            return [(scx, sy + sh), (scx, low), (tcx, low), (tcx, ty + th)]
        if tx >= sx + sw:
            if abs(scy - tcy) < 1:
                return [(sx + sw, scy), (tx, tcy)]
            mid = (sx + sw + tx) / 2
            return [(sx + sw, scy), (mid, scy), (mid, tcy), (tx, tcy)]
        low = max(sy + sh, ty + th) + 30
        return [(scx, sy + sh), (scx, low), (tcx, low), (tcx, ty + th)]


def _overlap(a: _Box, b: _Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _num(value: float) -> str:
    return str(int(round(value)))
