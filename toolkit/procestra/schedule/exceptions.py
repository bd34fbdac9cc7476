"""The errors of scheduled notebook jobs, all user errors (exit code 2) under :class:`~procestra.errors.UserError`.

::

    UserError
    ├── NotebookError       a notebook that cannot run as asked: missing, unreadable, no kernel
    │   └── ParameterError  unknown parameter, wrong type, no parameters cell
    ├── JobError            a job definition that cannot be stored: cron, zone, policy, cycle
    ├── JobNotFoundError    an unknown job name
    └── RunNotFoundError    an unknown run id
"""

from __future__ import annotations

from procestra.errors import UserError

__all__ = ["JobError", "JobNotFoundError", "NotebookError", "ParameterError", "RunNotFoundError"]


class NotebookError(UserError):
    """A notebook that cannot be run as asked: missing, unreadable, no kernel."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message


class ParameterError(NotebookError):
    """A parameter the notebook does not declare, or of the wrong type; ``parameter`` names it."""

    def __init__(self, message: str, *, path: str | None = None, parameter: str | None = None) -> None:
        super().__init__(message, path=path)
        self.parameter = parameter


class JobError(UserError):
    """A job definition that cannot be stored; ``field`` names what to fix."""

    def __init__(self, message: str, *, job: str | None = None, field: str | None = None) -> None:
        super().__init__(f"job {job!r}: {message}" if job else message)
        self.job = job
        self.field = field


class JobNotFoundError(UserError):
    """A job name that is not defined in this workspace."""

    def __init__(self, name: str, known: list[str]) -> None:
        hint = f" (jobs: {', '.join(known)})" if known else " (no jobs yet; add one with `procestra schedule add`)"
        super().__init__(f"no job named {name!r}{hint}")
        self.name = name


class RunNotFoundError(UserError):
    """A run id that is not in the history."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}; list runs with `procestra runs`")
        self.run_id = run_id
