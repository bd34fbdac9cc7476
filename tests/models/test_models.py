"""The model repository: save/list/show/load round trips, versions, concurrent savers,
models from other tools read by path, bad names and versions, meta.json."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pm4py
import pytest

from conftest import pm4py_frame
from procestra import InvalidArgumentError, LogSchema, ModelError, Workspace
from procestra.errors import ModelNotFoundError, UserError
from procestra.mining.discover import discover
from procestra.mining.filters import Filter
from procestra.mining.generate import generate_log
from procestra.models.repository import (
    LoadedModel,
    ModelInfo,
    list_models,
    load_model,
    model_info,
    save_model,
)

ROOT = Path(__file__).resolve().parents[2]


LOANS = {"events": 1_500, "seed": 11, "noise": 0.0}  # the generator's arguments for the mined log


@pytest.fixture(scope="module")
def mined(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A workspace holding a small generated log, and the inductive miner's result on it."""
    ws = Workspace.init(tmp_path_factory.mktemp("models") / "ws")
    ws.ingest(generate_log(**LOANS), log="loans",
              schema=LogSchema(case_attributes=("amount", "channel")), progress=False)
    return ws, discover(ws, "loans")


def _labels(net: Any) -> set[str]:
    return {t.label for t in net.transitions if t.label is not None}


def test_round_trip_save_list_show_load(ws: Workspace, mined: Any) -> None:
    _, result = mined
    info = save_model(ws, "loans", result, quality={"fitness": 1.0, "precision": 0.5})
    assert isinstance(info, ModelInfo)
    assert (info.name, info.version, info.ref, info.versions) == ("loans", 1, "loans@1", 1)
    assert info.path == ws.models_dir / "loans" / "v1"
    assert info.files == ("model.bpmn", "model.pnml", "model.ptml")
    assert sorted(p.name for p in info.path.iterdir()) == ["meta.json", "model.bpmn", "model.pnml", "model.ptml"]
    assert info.kind == "process tree"
    assert info.created.tzinfo is not None

    assert list_models(ws) == [info]
    assert model_info(ws, "loans") == info

    loaded = load_model(ws, "loans")
    assert isinstance(loaded, LoadedModel)
    assert loaded.info == info and loaded.ref == "loans@1"
    assert str(loaded.tree) == str(result.tree)
    net, im, fm = result.to_petri()
    assert _labels(loaded.net) == _labels(net) == set(info.activities)
    assert len(loaded.net.places) == len(net.places) and len(loaded.net.transitions) == len(net.transitions)
    assert len(loaded.initial_marking) == 1 and len(loaded.final_marking) == 1
    # the reloaded net replays the log exactly as the original one
    df = pm4py_frame(generate_log(**LOANS))  # the generator's table, not our export
    assert pm4py.fitness_token_based_replay(df, *loaded.petri) == pm4py.fitness_token_based_replay(df, net, im, fm)
    assert loaded.bpmn is not None and "loans@1" in repr(loaded)


def test_meta_json_content(ws: Workspace, mined: Any) -> None:
    src_ws, _ = mined
    flt = Filter.case_attribute("channel", ["online"])
    result = discover(src_ws, "loans", "inductive", filter=flt, noise_threshold=0.2)
    info = save_model(ws, "online", result, quality={"fitness": 0.97, "note": object()})
    meta = json.loads((info.path / "meta.json").read_text())
    assert meta["name"] == "online" and meta["version"] == 1
    assert meta["source_log"] == "loans"
    assert meta["filter"] == flt.describe()
    assert meta["miner"] == "inductive"
    assert meta["params"] == {"noise_threshold": 0.2, "disable_fallthroughs": False}
    assert meta["quality"]["fitness"] == 0.97 and isinstance(meta["quality"]["note"], str)
    assert meta["activities"] == sorted(meta["activities"]) and len(meta["activities"]) > 5
    assert meta["files"] == ["model.bpmn", "model.pnml", "model.ptml"]
    assert meta["kind"] == "process tree"
    assert meta["created"].endswith("+00:00")
    # explicit arguments win over what the discovery result says
    info2 = save_model(ws, "online", result, source_log="elsewhere", miner="mine", params={"k": 1}, filter="by hand")
    assert (info2.source_log, info2.miner, info2.params, info2.filter) == ("elsewhere", "mine", {"k": 1}, "by hand")
    json.dumps(info2.to_dict())  # JSON-ready
    assert "online@2" in info2._repr_html_()


