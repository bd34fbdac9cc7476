"""A workspace: one directory with the event store, process models and run outputs.

::

    workspace/
      procestra.toml      marks the directory as a workspace (format version)
      events.duckdb       the event store (see ``store`` and ``schema``)
      events.lock         the writers' inter-process lock
      process_models/     saved models
      runs/               outputs of runs (notebooks, reports)
      tmp/                staging files of loads in progress

The CLI and notebooks use the same class: ``Workspace(path)`` opens one,
``Workspace.init(path)`` creates one. The default path comes from
``$PROCESTRA_WORKSPACE``, else ``./workspace``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WorkspaceError
from .store import Store, table_names

if TYPE_CHECKING:
    import pandas as pd

    from .ingest import LoadResult

__all__ = ["LogInfo", "Workspace", "default_workspace_path"]

_MARKER = "procestra.toml"
_FORMAT = 1


def default_workspace_path() -> Path:
    """``$PROCESTRA_WORKSPACE`` if set, else ``./workspace``."""
    return Path(os.environ.get("PROCESTRA_WORKSPACE") or "workspace")


@dataclass(frozen=True)
class LogInfo:
    """Counts and time span of one log, plus where it came from."""

    name: str
    events: int
    cases: int
    activities: int
    variants: int
    start: datetime | None
    end: datetime | None
    source: str
    source_kind: str
    loaded_at: datetime | None
    version: int
    mapping: dict[str, Any]
    event_attributes: dict[str, str]
    case_attributes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("start", "end", "loaded_at"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        return d

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.to_dict().items() if k not in ("mapping", "event_attributes", "case_attributes")
        )
        return f"<table>{rows}</table>"


class Workspace:
    """A Procestra workspace directory. Holds no open connection between calls.

    >>> ws = Workspace.init("my-workspace")
    >>> ws.ingest("orders.csv", log="orders")
    >>> ws.info("orders").cases
    """

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
    def init(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
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
        ws = cls(p)
        with ws.store.write():
            pass  # creates the store file and its catalogue
        return ws

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

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

    # -- logs -----------------------------------------------------------------------
    def ingest(self, source: Any, *, log: str, **options: Any) -> LoadResult:
        """Load ``source`` as log ``log``; see :func:`procestra.ingest.ingest` for options."""
        from .ingest import ingest

        return ingest(self, source, log=log, **options)

    def logs(self) -> list[LogInfo]:
        """Every log in the store, by name."""
        with self.store.read() as con:
            names = [r[0] for r in con.execute("SELECT name FROM logs ORDER BY name").fetchall()]
        return [self.info(n) for n in names]

    def info(self, log: str) -> LogInfo:
        """Counts (events, cases, activities, variants) and time span of ``log``."""
        with self.store.read() as con:
            row = self.store.log_row(con, log)
            ev = table_names(row["log_id"])[0]
            variants = con.execute(
                f"SELECT count(DISTINCT v) FROM (SELECT list(activity ORDER BY ts, event_id) AS v "
                f"FROM {ev} GROUP BY case_id)"
            ).fetchone()[0]
        return LogInfo(
            name=row["name"], events=int(row["events"]), cases=int(row["cases"]),
            activities=int(row["activities"]), variants=int(variants), start=row["first_ts"],
            end=row["last_ts"], source=row["source"], source_kind=row["source_kind"],
            loaded_at=row["loaded_at"], version=int(row["version"]),
            mapping=json.loads(row["mapping"]) if row["mapping"] else {},
            event_attributes=json.loads(row["event_attributes"] or "{}"),
            case_attributes=json.loads(row["case_attributes"] or "{}"),
        )

    def quality(self, log: str) -> Any:
        """The data-quality report of the last load of ``log``."""
        from .quality import QualityReport

        with self.store.read() as con:
            row = self.store.log_row(con, log)
        return QualityReport.from_dict(json.loads(row["quality"] or "{}"))

    def drop(self, log: str) -> None:
        """Remove ``log`` and its tables from the store, in one transaction."""
        with self.store.write() as con:
            con.execute("BEGIN TRANSACTION")
            log_id = self.store.log_id(con, log)
            for t in table_names(log_id):
                con.execute(f"DROP TABLE IF EXISTS {t}")
            from .conformance import drop_conformance
            from .stats import drop_derived

            drop_derived(con, log_id)
            drop_conformance(con, log_id)
            con.execute("DELETE FROM loads WHERE log_id = ?", [log_id])
            con.execute("DELETE FROM logs WHERE log_id = ?", [log_id])
            con.execute("COMMIT")

    def to_pandas(self, log: str) -> pd.DataFrame:
        """``log`` as a DataFrame in pm4py's column format, ready for any pm4py function."""
        from .export import to_pandas

        return to_pandas(self, log)

    def export(self, log: str, to: str | os.PathLike[str], filter: Any = None) -> Path:
        """Write ``log`` (or what ``filter`` keeps) to a .xes/.xes.gz, .csv or .parquet file, by extension."""
        from .export import export

        return export(self, log, to, filter)

    def explore(self, log: str) -> Any:
        """An interactive :class:`procestra.widgets.Explorer` of ``log`` (displays itself in Jupyter)."""
        from .widgets import Explorer

        return Explorer(self, log)

    # -- mining shortcuts: the same functions as procestra.stats / discover ---------------
    def dfg(self, log: str, filter: Any = None) -> Any:
        """The directly-follows graph of ``log`` (see :func:`procestra.stats.dfg`)."""
        from .stats import dfg

        return dfg(self, log, filter)

    def variants(self, log: str, filter: Any = None, *, limit: int | None = None) -> Any:
        """The variants of ``log``, most frequent first (see :func:`procestra.stats.variants`)."""
        from .stats import variants

        return variants(self, log, filter, limit=limit)

    def discover(self, log: str, miner: str = "inductive", *, filter: Any = None, **params: Any) -> Any:
        """Discover a model of ``log`` (see :func:`procestra.discover.discover`)."""
        from .discover import discover

        return discover(self, log, miner, filter=filter, **params)

    def conform(self, log: str, model: Any, **options: Any) -> Any:
        """Check ``log`` against ``model`` (see :func:`procestra.conformance.conform`)."""
        from .conformance import conform

        return conform(self, log, model, **options)

    def activity_instances(self, log: str) -> pd.DataFrame:
        """One row per activity instance: case, activity, resource, start, end, duration."""
        from .export import activity_instances

        return activity_instances(self, log)
