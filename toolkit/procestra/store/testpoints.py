"""Named pause points in the store's commit path, for crash tests only.

A crash test must kill a writer *inside* its commit window (just before ``COMMIT``, just
after it), which a kill at a random moment of a load rarely hits. The writer calls
:func:`pause_point` at each named point; it does nothing unless the process was started
with the environment variable::

    PROCESTRA_TEST_PAUSE_AT=<point>=<absolute path of a flag file>

Then, on reaching ``<point>``, the writer creates the flag file (holding its pid and the
point) and waits, its transaction and locks as they are, until the file is removed (it
then goes on) or the process is killed. A test waits for the file, kills the writer (or
removes the file to let it go on and kills it a moment later), and checks the store.

It cannot fire by accident: the variable's name says it is for tests, it names one exact
point, and a malformed value or an unknown point raises :class:`ValueError` instead of
being ignored. A writer that waits more than ``PAUSE_LIMIT`` seconds goes on by itself,
so a forgotten variable delays a load instead of hanging it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["ENV", "PAUSE_LIMIT", "POINTS", "pause_point"]

#: The environment variable that arms one pause point.
ENV = "PROCESTRA_TEST_PAUSE_AT"
#: The points, in the order a load passes them (see ``procestra.ingest.loader._commit``).
POINTS = (
    "ingest.before-commit",  # every table and catalogue row written, COMMIT not yet sent
    "ingest.after-commit",   # COMMIT returned; the connection (DuckDB's file lock) and the writer lock still held
)
#: Seconds a paused writer waits for its flag file to go before it goes on by itself.
PAUSE_LIMIT = 300.0


def _armed() -> tuple[str, Path] | None:
    value = os.environ.get(ENV)
    if not value:
        return None
    point, sep, flag = value.partition("=")
    if not sep or point not in POINTS or not Path(flag).is_absolute():
        raise ValueError(f"{ENV}={value!r} is not <point>=<absolute flag file> with a point in {POINTS}")
    return point, Path(flag)


def pause_point(point: str) -> None:
    """Pause here if a test armed ``point`` (see the module docstring); otherwise return at once."""
    if point not in POINTS:
        raise ValueError(f"unknown pause point {point!r}; known: {POINTS}")
    armed = _armed()
    if armed is None or armed[0] != point:
        return
    flag = armed[1]
    partial = flag.with_name(flag.name + ".part")
    partial.write_text(f"{os.getpid()} {point}\n")
    partial.replace(flag)  # appears whole: the test never reads half a file
    deadline = time.monotonic() + PAUSE_LIMIT
    while flag.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
