"""A workspace directory and the handles on its stores: what every stage takes as its first argument.

::

    workspace/
      procestra.toml      marks the directory as a workspace (format version)
      events.duckdb       the event store (see ``store.events`` and ``schema``)
      events.lock         the writers' inter-process lock
      ops.sqlite          the operational store (see ``store.ops``)
      process_models/     saved models
      runs/               outputs of runs (notebooks, reports)
      tmp/                staging files of loads in progress

:class:`Home` knows paths and stores only. The notebook facade with ``ws.ingest``,
``ws.dfg``, ``ws.explore`` ... is :class:`procestra.Workspace`, a subclass at the top layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from procestra.errors import InvalidArgumentError, WorkspaceError
from procestra.store.events import Store

__all__ = ["Home", "default_workspace_path", "output_path"]

def output_path(path: str | os.PathLike[str], *, parameter: str) -> Path:
    """``path`` as a file the user asked for can be written there, else :class:`InvalidArgumentError` naming it.

    Checked before any work, by creating and removing the file's temporary twin: a missing directory,
    one that cannot be written (``/proc``) or a directory in the file's place is the user's to fix, and
    no directories are created on their behalf."""
    target = Path(path)
    if target.is_dir():
        raise InvalidArgumentError(f"cannot write {str(target)!r}: it is a directory; give a file name",
                                   parameter=parameter)
    if not target.parent.is_dir():
        raise InvalidArgumentError(f"cannot write {str(target)!r}: the directory {str(target.parent)!r} does not "
                                   "exist; create it first", parameter=parameter)
    probe = target.with_name(f".{target.name}.{os.getpid()}.probe")
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot write {str(target)!r}: {exc.strerror or exc}", parameter=parameter) from None
    return target


_MARKER = "procestra.toml"
_FORMAT = 1

H = TypeVar("H", bound="Home")


def default_workspace_path() -> Path:
    """``$PROCESTRA_WORKSPACE`` if set, else ``./workspace``."""
    return Path(os.environ.get("PROCESTRA_WORKSPACE") or "workspace")


class Home:
    """A Procestra workspace directory. Holds no open connection between calls."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        # absolute: papermill changes the process's directory while a notebook runs, and other
        # threads (a worker's flusher, a scheduler's executors) must still find the workspace
        self.path = (Path(path) if path is not None else default_workspace_path()).absolute()
        if not (self.path / _MARKER).is_file():
            if not self.path.exists():
                raise WorkspaceError(
                    f"no workspace at {self.path}; create one with `procestra init {self.path}`",
                    path=str(self.path),
                )
            raise WorkspaceError(
                f"{self.path} is not a Procestra workspace (no {_MARKER}); "
                f"create one with `procestra init {self.path}`",
                path=str(self.path),
            )
        self.store = Store(self.path / "events.duckdb")

    @classmethod
    def init(cls: type[H], path: str | os.PathLike[str] | None = None) -> H:
        """Create a workspace at ``path`` (idempotent: an existing one is opened)."""
        p = Path(path) if path is not None else default_workspace_path()
        if p.exists() and not p.is_dir():
            raise WorkspaceError(f"{p} exists and is not a directory", path=str(p))
        if p.is_dir() and not (p / _MARKER).exists() and any(p.iterdir()):
            raise WorkspaceError(
                f"{p} is a non-empty directory that is not a workspace; choose an empty or new directory",
                path=str(p),
            )
        try:
            for sub in ("process_models", "runs", "tmp"):
                (p / sub).mkdir(parents=True, exist_ok=True)
            marker = p / _MARKER
            if not marker.exists():
                marker.write_text(f"# Procestra workspace\nformat = {_FORMAT}\n")
        except OSError as exc:
            raise WorkspaceError(f"cannot create a workspace at {p}: {exc.strerror}", path=str(p)) from None
        home = cls(p)
        with home.store.write():
            pass  # creates the store file and its catalogue
        return home

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def models_dir(self) -> Path:
        return self.path / "process_models"

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def tmp_dir(self) -> Path:
        d = self.path / "tmp"
        d.mkdir(exist_ok=True)
        return d
