"""Connectors: what a bound service task runs, and the registry of kinds.

A :class:`Handler` is the binding of one task: a connector ``kind``, its ``config``, the
``inputs`` (name -> sandbox expression over the case data), the ``outputs`` (result names
merged into the case data), a ``timeout`` and the ``secrets`` it may read. Built in:

=========  ================================================================================
python     ``"pkg.mod:func"`` called as ``func(ctx)``; returns a dict of results or None
notebook   papermill in a real kernel; ``inputs`` become notebook parameters; results are
           read back from the output notebook (see :func:`record_results`)
http       httpx request; URL, headers and JSON body are templates over the inputs
sql        SQLite or PostgreSQL URL taken from a secret; ``:name`` parameters bound
shell      ``argv`` list run without a shell; templates fill whole arguments only
=========  ================================================================================

:func:`run_handler` calls one: it evaluates the inputs in the sandbox, gives the connector
a :class:`TaskContext` (case data, inputs, the task's idempotency key, which the engine
keeps the same across retries of one task instance, the attempt number and the declared
secrets), checks the results against the declared outputs and redacts every secret value
from them. Failures raise :class:`TaskError`, whose ``retryable`` says whether another
attempt can help (anything not known to be permanent is retryable; the retry policy
bounds the attempts).

**Templates** (http url/headers/json, shell argv/env): ``{name}`` is replaced by the input
or case variable ``name`` (a string that is exactly ``"{name}"`` in a JSON body keeps the
value's type), ``{secret:NAME}`` by a secret (headers, JSON body and shell env only, never
URLs or argv, which end up in logs). ``idempotency_key``, ``attempt`` and ``case_id`` are
always available.

**Secrets** come from the environment, else the workspace's ``.env`` file
(``NAME=value`` lines). A handler sees only the secrets its binding names (a notebook's
kernel gets them as environment variables), and their values (also URL-quoted,
JSON-escaped and base64) are replaced by ``[redacted:NAME]`` in results, details, error
messages and output notebooks. Secret values must be at least 4 characters. What a Python
handler reads from ``os.environ`` by itself is beyond this: declare it instead.

**Notebook results**: call ``procestra.connectors.record_results(score=0.7)`` in any cell
(it displays a ``application/vnd.procestra.results+json`` output), or tag a cell
``results`` and let its last output be JSON (``application/json``, or ``text/plain``
holding a JSON object). Later records override earlier ones.

>>> from procestra.engine.connectors import python, run_handler
>>> h = python("procestra.engine.examples:credit_check", outputs=["credit_score"])
>>> run_handler(h, data={"applicant": "A-1", "amount": 5000}, idempotency_key="case1:credit:1").data
{'credit_score': 712}
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import types
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from procestra.engine.sandbox import ConditionError, compile_expression
from procestra.errors import InvalidArgumentError, ProcestraError, UserError

__all__ = [
    "RESULTS_MIME",
    "Connector",
    "Handler",
    "Redactor",
    "SecretError",
    "Secrets",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskTimeoutError",
    "check_handler",
    "connectors",
    "get_connector",
    "http",
    "idempotency_key",
    "notebook",
    "python",
    "record_results",
    "register",
    "run_handler",
    "shell",
    "sql",
]

RESULTS_MIME = "application/vnd.procestra.results+json"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEMPLATE = re.compile(r"\{(secret:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTEXT_NAMES = ("idempotency_key", "attempt", "case_id")
_MIN_SECRET = 4


# -- errors ------------------------------------------------------------------------------------
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


# -- handlers ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Handler:
    """The binding of a service task to a connector (see the module docstring)."""

    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)
    #: Input name -> sandbox expression over the case data.
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: Result names merged into the case data (all results when empty).
    outputs: tuple[str, ...] = ()
    #: Seconds before the attempt is abandoned (None: the connector's default).
    timeout: float | None = None
    #: Secret names the handler may read (template references are added automatically).
    secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _NAME.match(self.kind):
            raise InvalidArgumentError(f"handler kind {self.kind!r} is not a name like 'python' or 'http'",
                                       parameter="kind")
        object.__setattr__(self, "config", _jsonable(dict(self.config), "handler config"))
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "secrets", tuple(self.secrets))
        for name in [*self.inputs, *self.outputs]:
            if not isinstance(name, str) or not _NAME.match(name):
                raise InvalidArgumentError(f"{name!r} is not a valid input or output name (letters, digits and "
                                           "'_', not starting with a digit)", parameter="inputs/outputs")
        for expr in self.inputs.values():
            if not isinstance(expr, str):
                raise InvalidArgumentError(f"input expressions are strings over the case data, not {expr!r}",
                                           parameter="inputs")
        for name in self.secrets:
            if not isinstance(name, str) or not _SECRET_NAME.match(name):
                raise InvalidArgumentError(f"{name!r} is not a valid secret name", parameter="secrets")
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float))
                                         or self.timeout <= 0):
            raise InvalidArgumentError(f"timeout must be a positive number of seconds, not {self.timeout!r}",
                                       parameter="timeout")
        if self.timeout is not None:
            object.__setattr__(self, "timeout", float(self.timeout))

    def secret_names(self) -> tuple[str, ...]:
        """Every secret the handler uses: declared ones, template references, the SQL connection."""
        return self._secret_names

    @functools.cached_property
    def _secret_names(self) -> tuple[str, ...]:  # a handler never changes: worked out once
        names = list(self.secrets)
        for text in _strings(self.config):
            names += [m.group(2) for m in _TEMPLATE.finditer(text) if m.group(1)]
        if self.kind == "sql" and isinstance(self.config.get("connection"), str):
            names.append(self.config["connection"])
        return tuple(dict.fromkeys(names))

    def variables(self) -> frozenset[str]:
        """Case variables the handler reads: in input expressions and in ``{name}`` templates."""
        found: set[str] = set()
        for expr in self.inputs.values():
            with contextlib.suppress(ConditionError):
                found |= compile_expression(expr, what="input mapping").variables
        if self.kind in ("http", "shell"):
            for text in _strings(self.config):
                found |= {m.group(2) for m in _TEMPLATE.finditer(text) if not m.group(1)}
        if self.kind == "sql" and isinstance(self.config.get("query"), str):
            found |= {m.group(1) for m in _PG_PARAM.finditer(self.config["query"])}
        return frozenset(found - set(self.inputs) - set(_CONTEXT_NAMES))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": dict(self.config), "inputs": dict(self.inputs),
                "outputs": list(self.outputs), "timeout": self.timeout, "secrets": list(self.secrets)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Handler:
        return cls(kind=d["kind"], config=d.get("config") or {}, inputs=d.get("inputs") or {},
                   outputs=tuple(d.get("outputs") or ()), timeout=d.get("timeout"),
                   secrets=tuple(d.get("secrets") or ()))  # fmt: skip


def _jsonable(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"the {what} must be plain JSON data: {exc}", parameter="config") from None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _mapping(inputs: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    if inputs is None:
        return {}
    if isinstance(inputs, Mapping):
        return dict(inputs)
    if isinstance(inputs, str):
        raise InvalidArgumentError("give a list of names or a dict of name -> expression, not a string",
                                   parameter="inputs")
    return {n: n for n in inputs}


def python(target: str, *, inputs: Mapping[str, str] | Sequence[str] | None = None, outputs: Sequence[str] = (),
           secrets: Sequence[str] = (), timeout: float | None = None) -> Handler:
    """Call ``"pkg.module:function"`` as ``function(ctx)`` (ctx: :class:`TaskContext`)."""
    return Handler("python", {"target": target}, _mapping(inputs), tuple(outputs), timeout, tuple(secrets))


def notebook(path: str | os.PathLike[str], *, parameters: Mapping[str, str] | Sequence[str] | None = None,
             results: Sequence[str] = (), timeout: float | None = 600, kernel: str | None = None,
             secrets: Sequence[str] = ()) -> Handler:
    """Run a notebook with papermill: ``parameters`` (name -> expression, or names) in, ``results`` read back.

    ``path`` is absolute or relative to the workspace.
    """
    config: dict[str, Any] = {"path": str(path)}
    if kernel:
        config["kernel"] = kernel
    return Handler("notebook", config, _mapping(parameters), tuple(results), timeout, tuple(secrets))


def http(method: str, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None,
         params: Mapping[str, str] | None = None, inputs: Mapping[str, str] | Sequence[str] | None = None,
         outputs: Sequence[str] = (), timeout: float | None = 30, idempotency_header: str | None = "Idempotency-Key",
         ) -> Handler:  # fmt: skip
    """An HTTP request; ``url``, ``headers`` (``{secret:NAME}`` allowed), ``params`` and ``json`` are templates.

    The response's JSON object gives the ``outputs`` (one output and a non-object body: the whole body).
    """
    config: dict[str, Any] = {"method": method.upper(), "url": url}
    if json is not None:
        config["json"] = json
    if headers:
        config["headers"] = dict(headers)
    if params:
        config["params"] = dict(params)
    if idempotency_header != "Idempotency-Key":
        config["idempotency_header"] = idempotency_header
    return Handler("http", config, _mapping(inputs), tuple(outputs), timeout)


def sql(connection: str, query: str, *, params: Mapping[str, str] | Sequence[str] | None = None,
        fetch: str = "one", outputs: Sequence[str] = (), timeout: float | None = 30) -> Handler:
    """Run ``query`` on the database whose URL is in the secret ``connection``.

    ``:name`` placeholders are bound from ``params`` (and ``:idempotency_key``, ``:attempt``,
    ``:case_id``). ``fetch``: "one" (the first row's columns are the results), "all" (the rows,
    as a list of dicts, in the single output) or "none" (a statement; results: ``rowcount``).
    """
    return Handler("sql", {"connection": connection, "query": query, "fetch": fetch}, _mapping(params),
                   tuple(outputs), timeout)


def shell(argv: Sequence[str], *, inputs: Mapping[str, str] | Sequence[str] | None = None,
          outputs: Sequence[str] = (), env: Mapping[str, str] | None = None, stdout: str | None = None,
          cwd: str | None = None, timeout: float | None = 60) -> Handler:
    """Run ``argv`` (no shell); each argument is a template. ``stdout``: "json" (an object of results),
    "text" (the text is the single output) or "ignore" (default: "json" when outputs are declared)."""
    if isinstance(argv, str):
        raise InvalidArgumentError("argv is a list of arguments, e.g. ['python', 'job.py', '{case_id}'], not a "
                                   "command string (no shell is used)", parameter="argv")
    config: dict[str, Any] = {"argv": list(argv), "stdout": stdout or ("json" if outputs else "ignore")}
    if env:
        config["env"] = dict(env)
    if cwd:
        config["cwd"] = cwd
    return Handler("shell", config, _mapping(inputs), tuple(outputs), timeout)


# -- secrets -----------------------------------------------------------------------------------
def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        if _SECRET_NAME.match(key):
            values[key] = value
    return values


class Secrets:
    """Secrets by name, from the environment, else the workspace's ``.env``. Never shows a value.

    ``allowed`` restricts which names may be read (a handler's declared secrets).
    """

    def __init__(self, workspace: Any = None, *, environ: Mapping[str, str] | None = None,
                 allowed: Iterable[str] | None = None) -> None:
        root = getattr(workspace, "path", workspace)
        self.dotenv_path = Path(root) / ".env" if root is not None else None
        self._environ = os.environ if environ is None else environ
        self._dotenv = _read_dotenv(self.dotenv_path) if self.dotenv_path is not None else {}
        self._allowed = None if allowed is None else frozenset(allowed)

    @property
    def allowed(self) -> frozenset[str]:
        """The names this view may read (every name, when unrestricted, is not listed: empty)."""
        return self._allowed or frozenset()

    def restricted(self, names: Iterable[str]) -> Secrets:
        """The same secrets, readable only by ``names``."""
        other = copy.copy(self)
        other._allowed = frozenset(names)
        return other

    def __getitem__(self, name: str) -> str:
        if self._allowed is not None and name not in self._allowed:
            raise SecretError(f"secret {name!r} is not declared by this task's binding; add it with "
                              f"secrets=[{name!r}]", name=name)
        value = self._environ.get(name)
        if value is None:
            value = self._dotenv.get(name)
        if value is None:
            where = f"the environment or {self.dotenv_path}" if self.dotenv_path else "the environment"
            raise SecretError(f"secret {name!r} is not set: define it in {where}", name=name)
        if len(value) < _MIN_SECRET:
            raise SecretError(f"secret {name!r} is shorter than {_MIN_SECRET} characters, too short to be "
                              "redacted safely from outputs", name=name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        try:
            return self[name]
        except SecretError:
            return default

    def redactor(self, names: Iterable[str] = ()) -> Redactor:
        """A :class:`Redactor` for the values of the secrets ``names`` (those that are set)."""
        if names == ():
            return _NO_SECRETS
        pairs: dict[str, str] = {}
        for n in names:
            v = self._environ.get(n) or self._dotenv.get(n)
            if v and len(v) >= _MIN_SECRET:
                pairs[n] = v
        return Redactor(pairs)

    def __repr__(self) -> str:
        return f"<Secrets from the environment and {self.dotenv_path or 'no .env'}; values hidden>"


class Redactor:
    """Replaces secret values (and their URL-quoted, JSON-escaped and base64 forms) in any data."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        forms: dict[str, str] = {}
        for name, value in secrets.items():
            if len(value) < _MIN_SECRET:
                continue
            mark = f"[redacted:{name}]"
            for form in (value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
                         json.dumps(value)[1:-1], base64.b64encode(value.encode()).decode().rstrip("=")):  # fmt: skip
                if len(form) >= _MIN_SECRET:
                    forms.setdefault(form, mark)
        self._forms = sorted(forms.items(), key=lambda kv: -len(kv[0]))
        self._pattern = re.compile("|".join(re.escape(f) for f, _ in self._forms)) if self._forms else None
        self._marks = dict(self._forms)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def redact(self, value: Any) -> Any:
        """``value`` with every secret replaced by ``[redacted:NAME]`` (dicts, lists and strings, deeply)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self._pattern.sub(lambda m: self._marks[m.group(0)], value)
        if isinstance(value, Mapping):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact(v) for v in value)
        return value

    def contains_secret(self, text: str) -> bool:
        return bool(self._pattern and self._pattern.search(text))

    def __repr__(self) -> str:
        return f"<Redactor of {len({m for _, m in self._forms})} secrets>"


# -- context and results -----------------------------------------------------------------------
@dataclass(frozen=True)
class TaskContext:
    """What a handler receives: the case, its inputs, the idempotency key, the attempt, secrets."""

    case_id: str
    task_id: str
    task_name: str
    #: A copy of the case data (changing it changes nothing: return results instead).
    data: dict[str, Any]
    #: The binding's input mapping, evaluated over the case data (empty when it declares none).
    inputs: dict[str, Any]
    #: Stable across retries of one task instance: use it to deduplicate external effects.
    idempotency_key: str
    attempt: int
    secrets: Secrets
    workspace: Path | None = None
    #: Where to keep artefacts of this attempt (output notebooks), if anywhere.
    output_dir: Path | None = None
    timeout: float | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    redactor: Redactor = field(default_factory=lambda: Redactor({}), repr=False)

    def secret(self, name: str) -> str:
        """The value of a declared secret; :class:`SecretError` otherwise."""
        return self.secrets[name]

    def redact(self, value: Any) -> Any:
        """``value`` with this task's secrets replaced by ``[redacted:NAME]`` (for a handler's own logs)."""
        return self.redactor.redact(value)


_NO_SECRETS = Redactor({})


@dataclass(frozen=True)
class TaskResult:
    """A successful handler call: results to merge into the case data, and details for the events."""

    data: dict[str, Any]
    details: dict[str, Any]
    seconds: float


@runtime_checkable
class Connector(Protocol):
    """A connector kind: ``run`` performs a call; ``check`` lists configuration problems."""

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None: ...

    def check(self, config: Mapping[str, Any]) -> list[str]: ...


class _Callable:
    """A plain function registered as a connector."""

    def __init__(self, fn: Callable[[TaskContext, Mapping[str, Any]], Mapping[str, Any] | None]) -> None:
        self.fn = fn

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.fn(ctx, config)

    def check(self, config: Mapping[str, Any]) -> list[str]:
        return []


_REGISTRY: dict[str, Connector] = {}


def register(kind: str, connector: Connector | Callable[..., Any], *, replace: bool = False) -> None:
    """Make ``kind`` available to bindings: a :class:`Connector`, or a function ``(ctx, config) -> dict``."""
    if not isinstance(kind, str) or not _NAME.match(kind):
        raise InvalidArgumentError(f"connector kind {kind!r} must be a name like 'kafka'", parameter="kind")
    if kind in _REGISTRY and not replace:
        raise InvalidArgumentError(f"a connector {kind!r} is already registered; pass replace=True to replace it",
                                   parameter="kind")
    if not isinstance(connector, Connector):
        if not callable(connector):
            raise InvalidArgumentError("a connector is an object with run(ctx, config) and check(config), or a "
                                       "function (ctx, config) -> dict", parameter="connector")
        connector = _Callable(connector)
    _REGISTRY[kind] = connector


def get_connector(kind: str) -> Connector:
    """The connector registered for ``kind``."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise InvalidArgumentError(f"no connector {kind!r} (known: {', '.join(connectors())}); register one with "
                                   "procestra.engine.connectors.register()", parameter="kind") from None


