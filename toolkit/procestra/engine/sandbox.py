"""Safe evaluation of gateway conditions, mappings and scripts over case data.

Expressions are parsed with :mod:`ast` and only a whitelist of node types is accepted:
literals, case variables, comparisons, boolean logic, arithmetic, ``in``, ``x if c else y``,
subscripts and slices, field access on dicts (``applicant.income``), comprehensions, f-strings,
a few functions (:data:`FUNCTIONS`), methods of ``str``, ``dict``, ``list``, dates and decimals
(:data:`METHODS`), and the modules ``datetime``, ``timedelta``, ``math``, ``re``, ``json`` and
``decimal`` as namespaces of chosen members (:mod:`.sandbox_modules`). The accepted tree is
compiled to nested Python closures (:mod:`.sandbox_compiler`); nothing is ever passed to
``eval`` or ``exec``, and no attribute of an arbitrary object is ever read: no imports,
``try``, dunder names, ``getattr``/``eval``/``open``.

Scripts (script tasks) add statements: assignment (also ``a, b = ...``, ``d[k] = v`` and ``+=``),
``if``/``elif``/``else``, ``for`` and ``while`` (with ``else``), ``break``, ``continue``,
``pass``, ``del`` and functions (``def``, ``lambda``, ``return``: :mod:`.sandbox_functions`).
Every variable a script assigns is stored in the case, except names starting with ``_``
(working values) and functions; what is stored must be JSON.

Every evaluation is bounded (:mod:`.sandbox_lib`): a step limit over loop iterations and
comprehension items, a wall-clock limit, and size checks before allocation. Conditions in
JUEL (``${...}``) and FEEL (``=...``) are translated first (:mod:`.expressions`).

Errors are :class:`ConditionError` (with :class:`UnsafeExpressionError` for a forbidden
construct), naming the expression, the position and what to change.

>>> from procestra.engine.sandbox import evaluate, compile_expression
>>> evaluate("amount < 10_000 and applicant.country in ('NL', 'BE')",
...          {"amount": 5000, "applicant": {"country": "NL"}})
True
>>> compile_expression("amount >= limit").variables
frozenset({'amount', 'limit'})

:class:`SandboxScriptEngine` plugs the sandbox into SpiffWorkflow, so the BPMN engine
evaluates conditions, timer expressions and scripts here instead of with ``eval``.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from procestra.engine import expressions as _lang
from procestra.engine import sandbox_lib as _sl
from procestra.engine.exceptions import ConditionError, UnsafeExpressionError
from procestra.engine.sandbox_compiler import _FORBIDDEN
from procestra.engine.sandbox_functions import _Functions, defined_functions
from procestra.engine.sandbox_lib import FUNCTIONS, LIMITS, METHODS, Limits, _binop, _Fail

if TYPE_CHECKING:  # built on first use by __getattr__ (SpiffWorkflow takes ~0.2 s to import)
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine

    class SandboxScriptEngine(PythonScriptEngine):  # type: ignore[misc]
        def __init__(self) -> None: ...

__all__ = [
    "FUNCTIONS",
    "LIMITS",
    "METHODS",
    "ConditionError",
    "Expression",
    "Limits",
    "SandboxScriptEngine",
    "UnsafeExpressionError",
    "compile_expression",
    "compile_script",
    "evaluate",
    "execute",
    "is_iso_literal",
]


# -- scripts ---------------------------------------------------------------------------------------
class _Break(Exception):
    """``break`` inside a loop (scripts have no ``try``, so nothing else can catch it)."""


class _Continue(Exception):
    """``continue`` inside a loop."""


_Step = Callable[[dict[str, Any]], None]


def _go_on(body: _Step, scope: dict[str, Any]) -> bool:
    """Run one pass of a loop's body: False if it ended with ``break``."""
    try:
        body(scope)
    except _Continue:
        pass
    except _Break:
        return False
    return True

_AUGMENTED = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


