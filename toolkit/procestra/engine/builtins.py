"""The built-in connectors: python, notebook, http, sql and shell, and the template syntax of their settings.

=========  ================================================================================
python     ``"pkg.mod:func"`` called as ``func(ctx)``; returns a dict of results or None
notebook   papermill in a real kernel; ``inputs`` become notebook parameters; results are
           read back from the output notebook (see :func:`record_results`)
http       httpx request; URL, headers and JSON body are templates over the inputs
sql        SQLite or PostgreSQL URL taken from a secret; ``:name`` parameters bound
shell      ``argv`` list run without a shell; templates fill whole arguments only
=========  ================================================================================

:mod:`procestra.engine.connectors` registers them (:data:`BUILTINS`) beside the kinds users
register, and builds their bindings (``connectors.python(...)``, ``connectors.http(...)``).

**Templates** (http url/headers/json, shell argv/env): ``{name}`` is replaced by the input
or case variable ``name`` (a string that is exactly ``"{name}"`` in a JSON body keeps the
value's type), ``{secret:NAME}`` by a secret (headers, JSON body and shell env only, never
URLs or argv, which end up in logs). ``idempotency_key``, ``attempt`` and ``case_id`` are
always available.

**Notebook results**: call ``procestra.engine.connectors.record_results(score=0.7)`` in any
cell (it displays a ``application/vnd.procestra.results+json`` output), or tag a cell
``results`` and let its last output be JSON (``application/json``, or ``text/plain``
holding a JSON object). Later records override earlier ones.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procestra.engine.exceptions import TaskError, TaskTimeoutError

if TYPE_CHECKING:
    from procestra.engine.connectors import Connector, Redactor, TaskContext

__all__ = [
    "BUILTINS",
    "CONTEXT_NAMES",
    "NAME",
    "PG_PARAM",
    "RESULTS_MIME",
    "TEMPLATE",
    "HttpConnector",
    "NotebookConnector",
    "PythonConnector",
    "ShellConnector",
    "SqlConnector",
    "record_results",
    "strings",
]

RESULTS_MIME = "application/vnd.procestra.results+json"
#: A variable, input, output, connector kind or secret name.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: ``{name}`` and ``{secret:NAME}`` in http and shell settings.
TEMPLATE = re.compile(r"\{(secret:)?([A-Za-z_][A-Za-z0-9_]*)\}")
#: ``:name`` parameters of SQL queries.
PG_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
#: What templates, SQL parameters and notebook parameters may name besides inputs and case data.
CONTEXT_NAMES = ("idempotency_key", "attempt", "case_id")


# -- templates -------------------------------------------------------------------------------------
def strings(value: Any) -> Iterable[str]:
    """Every string in ``value``, keys and values of nested dicts and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


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
    whole = TEMPLATE.fullmatch(template)
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

    return TEMPLATE.sub(sub, template)


def _lookup(scope: Mapping[str, Any], name: str, template: str) -> Any:
    if name not in scope:
        raise TaskError(f"the template {template!r} names {name!r}, which is neither an input nor case data",
                        retryable=False)
    return scope[name]


def _check_templates(value: Any, where: str, *, secrets: bool) -> list[str]:
    problems = []
    for text in strings(value):
        for m in TEMPLATE.finditer(text):
            if m.group(1) and not secrets:
                problems.append(f"{where} may not use {{secret:{m.group(2)}}}: secrets go in headers, the JSON body "
                                "or env, never in URLs or argv")
    return problems


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
    display({RESULTS_MIME: values, "text/plain": f"procestra results: {', '.join(values)}"},  # type: ignore[no-untyped-call]
            raw=True)


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
        for name in CONTEXT_NAMES:
            if name in declared:
                params[name] = _scope(ctx)[name]
        redactor = ctx.redactor
        spec = nbformat.read(str(source), as_version=4).metadata.get("kernelspec")  # type: ignore[no-untyped-call]
        kernel = config.get("kernel") or (spec or {}).get("name") or "python3"
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
                tail = redactor.redact((private / "kernel.log").read_text(errors="replace").strip())[-500:]
                failure = cls(f"{name}: {exc}" + (f" (kernel log: {tail})" if tail else ""), retryable=True,
                              details={"exception": name})
            results: dict[str, Any] = {}
            if out.is_file():
                nb = nbformat.read(str(out), as_version=4)  # type: ignore[no-untyped-call]
                results = _notebook_results(nb)
                _redact_notebook(nb, redactor)
                if ctx.output_dir is not None:
                    ctx.output_dir.mkdir(parents=True, exist_ok=True)
                    name = f"{ctx.task_id or source.stem}-{ctx.occurrence}-{ctx.attempt}.ipynb"
                    nbformat.write(nb, str(ctx.output_dir / name))  # type: ignore[no-untyped-call]
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

    class _EnvKernelManager(AsyncKernelManager):
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
            text = ctx.redact(response.text)[:300].strip()  # redacted before the cut: no partial secret
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


class SqlConnector:
    """``{"connection": SECRET, "query", "fetch"}``: SQLite (``sqlite:///path``) or PostgreSQL URLs."""

    def check(self, config: Mapping[str, Any]) -> list[str]:
        problems = []
        conn = config.get("connection")
        if not isinstance(conn, str) or not NAME.match(conn):
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
                used = {m.group(1) for m in PG_PARAM.finditer(query)}
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

        pg_query = PG_PARAM.sub(lambda m: f"%({m.group(1)})s", query.replace("%", "%%"))
        used = {m.group(1) for m in PG_PARAM.finditer(query)}
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
            tail = ctx.redact(err.strip())[-500:]  # redacted before the cut: no partial secret
            raise TaskError(f"{argv[0]!r} exited with code {proc.returncode}" + (f": {tail}" if tail else ""),
                            details=details)  # fmt: skip
        mode = config.get("stdout", "ignore")
        if mode == "json":
            try:
                parsed = json.loads(out)
            except ValueError:
                raise TaskError(f"{argv[0]!r} printed no JSON object on stdout (stdout='json'): "
                                f"{ctx.redact(out.strip())[:200]!r}", retryable=False, details=details) from None  # fmt: skip
            if not isinstance(parsed, Mapping):
                raise TaskError(f"{argv[0]!r} printed {type(parsed).__name__} JSON; print an object",
                                retryable=False, details=details)
            return {**parsed, "__details__": details}
        if mode == "text":
            name = ctx.outputs[0] if ctx.outputs else "stdout"
            return {name: out.rstrip("\n"), "__details__": details}
        return {"__details__": details}


#: The built-in connector kinds, which :mod:`procestra.engine.connectors` registers.
BUILTINS: dict[str, Connector] = {"python": PythonConnector(), "notebook": NotebookConnector(), "http": HttpConnector(),
            "sql": SqlConnector(), "shell": ShellConnector()}  # fmt: skip