def test_every_model_kind(ws: Workspace, mined: Any) -> None:
    _, result = mined
    net, im, fm = result.to_petri()
    by_net = save_model(ws, "kinds", (net, im, fm))
    assert by_net.kind == "Petri net" and by_net.files == ("model.bpmn", "model.pnml")
    by_bpmn = save_model(ws, "kinds", result.to_bpmn())
    assert by_bpmn.kind == "BPMN" and by_bpmn.files == ("model.bpmn", "model.pnml")
    by_tree = save_model(ws, "kinds", result.tree)
    assert by_tree.kind == "process tree" and by_tree.version == 3
    for v in (1, 2, 3):
        assert _labels(load_model(ws, "kinds", version=v).net) == _labels(net)
    with pytest.raises(InvalidArgumentError, match="cannot use a str as a process model"):
        save_model(ws, "kinds", "not a model")


def test_versions_increment(ws: Workspace, mined: Any) -> None:
    _, result = mined
    infos = [save_model(ws, "m", result.tree) for _ in range(3)]
    assert [i.version for i in infos] == [1, 2, 3]
    assert [i.versions for i in infos] == [1, 2, 3]
    (listed,) = list_models(ws)
    assert listed.version == 3 and listed.versions == 3
    assert load_model(ws, "m").info.version == 3
    assert load_model(ws, "m@2").info.version == 2
    assert load_model(ws, "m", version=2).info == load_model(ws, "m@2").info
    assert load_model(ws, "m@2").info.created == infos[1].created
    assert model_info(ws, "m@1").version == 1
    with pytest.raises(InvalidArgumentError, match="version 2 but version=3"):
        load_model(ws, "m@2", version=3)


def test_unknown_names_and_versions(ws: Workspace, mined: Any) -> None:
    with pytest.raises(ModelNotFoundError, match="no models are saved yet"):
        load_model(ws, "nothing")
    save_model(ws, "alpha", mined[1])
    save_model(ws, "beta", mined[1])
    save_model(ws, "beta", mined[1])
    with pytest.raises(ModelNotFoundError) as err:
        load_model(ws, "gamma")
    assert isinstance(err.value, UserError)
    assert err.value.known == ["alpha", "beta"]
    assert "known models: alpha, beta" in str(err.value)
    with pytest.raises(ModelNotFoundError) as err:
        model_info(ws, "beta", 7)
    assert (err.value.version, err.value.versions) == (7, [1, 2])
    assert "has no version 7 (versions: 1, 2)" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="no version 3"):
        load_model(ws, "alpha@3")
    for bad in ("alpha@x", "alpha@0", "alpha@-1"):
        with pytest.raises(InvalidArgumentError, match="positive number"):
            load_model(ws, bad)
    with pytest.raises(InvalidArgumentError, match="positive integer"):
        model_info(ws, "alpha", 0)


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "", " padded", ".hidden", "a..b", "x@1", "m.bpmn",
                                  "x" * 129, "tab\there", 3])