class _Script(_Functions):
    """The expression compiler plus the statements of scripts: assignments (also to tuples, items and with
    ``+=``), ``if``/``elif``/``else``, ``for`` and ``while`` (counted against the step limit), ``break``,
    ``continue``, ``pass``, ``del`` and functions (:mod:`.sandbox_functions`)."""

    def block(self, body: list[ast.stmt], depth: int) -> _Step:
        steps = [self.stmt(s, depth) for s in body]

        def run(scope: dict[str, Any]) -> None:
            budget = _sl.budget()
            for step in steps:
                budget.clock()  # statements without loops can be slow too (a sort of a large list)
                step(scope)

        return run

    def stmt(self, node: ast.stmt, depth: int) -> _Step:
        self.count(node, depth)
        method = getattr(self, f"_stmt_{type(node).__name__}", None)
        if method is None:
            raise self.unsafe(node, _FORBIDDEN.get(type(node).__name__, f"{type(node).__name__} statements are not "
                                                   "allowed (scripts are assignments, if, for, while and pass)"))
        step: _Step = method(node, depth + 1)
        return step

    def _stmt_Pass(self, node: ast.Pass, d: int) -> _Step:
        return lambda scope: None

    def _stmt_Expr(self, node: ast.Expr, d: int) -> _Step:
        fn = self.expr(node.value, d)

        def expression(scope: dict[str, Any]) -> None:
            fn(scope)

        return expression

    def _stmt_Assign(self, node: ast.Assign, d: int) -> _Step:
        value = self.expr(node.value, d)  # before the targets: x = x + 1 reads the case's x
        targets = [self.target(t) for t in node.targets]

        def assign(scope: dict[str, Any]) -> None:
            v = value(scope)
            for t in targets:
                t(scope, v)

        return assign

    def _stmt_AnnAssign(self, node: ast.AnnAssign, d: int) -> _Step:
        if node.value is None or not isinstance(node.target, ast.Name):
            raise self.unsafe(node, "annotate only an assignment to a name, e.g. total: int = 0")
        before = set(self.variables)
        self.expr(node.annotation, d)  # checked like any expression (issue 14: no code hides in an annotation)
        self.variables = before  # but never evaluated, so it reads nothing
        value, target = self.expr(node.value, d), self.target(node.target)
        return lambda scope: target(scope, value(scope))

    def _stmt_AugAssign(self, node: ast.AugAssign, d: int) -> _Step:
        if not isinstance(node.target, ast.Name):
            raise self.unsafe(node, "'+=' and the like work on a variable name only")
        name, op = node.target.id, type(node.op)
        if op not in _AUGMENTED:
            raise self.unsafe(node, f"the operator {op.__name__} is not allowed")
        local = any(name in n for n in (*self.locals, *self.scopes))
        if not local and name not in self.assigned and name not in self.temporaries:
            (self.late if self.scopes else self.variables).add(name)
        value, target = self.expr(node.value, d), self.target(node.target)

        def augment(scope: dict[str, Any]) -> None:
            if name not in scope:
                raise _Fail(f"unknown variable {name!r}", node)
            target(scope, _binop(op, scope[name], value(scope)))

        return augment

    def _stmt_If(self, node: ast.If, d: int) -> _Step:
        test = self.expr(node.test, d)
        body, orelse = self.block(node.body, d), self.block(node.orelse, d)

        def branch(scope: dict[str, Any]) -> None:
            (body if test(scope) else orelse)(scope)

        return branch

    def _loop_body(self, node: ast.For | ast.While, d: int) -> tuple[_Step, _Step]:
        self.loops += 1
        body = self.block(node.body, d)
        self.loops -= 1
        return body, self.block(node.orelse, d)

    def _stmt_For(self, node: ast.For, d: int) -> _Step:
        items = self.expr(node.iter, d)
        target = self.target(node.target)
        body, orelse = self._loop_body(node, d)

        def loop(scope: dict[str, Any]) -> None:
            budget = _sl.budget()
            for item in _sl.iterate(items(scope)):
                budget.tick()
                target(scope, item)
                if not _go_on(body, scope):
                    return
            orelse(scope)

        return loop

    def _stmt_While(self, node: ast.While, d: int) -> _Step:
        test = self.expr(node.test, d)
        body, orelse = self._loop_body(node, d)

        def loop(scope: dict[str, Any]) -> None:
            budget = _sl.budget()
            while test(scope):
                budget.tick()
                if not _go_on(body, scope):
                    return
            orelse(scope)

        return loop

    def _jump(self, node: ast.stmt, exc: type[Exception]) -> _Step:
        if not self.loops:
            raise self.unsafe(node, f"'{type(node).__name__.lower()}' outside a loop")

        def jump(scope: dict[str, Any]) -> None:
            raise exc

        return jump

    def _stmt_Break(self, node: ast.Break, d: int) -> _Step:
        return self._jump(node, _Break)

    def _stmt_Continue(self, node: ast.Continue, d: int) -> _Step:
        return self._jump(node, _Continue)


