"""The stores of a workspace: its directory (``home``), the DuckDB event store (``events``),
its catalogue and derived tables, and the operational store (``ops``)."""

from procestra.store.events import Store
from procestra.store.home import Home, default_workspace_path, output_path
from procestra.store.ops import OpsBusyError, OpsError, OpsUnavailableError, OpsUrlError

__all__ = ["Home", "OpsBusyError", "OpsError", "OpsUnavailableError", "OpsUrlError", "Store", "default_workspace_path", "output_path"]
