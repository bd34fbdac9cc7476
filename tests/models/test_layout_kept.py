"""A Camunda Modeler file keeps its layout through import, bind and save, as bpmn-js draws it.

Both the original file and the saved ``model.bpmn`` are opened in bpmn-js in Debian's chromium;
every element bpmn-js places (shapes with x, y, width and height; flows with their waypoints) is
read from its element registry, and each of the original's must be where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bpmn_viewer import BpmnViewer, open_viewer
from procestra import Workspace
from procestra.engine.connectors import python
from procestra.engine.tobe import ToBeModel

CASES = Path(__file__).resolve().parents[1] / "engine" / "cases"

_PLACES = """() => window.__viewer.get('elementRegistry').getAll()
  .filter((e) => e.type !== 'label' && e.parent)
  .map((e) => [e.id, e.waypoints ? e.waypoints.map((p) => [p.x, p.y]) : [e.x, e.y, e.width, e.height]])"""


@pytest.fixture(scope="module")
def viewer() -> Iterator[BpmnViewer]:
    with open_viewer() as v:
        yield v


def places(viewer: BpmnViewer, xml: str) -> tuple[dict[str, Any], list[str]]:
    """Where bpmn-js puts each element of ``xml`` (by id), and its import warnings."""
    result = viewer.import_xml(xml)
    assert result.error is None, result.error
    return {i: p for i, p in viewer.page.evaluate(_PLACES)}, result.warnings


@pytest.mark.parametrize(("file", "task"), [
    ("spiff_token_trial_parallel_simple.bpmn", "Task P2"),  # drawn in Camunda Modeler 4.11.1
    ("orders_camunda.bpmn20.xml", "Charge card"),  # two pools and a message flow, Camunda Modeler 5 format
])  # fmt: skip
def test_every_original_element_stays_where_it_was_drawn(viewer: BpmnViewer, ws: Workspace, file: str,
                                                         task: str) -> None:  # fmt: skip
    original = (CASES / file).read_text(encoding="utf-8")
    before, warned = places(viewer, original)
    model = ToBeModel.load(CASES / file)
    model.bind(task, python("engine_handlers:effect"))
    info = model.save(ws, check=False)
    after, warned_after = places(viewer, (info.path / "model.bpmn").read_text(encoding="utf-8"))
    assert len(before) >= 10
    moved = {i: (p, after.get(i)) for i, p in before.items() if after.get(i) != p}
    assert moved == {}  # before the fix every shape moved: the diagram was laid out anew
    assert set(after) == set(before)
    assert warned_after == warned


def test_a_new_element_is_drawn_beside_its_neighbour(viewer: BpmnViewer) -> None:
    model = ToBeModel.load(CASES / "orders_camunda.bpmn20.xml")
    new = model.add_task("Check stock", kind="service", after="Charge card")
    model.bind(new, python("engine_handlers:noop"))
    before, _ = places(viewer, (CASES / "orders_camunda.bpmn20.xml").read_text(encoding="utf-8"))
    after, warnings = places(viewer, model.to_xml())
    assert warnings == []
    x, y, w, h = after[new]
    cx, cy, cw, ch = before["Activity_charge"]
    assert (x, y, w, h) == (cx + cw + 50, cy + ch + 30, 100, 80)  # right of it; below, as Confirm is there
    px, py, pw, ph = after["Participant_shop"]  # the pool grew to hold it
    assert (px, py, pw) == tuple(before["Participant_shop"][:3]) and py + ph == y + h + 30
    kept = {i: p for i, p in before.items() if i not in ("Flow_3", "Participant_shop")}  # Flow_3 leaves the new task
    assert {i: after[i] for i in kept} == kept
