"""Scheduled notebook jobs: jobs and their runs, the scheduler, the papermill runner, executors, notifications.

- :mod:`~procestra.schedule.jobs`: job definitions (cron in a zone, policies, pipelines)
- :mod:`~procestra.schedule.runs`: runs and their history
- :mod:`~procestra.schedule.scheduler`: planning, claiming, retries, ticks and the daemon
- :mod:`~procestra.schedule.runner`: one notebook run with papermill
- :mod:`~procestra.schedule.executors`: where runs happen (local kernels, Dask), warm kernels
- :mod:`~procestra.schedule.notify`: webhooks and email on a run's outcome
- :mod:`~procestra.schedule.exceptions`: the errors

Names load on first use, each from its module; papermill, nbformat and jupyter_client load
only when a notebook is read or run, so commands that only list jobs or runs never pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from procestra.schedule.exceptions import (
        JobError,
        JobNotFoundError,
        NotebookError,
        ParameterError,
        RunNotFoundError,
    )
    from procestra.schedule.jobs import Job, add_job, get_job, list_jobs, pause_job, resume_job
    from procestra.schedule.notify import Notify
    from procestra.schedule.runner import RunResult, record_output, run_notebook
    from procestra.schedule.runs import Run, get_run, list_runs, write_history
    from procestra.schedule.scheduler import Scheduler, remove_job, run_now, tick

__all__ = [
    "Job", "JobError", "JobNotFoundError", "NotebookError", "Notify", "ParameterError", "Run", "RunNotFoundError",
    "RunResult", "Scheduler", "add_job", "get_job", "get_run", "list_jobs", "list_runs", "pause_job",
    "record_output", "remove_job", "resume_job", "run_notebook", "run_now", "tick", "write_history",
]

_HOME = {
    "JobError": "exceptions", "JobNotFoundError": "exceptions", "NotebookError": "exceptions",
    "ParameterError": "exceptions", "RunNotFoundError": "exceptions",
    "Job": "jobs", "add_job": "jobs", "get_job": "jobs", "list_jobs": "jobs", "pause_job": "jobs", "resume_job": "jobs",
    "Notify": "notify",
    "RunResult": "runner", "record_output": "runner", "run_notebook": "runner",
    "Run": "runs", "get_run": "runs", "list_runs": "runs", "write_history": "runs",
    "Scheduler": "scheduler", "remove_job": "scheduler", "run_now": "scheduler", "tick": "scheduler",
}


def __getattr__(name: str) -> object:
    if name in _HOME:
        value = getattr(importlib.import_module(f"procestra.schedule.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'procestra.schedule' has no attribute {name!r}")