# -- public API ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expression:
    """A checked expression or script, ready to run over case data many times."""

    text: str
    #: "expression" or "script".
    mode: str
    #: Case variables it reads (top-level names).
    variables: frozenset[str]
    #: Variables a script assigns (empty for expressions).
    assigned: frozenset[str] = frozenset()
    what: str = "condition"
    _fn: Callable[[Any], Any] = field(default=lambda data: None, repr=False, compare=False)
    #: The language the author wrote: "python", or "juel"/"feel" (translated, see :mod:`.expressions`).
    language: str = "python"
    #: Whether a script changes items in place (``d[k] = v``): then every variable is checked to be JSON.
    mutates: bool = False

    def evaluate(self, data: Mapping[str, Any]) -> Any:
        """The value of the expression over ``data`` (a script: the dict of assigned variables)."""
        if self.mode == "script":
            scope = dict(data)
            stored: dict[str, Any] = self._run(scope, final=lambda _: self._stored(scope))
            return stored
        if self.language != "python" and self.boolean:  # a JUEL/FEEL condition must give true or false
            return self._run(data, final=functools.partial(_lang.condition_result, self.language))
        return self._run(data)

    @property
    def boolean(self) -> bool:
        """Whether the expression is a condition (its value decides a path), not a value (a cardinality, a timer)."""
        return self.what == "condition" or self.what.endswith(" condition")

    def _stored(self, scope: Mapping[str, Any]) -> dict[str, Any]:
        """What the script assigned, checked to be case data (JSON values of bounded weight)."""
        out = {k: scope[k] for k in self.assigned if k in scope and not isinstance(scope[k], _sl.ScriptCallable)}
        checked = {k: v for k, v in scope.items() if not k.startswith("_")} if self.mutates else out
        for name, value in checked.items():
            if type(value) in _JSON_SCALARS or isinstance(value, _sl.ScriptCallable):
                continue
            _sl.guard(value)
            bad = _not_json(value)
            if bad is not None:
                raise _Fail(f"{name!r} would hold {bad}, but case data is JSON (text, numbers, true/false, lists and "
                            "objects with text keys): store str(x), x.isoformat() or float(x) instead")  # fmt: skip
        return out

    def _run(self, data: Any, final: Callable[[Any], Any] | None = None) -> Any:
        token = _sl.start_budget()
        try:
            value = self._fn(data)
            return final(value) if final is not None else value
        except _lang.SemanticsError as exc:
            raise ConditionError(self.text, str(exc), what=self.what) from None
        except _Fail as exc:
            offset = getattr(exc.node, "col_offset", None)
            raise ConditionError(self.text, exc.reason, what=self.what, line=getattr(exc.node, "lineno", None),
                                 column=offset + 1 if offset is not None else None) from None  # fmt: skip
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError, OSError,
                re.error) as exc:  # fmt: skip
            raise ConditionError(self.text, f"{type(exc).__name__}: {exc}", what=self.what) from None
        except RecursionError:
            reason = "nested too deeply to evaluate (function calls within calls, or nested values)"
            raise ConditionError(self.text, reason, what=self.what) from None
        except MemoryError:
            raise ConditionError(self.text, "ran out of memory", what=self.what) from None
        finally:
            _sl._BUDGET.reset(token)


_JSON_SCALARS = {type(None), bool, int, float, str}


