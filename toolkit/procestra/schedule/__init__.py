"""Scheduled notebook jobs: jobs and their runs, the scheduler, the papermill runner, executors, notifications.

Names load on first use: papermill and nbformat take a second to import, which commands
that only list runs never pay.
"""

from __future__ import annotations

import importlib

__all__ = [
    "Job", "JobError", "JobNotFoundError", "NotebookError", "Notify", "ParameterError", "Run", "RunNotFoundError",
    "RunResult", "Scheduler", "add_job", "get_job", "get_run", "list_jobs", "list_runs", "pause_job",
    "record_output", "remove_job", "resume_job", "run_notebook", "run_now", "tick", "write_history",
]

_HOME = {
    "NotebookError": "runner", "ParameterError": "runner", "RunResult": "runner", "record_output": "runner",
    "run_notebook": "runner", "Notify": "notify",
}


def __getattr__(name: str) -> object:
    if name in __all__:
        value = getattr(importlib.import_module(f"procestra.schedule.{_HOME.get(name, 'scheduler')}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procestra.schedule' has no attribute {name!r}")
