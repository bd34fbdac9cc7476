"""Messages and signals into running cases: ``message``, ``signal``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from procestra.cli.io import State, cli_endpoint, emit, json_option, parse_json

if TYPE_CHECKING:
    from procestra.engine import Delivery


def _correlation(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict (values are text; they also match numbers written the same)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--correlate")
        out[key.strip()] = value
    return out


def _text(d: Delivery) -> list[str]:
    lines = [f"{d.kind} {d.name!r} sent to {len(d.delivered)} waiting case(s)"
             + (f" and started {len(d.started)} case(s)" if d.started else "")]
    lines += [f"  {c}" for c in d.delivered] + [f"  {c} (started)" for c in d.started]
    return lines


@click.command()
@click.argument("name")
@click.option("--correlate", multiple=True, metavar="KEY=VALUE",
              help="Only cases whose case data has KEY at VALUE (repeatable).")
@click.option("--data", help="The message's data as a JSON object (it becomes case data).")
@json_option()
@click.pass_obj
@cli_endpoint
def message(state: State, name: str, correlate: tuple[str, ...], data: str | None, as_json: bool) -> None:
    """Send message NAME to the cases waiting for it (or start a case of a model it starts); a worker delivers it."""
    from procestra.engine import send_message

    d = send_message(state.workspace(), name, correlate=_correlation(correlate), data=parse_json(data, "--data"))
    emit(as_json, d.to_dict(), _text(d))


@click.command()
@click.argument("name")
@click.option("--data", help="The signal's data as a JSON object (it becomes case data).")
@json_option()
@click.pass_obj
@cli_endpoint
def signal(state: State, name: str, data: str | None, as_json: bool) -> None:
    """Broadcast signal NAME to every case waiting for it (and start cases of models it starts)."""
    from procestra.engine import send_signal

    d = send_signal(state.workspace(), name, data=parse_json(data, "--data"))
    emit(as_json, d.to_dict(), _text(d))


COMMANDS = [message, signal]
