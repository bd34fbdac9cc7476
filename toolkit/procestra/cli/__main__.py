"""``python -m procestra.cli``."""

from procestra.cli.main import run

run()
