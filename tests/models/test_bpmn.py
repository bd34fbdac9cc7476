"""procestra.bpmn: BPMN XML that opens in bpmn-js (a real headless Chromium), imports of other tools' files.

The browser tests need Debian's chromium, Python playwright and npm (bpmn-js is installed
into tests/browser/node_modules on first use). Without chromium they fail, naming the
fix; ``PROCESTRA_SKIP_BROWSER=1`` turns that into a skip.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from bpmn_viewer import VIEWER_JS, BpmnViewer, chromium_path, ensure_bpmn_js
from procestra.errors import InvalidArgumentError, ModelError, UserError
from procestra.models.bpmn import (
    BPMN_NS,
    bpmn_to_petri,
    check_diagram,
    read_bpmn,
    to_bpmn_xml,
    write_bpmn,
)
from procestra.models.render import render

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "output"
MODELS = ROOT.parent / "shared" / "event_logs" / "models"
SHARED_MODELS = sorted(MODELS.glob("*.bpmn")) if MODELS.is_dir() else []
NCNAME = re.compile(r"^[^\W\d][\w.\-]*$")
B = f"{{{BPMN_NS}}}"
FLOW_NODE_TAGS = ("task", "startEvent", "endEvent", "exclusiveGateway", "parallelGateway", "inclusiveGateway",
                  "subProcess", "boundaryEvent", "intermediateCatchEvent", "intermediateThrowEvent")  # fmt: skip


# -- fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def viewer() -> Iterator[BpmnViewer]:
    """bpmn-js in Debian's chromium, for the whole module."""
    exe = chromium_path()
    if exe is None:
        if os.environ.get("PROCESTRA_SKIP_BROWSER"):
            pytest.skip("chromium is not installed")
        pytest.fail("chromium is not installed: run `make test` (it installs Debian's chromium), "
                    "or set PROCESTRA_SKIP_BROWSER=1 to skip the browser tests")  # fmt: skip
    with BpmnViewer(exe, ensure_bpmn_js()) as v:
        yield v


@pytest.fixture(scope="module")
def bpmn_xsd() -> etree.XMLSchema:
    """The OMG BPMN 2.0 schema, as shipped in bpmn-moddle (a bpmn-js dependency)."""
    ensure_bpmn_js()
    xsd = VIEWER_JS.parents[2] / "bpmn-moddle" / "resources" / "bpmn" / "xsd" / "BPMN20.xsd"
    return etree.XMLSchema(etree.parse(str(xsd)))


def pm4py_frame(table: Any) -> Any:
    return table.to_pandas().rename(columns={
        "case_id": "case:concept:name", "activity": "concept:name", "timestamp": "time:timestamp"})  # fmt: skip


@pytest.fixture(scope="module")
def generated_log() -> Any:
    from procestra.mining.generate import generate_log

    return pm4py_frame(generate_log(3000, seed=1))


@pytest.fixture(scope="module")
def mined(generated_log) -> dict[str, Any]:
    """Inductive-miner BPMN models: the generated loan log and, when present, running-example.xes."""
    import pm4py

    out = {"generated": (pm4py.discover_bpmn_inductive(generated_log), generated_log)}
    xes = ROOT.parent / "shared" / "event_logs" / "logs" / "running-example.xes"
    if xes.is_file():
        log = pm4py.read_xes(str(xes))
        out["running_example"] = (pm4py.discover_bpmn_inductive(log), log)
    return out


def mined_model(mined: dict[str, Any], name: str) -> tuple[Any, Any]:
    if name not in mined:
        pytest.skip(f"{name}: ../shared/event_logs/logs/running-example.xes is not beside the checkout")
    return mined[name]


def tasks_of(xml: str) -> dict[str, str]:
    root = etree.fromstring(xml.encode("utf-8"))
    return {t.get("id"): t.get("name") for t in root.iter(f"{B}task")}


# -- export, checked in bpmn-js ----------------------------------------------------------
@pytest.mark.parametrize("name", ["generated", "running_example"])
def test_export_opens_in_bpmn_js_without_warnings(viewer, mined, bpmn_xsd, name):
    model, _ = mined_model(mined, name)
    xml = to_bpmn_xml(model)
    assert check_diagram(xml) == []
    assert bpmn_xsd.validate(etree.fromstring(xml.encode("utf-8"))), bpmn_xsd.error_log
    result = viewer.import_xml(xml, screenshot=OUTPUT / f"bpmn_{name}.png")
    assert result.error is None
    assert result.warnings == []
    tasks = tasks_of(xml)
    labels = {n.get_name() for n in model.get_nodes() if type(n).__name__ == "Task"}
    assert set(tasks.values()) == labels and len(tasks) == len(labels)
    for task_id in tasks:
        assert result.elements.get(task_id) == "bpmn:Task", f"bpmn-js has no task {task_id}"
        assert task_id in result.drawn, f"task {task_id} is not drawn"
    flows = [f for f in etree.fromstring(xml.encode()).iter(f"{B}sequenceFlow")]
    assert len(flows) == len(model.get_flows())
    assert all(result.elements.get(f.get("id")) == "bpmn:SequenceFlow" for f in flows)
    assert (OUTPUT / f"bpmn_{name}.png").read_bytes().startswith(b"\x89PNG")