def connectors() -> list[str]:
    """The registered connector kinds, sorted."""
    return sorted(_REGISTRY)


def check_handler(handler: Handler) -> list[str]:
    """Problems with a binding's configuration (unknown kind, missing or wrong settings), as sentences."""
    if handler.kind not in _REGISTRY:
        return [f"no connector {handler.kind!r} is registered (known: {', '.join(connectors())})"]
    problems = list(_REGISTRY[handler.kind].check(handler.config))
    for name, expr in handler.inputs.items():
        try:
            compile_expression(expr, what=f"input {name!r}")
        except ConditionError as exc:
            problems.append(str(exc))
    return problems


def idempotency_key(case_id: str, task_id: str, instance: int | str = 1) -> str:
    """A stable key for one task instance of one case (the engine may use its own)."""
    raw = f"{case_id}\x1f{task_id}\x1f{instance}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


# -- running -------------------------------------------------------------------------------------
def run_handler(handler: Handler, *, data: Mapping[str, Any], idempotency_key: str, attempt: int = 1,
                case_id: str = "", task_id: str = "", task_name: str = "", workspace: Any = None,
                output_dir: str | os.PathLike[str] | None = None, secrets: Secrets | None = None) -> TaskResult:
    """Run one attempt of ``handler`` over the case ``data``; :class:`TaskError` on failure.

    Secrets are redacted from the results, details and error messages. The case data is
    not modified: merge ``result.data`` into it.
    """
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise InvalidArgumentError("idempotency_key must be a non-empty string", parameter="idempotency_key")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidArgumentError(f"attempt must be a positive integer, not {attempt!r}", parameter="attempt")
    root = getattr(workspace, "path", workspace)
    root = Path(root) if root is not None and not isinstance(root, Path) else root
    base = secrets if secrets is not None else Secrets(root)
    names = handler.secret_names()
    redactor = base.redactor(names)
    started = time.perf_counter()
    try:
        connector = get_connector(handler.kind)
        scope = dict(data)
        inputs: dict[str, Any] = {}
        for name, expr in handler.inputs.items():
            try:
                inputs[name] = compile_expression(expr, what=f"input {name!r}").evaluate(scope)
            except ConditionError as exc:
                raise TaskError(str(exc), retryable=False) from None
        ctx = TaskContext(
            case_id=str(case_id), task_id=str(task_id), task_name=str(task_name), data=copy.deepcopy(dict(data)),
            inputs=inputs, idempotency_key=idempotency_key, attempt=attempt, secrets=base.restricted(names),
            workspace=root, output_dir=Path(output_dir) if output_dir is not None and not isinstance(output_dir, Path)
            else output_dir, timeout=handler.timeout,
            config=types.MappingProxyType(dict(handler.config)), outputs=handler.outputs, redactor=redactor,
        )  # fmt: skip
        raw = connector.run(ctx, handler.config)
        results = _results(raw, handler)
        details = dict(results.pop("__details__", {}) or {})
    except TaskError as exc:
        raise exc._located(task_id or None, handler.kind, attempt, redactor) from None
    except (SecretError, InvalidArgumentError) as exc:
        raise TaskError(str(exc), retryable=False)._located(task_id or None, handler.kind, attempt, redactor) from None
    except Exception as exc:  # noqa: BLE001 - a handler's own failure: retryable unless it says otherwise
        retryable = getattr(exc, "retryable", getattr(exc, "transient", True))
        error = TaskError(f"{type(exc).__name__}: {exc}", retryable=bool(retryable),
                          details={"exception": type(exc).__name__})
        raise error._located(task_id or None, handler.kind, attempt, redactor) from None
    return TaskResult(redactor.redact(results), redactor.redact(details), time.perf_counter() - started)


