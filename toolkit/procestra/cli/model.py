"""The model repository (the workspace's ``process_models/``): ``model list``, ``show``, ``import``, ``validate``.

``models`` is a hidden alias of ``model`` with the same subcommands (``procestra models list``
keeps working).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from procestra.cli.io import State, cli_endpoint, emit, emit_rows, fail, json_option
from procestra.errors import InvalidArgumentError, ModelError

if TYPE_CHECKING:
    from procestra.engine import Problem
    from procestra.models import ModelInfo


@click.group("model")
def model() -> None:
    """The model repository (the workspace's process_models/): list, show, import, validate.

    ``import`` brings in a BPMN file from another tool; ``validate`` checks a to-be model before it runs.
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
    """Show one model's metadata: NAME or NAME@VERSION."""
    from procestra.models import model_info

    d = model_info(state.workspace(), name).to_dict()
    emit(as_json, d, (f"{k}: {v}" for k, v in d.items()))


@model.command("validate")
@click.argument("model_ref", metavar="MODEL")
@json_option()
@click.pass_obj
@cli_endpoint
def model_validate(state: State, model_ref: str, as_json: bool) -> None:
    """Check MODEL (a .bpmn file, or a saved NAME[@VERSION]) and list its problems by element.

    Exit code 2 when it has errors; warnings alone pass.
    """
    from procestra.engine import validate_model

    ws = state.workspace() if Path(model_ref).suffix.lower() != ".bpmn" else None
    problems = validate_model(model_ref, ws=ws)
    errors = [p for p in problems if p.severity == "error"]
    emit(as_json, [p.to_dict() for p in problems], [str(p) for p in problems] or [f"{model_ref}: no problems"])
    if errors:
        fail(f"{model_ref} has {len(errors)} error(s); fix them before running it", 2)


@model.command("import")
@click.argument("file")
@click.option("--process", metavar="ID", help="The process (pool) to import, by id or name, when FILE has several.")
@click.option("--name", help="Save under this name (default: the process's name, else FILE's name).")
@json_option()
@click.pass_obj
@cli_endpoint
def model_import(state: State, file: str, process: str | None, name: str | None, as_json: bool) -> None:
    """Bring FILE, a BPMN 2.0 model from another tool, into the repository as the next version of its name.

    The same as ``ToBeModel.load(FILE).save(ws)`` in Python: a model with errors is not
    saved (``procestra model validate FILE`` lists them). Vendor extensions, lanes and the
    other pools are dropped, and the diagram is laid out anew.
    """
    from procestra.engine import ToBeModel, ValidationError

    path = Path(file)
    if path.suffix.lower() != ".bpmn":
        raise InvalidArgumentError(f"{file}: not a BPMN file; give a .bpmn file", parameter="file")
    try:
        loaded = ToBeModel.load(path, process=process)
    except ModelError as exc:
        raise _for_the_cli(exc, process) from None
    ws = state.workspace()
    try:
        info = loaded.save(ws, name)
    except ValidationError as exc:
        errors = [p for p in exc.problems if p.severity == "error"]
        raise ModelError(_refusal(loaded.name, errors, file), path=file, element=errors[0].element) from None
    except InvalidArgumentError as exc:
        if exc.parameter != "name":
            raise
        where, hint = ("--name", "") if name is not None else (file, "; choose one with --name NAME")
        raise InvalidArgumentError(f"{where}: {exc}{hint}", parameter="name") from None
    warnings = [p for p in loaded.validate(ws=ws) if p.severity == "warning"]
    data = {**info.to_dict(), "file": str(path), "process_id": loaded.process_id, "notes": list(loaded.notes),
            "warnings": [p.to_dict() for p in warnings]}
    lines = [f"imported {file} as model {info.name!r} version {info.version}", f"  path {info.path}"]
    lines += [f"  note: {n}" for n in loaded.notes]
    if warnings:
        lines.append(f"  {len(warnings)} warning(s); `procestra model validate {info.ref}` lists them")
    emit(as_json, data, lines)


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