def test_bad_names(ws: Workspace, mined: Any, name: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid model name"):
        save_model(ws, name, mined[1])
    assert not any(ws.models_dir.iterdir())


def test_failed_save_leaves_nothing(ws: Workspace, mined: Any) -> None:
    """A model that cannot be written as BPMN (a pool) fails after the temporary
    directory exists: no version directory and no temporary directory remain."""
    from pm4py.objects.bpmn.obj import BPMN

    save_model(ws, "pool", mined[1])
    bad = BPMN()
    start, task, end = BPMN.StartEvent(name="s"), BPMN.Task(name="work"), BPMN.EndEvent(name="e")
    for node in (start, task, end, BPMN.Participant(name="pool")):
        bad.add_node(node)
    bad.add_flow(BPMN.SequenceFlow(start, task))
    bad.add_flow(BPMN.SequenceFlow(task, end))
    with pytest.raises(InvalidArgumentError, match="pools"):
        save_model(ws, "pool", bad)
    assert sorted(p.name for p in (ws.models_dir / "pool").iterdir()) == [".lock", "v1"]
    assert save_model(ws, "pool", mined[1]).version == 2


# Each saver announces itself, waits for the other (so that the saves overlap), then saves.
_SAVER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from procestra import Workspace
    from procestra.models.repository import load_model, save_model
    ws = Workspace(sys.argv[1])
    model = load_model(ws, "seed")
    gate = Path(sys.argv[3])
    (gate / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(gate.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(" ".join(str(save_model(ws, "shared", model).version) for _ in range(int(sys.argv[2]))))
""")


def test_concurrent_saves_get_distinct_versions(ws: Workspace, mined: Any, tmp_path: Path) -> None:
    save_model(ws, "seed", mined[1])
    n = 3
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _SAVER, str(ws.path), str(n), str(gate)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    versions = [int(v) for out, _ in outs for v in out.split()]
    assert sorted(versions) == list(range(1, 2 * n + 1))
    shared = ws.models_dir / "shared"
    assert sorted(p.name for p in shared.iterdir() if not p.name.startswith(".")) == \
        sorted(f"v{v}" for v in versions)
    assert not [p for p in shared.iterdir() if p.name.startswith(".tmp")]
    for v in versions:
        assert json.loads((shared / f"v{v}" / "meta.json").read_text())["version"] == v
    assert model_info(ws, "shared").versions == 2 * n


def test_load_files_by_path(ws: Workspace, mined: Any, tmp_path: Path) -> None:
    """A .pnml and a .ptml written anywhere load by path, with or without a workspace."""
    _, result = mined
    info = save_model(ws, "files", result)
    net_file = tmp_path / "copy.pnml"
    net_file.write_bytes((info.path / "model.pnml").read_bytes())
    by_pnml = load_model(None, net_file)
    assert by_pnml.tree is None and by_pnml.info is None and by_pnml.ref == str(net_file)
    assert _labels(by_pnml.net) == set(info.activities)
    by_ptml = load_model(ws, str(info.path / "model.ptml"))
    assert str(by_ptml.tree) == str(result.tree)
    by_bpmn = load_model(ws, info.path / "model.bpmn")
    assert _labels(by_bpmn.net) == set(info.activities)
    with pytest.raises(InvalidArgumentError, match="version= applies to saved models"):
        load_model(ws, net_file, version=1)


def test_broken_files(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        load_model(ws, tmp_path / "missing.bpmn")
    not_xml = tmp_path / "not.bpmn"
    not_xml.write_text("this is not a model")
    with pytest.raises(ModelError, match="not well-formed XML"):
        load_model(ws, not_xml)
    bad_pnml = tmp_path / "bad.pnml"
    bad_pnml.write_text("<nope/>")
    with pytest.raises(ModelError, match="bad.pnml: the file holds no Petri net"):
        load_model(ws, bad_pnml)
    with pytest.raises(InvalidArgumentError, match="model files end in"):
        load_model(ws, tmp_path / "model.txt")
    # before, two elements with the id 'a' were read, and the model was written back with 'a' and 'a_'
    dup = tmp_path / "dup.bpmn"
    dup.write_text('<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="D" targetNamespace="t">\n'
                   '<process id="P" isExecutable="true"><startEvent id="a"/>\n<task id="a" name="T"/>\n'
                   '<sequenceFlow id="f" sourceRef="a" targetRef="E"/><endEvent id="E"/></process></definitions>')
    with pytest.raises(ModelError, match=r"dup.bpmn: the id 'a' is used twice \(line 2 and line 3\)") as err:
        load_model(ws, dup)
    assert err.value.element == "a"


def test_shared_bpmn_files_load_by_path(shared_dir: Path, ws: Workspace) -> None:
    files = sorted((shared_dir / "models").glob("*.bpmn"))
    assert files
    for path in files:
        model = load_model(ws, path)
        assert model.info is None and model.path == path
        assert model.net is not None and len(model.initial_marking) and len(model.final_marking)
        assert model.activities, path.name
    receipt = load_model(ws, str(shared_dir / "models" / "receipt.bpmn"))
    assert len(receipt.activities) == 27
    # a model from another tool goes into the repository unchanged in its activities
    info = save_model(ws, "receipt", receipt)
    assert info.activities == receipt.activities and info.kind == "BPMN"
    assert load_model(ws, "receipt").activities == receipt.activities
