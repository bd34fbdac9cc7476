"""Connectors: what a bound service task runs, and the registry of kinds.

A :class:`Handler` is the binding of one task: a connector ``kind``, its ``config``, the
``inputs`` (name -> sandbox expression over the case data), the ``outputs`` (result names
merged into the case data), a ``timeout`` and the ``secrets`` it may read. The built-in
kinds (python, notebook, http, sql, shell; :mod:`procestra.engine.builtins`) are registered
here, and :func:`python`, :func:`notebook`, :func:`http`, :func:`sql` and :func:`shell` build
their bindings; :func:`register` adds more kinds.

:func:`run_handler` calls one: it evaluates the inputs in the sandbox, gives the connector
a :class:`TaskContext` (case data, inputs, the task's idempotency key, which the engine
keeps the same across retries of one task instance, the attempt number and the declared
secrets), checks the results against the declared outputs and redacts every secret value
from them. Failures raise :class:`TaskError`, whose ``retryable`` says whether another
attempt can help (anything not known to be permanent is retryable; the retry policy
bounds the attempts).

**Secrets** come from the environment, else the workspace's ``.env`` file
(``NAME=value`` lines). A handler sees only the secrets its binding names (a notebook's
kernel gets them as environment variables), and their values (also escaped, URL-quoted,
hex and base64 at any alignment; :mod:`procestra.engine.redaction`) are replaced by
``[redacted:NAME]`` in results, details, error messages, output notebooks and what the
handler prints. Secret values must be at least 4 characters. What a Python
handler reads from ``os.environ`` by itself is beyond this: declare it instead.

>>> from procestra.engine.connectors import python, run_handler
>>> h = python("procestra.engine.examples:credit_check", outputs=["credit_score"])
>>> run_handler(h, data={"applicant": "A-1", "amount": 5000}, idempotency_key="case1:credit:1").data
{'credit_score': 712}
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from procestra.engine.builtins import (
    BUILTINS,
    CONTEXT_NAMES,
    NAME,
    PG_PARAM,
    RESULTS_MIME,
    TEMPLATE,
    record_results,
    strings,
)
from procestra.engine.exceptions import ConditionError, SecretError, TaskError, TaskTimeoutError
from procestra.engine.redaction import MIN_SECRET, Redactor, redacted_output
from procestra.engine.sandbox import compile_expression
from procestra.errors import InvalidArgumentError

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

_MIN_SECRET = MIN_SECRET


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
        if not isinstance(self.kind, str) or not NAME.match(self.kind):
            raise InvalidArgumentError(f"handler kind {self.kind!r} is not a name like 'python' or 'http'",
                                       parameter="kind")
        object.__setattr__(self, "config", _jsonable(dict(self.config), "handler config"))
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "secrets", tuple(self.secrets))
        for name in [*self.inputs, *self.outputs]:
            if not isinstance(name, str) or not NAME.match(name):
                raise InvalidArgumentError(f"{name!r} is not a valid input or output name (letters, digits and "
                                           "'_', not starting with a digit)", parameter="inputs/outputs")
        for expr in self.inputs.values():
            if not isinstance(expr, str):
                raise InvalidArgumentError(f"input expressions are strings over the case data, not {expr!r}",
                                           parameter="inputs")
        for name in self.secrets:
            if not isinstance(name, str) or not NAME.match(name):
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
        for text in strings(self.config):
            names += [m.group(2) for m in TEMPLATE.finditer(text) if m.group(1)]
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
            for text in strings(self.config):
                found |= {m.group(2) for m in TEMPLATE.finditer(text) if not m.group(1)}
        if self.kind == "sql" and isinstance(self.config.get("query"), str):
            found |= {m.group(1) for m in PG_PARAM.finditer(self.config["query"])}
        return frozenset(found - set(self.inputs) - set(CONTEXT_NAMES))

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
        if NAME.match(key):
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
        self._redactors: dict[tuple[tuple[str, str], ...], Redactor] = {}  # shared by restricted copies

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
        if not pairs:
            return _NO_SECRETS
        key = tuple(sorted(pairs.items()))
        found = self._redactors.get(key)
        if found is None:  # the forms and their pattern are made once per set of values
            found = self._redactors[key] = Redactor(pairs)
        return found

    def __repr__(self) -> str:
        return f"<Secrets from the environment and {self.dotenv_path or 'no .env'}; values hidden>"


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
    #: Which time this task runs in the case (loops, multi-instance), 1 the first.
    occurrence: int = 1
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
    if not isinstance(kind, str) or not NAME.match(kind):
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
                output_dir: str | os.PathLike[str] | None = None, secrets: Secrets | None = None,
                occurrence: int = 1) -> TaskResult:
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
            occurrence=occurrence,
            workspace=root, output_dir=Path(output_dir) if output_dir is not None and not isinstance(output_dir, Path)
            else output_dir, timeout=handler.timeout,
            config=types.MappingProxyType(dict(handler.config)), outputs=handler.outputs, redactor=redactor,
        )  # fmt: skip
        if redactor:  # what the handler prints or logs reaches the worker's streams redacted
            with redacted_output(redactor):
                raw = connector.run(ctx, handler.config)
        else:
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
    results: dict[str, Any] = dict(raw)
    details = results.pop("__details__", None)
    try:
        json.dumps(results)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"the results are not JSON data ({exc}); return numbers, strings, lists and dicts",
                        retryable=False) from None
    if handler.outputs:
        missing = [o for o in handler.outputs if o not in results]
        if missing:
            raise TaskError(f"the results lack the declared output(s) {', '.join(map(repr, missing))} (got: "
                            f"{', '.join(sorted(results)) or 'nothing'})", retryable=False)
        results = {o: results[o] for o in handler.outputs}
    else:
        bad = [k for k in results if not isinstance(k, str) or not NAME.match(k)]
        if bad:
            raise TaskError(f"result names {bad!r} are not valid variable names", retryable=False)
    if details is not None:
        results["__details__"] = details
    return results


for _kind, _connector in BUILTINS.items():
    register(_kind, _connector)
