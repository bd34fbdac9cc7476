"""One error hierarchy for Procestra, rooted at :class:`ProcestraError`.

The core errors live here; errors of one domain live in their module (shown in the tree)
and subclass these, so ``except UserError`` still catches every user mistake.

Every error carries its context as attributes and a message that says what to
fix. ``UserError`` subclasses are mistakes in what the user gave us (a path, an
option, a value in their data); the CLI prints them as one ``error: ...`` line
and exits with code 2. Everything else is a failure of ours or of the machine
(exit code 1).

::

    ProcestraError
    ├── UserError                      bad input: exit code 2
    │   ├── WorkspaceError             no workspace, or not a workspace
    │   ├── LogNotFoundError           an unknown log name
    │   ├── InvalidArgumentError       an option or argument out of range
    │   ├── EmptyResultError           a filter left no events where some are needed
    │   ├── ModelError                 a process model file is not BPMN, or is broken
    │   ├── ModelNotFoundError         an unknown model name or version in the model repository
    │   ├── ConditionError             a condition or script the sandbox refuses (engine/exceptions.py)
    │   │   └── UnsafeExpressionError  an escape attempt: imports, dunders, calls not allowed
    │   ├── ValidationError            a to-be model with errors, by element (engine/exceptions.py)
    │   ├── FormError                  human-task data that does not fit its form (engine/exceptions.py)
    │   ├── SecretError                a secret that is missing or too short (engine/exceptions.py)
    │   ├── CaseNotFoundError, TaskNotFoundError, TaskStateError, CaseStateError  (engine/exceptions.py)
    │   ├── NotebookError              a notebook that cannot run: missing, no kernel (schedule/exceptions.py)
    │   │   └── ParameterError         unknown or mistyped parameter, no parameters cell (schedule/exceptions.py)
    │   ├── JobError                   a job that cannot be stored: cron, zone, cycle (schedule/exceptions.py)
    │   ├── JobNotFoundError, RunNotFoundError                               (schedule/exceptions.py)
    │   ├── SourceError                a source cannot be read
    │   │   ├── SourceFormatError      malformed file (not XES, ragged CSV, ...)
    │   │   └── SourceConnectionError  a database refused or failed the query
    │   └── DataError                  the data itself is wrong
    │       ├── MappingError           a column role cannot be mapped
    │       └── TimestampError         timestamps unparseable, mixed or in an unknown zone
    ├── TaskError                      a handler failed; ``retryable`` says if another attempt may help (engine/exceptions.py)
    │   └── TaskTimeoutError
    ├── EngineError                    a model the engine cannot run (engine/exceptions.py)
    ├── OpsError                       the operational store (ops.sqlite or its PostgreSQL server) failed (ops.py)
    │   ├── OpsBusyError               its write lock stayed taken past the timeout (transient)
    │   ├── OpsUnavailableError        its PostgreSQL server cannot be reached or refused the connection (transient)
    │   └── OpsUrlError                a malformed PostgreSQL URL (also a UserError: exit 2)
    └── StoreError                     the event store failed
        └── StoreBusyError             the store stayed locked by another process (transient)
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "EmptyResultError",
    "InvalidArgumentError",
    "LogNotFoundError",
    "MappingError",
    "ModelError",
    "ModelNotFoundError",
    "ProcestraError",
    "SourceConnectionError",
    "SourceError",
    "SourceFormatError",
    "StoreBusyError",
    "StoreError",
    "TimestampError",
    "UserError",
    "WorkspaceError",
]


class ProcestraError(Exception):
    """Root of every error Procestra raises on purpose."""

    #: Whether retrying the same call later can succeed.
    transient: bool = False


class UserError(ProcestraError):
    """Something the user gave us is wrong; the message says what to change."""


class WorkspaceError(UserError):
    """The workspace directory is missing, or is not a Procestra workspace."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class LogNotFoundError(UserError):
    """A log name that is not in the store."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (known logs: {', '.join(known)})" if known else " (the store has no logs yet)"
        super().__init__(f"no log named {name!r} in this workspace{hint}")
        self.name = name
        self.known = known or []


class InvalidArgumentError(UserError):
    """An option or argument that is out of range or of the wrong kind."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class ModelError(UserError):
    """A process model that cannot be read: not XML, not BPMN, or inconsistent.

    ``path`` names the file, ``element`` the id of the offending element, if any.
    """

    def __init__(self, message: str, *, path: str | None = None, element: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.element = element
        self.reason = message


class ModelNotFoundError(UserError):
    """A model name, or a version of it, that is not in the workspace's ``process_models/``.

    ``known`` lists the saved model names; for an unknown version, ``version`` is the one
    asked for and ``versions`` the ones that exist.
    """

    def __init__(self, name: str, known: list[str] | None = None, *, version: int | None = None,
                 versions: list[int] | None = None) -> None:
        if version is None:
            hint = f" (known models: {', '.join(known)})" if known else " (no models are saved yet)"
            message = f"no model named {name!r} in this workspace{hint}"
        else:
            listed = ", ".join(str(v) for v in versions or []) or "none"
            message = f"model {name!r} has no version {version} (versions: {listed})"
        super().__init__(message)
        self.name = name
        self.known = known or []
        self.version = version
        self.versions = versions or []


class EmptyResultError(UserError):
    """A filter kept no events, and the caller needs some (saving a log, discovery).

    Statistics on an empty selection return empty results instead.
    """

    def __init__(self, message: str, *, filter: str | None = None) -> None:
        super().__init__(message)
        self.filter = filter


class SourceError(UserError):
    """A source that cannot be read. ``source`` names the file or database."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        where = []
        if source:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.source = source
        self.row = row
        self.column = column
        self.reason = message


class SourceFormatError(SourceError):
    """The file is not what its name says, or is malformed."""


class SourceConnectionError(SourceError):
    """A database refused the connection or failed the query."""


class DataError(SourceError):
    """The source reads, but its values are wrong for an event log."""


class MappingError(DataError):
    """A column role (case, activity, timestamp, ...) cannot be mapped."""


class TimestampError(DataError):
    """Timestamps that do not parse, mix formats, or name an unknown zone."""


class StoreError(ProcestraError):
    """The event store failed."""


class StoreBusyError(StoreError):
    """Another process held the store's lock for longer than the timeout."""

    transient = True