def _results(raw: Any, handler: Handler) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise TaskError(f"the handler returned a {type(raw).__name__}; return a dict of results (or None)",
                        retryable=False)
    raw = dict(raw)
    details = raw.pop("__details__", None)
    try:
        json.dumps(raw)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"the results are not JSON data ({exc}); return numbers, strings, lists and dicts",
                        retryable=False) from None
    if handler.outputs:
        missing = [o for o in handler.outputs if o not in raw]
        if missing:
            raise TaskError(f"the results lack the declared output(s) {', '.join(map(repr, missing))} (got: "
                            f"{', '.join(sorted(raw)) or 'nothing'})", retryable=False)
        raw = {o: raw[o] for o in handler.outputs}
    else:
        bad = [k for k in raw if not isinstance(k, str) or not _NAME.match(k)]
        if bad:
            raise TaskError(f"result names {bad!r} are not valid variable names", retryable=False)
    if details is not None:
        raw["__details__"] = details
    return raw


# -- templates -------------------------------------------------------------------------------------
def _scope(ctx: TaskContext) -> dict[str, Any]:
    return {**dict(ctx.data), **dict(ctx.inputs), "idempotency_key": ctx.idempotency_key, "attempt": ctx.attempt,
            "case_id": ctx.case_id}


def _fill(template: Any, ctx: TaskContext, *, secrets: bool, quote: bool = False, typed: bool = False) -> Any:
    """``template`` with ``{name}`` and (if allowed) ``{secret:NAME}`` replaced."""
    scope = _scope(ctx)
    if isinstance(template, Mapping):
        return {k: _fill(v, ctx, secrets=secrets, quote=quote, typed=typed) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, ctx, secrets=secrets, quote=quote, typed=typed) for v in template]
    if not isinstance(template, str):
        return template
    whole = _TEMPLATE.fullmatch(template)
    if typed and whole and not whole.group(1):
        return _lookup(scope, whole.group(2), template)

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            if not secrets:
                raise TaskError(f"{{secret:{m.group(2)}}} is not allowed here (URLs and argv end up in logs)",
                                retryable=False)
            return ctx.secret(m.group(2))
        value = _lookup(scope, m.group(2), template)
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        return urllib.parse.quote(text, safe="") if quote else text

    return _TEMPLATE.sub(sub, template)


