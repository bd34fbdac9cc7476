"""Flushing the outbox: events queued in the operational store, appended to the event store.

The engine and the scheduler queue their events in the ``outbox`` table of the operational
store (``store.ops.emit``), inside the transaction of the state change they report.
:func:`flush_outbox` moves them into the event store in batches, taking the DuckDB writer
lock only for each batch's append. It is idempotent: a flusher killed after the DuckDB
commit but before marking its rows sends the same events again, and the store's append key
``(case_id, activity, ts, lifecycle, resource)`` skips those already there. Each event also
carries its ``event_uid`` as an attribute.

The outbox table and its SQL belong to ``store.ops``; this module reads the pending rows
and marks them through its functions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from procestra.errors import InvalidArgumentError, UserError
from procestra.ingest.loader import ingest
from procestra.schema import LogSchema
from procestra.store import catalogue, ops

if TYPE_CHECKING:
    import pyarrow as pa

    from procestra.store.home import Home

__all__ = ["FlushResult", "flush_outbox"]

log = logging.getLogger(__name__)

#: The role columns of the batches appended to the event store.
_SCHEMA = LogSchema(case="case_id", activity="activity", timestamp="timestamp", start_timestamp="start_timestamp",
                    lifecycle="lifecycle", resource="resource")
_warned_home: set[str] = set()


@dataclass(frozen=True)
class FlushResult:
    """What one :func:`flush_outbox` moved: events sent per log, batches, dead letters and time."""

    events: int
    batches: int
    logs: dict[str, int]
    failed: int
    seconds: float
    #: Why nothing was moved, when this workspace is not the events home of a shared store.
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"events": self.events, "batches": self.batches, "logs": dict(self.logs),
                             "failed": self.failed, "seconds": round(self.seconds, 3)}
        if self.skipped is not None:
            d["skipped"] = self.skipped
        return d


def flush_outbox(workspace: Home, *, batch_size: int = 20000, lock_timeout: float = 120.0) -> FlushResult:
    """Move pending outbox events into the event store, log by log, in batches; idempotent.

    One flusher runs at a time per workspace (``ops.flush.lock``). Each batch is one
    append to its log (created when missing) under the store's writer lock, then its
    rows are marked flushed. A batch the store rejects as bad data is set aside with the
    error (see ``store.ops.outbox_stats``) instead of blocking the others. A workspace that
    is not its shared store's ``events_home`` moves nothing (``skipped`` says why).
    """
    from filelock import FileLock, Timeout

    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be at least 1, not {batch_size}", parameter="batch_size")
    started = time.perf_counter()
    ops.prepare(workspace)
    why = _not_home(workspace)
    if why is not None:
        return FlushResult(0, 0, {}, 0, time.perf_counter() - started, skipped=why)
    lock = FileLock(str(Path(workspace.path) / "ops.flush.lock"))
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        raise ops.OpsBusyError(f"another process kept flushing the outbox of {workspace.path} for "
                               f"{lock_timeout:.0f}s; try again later") from None
    sent: dict[str, int] = {}
    batches = failed = 0
    try:
        while rows := ops.pending_events(workspace, batch_size):
            by_log: dict[str, list[ops.OutboxRow]] = {}
            for r in rows:
                by_log.setdefault(r.log, []).append(r)
            for log_name, group in by_log.items():
                seqs = [r.seq for r in group]
                try:
                    table = _to_arrow(group, _attribute_types(workspace, log_name))
                    ingest(workspace, table, log=log_name, schema=_SCHEMA, mode="append", progress=False)
                except UserError as exc:
                    log.error("outbox: %d events for log %r rejected by the event store: %s", len(seqs),
                              log_name, exc)
                    ops.mark_rejected(workspace, seqs, str(exc))
                    failed += len(seqs)
                    continue
                ops.mark_flushed(workspace, seqs)
                sent[log_name] = sent.get(log_name, 0) + len(seqs)
                batches += 1
        ops.purge_flushed(workspace)
    finally:
        lock.release()
    return FlushResult(sum(sent.values()), batches, sent, failed, time.perf_counter() - started)


def _not_home(workspace: Home) -> str | None:
    """Why ``workspace`` must not flush (its shared store's run events go elsewhere), or None."""
    if ops.backend(workspace) != "postgresql":
        return None
    home, me = ops.events_home(workspace), ops.workspace_id(workspace)
    if home == me:
        return None
    where = ops.display_location(workspace)
    why = (f"the run events of {where} go to the event store of {home}, not of this workspace; flush there"
           if home else
           f"no workspace is the events home of {where} yet; run `procestra ops url --events-home` in the "
           "workspace whose event store should receive the run events")
    if why not in _warned_home:  # once per process: a worker away from home flushes every few seconds
        _warned_home.add(why)
        log.log(logging.INFO if home else logging.WARNING, "outbox not flushed: %s", why)
    return why


def _attribute_types(workspace: Home, log_name: str) -> dict[str, str]:
    """The DuckDB types of ``log_name``'s event attributes (empty when the log does not exist yet)."""
    store = workspace.store
    if not store.path.exists():
        return {}
    with store.read() as con:
        return catalogue.event_attribute_types(con, log_name) or {}


# -- outbox rows as an Arrow table ----------------------------------------------------------
Kind = Literal["string", "bool", "int64", "float64"]
#: A JSON attribute value as the outbox stores it.
Value = str | bool | int | float | None

_ARROW_OF_DUCKDB: dict[str, Kind] = {"BIGINT": "int64", "INTEGER": "int64", "SMALLINT": "int64", "TINYINT": "int64",
                                     "DOUBLE": "float64", "FLOAT": "float64", "BOOLEAN": "bool", "VARCHAR": "string"}
_EXACT: dict[Kind, type] = {"string": str, "bool": bool, "int64": int, "float64": float}  # need no coercion


def _coerce(value: object, kind: Kind) -> Value:
    """``value`` as a value of ``kind``, or None when it does not fit."""
    if value is None:
        return None
    try:
        if kind == "string":
            return value if isinstance(value, str) else json.dumps(value)
        if kind == "bool":
            return value if isinstance(value, bool) else None
        if kind == "int64":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, float) and not value.is_integer():
                return None
            return int(value) if isinstance(value, (int, float, str)) else None
        return float(value) if isinstance(value, (int, float, str)) else None
    except (TypeError, ValueError, OverflowError):
        return None


