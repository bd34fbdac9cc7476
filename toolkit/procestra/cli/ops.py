"""The operational store: ``ops url`` (show or set where it is) and ``ops flush`` (its events into the event store)."""

from __future__ import annotations

from typing import Any

import click

from procestra.cli.io import State, cli_endpoint, emit, emit_json, json_option
from procestra.errors import InvalidArgumentError, ProcestraError


@click.group("ops")
def ops_group() -> None:
    """The operational store: SQLite in the workspace, or a PostgreSQL server that workers on several machines share."""


@ops_group.command("url")
@click.argument("url", required=False)
@click.option("--sqlite", "use_sqlite", is_flag=True, help="Go back to the workspace's own SQLite store.")
@click.option("--events-home", is_flag=True,
              help="Make this workspace the one whose event store receives the shared store's run events.")
@json_option()
@click.pass_obj
@cli_endpoint
def ops_url(state: State, url: str | None, use_sqlite: bool, events_home: bool, as_json: bool) -> None:
    """Show or set the operational store: a postgresql://user:password@host/db URL, or --sqlite.

    The URL is checked by connecting and kept in <workspace>/ops.url ($PROCESTRA_OPS_URL
    wins over it); the password is never printed.
    """
    from procestra.store import ops

    if url is not None and use_sqlite:
        raise InvalidArgumentError("give a URL or --sqlite, not both", parameter="url")
    ws = state.workspace()
    if use_sqlite:
        if events_home:
            raise InvalidArgumentError("--events-home is for a PostgreSQL store; a SQLite store is this "
                                       "workspace's own", parameter="events_home")
        here = ops.set_url(ws, None)
    elif url is not None:
        here = ops.set_url(ws, url, events_home=True if events_home else None)
    else:
        here = ops.location(ws)
        if events_home:
            if here.backend != "postgresql":
                raise InvalidArgumentError("--events-home is for a PostgreSQL store; set one with "
                                           "`procestra ops url postgresql://...` first", parameter="events_home")
            ops.claim_events_home(ws)
    info: dict[str, Any] = here.to_dict()
    info["workspace"] = ops.workspace_id(ws)
    try:
        info["events_home"] = ops.events_home(ws)
    except ProcestraError as exc:  # the server is down: still show where the store is
        info["events_home"], info["error"] = None, str(exc)
    if (url is not None or use_sqlite) and here.source == "$" + ops.OPS_URL_ENV:
        click.echo(f"note: ${ops.OPS_URL_ENV} is set and wins over {ws.path / ops.OPS_URL_FILE}", err=True)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{here.backend}: {here.location}  (from {here.source})")
    if here.backend == "postgresql":
        home = info["events_home"]
        mine = " (this workspace)" if home == info["workspace"] else ""
        home = home or "no workspace yet (run `procestra ops url --events-home` in one)"
        click.echo(f"run events go to: {home}{mine}")
    if "error" in info:
        click.echo(f"but: {info['error']}")


@ops_group.command("flush")
@json_option()
@click.pass_obj
@cli_endpoint
def ops_flush(state: State, as_json: bool) -> None:
    """Move queued run and job events from the operational store into the event store now."""
    from procestra.ingest.outbox import flush_outbox

    result = flush_outbox(state.workspace())
    if result.skipped:
        text = f"nothing flushed: {result.skipped}"
    else:
        failed = f", {result.failed:,} rejected (see the outbox)" if result.failed else ""
        text = f"flushed {result.events:,} events in {result.batches} batches{failed}"
    emit(as_json, result.to_dict(), text)


COMMANDS = [ops_group]