def _lookup(scope: Mapping[str, Any], name: str, template: str) -> Any:
    if name not in scope:
        raise TaskError(f"the template {template!r} names {name!r}, which is neither an input nor case data",
                        retryable=False)
    return scope[name]


def _check_templates(value: Any, where: str, *, secrets: bool) -> list[str]:
    problems = []
    for text in _strings(value):
        for m in _TEMPLATE.finditer(text):
            if m.group(1) and not secrets:
                problems.append(f"{where} may not use {{secret:{m.group(2)}}}: secrets go in headers, the JSON body "
                                "or env, never in URLs or argv")
    return problems


# -- built-in connectors ------------------------------------------------------------------------------
class PythonConnector:
    """``{"target": "pkg.mod:func"}``: ``func(ctx)`` returns a dict of results or None."""

    def check(self, config: Mapping[str, Any]) -> list[str]:
        target = config.get("target")
        if not isinstance(target, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", target):
            return [f"python target {target!r} must look like 'package.module:function'"]
        return []

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        problems = self.check(config)
        if problems:
            raise TaskError(problems[0], retryable=False)
        module_name, _, attr = str(config["target"]).partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise TaskError(f"cannot import {module_name!r}: {exc}", retryable=False) from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise TaskError(f"{module_name!r} has no {attr!r}", retryable=False)
            obj = getattr(obj, part)
        if not callable(obj):
            raise TaskError(f"{config['target']!r} is not callable", retryable=False)
        result: Mapping[str, Any] | None = obj(ctx)
        return result


def record_results(**values: Any) -> None:
    """In a notebook run by the notebook connector: publish ``values`` as the task's results."""
    from IPython.display import display

    json.dumps(values)  # fail early, in the notebook, on values that are not JSON
    display({RESULTS_MIME: values, "text/plain": f"procestra results: {', '.join(values)}"}, raw=True)


class NotebookConnector:
    """``{"path": ..., "kernel": ...}``: papermill in a real kernel, results read back (see the module doc)."""

    def check(self, config: Mapping[str, Any]) -> list[str]:
        path = config.get("path")
        if not isinstance(path, str) or not path.endswith(".ipynb"):
            return [f"notebook path {path!r} must name an .ipynb file"]
        return []

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        import nbformat
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        problems = self.check(config)
        if problems:
            raise TaskError(problems[0], retryable=False)
        source = Path(str(config["path"]))
        if not source.is_absolute() and ctx.workspace is not None:
            source = ctx.workspace / source
        if not source.is_file():
            raise TaskError(f"notebook {str(source)!r} does not exist", retryable=False)
        params = dict(ctx.inputs)
        declared = set(pm.inspect_notebook(str(source)).keys())
        for name in _CONTEXT_NAMES:
            if name in declared:
                params[name] = _scope(ctx)[name]
        redactor = ctx.redactor
        kernel = config.get("kernel") or (nbformat.read(str(source), as_version=4).metadata.get("kernelspec") or
                                          {}).get("name") or "python3"  # fmt: skip
        env = {name: ctx.secret(name) for name in sorted(ctx.secrets.allowed)}
        env.update({"PROCESTRA_CASE_ID": ctx.case_id, "PROCESTRA_TASK_ID": ctx.task_id,
                    "PROCESTRA_IDEMPOTENCY_KEY": ctx.idempotency_key, "PROCESTRA_ATTEMPT": str(ctx.attempt)})
        # papermill saves after every cell: the raw output stays in a private directory until redacted
        private = Path(tempfile.mkdtemp(prefix="procestra-nb-", dir=ctx.workspace / "tmp" if ctx.workspace and
                                        (ctx.workspace / "tmp").is_dir() else None))  # fmt: skip
        out = private / "output.ipynb"
        failure: TaskError | None = None
        log = open(private / "kernel.log", "wb")  # noqa: SIM115 - closed in finally
        try:
            try:
                pm.execute_notebook(str(source), str(out), parameters=params, kernel_name=kernel,
                                    progress_bar=False, log_output=False, execution_timeout=ctx.timeout,
                                    cwd=str(source.parent), km=_kernel_manager(kernel, env, log))  # fmt: skip
            except PapermillExecutionError as exc:
                failure = TaskError(f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}",
                                    details={"cell": exc.exec_count, "ename": exc.ename})
            except Exception as exc:  # noqa: BLE001 - nbclient: cell timeout, dead kernel, ...
                name = type(exc).__name__
                cls = TaskTimeoutError if "Timeout" in name else TaskError
                log.flush()
                tail = (private / "kernel.log").read_text(errors="replace").strip()[-500:]
                failure = cls(f"{name}: {exc}" + (f" (kernel log: {tail})" if tail else ""), retryable=True,
                              details={"exception": name})
            results: dict[str, Any] = {}
            if out.is_file():
                nb = nbformat.read(str(out), as_version=4)
                results = _notebook_results(nb)
                _redact_notebook(nb, redactor)
                if ctx.output_dir is not None:
                    ctx.output_dir.mkdir(parents=True, exist_ok=True)
                    name = f"{ctx.task_id or source.stem}-{ctx.attempt}.ipynb"
                    nbformat.write(nb, str(ctx.output_dir / name))
                    results["__details__"] = {"notebook": str(ctx.output_dir / name)}
            if failure is not None:
                if "__details__" in results:
                    failure.details.update(results["__details__"])
                raise failure
            return results
        finally:
            log.close()
            shutil.rmtree(private, ignore_errors=True)


