"""``procestra model``: one group for the model repository (``models`` is its hidden alias), and
``model import`` of BPMN files from other tools, through the real CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from conftest import run_cli, small_model
from procestra import Workspace

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
#: The BPMN files from other tools in ../shared/event_logs/models/ (Signavio, BIMP, pm4py).
SHARED_MODELS = ["SimpleParallel.bpmn", "Subprocess1.bpmn", "ch7_CreditAppSimulation.bpmn",
                 "ch7_InsuranceClaimsSimulationNormalSeason.bpmn", "receipt.bpmn", "running-example.bpmn",
                 "simple_model.bpmn"]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return Workspace.init(tmp_path / "ws").path


def _json(proc: subprocess.CompletedProcess[str]):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _repository(ws: Path) -> list[str]:
    """Every file and directory under process_models/, to see that a refused import left nothing."""
    root = ws / "process_models"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _two_processes(path: Path) -> Path:
    """A file with two pools: the ``review`` model and a one-task ``Intake`` process."""
    from procestra.engine import ToBeModel

    intake = ToBeModel("Intake")
    start = intake.add_event("start", id="i_start")
    task = intake.add_task("Register", id="i_register", after=start)
    intake.add_event("end", id="i_end", after=task)
    root = etree.fromstring(small_model("review").to_xml().encode())
    other = etree.fromstring(intake.to_xml().encode())
    root.append(other.find(f"{{{BPMN_NS}}}process"))
    path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))
    return path


def test_one_model_group_and_models_is_a_hidden_alias(ws: Path) -> None:
    commands = [line.split()[0] for line in run_cli("--help", check=True).stdout.split("Commands:")[1].splitlines()
                if line.startswith("  ") and line.strip()]
    assert "model" in commands and "models" not in commands
    group = run_cli("model", "--help", check=True).stdout
    assert [line.split()[0] for line in group.split("Commands:")[1].splitlines() if line.strip()] == [
        "bind", "import", "list", "show", "validate"]
    assert run_cli("models", "--help", check=True).stdout.replace("procestra models", "procestra model") == group
    small_model("review").save(Workspace(ws))
    listed = _json(run_cli("model", "list", "--json", workspace=ws))
    assert [m["name"] for m in listed] == ["review"]
    assert _json(run_cli("models", "list", "--json", workspace=ws)) == listed
    assert _json(run_cli("models", "show", "review@1", "--json", workspace=ws)) == \
        _json(run_cli("model", "show", "review@1", "--json", workspace=ws))
    assert run_cli("models", "validate", "review", workspace=ws, check=True).stdout.strip() == "review: no problems"


def test_import_a_generated_model_then_validate_and_run(ws: Path, tmp_path: Path) -> None:
    file = small_model("review").write(tmp_path / "review.bpmn")
    saved = _json(run_cli("model", "import", str(file), "--json", workspace=ws))
    assert (saved["name"], saved["version"], saved["kind"]) == ("review", 1, "BPMN")
    assert saved["file"] == str(file) and saved["process_id"] == "Process_review" and saved["warnings"] == []
    assert Path(saved["path"]) == ws / "process_models" / "review" / "v1"
    assert (Path(saved["path"]) / "model.bpmn").is_file()
    assert run_cli("model", "validate", "review", workspace=ws, check=True).stdout.strip() == "review: no problems"

    small = run_cli("start", "review", "--data", '{"applicant": "A1", "amount": 500}', workspace=ws, check=True)
    assert _json(run_cli("worker", "--until-idle", "--json", workspace=ws))["cases_completed"] == 1
    assert _json(run_cli("cases", "--json", workspace=ws))[0] == {
        "case": small.stdout.strip(), "model": "review", "version": 1, "status": "completed", "error": None}

    again = run_cli("model", "import", str(file), "--name", "review copy", workspace=ws, check=True).stdout
    assert again.splitlines()[0] == f"imported {file} as model 'review copy' version 1"
    assert _json(run_cli("model", "import", str(file), "--json", workspace=ws))["version"] == 2
    assert [(m["name"], m["version"]) for m in _json(run_cli("model", "list", "--json", workspace=ws))] == [
        ("review", 2), ("review copy", 1)]


def test_import_one_process_of_a_file_with_several(ws: Path, tmp_path: Path) -> None:
    file = _two_processes(tmp_path / "pools.bpmn")
    _user_error(run_cli("model", "import", str(file), workspace=ws),
                str(file), "several processes", "'Process_review'", "'Process_intake'", "--process")
    _user_error(run_cli("model", "import", str(file), "--process", "Process_nope", workspace=ws),
                str(file), "--process 'Process_nope'", "'Process_intake'")
    assert _repository(ws) == []

    by_id = _json(run_cli("model", "import", str(file), "--process", "Process_intake", "--json", workspace=ws))
    assert (by_id["name"], by_id["process_id"]) == ("Intake", "Process_intake")
    assert any("kept in the file but do not run" in note for note in by_id["notes"])  # the other pool
    assert [w["code"] for w in by_id["warnings"]] == ["untyped-task"]
    by_name = _json(run_cli("model", "import", str(file), "--process", "review", "--json", workspace=ws))
    assert (by_name["name"], by_name["process_id"]) == ("review", "Process_review")
    for name in ("Intake", "review"):
        assert run_cli("model", "validate", name, workspace=ws).returncode == 0


@pytest.mark.parametrize(("content", "args", "needles"), [
    (None, (), ("missing.bpmn", "no such file")),
    ("this is not XML", (), ("bad.bpmn", "not well-formed XML")),
    ("<html><body/></html>", (), ("bad.bpmn", "not a BPMN 2.0 file", "<html>")),
    (f'<definitions xmlns="{BPMN_NS}"/>', (), ("bad.bpmn", "no process elements")),
    ("", ("--name", "../evil"), ("--name", "invalid model name '../evil'")),
    ("", ("--name", "x@2"), ("--name", "invalid model name 'x@2'")),
], ids=["missing", "not-xml", "not-bpmn", "no-process", "name-path", "name-version"])  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_saves_nothing(ws: Path, tmp_path: Path, content: str | None,
                                                        args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    file = tmp_path / ("missing.bpmn" if content is None else "bad.bpmn")
    if content == "":  # a good model: only the options are wrong
        small_model("review").write(file)
    elif content is not None:
        file.write_text(content)
    _user_error(run_cli("model", "import", str(file), *args, workspace=ws), *needles)
    assert _repository(ws) == []


def test_a_file_that_is_not_bpmn_or_whose_process_name_is_no_model_name(ws: Path, tmp_path: Path) -> None:
    text = tmp_path / "model.txt"
    text.write_text("<definitions/>")
    _user_error(run_cli("model", "import", str(text), workspace=ws), "model.txt", ".bpmn")
    slashed = small_model("Orders/Returns").write(tmp_path / "orders.bpmn")
    _user_error(run_cli("model", "import", str(slashed), workspace=ws),
                "orders.bpmn", "invalid model name 'Orders/Returns'", "--name NAME")
    assert _repository(ws) == []
    assert _json(run_cli("model", "import", str(slashed), "--name", "orders", "--json", workspace=ws))["version"] == 1


def test_a_model_with_errors_is_refused_by_element(ws: Path, tmp_path: Path) -> None:
    broken = small_model("broken")
    broken.set_condition("size", "auto", None)  # a branch without condition that is not the default
    file = broken.write(tmp_path / "broken.bpmn")
    line = _user_error(run_cli("model", "import", str(file), workspace=ws),
                       "broken.bpmn", "1 error(s)", "not saved", "missing-condition", "size",
                       f"procestra model validate {file}")
    assert "set_condition() or set_default()" in line  # the first problem, as validate words it
    assert _repository(ws) == []


@pytest.mark.shared
@pytest.mark.parametrize("name", SHARED_MODELS)
def test_bpmn_files_from_other_tools(shared_dir: Path, ws: Path, name: str) -> None:
    """Each file is imported and validates, or is refused in one line that names the file and the
    first element in error, as ``model validate FILE`` lists it; a refusal saves nothing."""
    file = shared_dir / "models" / name
    proc = run_cli("model", "import", str(file), "--json", workspace=ws)
    if proc.returncode == 0:
        saved = json.loads(proc.stdout)
        assert run_cli("model", "validate", saved["name"], workspace=ws).returncode == 0
        return
    line = _user_error(proc, str(file), "was not saved")
    checked = run_cli("model", "validate", str(file), "--json")
    assert checked.returncode == 2
    errors = [p for p in json.loads(checked.stdout) if p["severity"] == "error"]
    assert errors and f"{len(errors)} error(s)" in line and errors[0]["element"] in line
    assert _repository(ws) == []


@pytest.mark.shared
def test_a_bimp_model_with_a_default_flow_imports_and_runs(shared_dir: Path, ws: Path, tmp_path: Path) -> None:
    """BIMP's credit application, with the one thing validate asks for (a default flow at the
    decision after 'Assess application'), imports as it is otherwise and runs: its untyped
    tasks wait for someone to complete them."""
    B = f"{{{BPMN_NS}}}"
    tree = etree.parse(str(shared_dir / "models" / "ch7_CreditAppSimulation.bpmn"))
    offer = tree.find(f".//{B}sequenceFlow[@id='sid-789335C6-205C-4A03-9AD6-9655893C1FFB']")
    gateway = tree.find(f".//{B}exclusiveGateway[@id='{offer.get('sourceRef')}']")
    gateway.set("default", offer.get("id"))
    for condition in offer.findall(f"{B}conditionExpression"):
        offer.remove(condition)
    file = tmp_path / "credit.bpmn"
    tree.write(str(file), xml_declaration=True, encoding="utf-8")

    saved = _json(run_cli("model", "import", str(file), "--json", workspace=ws))
    assert saved["name"] == "credit" and "Make credit offer" in saved["activities"]
    kept = etree.parse(str(Path(saved["path"]) / "model.bpmn")).getroot()  # BIMP's simulation data stays
    assert len(kept.findall("{http://www.qbp-simulator.com/Schema201212}processSimulationInfo")) == 1
    assert {w["code"] for w in saved["warnings"]} == {"untyped-task", "constant-condition"}
    assert run_cli("model", "validate", "credit", workspace=ws).returncode == 0

    case = run_cli("start", "credit", workspace=ws, check=True).stdout.strip()
    run_cli("worker", "--until-idle", workspace=ws, check=True)
    open_tasks = _json(run_cli("tasks", "--case", case, "--json", workspace=ws))
    assert sorted(t["name"] for t in open_tasks) == ["Check credit history", "Check income sources"]
    for t in open_tasks:
        run_cli("complete", t["task"], workspace=ws, check=True)
    run_cli("worker", "--until-idle", workspace=ws, check=True)
    assert [t["name"] for t in _json(run_cli("tasks", "--case", case, "--json", workspace=ws))] == [
        "Assess application"]
