"""The ``procestra`` command: a thin layer over the API, one module per command group."""

from procestra.cli.main import main, run

__all__ = ["main", "run"]