def _infer(values: Sequence[object]) -> Kind | None:
    """The narrowest kind holding every value (None: no value present)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def _to_arrow(rows: Sequence[ops.OutboxRow], known: dict[str, str]) -> pa.Table:
    """Outbox rows as an Arrow table with the role columns and typed attribute columns.

    Attribute types follow the log's existing columns (values that do not fit become
    null, logged), else the values; a column null in the whole batch is left out.
    """
    import pyarrow as pa

    attrs: list[dict[str, object]] = json.loads("[" + ",".join(r.attributes for r in rows) + "]")  # one parse
    for a, r in zip(attrs, rows):
        a["event_uid"] = r.uid
    names = sorted({k for a in attrs for k in a})
    stamps = pa.array([r.ts for r in rows], pa.string())
    try:  # to_iso's fixed-width UTC text, parsed by Arrow
        timestamps = stamps.cast(pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        timestamps = pa.array([ops.from_iso(r.ts) for r in rows], pa.timestamp("us", "UTC"))
    columns: dict[str, pa.Array] = {
        "case_id": pa.array([r.case_id for r in rows], pa.string()),
        "activity": pa.array([r.activity for r in rows], pa.string()),
        "timestamp": timestamps,
        "start_timestamp": pa.nulls(len(rows), pa.timestamp("us", "UTC")),
        "lifecycle": pa.array([r.lifecycle for r in rows], pa.string()),
        "resource": pa.array([r.resource for r in rows], pa.string()),
    }
    arrow_type: dict[Kind, Callable[[], pa.DataType]] = {"string": pa.string, "bool": pa.bool_, "int64": pa.int64,
                                                         "float64": pa.float64}
    for name in names:
        values = [a.get(name) for a in attrs]
        existing = next((t for k, t in known.items() if k.lower() == name.lower()), None)
        kind = (_ARROW_OF_DUCKDB.get(existing.upper(), "string") if existing else _infer(values))
        if kind is None:
            continue
        exact = _EXACT[kind]
        coerced = values if all(v is None or type(v) is exact for v in values) else [_coerce(v, kind) for v in values]
        lost = sum(1 for v, c in zip(values, coerced) if v is not None and c is None)
        if lost:
            log.warning("outbox: %d values of attribute %r do not fit its type %s and are stored as null",
                        lost, name, existing or kind)
        if all(v is None for v in coerced):
            continue
        columns[name] = pa.array(coerced, arrow_type[kind]())
    return pa.table(columns)
