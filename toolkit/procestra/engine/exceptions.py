"""The engine's own errors, all under :class:`~procestra.errors.ProcestraError`.

``UserError`` subclasses are mistakes in what was given (a condition, form data, a case or
task id, a secret); :class:`TaskError` is a handler that failed, :class:`EngineError` a model
the engine cannot run. The modules that raise them re-export them where users met them first
(``procestra.engine.sandbox.ConditionError``, ``procestra.engine.connectors.TaskError``,
``procestra.engine.tobe.ValidationError``...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from procestra.errors import ProcestraError, UserError

if TYPE_CHECKING:
    from procestra.engine.connectors import Redactor
    from procestra.engine.validate import Problem

__all__ = [
    "CaseNotFoundError",
    "CaseStateError",
    "ConditionError",
    "EngineError",
    "FormError",
    "SecretError",
    "TaskError",
    "TaskNotFoundError",
    "TaskStateError",
    "TaskTimeoutError",
    "UnsafeExpressionError",
    "ValidationError",
]


# -- the sandbox ----------------------------------------------------------------------------------
class ConditionError(UserError):
    """A condition, mapping or script that does not parse, is not allowed, or fails on the data.

    ``expression`` is the text, ``reason`` what is wrong, ``line``/``column`` (1-based) where,
    if known, and ``element`` the model element it belongs to (set by callers).
    """

    def __init__(self, expression: str, reason: str, *, what: str = "condition", line: int | None = None,
                 column: int | None = None, element: str | None = None) -> None:
        self.expression = expression
        self.reason = reason
        self.what = what
        self.line = line
        self.column = column
        self.element = element
        super().__init__(self._message())

    def _message(self) -> str:
        shown = self.expression if len(self.expression) <= 120 else self.expression[:117] + "..."
        where = ""
        if self.column is not None:
            line = f"line {self.line}, " if (self.line or 1) > 1 else ""
            where = f" at {line}column {self.column}"
        owner = f" on element {self.element!r}" if self.element else ""
        return f"{self.what} {shown!r}{owner}: {self.reason}{where}"

    def at(self, element: str | None) -> ConditionError:
        """This error with ``element`` set (the message names it)."""
        self.element = element
        self.args = (self._message(),)
        return self


class UnsafeExpressionError(ConditionError):
    """An expression using a construct the sandbox forbids (imports, dunders, lambdas, calls...)."""


# -- connectors -----------------------------------------------------------------------------------
class TaskError(ProcestraError):
    """A handler failed. ``retryable`` says whether another attempt can help.

    ``task`` is the element id, ``kind`` the connector, ``attempt`` the attempt number and
    ``details`` what the connector knows (HTTP status, exit code, notebook cell...), all
    with secrets redacted.
    """

    def __init__(self, message: str, *, retryable: bool = True, task: str | None = None, kind: str | None = None,
                 attempt: int | None = None, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = message
        self.retryable = retryable
        self.transient = retryable
        self.task = task
        self.kind = kind
        self.attempt = attempt
        self.details = dict(details or {})

    def _located(self, task: str | None, kind: str, attempt: int, redactor: Redactor) -> TaskError:
        self.task, self.kind, self.attempt = self.task or task, self.kind or kind, attempt
        self.reason = redactor.redact(self.reason)
        self.details = redactor.redact(self.details)
        where = f"task {self.task!r} ({self.kind}, attempt {attempt})" if self.task else f"{self.kind} handler"
        hint = "" if self.retryable else " [not retryable]"
        self.args = (f"{where} failed: {self.reason}{hint}",)
        return self


class TaskTimeoutError(TaskError):
    """A handler ran longer than its timeout (retryable)."""


class SecretError(UserError):
    """A secret that is missing, undeclared or unusable. Never carries the value."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


# -- to-be models ---------------------------------------------------------------------------------
class ValidationError(UserError):
    """``save`` refused a model with problems; ``problems`` lists them."""

    def __init__(self, problems: Sequence[Problem], *, name: str = "") -> None:
        errors = [p for p in problems if p.severity == "error"]
        shown = "; ".join(str(p) for p in errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        super().__init__(f"model {name!r} has {len(errors)} problem(s): {shown}. Fix them (model.validate() lists "
                         "them all) or save with check=False")  # fmt: skip
        self.problems = list(problems)


class FormError(UserError):
    """Submitted data that does not fit a human task's form; ``problems`` maps field -> what is wrong."""

    def __init__(self, problems: Mapping[str, str], *, task: str | None = None) -> None:
        where = f" for task {task!r}" if task else ""
        super().__init__(f"the submitted data does not fit the form{where}: "
                         + "; ".join(f"{k}: {v}" for k, v in problems.items()))  # fmt: skip
        self.problems = dict(problems)
        self.task = task


# -- the runtime ----------------------------------------------------------------------------------
class EngineError(ProcestraError):
    """The engine failed in a way that is not the user's input (a model it cannot run, a bug)."""


class CaseNotFoundError(UserError):
    """No case with that id."""


class TaskNotFoundError(UserError):
    """No human task with that id."""


class TaskStateError(UserError):
    """The task cannot do that now (completed already, cancelled, claimed by someone else, another case)."""


class CaseStateError(UserError):
    """The case cannot do that now (it has ended)."""