def _not_json(value: Any) -> str | None:
    """What in ``value`` is not a JSON value (its type), or None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if v is None or isinstance(v, (bool, int, float, str)):
            continue
        if isinstance(v, (list, tuple)):
            if not set(map(type, v)) <= _JSON_SCALARS:  # flat lists of numbers and text: checked in C
                stack.extend(v)
        elif isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return "an object with keys that are not text"
            stack.extend(v.values())
        else:
            return f"a {type(v).__name__}"
    return None


def _parse(text: Any, mode: str, what: str) -> ast.AST:
    if not isinstance(text, str):
        raise ConditionError(repr(text), f"must be a string, not {type(text).__name__}", what=what)
    if not text.strip():
        raise ConditionError(text, "is empty", what=what)
    if len(text) > LIMITS.text:
        raise ConditionError(text, f"is longer than {LIMITS.text:,} characters", what=what)
    source = text.strip() if mode == "eval" else text
    try:
        return ast.parse(source, mode=mode)
    except SyntaxError as exc:
        line, column = exc.lineno, exc.offset
        if not column:  # Python reports offset 0 for an expression that ends too early
            line, column = len(source.splitlines()) or 1, len(source.splitlines()[-1] if source else "") + 1
            reason = "does not parse: it ends too early (a missing operand or bracket?)"
        else:
            reason = f"does not parse: {exc.msg}"
        raise ConditionError(text, reason, what=what, line=line, column=column) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ConditionError(text, f"does not parse: {type(exc).__name__}", what=what) from None


@functools.lru_cache(maxsize=4096)
def _compiled(text: str, mode: str, what: str) -> Expression:
    language = _lang.language_of(text) if isinstance(text, str) and mode == "expression" else "python"
    if language != "python":  # JUEL / FEEL: translated, then compiled with the language's rules
        python = _lang.to_python(text).python
        tree = _parse(python, "eval", what)
    else:
        tree = _parse(text, "eval" if mode == "expression" else "exec", what)
    compiler = _Script(text, what, language)
    if mode == "script":
        compiler.scripting, compiler.function_names = True, defined_functions(tree)
    try:
        if mode == "expression":
            assert isinstance(tree, ast.Expression)
            fn: Callable[[Any], Any] = compiler.expr(tree.body)
        else:
            assert isinstance(tree, ast.Module)
            if len(tree.body) > LIMITS.statements:
                raise ConditionError(text, f"has more than {LIMITS.statements} statements", what=what)
            fn = compiler.block(tree.body, 0)
    except RecursionError:
        raise ConditionError(text, "nested too deeply", what=what) from None
    compiler.variables |= compiler.late - compiler.assigned - compiler.temporaries
    return Expression(text, mode, frozenset(compiler.variables), frozenset(compiler.assigned), what, fn, language,
                      compiler.mutates)


def compile_expression(text: str, *, what: str = "condition") -> Expression:
    """Check ``text`` as an expression and compile it; :class:`ConditionError` says what is wrong and where.

    ``what`` names the expression in messages ("condition", "input mapping", "timer"...).
    """
    return _compiled(text, "expression", what)


def compile_script(text: str, *, what: str = "script") -> Expression:
    """Check ``text`` as a script (assignments, if, for, while, pass) and compile it."""
    return _compiled(text, "script", what)


def evaluate(expression: str | Expression, data: Mapping[str, Any], *, what: str = "condition") -> Any:
    """The value of ``expression`` over the case ``data``; :class:`ConditionError` on any failure."""
    expr = expression if isinstance(expression, Expression) else compile_expression(expression, what=what)
    return expr.evaluate(data)


def execute(script: str | Expression, data: MutableMapping[str, Any]) -> dict[str, Any]:
    """Run a script over ``data``, store what it assigns into ``data``, and return those variables.

    A variable the script deletes (``del x``) or binds to a function leaves ``data``, as SpiffWorkflow's
    script engine drops callables from the task data."""
    expr = script if isinstance(script, Expression) else compile_script(script)
    if expr.mode != "script":
        raise ConditionError(expr.text, "is an expression, not a script", what=expr.what)
    scope = dict(data)
    changed: dict[str, Any] = expr._run(scope, final=lambda _: expr._stored(scope))
    for gone in [k for k in data if k not in scope or isinstance(scope[k], _sl.ScriptCallable)]:
        del data[gone]
    data.update(changed)
    return changed


_ISO_DURATION = re.compile(r"^(R\d*/)?P(?=\d|T\d)(\d+(\.\d+)?[YMWD])*(T(\d+(\.\d+)?[HMS])+)?$", re.IGNORECASE)
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def is_iso_literal(text: str) -> bool:
    """Whether ``text`` is a bare ISO 8601 duration (``PT4H``), cycle (``R3/PT1H``) or date-time."""
    t = text.strip()
    return bool(_ISO_DURATION.match(t) or _ISO_DATETIME.match(t))


# -- SpiffWorkflow adapter ----------------------------------------------------------------------------
def _purpose(spec: Any, expression: Any) -> str:
    """What SpiffWorkflow evaluates ``expression`` of ``spec`` for: a multi-instance cardinality or a timer is
    a value; anything else (flow, loop, completion and conditional-event conditions) a condition."""
    if expression is not None and expression == getattr(spec, "cardinality", None):
        return "loop cardinality"
    definition = getattr(spec, "event_definition", None)
    if definition is not None and expression == getattr(definition, "expression", None):
        kind = type(definition).__name__
        if "Conditional" not in kind:
            return "timer" if any(t in kind for t in ("Timer", "Time", "Duration", "Cycle")) else "event payload"
    return "condition"


def _spiff_engine_class() -> type:
    from SpiffWorkflow.bpmn.script_engine import (
        BasePythonScriptEngineEnvironment,
        PythonScriptEngine,
    )

    class SandboxEnvironment(BasePythonScriptEngineEnvironment):  # type: ignore[misc]
        """SpiffWorkflow's environment, evaluating through the sandbox instead of eval/exec."""

        def evaluate(self, expression: str, context: Mapping[str, Any], external_context: Any = None) -> Any:
            return self.evaluate_as(expression, context, external_context)

        def evaluate_as(self, expression: str, context: Mapping[str, Any], external_context: Any = None,
                        what: str = "condition") -> Any:  # fmt: skip
            text = str(expression)
            if what == "timer" and is_iso_literal(text):  # timers as modelers write them: PT4H, 2026-01-01T09:00
                return text.strip()  # (a condition 'PT0S' is a name, never a truthy text)
            scope = {**(external_context or {}), **context} if external_context else context
            return evaluate(text, scope, what=what)

        def execute(self, script: str, context: dict[str, Any], external_context: Any = None) -> bool:
            execute(str(script), context)
            return True

        def call_service(self, context: Any, **kwargs: Any) -> Any:
            raise ConditionError("service call", "service tasks are run by Procestra's connectors, not by the "
                                 "script engine", what="service task")

    class SandboxScriptEngine(PythonScriptEngine):  # type: ignore[misc]
        """A SpiffWorkflow script engine that never calls ``eval``: conditions, timers and scripts
        run in :mod:`procestra.sandbox`; failures raise :class:`ConditionError` naming the element.

        >>> workflow = BpmnWorkflow(spec, script_engine=SandboxScriptEngine())
        """

        def __init__(self) -> None:
            super().__init__(environment=SandboxEnvironment())

        def validate(self, expression: str) -> None:
            if not is_iso_literal(str(expression)):
                compile_expression(str(expression))

        def evaluate(self, task: Any, expression: str, external_context: Any = None) -> Any:
            try:
                return self.environment.evaluate_as(expression, task.data, external_context,
                                                    _purpose(task.task_spec, expression))
            except ConditionError as exc:
                raise exc.at(getattr(task.task_spec, "bpmn_id", None) or task.task_spec.name) from None

        def execute(self, task: Any, script: str, external_context: Any = None) -> bool:
            try:
                return bool(self.environment.execute(script, task.data, external_context))
            except ConditionError as exc:
                raise exc.at(getattr(task.task_spec, "bpmn_id", None) or task.task_spec.name) from None

    for cls in (SandboxScriptEngine, SandboxEnvironment):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return SandboxScriptEngine


@functools.cache
def _engine_class() -> type:
    return _spiff_engine_class()


def __getattr__(name: str) -> Any:
    # SpiffWorkflow takes ~0.2 s to import: build the adapter class on first use only.
    if name == "SandboxScriptEngine":
        return _engine_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
