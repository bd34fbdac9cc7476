"""What every command shares: the workspace it works on, one error handler, JSON output, common options.

Every command is written as::

    @click.command()
    @json_option()
    @click.pass_obj
    @cli_endpoint
    def logs(state: State, as_json: bool) -> None: ...

:func:`cli_endpoint` turns a :class:`~procestra.errors.ProcestraError` into one ``error: ...``
line on stderr (exit 2 for a :class:`~procestra.errors.UserError`, 1 otherwise; the traceback
only with ``--debug``); :func:`emit` prints either JSON or text. Only ``click`` and
``procestra.errors`` load here: the API loads inside the commands that use it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from procestra.errors import InvalidArgumentError, ProcestraError, UserError

if TYPE_CHECKING:
    from procestra.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class State:
    """The root options (``-w/--workspace``, ``--debug``), handed to each command by ``click.pass_obj``."""

    def __init__(self, workspace: str | None, debug: bool) -> None:
        self.workspace_arg = workspace
        self.debug = debug

    @property
    def path(self) -> Path:
        """``-w``, else ``$PROCESTRA_WORKSPACE``, else ``./workspace``."""
        from procestra.workspace import default_workspace_path

        return Path(self.workspace_arg) if self.workspace_arg else default_workspace_path()

    def workspace(self) -> Workspace:
        """The workspace at :attr:`path` (a :class:`~procestra.errors.WorkspaceError` when there is none)."""
        from procestra.workspace import Workspace

        return Workspace(self.path)


def fail(message: str, code: int) -> NoReturn:
    """One ``error: ...`` line on stderr, then exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def cli_endpoint(func: F) -> F:
    """Turn Procestra errors into one ``error:`` line and an exit code; traceback with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:
            if debug:
                raise
            if isinstance(exc, ProcestraError):
                fail(one_line(str(exc)), 2 if isinstance(exc, UserError) else 1)
            fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (dates and paths as text)."""
    click.echo(json.dumps(data, indent=2, default=str))


def emit(as_json: bool, data: Any, text: str | Iterable[str]) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text`` (one string, or lines)."""
    if as_json:
        emit_json(data)
    else:
        click.echo(text if isinstance(text, str) else "\n".join(text))


def emit_rows(as_json: bool, rows: Sequence[T], data: Callable[[T], Any], line: Callable[[T], str],
              empty: str) -> None:
    """A listing: with ``--json`` the list of ``data(row)``, else ``line(row)`` per row (``empty`` when none)."""
    if as_json:
        emit_json([data(r) for r in rows])
        return
    if not rows:
        click.echo(empty)
    for r in rows:
        click.echo(line(r))


def iso(value: Any) -> str | None:
    """A datetime as ISO 8601 text (None stays None)."""
    return value.isoformat() if value is not None else None


def parse_json(value: str | None, option: str) -> Any:
    """The JSON text given to ``option`` (None when the option was not given)."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{option} is not valid JSON: {exc.msg} at column {exc.colno}",
                                   parameter=option) from None


# -- options that several commands take ----------------------------------------------------------------
def json_option(help: str = "Print JSON.") -> Callable[[F], F]:
    """``--json``: print only JSON on stdout (the parameter is ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)

