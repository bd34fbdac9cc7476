"""The ``procestra`` command line: a thin layer over the public API, one module per command group.

Conventions for every command: ``-w/--workspace`` (else ``$PROCESTRA_WORKSPACE``,
else ``./workspace``); ``--json`` prints only JSON on stdout; exit code 0 on
success, 2 on a user error (one ``error: ...`` line on stderr), 1 on any other
failure; a traceback only with ``--debug``.

One module per command group:

- ``cli/logs.py``: init, ingest, logs, info, export, drop, generate
- ``cli/mining.py``: variants, dfg, discover, conform
- ``cli/model.py``: model list|show|import|validate (``models`` is a hidden alias)
- ``cli/engine.py``: start, worker, cases, tasks, complete, cancel, retry
- ``cli/events.py``: message, signal
- ``cli/schedule.py``: schedule add|list|show|pause|resume|remove, scheduler run|tick, runs [show|html], run-notebook
- ``cli/ops.py``: ops url|flush

:mod:`procestra.cli.io` holds what they share. Commands import the API inside their
bodies, so ``procestra --help`` loads none of pandas, pm4py, papermill or SpiffWorkflow.
"""

from __future__ import annotations

import sys

import click

from procestra.cli import engine, events, logs, mining, model, ops, schedule
from procestra.cli.io import State, fail, one_line


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-w", "--workspace", metavar="DIR", help="Workspace directory (default: $PROCESTRA_WORKSPACE or ./workspace).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="procestra")
@click.pass_context
def main(ctx: click.Context, workspace: str | None, debug: bool) -> None:
    """Procestra: mine processes from event logs, and run the processes you design."""
    ctx.obj = State(workspace, debug)


for _group in (logs, mining, model, engine, events, schedule, ops):
    for _command in _group.COMMANDS:
        main.add_command(_command)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: click's usage errors become one ``error:`` line, exit 2."""
    try:
        main.main(args=argv, prog_name="procestra", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        fail("aborted", 1)
    except click.ClickException as exc:
        fail(one_line(exc.format_message()) + " (see --help)", 2)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    run()
