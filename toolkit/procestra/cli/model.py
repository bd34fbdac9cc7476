"""The model repository (the workspace's ``process_models/``): ``model list``, ``show``, ``import``, ``validate``,
``bind``.

``models`` is a hidden alias of ``model`` with the same subcommands (``procestra models list``
keeps working).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from procestra.cli.io import State, cli_endpoint, emit, emit_json, emit_rows, fail, json_option
from procestra.errors import InvalidArgumentError, ModelError

if TYPE_CHECKING:
    from procestra.engine import Problem, ToBeModel
    from procestra.engine.connectors import Handler
    from procestra.models import ModelInfo
    from procestra.store.home import Home


@click.group("model")
def model() -> None:
    """The model repository (the workspace's process_models/): list, show, import, validate, bind.

    ``import`` brings in a BPMN file from another tool; ``validate`` checks a to-be model before it runs;
    ``bind`` makes a service task run a handler.
    """


@model.command("list")
@json_option()
@click.pass_obj
@cli_endpoint
def model_list(state: State, as_json: bool) -> None:
    """List saved models (latest version of each)."""
    from procestra.models import list_models

    emit_rows(as_json, list_models(state.workspace()), lambda i: i.to_dict(), _model_line,
              "no models yet; save one with `procestra discover LOG --out FILE --save NAME` "
              "or `procestra model import FILE.bpmn`")


def _model_line(i: ModelInfo) -> str:
    fit = i.quality.get("fitness")
    score = f", fitness {fit:.3f}" if isinstance(fit, float) else ""
    return (f"{i.name}  v{i.version} ({i.versions} versions), {i.kind}, from {i.source_log or '-'} "
            f"by {i.miner or '-'}{score}, {i.created:%Y-%m-%d %H:%M}")


@model.command("show")
@click.argument("name")
@json_option()
@click.pass_obj
@cli_endpoint
def model_show(state: State, name: str, as_json: bool) -> None:
    """Show one model's metadata, NAME or NAME@VERSION, and for a to-be model what its elements do.

    Loops, events (timers, conditions, messages, signals...), forms, bindings and what the
    engine does not run are listed per element, as read from its model.bpmn.
    """
    from procestra.models import model_info

    ws = state.workspace()
    info = model_info(ws, name)
    d = info.to_dict()
    lines = [f"{k}: {v}" for k, v in d.items()]
    import json

    meta = json.loads((info.path / "meta.json").read_text(encoding="utf-8"))
    if meta.get("executable") and (info.path / "model.bpmn").is_file():
        from procestra.engine import ToBeModel

        loaded = ToBeModel.load(info.ref, ws=ws)
        d["elements"] = [{"id": e.id, "kind": e.kind, "name": e.name, "details": e.describe()}
                         for e in loaded.elements.values()]  # fmt: skip
        lines += [f"  {e['id']} {e['kind']}" + (f" {e['name']!r}" if e["name"] else "") + ": " + "; ".join(e["details"])
                  for e in d["elements"] if e["details"]]  # fmt: skip
    emit(as_json, d, lines)


@model.command("validate")
@click.argument("model_ref", metavar="MODEL")
@click.option("--process", metavar="ID", help="The process (pool) to check, by id or name, when the file has several.")
@json_option()
@click.pass_obj
@cli_endpoint
def model_validate(state: State, model_ref: str, process: str | None, as_json: bool) -> None:
    """Check MODEL (a .bpmn or .bpmn20.xml file, or a saved NAME[@VERSION]) and list its problems by element.

    Exit code 2 when it has errors; warnings alone pass. With --json the problems are printed
    even when the model is refused, also when the file cannot be read at all. Called models
    are looked up in the workspace, when there is one.
    """
    from procestra.engine import ToBeModel
    from procestra.engine.tobe_bpmn import is_bpmn_file
    from procestra.models.repository import is_model_path

    is_file = is_bpmn_file(model_ref) or is_model_path(model_ref)
    ws = _workspace_if_any(state) if is_file else state.workspace()
    try:
        loaded = ToBeModel.load(model_ref, ws=ws, process=process)
    except ModelError as exc:
        error = _for_the_cli(exc, process)
        if as_json:
            emit_json([{"severity": "error", "code": "unreadable", "element": error.element, "name": "",
                        "message": error.reason}])  # fmt: skip
            fail(f"{model_ref}: {error.reason}", 2)
        raise error from None
    problems = loaded.validate(ws=ws)
    errors = [p for p in problems if p.severity == "error"]
    emit(as_json, [p.to_dict() for p in problems], [str(p) for p in problems] or [f"{model_ref}: no problems"])
    if errors:
        fail(f"{model_ref} has {len(errors)} error(s); fix them before running it", 2)


def _workspace_if_any(state: State) -> Home | None:
    """The workspace, or None when there is none (a file can be checked without one)."""
    from procestra.errors import WorkspaceError

    try:
        return state.workspace()
    except WorkspaceError:
        return None


@model.command("import")
@click.argument("file")
@click.option("--process", metavar="ID", help="The process (pool) to import, by id or name, when FILE has several.")
@click.option("--name", help="Save under this name (default: the process's name, else FILE's name).")
@json_option()
@click.pass_obj
@cli_endpoint
def model_import(state: State, file: str, process: str | None, name: str | None, as_json: bool) -> None:
    """Bring FILE, a BPMN 2.0 model from another tool (.bpmn or .bpmn20.xml), into the repository.

    It becomes the next version of its name, as ``ToBeModel.load(FILE).save(ws)`` in Python.
    The file is kept as drawn (layout, other pools, vendor extensions); only its process runs.
    A model with errors is not saved (``procestra model validate FILE`` lists them), except
    service tasks still to bind: they are listed, one per line, with the command that binds them.
    """
    from procestra.engine import ToBeModel
    from procestra.engine.tobe_bpmn import is_bpmn_file

    path = Path(file)
    if not is_bpmn_file(path):
        raise InvalidArgumentError(f"{file}: not a BPMN file; give a .bpmn or .bpmn20.xml file", parameter="file")
    try:
        loaded = ToBeModel.load(path, process=process)
    except ModelError as exc:
        raise _for_the_cli(exc, process) from None
    ws = state.workspace()
    try:
        info = _save(loaded, ws, name, file)
    except InvalidArgumentError as exc:
        if exc.parameter != "name":
            raise
        where, hint = ("--name", "") if name is not None else (file, "; choose one with --name NAME")
        raise InvalidArgumentError(f"{where}: {exc}{hint}", parameter="name") from None
    warnings = [p for p in loaded.validate(ws=ws) if p.severity == "warning"]
    bindings = _bindings_to_make(loaded, info.name)
    data = {**info.to_dict(), "file": str(path), "process_id": loaded.process_id, "notes": list(loaded.notes),
            "warnings": [p.to_dict() for p in warnings], "bindings": bindings}  # fmt: skip
    lines = [f"imported {file} as model {info.name!r} version {info.version}", f"  path {info.path}"]
    lines += [f"  note: {n}" for n in loaded.notes]
    if bindings:
        lines.append(f"  {len(bindings)} service task(s) to bind before cases can run them:")
        lines += [f"  {b['task']} \"{b['name']}\": {b['binding']} -> bind with: {b['command']}" for b in bindings]
    if warnings:
        lines.append(f"  {len(warnings)} warning(s); `procestra model validate {info.ref}` lists them")
    emit(as_json, data, lines)


@model.command("bind")
@click.argument("model_ref", metavar="MODEL")
@click.argument("task")
@click.option("--python", "target", metavar="MOD:FUNC", help="Call a Python function, pkg.module:function.")
@click.option("--notebook", metavar="PATH", help="Run a notebook (relative to the workspace); --output names results.")
@click.option("--http", "url", metavar="URL", help="Send an HTTP request (--method, default POST).")
@click.option("--method", default="POST", show_default=True, help="The HTTP method, with --http.")
@click.option("--shell", "command", metavar="COMMAND", help="Run a command (split like a shell; no shell runs it).")
@click.option("--sql", "query", metavar="QUERY", help="Run a SQL query on --connection.")
@click.option("--connection", metavar="URL", help="The database, with --sql.")
@click.option("--kind", metavar="KIND", help="Another registered connector, with its settings in --config.")
@click.option("--config", "config_json", metavar="JSON", help="The connector's settings, with --kind.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=EXPRESSION", help="An input (repeatable).")
@click.option("--output", "outputs", multiple=True, metavar="NAME", help="A case data key it sets (repeatable).")
@click.option("--secret", "secrets", multiple=True, metavar="NAME", help="A secret it may read (repeatable).")
@click.option("--timeout", type=float, help="Seconds before an attempt fails.")
@click.option("--retries", type=click.IntRange(1, 100), help="Attempts in all, with exponential backoff.")
@json_option()
@click.pass_obj
@cli_endpoint
def model_bind(state: State, /, model_ref: str, task: str, as_json: bool, **how: Any) -> None:
    """Bind TASK (id or name) of saved MODEL to a handler and save the next version.

    Exactly one of --python, --notebook, --http, --shell, --sql or --kind says what runs.
    The same as ``model.bind(TASK, handler)`` and ``model.save(ws)`` in Python.
    """
    from procestra.engine import ToBeModel
    from procestra.engine.elements import Retry

    ws = state.workspace()
    handler = _handler(how)
    loaded = ToBeModel.load(model_ref, ws=ws)
    try:
        loaded.bind(task, handler, retry=Retry(how["retries"]) if how["retries"] else None)
    except (ModelError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"{model_ref}: task {task!r}: {exc}", parameter="task") from None
    from procestra.models.repository import ModelRef

    name = ModelRef.parse(model_ref).name
    info = _save(loaded, ws, name, model_ref)
    bound = loaded.element(task)
    left = _bindings_to_make(loaded, info.name)
    data = {**info.to_dict(), "task": bound.id, "handler": handler.to_dict(), "bindings": left}
    lines = [f"bound {bound.label} to {handler.kind} handler; saved model {info.name!r} version {info.version}"]
    lines += [f"  still to bind: {b['task']} {b['name']!r}: {b['binding']} -> {b['command']}" for b in left]
    emit(as_json, data, lines)


def _handler(how: dict[str, Any]) -> Handler:
    """The handler the bind options describe; exactly one kind."""
    import json

    from procestra.engine import connectors as c

    kinds = [k for k in ("target", "notebook", "url", "command", "query", "kind") if how.get(k)]
    if len(kinds) != 1:
        raise InvalidArgumentError("give exactly one of --python, --notebook, --http, --shell, --sql or --kind",
                                   parameter="handler")
    inputs = {}
    for item in how["inputs"]:
        key, sep, expr = item.partition("=")
        if not sep:
            raise InvalidArgumentError(f"--input {item!r}: write NAME=EXPRESSION", parameter="input")
        inputs[key.strip()] = expr.strip()
    outputs, secrets, timeout = tuple(how["outputs"]), tuple(how["secrets"]), how["timeout"]
    if how.get("target"):
        return c.python(how["target"], inputs=inputs, outputs=outputs, secrets=secrets, timeout=timeout)
    if how.get("notebook"):
        return c.notebook(how["notebook"], parameters=inputs, results=outputs, secrets=secrets,
                          timeout=timeout if timeout is not None else 600)  # fmt: skip
    if how.get("url"):
        return c.http(how["method"], how["url"], inputs=inputs, outputs=outputs,
                      timeout=timeout if timeout is not None else 30)  # fmt: skip
    if how.get("command"):
        return c.shell(shlex.split(how["command"]), inputs=inputs, outputs=outputs, timeout=timeout)
    if how.get("query"):
        if not how.get("connection"):
            raise InvalidArgumentError("--sql needs --connection", parameter="connection")
        return c.sql(how["connection"], how["query"], params=inputs, outputs=outputs, timeout=timeout)
    try:
        config = json.loads(how.get("config_json") or "{}")
    except ValueError as exc:
        raise InvalidArgumentError(f"--config is not JSON: {exc}", parameter="config") from None
    return c.Handler(how["kind"], config, inputs, outputs, timeout, secrets)


def _save(loaded: ToBeModel, ws: Home, name: str | None, where: str) -> ModelInfo:
    """Save ``loaded``: refused when it has errors other than service tasks still to bind."""
    problems = loaded.validate(ws=ws)
    errors = [p for p in problems if p.severity == "error" and p.code != "unbound-service-task"]
    if errors:
        raise ModelError(_refusal(loaded.name, errors, where), path=where, element=errors[0].element)
    return loaded.save(ws, name, check=False)


def _bindings_to_make(loaded: ToBeModel, name: str) -> list[dict[str, str]]:
    """Service tasks without a handler: what another tool bound them to, and the command that binds them."""
    out = []
    for e in loaded.elements.values():
        if e.kind == "serviceTask" and e.handler is None:
            out.append({"task": e.id, "name": e.name, "binding": e.vendor_binding or "no binding",
                        "command": f"procestra model bind {shlex.quote(name)} {e.id} --python mod:func"})
    return out


def _for_the_cli(exc: ModelError, process: str | None) -> ModelError:
    """``ToBeModel.load``'s error, worded for the command line (``--process``, not ``process=``)."""
    reason = exc.reason.replace("pick one with process=", "pick one with --process ID")
    if process is not None and reason.startswith("no process "):
        reason = f"--process {process!r}: {reason}"
    return ModelError(reason, path=exc.path, element=exc.element)


def _refusal(name: str, errors: list[Problem], file: str) -> str:
    return (f"model {name!r} has {len(errors)} error(s) and was not saved; the first: {errors[0]}; "
            f"`procestra model validate {file}` lists them all")


#: ``procestra models ...``: the same subcommands under the old name, not listed in ``--help``.
models_alias = click.Group("models", commands=model.commands, help=model.help, hidden=True)

COMMANDS = [model, models_alias]
