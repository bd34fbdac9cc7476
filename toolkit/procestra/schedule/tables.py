"""The schedule's tables in the operational store (``ops.sqlite`` or PostgreSQL, see :mod:`procestra.store.ops`).

Their definitions stay together because a migration is one step: migration 1 of the
``schedule`` component creates both. Reading and writing each table belongs to one
module only: ``jobs`` to :mod:`procestra.schedule.jobs`, ``runs`` to
:mod:`procestra.schedule.runs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procestra.store import ops

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = ["MIGRATIONS", "prepare"]

MIGRATIONS: tuple[tuple[str, ...], ...] = ((
    """CREATE TABLE jobs (
        name TEXT PRIMARY KEY, notebook TEXT NOT NULL, parameters TEXT NOT NULL, cron TEXT,
        timezone TEXT NOT NULL, kernel TEXT, timeout REAL, retries INTEGER NOT NULL,
        retry_backoff REAL NOT NULL, overlap TEXT NOT NULL, catchup TEXT NOT NULL,
        catchup_limit INTEGER NOT NULL, grace REAL NOT NULL, formats TEXT NOT NULL, notify TEXT NOT NULL,
        tags TEXT NOT NULL, depends_on TEXT NOT NULL, enabled INTEGER NOT NULL, created_at TEXT NOT NULL,
        start TEXT NOT NULL, cursor TEXT NOT NULL)""",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, job TEXT NOT NULL, scheduled_for TEXT NOT NULL, attempt INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','timed_out',
                                               'skipped','cancelled')),
        trigger TEXT NOT NULL, queued_at TEXT NOT NULL, not_before TEXT, started_at TEXT, ended_at TEXT,
        worker TEXT, heartbeat_at TEXT, notebook TEXT, parameters TEXT, output TEXT, html TEXT, outputs TEXT,
        error_cell INTEGER, error_name TEXT, error_value TEXT, reason TEXT,
        UNIQUE (job, scheduled_for, attempt))""",
    "CREATE INDEX runs_by_status ON runs (status, not_before)",
    "CREATE INDEX runs_by_job ON runs (job, scheduled_for)",
),)


def prepare(workspace: Home) -> None:
    """Create or migrate the schedule's tables in ``workspace``'s operational store (once per process)."""
    ops.ensure_schema(workspace, "schedule", MIGRATIONS)
