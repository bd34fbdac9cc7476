"""Progress for long work: a rich display on stderr that appears only after a second.

Work reports through a plain callback ``progress(stage, done, total)``, so the API
stays free of display code; :func:`progress_display` turns such callbacks into a
transient rich progress bar (in a terminal or a notebook) for work that lasts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Progress", "progress_display"]

Progress = Callable[[str, int, "int | None"], None]
"""``progress(stage, done, total)``; ``total`` is None when unknown."""


def _silent(stage: str, done: int, total: int | None) -> None:
    return None


@contextmanager
def progress_display(enabled: bool = True, delay: float = 1.0) -> Iterator[Callable[[str, int, int | None], None]]:
    """A progress callback that shows a rich display on stderr once work lasts ``delay`` s."""
    if not enabled or os.environ.get("PROCESTRA_NO_PROGRESS"):
        yield _silent
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not (console.is_terminal or console.is_jupyter):
        yield _silent  # no bars in logs and pipes: they would only leave blank lines behind
        return
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed:,.0f}"), TimeElapsedColumn(),
        console=console, transient=True,
    )
    task = progress.add_task("starting", total=None)
    started = threading.Event()

    def start() -> None:
        started.set()
        progress.start()

    timer = threading.Timer(delay, start)
    timer.daemon = True
    timer.start()

    def update(stage: str, done: int, total: int | None) -> None:
        progress.update(task, description=stage, completed=done, total=total)

    try:
        yield update
    finally:
        timer.cancel()
        if started.is_set():
            progress.stop()
