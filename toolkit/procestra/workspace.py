"""``Workspace``: the notebook facade over a workspace directory (``ws.ingest``, ``ws.dfg``, ``ws.explore`` ...).

It adds shortcuts to :class:`procestra.store.home.Home`, the handle every stage takes;
each shortcut is one call into the stage that owns the work, so the stages never
import this module. ``Workspace(path)`` opens a workspace, ``Workspace.init(path)``
creates one; the default path is ``$PROCESTRA_WORKSPACE``, else ``./workspace``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.store import catalogue
from procestra.store.catalogue import LogInfo
from procestra.store.home import Home, default_workspace_path

if TYPE_CHECKING:
    import pandas as pd

    from procestra.ingest.loader import LoadResult
    from procestra.ingest.quality import QualityReport
    from procestra.mining.conformance import ConformanceResult
    from procestra.mining.discover import DiscoveryResult
    from procestra.mining.filters import Filter
    from procestra.mining.stats import DFG, Variants
    from procestra.models.repository import LoadedModel
    from procestra.widgets.explorer import Explorer

__all__ = ["LogInfo", "Workspace", "default_workspace_path"]


class Workspace(Home):
    """A Procestra workspace directory. Holds no open connection between calls.

    >>> ws = Workspace.init("my-workspace")
    >>> ws.ingest("orders.csv", log="orders")
    >>> ws.info("orders").cases
    """

    # -- logs -----------------------------------------------------------------------
    def ingest(self, source: Any, *, log: str, **options: Any) -> LoadResult:
        """Load ``source`` as log ``log``; see :func:`procestra.ingest.ingest` for options."""
        from procestra.ingest.loader import ingest

        return ingest(self, source, log=log, **options)

    def logs(self) -> list[LogInfo]:
        """Every log in the store, by name (counts from the catalogue: no scan of the events)."""
        return catalogue.infos(self.store)

    def info(self, log: str) -> LogInfo:
        """Counts (events, cases, activities, variants) and time span of ``log``."""
        return catalogue.info(self.store, log)

    def quality(self, log: str) -> QualityReport:
        """The data-quality report of the last load of ``log``."""
        from procestra.ingest.quality import last_report

        return last_report(self, log)

    def drop(self, log: str) -> None:
        """Remove ``log``, its tables and what was derived from it, in one transaction."""
        from procestra.mining.conformance import drop_conformance
        from procestra.store import derived

        with self.store.write() as con:
            con.execute("BEGIN TRANSACTION")
            log_id = catalogue.log_id(con, log)
            derived.drop_derived(con, log_id)
            drop_conformance(con, log_id)
            catalogue.delete(con, log_id)
            con.execute("COMMIT")

    def to_pandas(self, log: str) -> pd.DataFrame:
        """``log`` as a DataFrame in pm4py's column format, ready for any pm4py function."""
        from procestra.mining.export import to_pandas

        return to_pandas(self, log)

    def export(self, log: str, to: str | os.PathLike[str], filter: Filter | None = None) -> Path:
        """Write ``log`` (or what ``filter`` keeps) to a .xes/.xes.gz, .csv or .parquet file, by extension."""
        from procestra.mining.export import export

        return export(self, log, to, filter)

    def explore(self, log: str) -> Explorer:
        """An interactive :class:`procestra.widgets.Explorer` of ``log`` (displays itself in Jupyter)."""
        from procestra.widgets.explorer import Explorer

        return Explorer(self, log)

    # -- mining shortcuts: the same functions as procestra.stats / discover ---------------
    def dfg(self, log: str, filter: Filter | None = None) -> DFG:
        """The directly-follows graph of ``log`` (see :func:`procestra.stats.dfg`)."""
        from procestra.mining.stats import dfg

        return dfg(self, log, filter)

    def variants(self, log: str, filter: Filter | None = None, *, limit: int | None = None) -> Variants:
        """The variants of ``log``, most frequent first (see :func:`procestra.stats.variants`)."""
        from procestra.mining.stats import variants

        return variants(self, log, filter, limit=limit)

    def discover(self, log: str, miner: str = "inductive", *, filter: Filter | None = None,
                 **params: Any) -> DiscoveryResult:
        """Discover a model of ``log`` (see :func:`procestra.discover.discover`)."""
        from procestra.mining.discover import discover

        return discover(self, log, miner, filter=filter, **params)

    def conform(self, log: str, model: str | LoadedModel | DiscoveryResult | Any, **options: Any) -> ConformanceResult:
        """Check ``log`` against ``model`` (see :func:`procestra.conformance.conform`)."""
        from procestra.mining.conformance import conform

        return conform(self, log, model, **options)

    def activity_instances(self, log: str) -> pd.DataFrame:
        """One row per activity instance: case, activity, resource, start, end, duration."""
        from procestra.mining.export import activity_instances

        return activity_instances(self, log)
