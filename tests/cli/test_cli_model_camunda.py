"""A Camunda Modeler file as it is, through the real CLI: import (``.bpmn20.xml``, two pools), the bindings
it asks for, ``model bind``, ``model validate --process``/``--json``, and a case whose human tasks take
Camunda's form, assignee and group, or, without a form, any JSON object."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from conftest import run_cli
from engine_handlers import subprocess_env
from procestra import Workspace, engine

ORDERS = Path(__file__).resolve().parents[1] / "engine" / "cases" / "orders_camunda.bpmn20.xml"
B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return Workspace.init(tmp_path / "ws").path


def cli(*args: str, workspace: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI, with tests/ on PYTHONPATH so ``engine_handlers`` imports."""
    return run_cli(*args, workspace=workspace, env=subprocess_env())


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _refused(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(n in line for n in needles), (needles, line)
    return line


def test_import_lists_the_bindings_to_make_and_bind_makes_them(ws: Path) -> None:
    out = _ok(cli("model", "import", str(ORDERS), workspace=ws)).splitlines()  # before: refused for its suffix
    assert out[0] == f"imported {ORDERS} as model 'Orders' version 1"
    assert out[2] == ("  note: 1 other process(es) (pools) are kept in the file but do not run: 'Process_customer' "
                      "('Customer'); cases run process 'Process_orders'")
    assert out[3:] == [
        "  2 service task(s) to bind before cases can run them:",
        "  Activity_charge \"Charge card\": external topic 'charge' -> bind with: procestra model bind Orders "
        "Activity_charge --python mod:func",
        "  Activity_notify \"Notify customer\": Java class 'com.acme.shop.Notify' -> bind with: procestra model "
        "bind Orders Activity_notify --python mod:func",
    ]
    first = json.loads(_ok(cli("model", "import", str(ORDERS), "--json", workspace=ws)))
    assert [(b["task"], b["binding"]) for b in first["bindings"]] == [
        ("Activity_charge", "external topic 'charge'"), ("Activity_notify", "Java class 'com.acme.shop.Notify'")]

    _refused(cli("model", "bind", "Orders", "nope", "--python", "engine_handlers:noop", workspace=ws),
             "task 'nope'", "no element with id or name 'nope'")
    _refused(cli("model", "bind", "Orders", "StartEvent_order", "--python", "engine_handlers:noop", workspace=ws),
             "task 'StartEvent_order'", "only tasks can be bound")
    _refused(cli("model", "bind", "Orders", "Activity_charge", workspace=ws), "exactly one of --python")
    bound = json.loads(_ok(cli("model", "bind", "Orders", "Activity_charge", "--python", "engine_handlers:effect",
                               "--output", "charged", "--retries", "3", "--json", workspace=ws)))
    assert (bound["version"], bound["task"], bound["handler"]["config"]) == (
        3, "Activity_charge", {"target": "engine_handlers:effect"})
    assert [b["task"] for b in bound["bindings"]] == ["Activity_notify"]
    line = _ok(cli("model", "bind", "Orders", "Notify customer", "--http", "http://127.0.0.1:9/notify",
                   workspace=ws)).strip()
    assert line == "bound Activity_notify 'Notify customer' to http handler; saved model 'Orders' version 4"
    assert _ok(cli("model", "validate", "Orders", workspace=ws)).strip() == "Orders: no problems"

    saved = etree.parse(str(ws / "process_models" / "Orders" / "v4" / "model.bpmn")).getroot()
    original = etree.parse(str(ORDERS)).getroot()
    assert [p.get("id") for p in saved.iter(f"{B}process")] == ["Process_orders", "Process_customer"]
    assert saved.find(f"{B}collaboration/{B}messageFlow").get("id") == "MessageFlow_order"
    assert etree.tostring(saved.find(f".//{B}process[@id='Process_customer']"), method="c14n", exclusive=True) == \
        etree.tostring(original.find(f".//{B}process[@id='Process_customer']"), method="c14n", exclusive=True)


def test_validate_takes_process_and_prints_json_when_refused(ws: Path, tmp_path: Path) -> None:
    copy = tmp_path / "two.bpmn"
    tree = etree.parse(str(ORDERS))
    tree.find(f".//{B}process[@id='Process_customer']").set("isExecutable", "true")  # now two could run
    tree.write(str(copy))
    _refused(cli("model", "validate", str(copy)), "several processes", "--process ID")
    refused = cli("model", "validate", str(copy), "--json")  # before: nothing on stdout
    assert refused.returncode == 2
    [problem] = json.loads(refused.stdout)
    assert (problem["severity"], problem["code"]) == ("error", "unreadable")
    assert "several processes" in problem["message"]
    by_pool = cli("model", "validate", str(copy), "--process", "Process_orders", "--json")  # before: no --process
    assert by_pool.returncode == 2
    assert [(p["code"], p["element"]) for p in json.loads(by_pool.stdout)] == [
        ("unbound-service-task", "Activity_charge"), ("unbound-service-task", "Activity_notify")]
    customer = cli("model", "validate", str(copy), "--process", "Customer")
    assert customer.returncode == 0, customer.stderr  # its one plain task is only a warning


def test_camunda_forms_assignee_and_a_task_without_a_form_run(ws: Path) -> None:
    _ok(cli("model", "import", str(ORDERS), workspace=ws))
    _ok(cli("model", "bind", "Orders", "Activity_charge", "--python", "engine_handlers:effect", workspace=ws))
    _ok(cli("model", "bind", "Orders", "Activity_notify", "--python", "engine_handlers:noop", workspace=ws))
    space = Workspace(ws)
    case = engine.start_case(space, "Orders")
    _ok(cli("worker", "--until-idle", workspace=ws))
    [enter] = engine.list_tasks(space, case=case)
    assert (enter.name, enter.candidate_group, enter.assignee, enter.status) == ("Enter order", "sales", "demo",
                                                                                "claimed")
    assert [(f["name"], f["type"], f["required"]) for f in enter.form] == [
        ("amount", "integer", True), ("priority", "enum", False), ("note", "string", False)]
    _refused(cli("complete", enter.task, "--data", '{"amount": 0}', workspace=ws), "amount: 0 is less than the "
                                                                                   "minimum 1")
    _refused(cli("complete", enter.task, "--data", '{"amount": 5, "note": "' + "x" * 21 + '"}', workspace=ws),
             "longer than 20 characters")
    _refused(cli("complete", enter.task, "--data", '{"amount": 5}', "--user", "mallory", workspace=ws),
             "claimed by 'demo'")
    _ok(cli("complete", enter.task, "--data", '{"amount": 5}', "--user", "demo", workspace=ws))
    _ok(cli("worker", "--until-idle", workspace=ws))
    [confirm] = engine.list_tasks(space, case=case)
    assert (confirm.name, confirm.form, confirm.assignee) == ("Confirm", [], None)
    # no form: any JSON object, its keys become case data (before: "not a field of this form")
    _ok(cli("complete", confirm.task, "--data", '{"approved": true, "comment": "ok"}', workspace=ws))
    _ok(cli("worker", "--until-idle", workspace=ws))
    info = engine.get_case(space, case)
    assert info.status == "completed", info.error
    assert info.data == {"amount": 5, "priority": "low", "effect_done": True, "approved": True, "comment": "ok"}


def test_validate_of_a_file_looks_up_called_models_in_the_workspace(ws: Path, tmp_path: Path) -> None:
    file = tmp_path / "caller.bpmn"
    file.write_text(
        f'<definitions xmlns="{B[1:-1]}" id="D" targetNamespace="t"><process id="P"><startEvent id="S"/>'
        '<sequenceFlow id="f0" sourceRef="S" targetRef="Call"/><callActivity id="Call" name="Check" '
        'calledElement="checks"/><sequenceFlow id="f1" sourceRef="Call" targetRef="E"/><endEvent id="E"/>'
        '</process></definitions>', encoding="utf-8")  # fmt: skip
    refused = cli("model", "validate", str(file), "--json", workspace=ws)  # before: not looked up for a file
    assert refused.returncode == 2
    [problem] = json.loads(refused.stdout)
    assert (problem["code"], problem["element"]) == ("call-unknown-model", "Call") and "checks" in problem["message"]


def test_show_lists_what_each_element_does(ws: Path) -> None:
    _ok(cli("model", "import", str(ORDERS), workspace=ws))
    out = _ok(cli("model", "show", "Orders", workspace=ws)).splitlines()
    assert out[-4:] == [
        "  Activity_enter userTask 'Enter order': human task (group 'sales', assignee 'demo', form key "
        "'embedded:app:forms/order.html'); form fields: amount, priority, note",
        "  Activity_charge serviceTask 'Charge card': to bind (the file has external topic 'charge')",
        "  Activity_confirm userTask 'Confirm': human task (group 'sales'); form fields: none: takes any data",
        "  Activity_notify serviceTask 'Notify customer': to bind (the file has Java class 'com.acme.shop.Notify')",
    ]
    shown = json.loads(_ok(cli("model", "show", "Orders", "--json", workspace=ws)))
    assert [e["id"] for e in shown["elements"]][:2] == ["StartEvent_order", "Activity_enter"]


def test_a_bpmn20_xml_file_is_a_model_file_everywhere() -> None:
    from procestra import load_model

    loaded = load_model(None, ORDERS)  # the repository's reader (conformance, show): before, refused for ".xml"
    assert set(loaded.activities) >= {"Enter order", "Charge card", "Confirm", "Notify customer"}


@pytest.mark.parametrize(("how", "needles"), [
    (("--kind", "nope", "--config", "{}"), ("Activity_charge", "no connector 'nope' is registered")),
    (("--sql", "select 1", "--connection", "duckdb:///x.db"), ("task 'Activity_charge'", "name of a secret")),
    (("--notebook", "nb.ipynb"), ("Activity_charge", "the notebook 'nb.ipynb' is not in the workspace")),
    (("--python", "not a target"), ("task 'Activity_charge'", "package.module:function")),
    (("--python", "a:b", "--input", "x"), ("--input 'x'", "NAME=EXPRESSION")),
    (("--python", "a:b", "--shell", "echo hi"), ("exactly one of",)),
])  # fmt: skip
def test_bind_refusals_name_what_to_fix(ws: Path, how: tuple[str, ...], needles: tuple[str, ...]) -> None:
    _ok(cli("model", "import", str(ORDERS), workspace=ws))
    _refused(cli("model", "bind", "Orders", "Activity_charge", *how, workspace=ws), *needles)
    assert [m["version"] for m in json.loads(_ok(cli("model", "list", "--json", workspace=ws)))] == [1]  # nothing saved


def test_the_readme_walk_through_runs_the_shipped_camunda_file_to_its_message(ws: Path) -> None:
    """README: import process_models/orders.bpmn20.xml, bind its external task from the CLI, run a case to
    the message it waits for, send the message, and see the case go on."""
    shipped = Path(__file__).resolve().parents[2] / "process_models" / "orders.bpmn20.xml"
    out = _ok(cli("model", "import", str(shipped), workspace=ws))
    assert "Activity_charge \"Charge card\": external topic 'charge'" in out
    _ok(cli("model", "bind", "Orders", "Activity_charge", "--shell", "echo '{\"charged\": true}'",
            "--output", "charged", workspace=ws))  # fmt: skip
    case = _ok(cli("start", "Orders", "--data", '{"order": "A-17", "total": 120.5}', workspace=ws)).strip()
    _ok(cli("worker", "--until-idle", workspace=ws))
    [task] = json.loads(_ok(cli("tasks", "--json", workspace=ws)))
    assert task["name"] == "Check order" and task["candidate_group"] == "sales"
    _ok(cli("complete", task["task"], "--data", '{"approved": true}', "--user", "ann", workspace=ws))
    _ok(cli("worker", "--until-idle", workspace=ws))
    [waiting] = json.loads(_ok(cli("cases", "--json", workspace=ws)))
    assert (waiting["case"], waiting["status"]) == (case, "waiting")
    _refused(cli("message", "Payment received", "--correlate", "order=B-1", workspace=ws), "Payment received")
    sent = _ok(cli("message", "Payment received", "--correlate", "order=A-17", "--data", '{"paid": 120.5}',
                   workspace=ws))  # fmt: skip
    assert "sent to 1 waiting case" in sent and case in sent
    _ok(cli("worker", "--until-idle", workspace=ws))
    [ship] = json.loads(_ok(cli("tasks", "--json", workspace=ws)))
    assert ship["name"] == "Ship order"
    info = engine.get_case(Workspace(ws), case)
    assert info.data == {"order": "A-17", "total": 120.5, "approved": True, "charged": True, "paid": 120.5}
    assert [(s.kind, s.element, s.outcome) for s in engine.case_history(Workspace(ws), case)] == [
        ("user", "Activity_check", "completed"), ("service", "Activity_charge", "completed"),
        ("message", "Event_payment", "caught")]