def _kernel_manager(kernel: str, env: Mapping[str, str], log: Any) -> Any:
    """A kernel manager whose kernel also gets ``env`` (declared secrets, the task's context), stderr to ``log``."""
    from jupyter_client.manager import AsyncKernelManager

    class _EnvKernelManager(AsyncKernelManager):  # type: ignore[misc]
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = {**os.environ, **dict(kw.get("env") or {}), **env}
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            await AsyncKernelManager.start_kernel(self, **kw)

    return _EnvKernelManager(kernel_name=kernel)


def _notebook_results(nb: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tagged = "results" in (cell.get("metadata", {}).get("tags") or [])
        last: Any = None
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            if RESULTS_MIME in data:
                results.update(_as_dict(data[RESULTS_MIME]))
            elif tagged and "application/json" in data:
                last = data["application/json"]
            elif tagged and "text/plain" in data:
                with contextlib.suppress(ValueError, TypeError):
                    last = json.loads(str(data["text/plain"]))
            elif tagged and output.get("output_type") == "stream":
                with contextlib.suppress(ValueError, TypeError):
                    last = json.loads(str(output.get("text", "")))
        if tagged and isinstance(last, Mapping):
            results.update(last)
    return results


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, Mapping) else {}


def _redact_notebook(nb: Any, redactor: Redactor) -> None:
    if not redactor:
        return

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return redactor.redact(node)
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            for k in list(node):
                node[k] = walk(node[k])
            return node
        return node

    for cell in nb.cells:
        walk(cell)