def test_export_header_ids_and_names(mined):
    from procestra import __version__

    model, _ = mined["generated"]
    root = etree.fromstring(to_bpmn_xml(model, name="Loan applications").encode("utf-8"))
    assert root.tag == f"{B}definitions"
    assert root.get("exporter") == "Procestra" and root.get("exporterVersion") == __version__
    assert root.get("targetNamespace")
    process = root.find(f"{B}process")
    assert process is not None and process.get("isExecutable") == "false"
    assert process.get("name") == "Loan applications"
    ids = [el.get("id") for el in root.iter() if isinstance(el.tag, str) and el.get("id")]
    assert len(ids) == len(set(ids)) and all(NCNAME.match(i) for i in ids)
    assert all(t.get("name") for t in root.iter(f"{B}task"))
    assert {e.get("name") for e in root.iter(f"{B}startEvent")} == {"start"}
    nodes = [el for tag in FLOW_NODE_TAGS for el in root.iter(f"{B}{tag}")]
    shapes = {s.get("bpmnElement") for s in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape")}
    assert {n.get("id") for n in nodes} == shapes
    for edge in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge"):
        assert len(edge.findall("{http://www.omg.org/spec/DD/20100524/DI}waypoint")) >= 2
    executable = etree.fromstring(to_bpmn_xml(model, executable=True).encode("utf-8"))
    assert executable.find(f"{B}process").get("isExecutable") == "true"


def test_export_round_trips_through_read_bpmn(mined, tmp_path):
    model, _ = mined["generated"]
    path = write_bpmn(model, tmp_path / "loan.bpmn")
    back = read_bpmn(path)
    assert len(back.get_nodes()) == len(model.get_nodes())
    assert len(back.get_flows()) == len(model.get_flows())
    names = sorted(n.get_name() for n in back.get_nodes() if type(n).__name__ == "Task")
    assert names == sorted(n.get_name() for n in model.get_nodes() if type(n).__name__ == "Task")


def test_exported_model_converts_to_a_fitting_petri_net(mined, tmp_path):
    """Inductive-miner models fit their log perfectly; so must our export, read back and converted."""
    import pm4py

    model, log = mined["generated"]
    net, im, fm = bpmn_to_petri(read_bpmn(write_bpmn(model, tmp_path / "m.bpmn")))
    fitness = pm4py.fitness_token_based_replay(log, net, im, fm)
    assert fitness["perc_fit_traces"] == pytest.approx(100.0)


def test_to_bpmn_xml_refuses_other_models(mined):
    import pm4py

    _, log = mined["generated"]
    with pytest.raises(InvalidArgumentError, match="convert_to_bpmn") as info:
        to_bpmn_xml(pm4py.discover_process_tree_inductive(log))
    assert info.value.parameter == "bpmn"


# -- other tools' models ------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize("path", SHARED_MODELS or [None], ids=lambda p: p.stem if p else "absent")
def test_shared_model_imports_renders_and_converts(viewer, path, tmp_path):
    if path is None:
        pytest.skip("../shared/event_logs/models is not beside the checkout")
    model = read_bpmn(path)
    original = etree.parse(str(path)).getroot()
    tasks = {t.get("name") for t in original.iter(f"{B}task")}
    assert tasks <= {n.get_name() for n in model.get_nodes()}
    svg = etree.fromstring(render(model, format="svg").encode("utf-8"))
    drawn_text = " ".join(" ".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert all(" ".join(name.split()) in " ".join(drawn_text.split()) for name in tasks if name)
    net, im, fm = bpmn_to_petri(model)
    assert len(net.transitions) >= len(tasks) and len(im) == 1 and len(fm) == 1
    # their file in bpmn-js: warnings recorded, not asserted (other tools' files are not always clean)
    theirs = viewer.import_xml(path.read_text(encoding="utf-8"), screenshot=OUTPUT / f"bpmn_shared_{path.stem}.png")
    assert theirs.error is None
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / f"bpmn_shared_{path.stem}.warnings.json").write_text(json.dumps(theirs.warnings, indent=1))
    print(f"{path.name}: bpmn-js warnings on the original file: {len(theirs.warnings)}")
    # our re-export of their model: clean in bpmn-js, every task drawn
    ours_xml = to_bpmn_xml(model)
    assert check_diagram(ours_xml) == []
    ours = viewer.import_xml(ours_xml, screenshot=OUTPUT / f"bpmn_shared_{path.stem}_procestra.png")
    assert ours.error is None and ours.warnings == []
    for task_id in tasks_of(ours_xml):
        assert task_id in ours.drawn


# -- bad input ---------------------------------------------------------------------------
DEFINITIONS = (f'<?xml version="1.0" encoding="UTF-8"?>\n<definitions xmlns="{BPMN_NS}" id="d" '
               'targetNamespace="urn:test"><process id="p">{body}</process></definitions>')  # fmt: skip
GOOD_BODY = ('<startEvent id="s"/><task id="t" name="Do it"/><endEvent id="e"/>'
             '<sequenceFlow id="f1" sourceRef="s" targetRef="t"/><sequenceFlow id="f2" sourceRef="t" targetRef="e"/>')


def write(tmp_path: Path, text: str | bytes, name: str = "model.bpmn") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_minimal_model_without_diagram_reads(tmp_path):
    model = read_bpmn(write(tmp_path, DEFINITIONS.replace("{body}", GOOD_BODY)))
    assert {n.get_name() for n in model.get_nodes()} >= {"Do it"}
    assert len(model.get_flows()) == 2
    assert check_diagram(to_bpmn_xml(model)) == []  # we lay out what had no diagram


@pytest.mark.parametrize(("content", "match"), [
    (b"", "not well-formed XML"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not well-formed XML"),
    (b"<definitions><process", "not well-formed XML"),
    (b'<log xes.version="1.0"><trace/></log>', r"root element is <log> \(no namespace\)"),
    (b'<definitions id="d"><process id="p"/></definitions>', r"root element is <definitions> \(no namespace\)"),
    (b'<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/DI"/>', ("root element is <definitions> in "
     "namespace http://www.omg.org/spec/BPMN/20100524/DI")),
])  # fmt: skip
def test_not_xml_or_not_bpmn(tmp_path, content, match):
    path = write(tmp_path, content)
    with pytest.raises(ModelError, match=match) as info:
        read_bpmn(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert isinstance(info.value, UserError)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such file") as info:
        read_bpmn(tmp_path / "nope.bpmn")
    assert info.value.path == str(tmp_path / "nope.bpmn")


@pytest.mark.parametrize(("flow", "attr", "ref"), [
    ('<sequenceFlow id="f3" sourceRef="ghost" targetRef="e"/>', "sourceRef", "ghost"),
    ('<sequenceFlow id="f3" sourceRef="t" targetRef="nowhere"/>', "targetRef", "nowhere"),
])  # fmt: skip
def test_dangling_sequence_flow_names_flow_and_ref(tmp_path, flow, attr, ref):
    with pytest.raises(ModelError) as info:
        read_bpmn(write(tmp_path, DEFINITIONS.replace("{body}", GOOD_BODY + flow)))
    message = str(info.value)
    assert "'f3'" in message and f"{attr}={ref!r}" in message and "names no element" in message
    assert info.value.element == "f3"


@pytest.mark.parametrize(("extra", "match"), [
    ('<sequenceFlow id="f3" targetRef="e"/>', "'f3' has no sourceRef"),
    (('<textAnnotation id="note"><text>hi</text></textAnnotation>'
     '<sequenceFlow id="f3" sourceRef="t" targetRef="note"/>'), "a <textAnnotation>, which is not a flow node"),
    ('<complexGateway id="cg"/>', "complex gateways are not supported"),
])  # fmt: skip
def test_broken_references_and_unsupported_elements(tmp_path, extra, match):
    with pytest.raises(ModelError, match=match):
        read_bpmn(write(tmp_path, DEFINITIONS.replace("{body}", GOOD_BODY + extra)))


def test_model_without_flow_nodes(tmp_path):
    with pytest.raises(ModelError, match="no process elements"):
        read_bpmn(write(tmp_path, DEFINITIONS.replace("{body}", "")))


def test_vendor_extensions_and_odd_associations_are_tolerated(tmp_path):
    body = GOOD_BODY.replace('<task id="t" name="Do it"/>',
                             '<task id="t" name="Do it"><extensionElements><x:meta xmlns:x="urn:x" id="9bad"/>'
                             '</extensionElements><documentation id="0doc">{}</documentation><incoming/></task>')
    body += ('<textAnnotation id="note"><text>entry</text></textAnnotation>'
             '<association id="a1" sourceRef="f1" targetRef="note"/><association id="a2" targetRef="note"/>'
             '<callActivity id="c" name="Call"/><sequenceFlow id="f3" sourceRef="t" targetRef="c"/>')
    model = read_bpmn(write(tmp_path, DEFINITIONS.replace("{body}", body)))
    assert {"Do it", "Call"} <= {n.get_name() for n in model.get_nodes()}
    assert check_diagram(to_bpmn_xml(model)) == []