class HttpConnector:
    """``{"method", "url", "headers", "params", "json", "idempotency_header"}`` via httpx."""

    _RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

    def check(self, config: Mapping[str, Any]) -> list[str]:
        problems = []
        method = config.get("method")
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
            problems.append(f"HTTP method {method!r} must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")
        url = config.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            problems.append(f"URL {url!r} must start with http:// or https://")
        problems += _check_templates(config.get("url"), "the URL", secrets=False)
        problems += _check_templates(config.get("params"), "query parameters", secrets=False)
        return problems

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        import httpx

        problems = self.check(config)
        if problems:
            raise TaskError(problems[0], retryable=False)
        url = _fill(config["url"], ctx, secrets=False, quote=True)
        headers = {str(k): str(v) for k, v in _fill(config.get("headers") or {}, ctx, secrets=True).items()}
        idem = config.get("idempotency_header", "Idempotency-Key")
        if idem:
            headers.setdefault(str(idem), ctx.idempotency_key)
        params = _fill(config.get("params") or {}, ctx, secrets=False)
        body = _fill(config["json"], ctx, secrets=True, typed=True) if "json" in config else None
        try:
            with httpx.Client(timeout=ctx.timeout or 30.0, follow_redirects=True) as client:
                response = client.request(str(config["method"]), url, headers=headers, params=params or None,
                                          json=body)  # fmt: skip
        except httpx.TimeoutException as exc:
            raise TaskTimeoutError(f"{config['method']} {_safe_url(url)} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TaskError(f"{config['method']} {_safe_url(url)} failed: {type(exc).__name__}: {exc}") from None
        details = {"status": response.status_code, "url": _safe_url(url)}
        if response.status_code >= 400:
            text = response.text[:300].strip()
            raise TaskError(f"{config['method']} {_safe_url(url)} answered {response.status_code} "
                            f"{response.reason_phrase}" + (f": {text}" if text else ""),
                            retryable=response.status_code in self._RETRY_STATUS, details=details)  # fmt: skip
        try:
            payload: Any = response.json() if response.content else None
        except ValueError:
            payload = response.text
        if isinstance(payload, Mapping):
            results = dict(payload)
        elif len(ctx.outputs) == 1:
            results = {ctx.outputs[0]: payload}
        else:
            results = {}
        if len(ctx.outputs) == 1 and ctx.outputs[0] not in results:
            results = {ctx.outputs[0]: payload}
        results["__details__"] = details
        return results


def _safe_url(url: str) -> str:
    """``url`` without user info (credentials) or query string, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


_PG_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class SqlConnector:
    """``{"connection": SECRET, "query", "fetch"}``: SQLite (``sqlite:///path``) or PostgreSQL URLs."""

    def check(self, config: Mapping[str, Any]) -> list[str]:
        problems = []
        conn = config.get("connection")
        if not isinstance(conn, str) or not _SECRET_NAME.match(conn):
            problems.append(f"the SQL connection must be the name of a secret holding the database URL, not {conn!r}")
        if not isinstance(config.get("query"), str) or not str(config.get("query")).strip():
            problems.append("the SQL query is empty")
        if config.get("fetch", "one") not in ("one", "all", "none"):
            problems.append(f"fetch must be 'one', 'all' or 'none', not {config.get('fetch')!r}")
        return problems

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        problems = self.check(config)
        if problems:
            raise TaskError(problems[0], retryable=False)
        url = ctx.secret(str(config["connection"]))
        params = _scope(ctx)
        params.update({"idempotency_key": ctx.idempotency_key, "attempt": ctx.attempt, "case_id": ctx.case_id})
        query, fetch = str(config["query"]), str(config.get("fetch", "one"))
        if url.startswith("sqlite:///"):
            rows, columns, count = self._sqlite(ctx, url, query, params, fetch)
        elif url.startswith(("postgresql://", "postgres://")):
            rows, columns, count = self._postgres(ctx, url, query, params, fetch)
        else:
            raise TaskError(f"the URL in secret {config['connection']!r} must start with sqlite:/// or "
                            "postgresql://", retryable=False)
        dicts = [dict(zip(columns, r)) for r in rows]
        if fetch == "none":
            return {"rowcount": count, "__details__": {"rowcount": count}}
        if fetch == "all":
            name = ctx.outputs[0] if ctx.outputs else "rows"
            return {name: dicts, "__details__": {"rows": len(dicts)}}
        first = dicts[0] if dicts else {c: None for c in (ctx.outputs or columns)}
        return {**first, "__details__": {"rows": len(dicts)}}

    @staticmethod
    def _sqlite(ctx: TaskContext, url: str, query: str, params: dict[str, Any], fetch: str,
                ) -> tuple[list[Any], list[str], int]:  # fmt: skip
        import sqlite3

        path = Path(url[len("sqlite:///"):])
        if not path.is_absolute() and ctx.workspace is not None:
            path = ctx.workspace / path
        try:
            con = sqlite3.connect(str(path), timeout=ctx.timeout or 30.0)
        except sqlite3.Error as exc:
            raise TaskError(f"cannot open the SQLite database: {exc}") from None
        try:
            with con:
                used = {m.group(1) for m in _PG_PARAM.finditer(query)}
                cur = con.execute(query, {k: v for k, v in params.items() if k in used})
                rows = cur.fetchall() if cur.description and fetch != "none" else []
                columns = [d[0] for d in cur.description or ()]
                return rows, columns, cur.rowcount
        except sqlite3.OperationalError as exc:
            permanent = "syntax error" in str(exc) or "no such" in str(exc)
            raise TaskError(f"SQLite: {exc}", retryable=not permanent) from None
        except sqlite3.Error as exc:
            raise TaskError(f"SQLite: {type(exc).__name__}: {exc}", retryable=False) from None
        finally:
            con.close()

    @staticmethod
    def _postgres(ctx: TaskContext, url: str, query: str, params: dict[str, Any], fetch: str,
                  ) -> tuple[list[Any], list[str], int]:  # fmt: skip
        import psycopg

        pg_query = _PG_PARAM.sub(lambda m: f"%({m.group(1)})s", query.replace("%", "%%"))
        used = {m.group(1) for m in _PG_PARAM.finditer(query)}
        try:
            with psycopg.connect(url, connect_timeout=int(ctx.timeout or 30)) as con, con.cursor() as cur:
                cur.execute(pg_query, {k: v for k, v in params.items() if k in used})
                rows = cur.fetchall() if cur.description and fetch != "none" else []
                columns = [d.name for d in cur.description or ()]
                return rows, columns, cur.rowcount
        except psycopg.OperationalError as exc:
            raise TaskError(f"PostgreSQL: {exc}".strip()) from None
        except psycopg.Error as exc:
            raise TaskError(f"PostgreSQL: {type(exc).__name__}: {exc}".strip(), retryable=False) from None


class ShellConnector:
    """``{"argv", "env", "stdout", "cwd"}``: a subprocess without a shell, killed with its group on timeout."""

    def check(self, config: Mapping[str, Any]) -> list[str]:
        argv = config.get("argv")
        problems = []
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            problems.append("argv must be a non-empty list of strings")
        problems += _check_templates(argv, "argv", secrets=False)
        if config.get("stdout", "ignore") not in ("json", "text", "ignore"):
            problems.append(f"stdout must be 'json', 'text' or 'ignore', not {config.get('stdout')!r}")
        return problems

    def run(self, ctx: TaskContext, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        problems = self.check(config)
        if problems:
            raise TaskError(problems[0], retryable=False)
        argv = [str(_fill(a, ctx, secrets=False)) for a in config["argv"]]
        env = {**os.environ, **{str(k): str(v) for k, v in _fill(config.get("env") or {}, ctx, secrets=True).items()},
               "PROCESTRA_CASE_ID": ctx.case_id, "PROCESTRA_TASK_ID": ctx.task_id,
               "PROCESTRA_IDEMPOTENCY_KEY": ctx.idempotency_key, "PROCESTRA_ATTEMPT": str(ctx.attempt)}  # fmt: skip
        cwd = config.get("cwd")
        if cwd and ctx.workspace is not None and not Path(cwd).is_absolute():
            cwd = str(ctx.workspace / cwd)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, cwd=cwd or (str(ctx.workspace) if ctx.workspace else None),
                                    start_new_session=True, text=True)  # fmt: skip
        except OSError as exc:
            raise TaskError(f"cannot start {argv[0]!r}: {exc.strerror}", retryable=False) from None
        try:
            out, err = proc.communicate(timeout=ctx.timeout or 60.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TaskTimeoutError(f"{argv[0]!r} ran longer than {ctx.timeout or 60.0:g}s and was killed") from None
        details = {"returncode": proc.returncode}
        if proc.returncode != 0:
            tail = err.strip()[-500:]
            raise TaskError(f"{argv[0]!r} exited with code {proc.returncode}" + (f": {tail}" if tail else ""),
                            details=details)  # fmt: skip
        mode = config.get("stdout", "ignore")
        if mode == "json":
            try:
                parsed = json.loads(out)
            except ValueError:
                raise TaskError(f"{argv[0]!r} printed no JSON object on stdout (stdout='json'): "
                                f"{out.strip()[:200]!r}", retryable=False, details=details) from None  # fmt: skip
            if not isinstance(parsed, Mapping):
                raise TaskError(f"{argv[0]!r} printed {type(parsed).__name__} JSON; print an object",
                                retryable=False, details=details)
            return {**parsed, "__details__": details}
        if mode == "text":
            name = ctx.outputs[0] if ctx.outputs else "stdout"
            return {name: out.rstrip("\n"), "__details__": details}
        return {"__details__": details}


for _kind, _connector in (("python", PythonConnector()), ("notebook", NotebookConnector()),
                          ("http", HttpConnector()), ("sql", SqlConnector()), ("shell", ShellConnector())):
    register(_kind, _connector)
