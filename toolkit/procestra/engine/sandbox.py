"""Safe evaluation of gateway conditions, mappings and small scripts over case data.

Expressions are parsed with :mod:`ast` and only a whitelist of node types is accepted:
literals, case variables, comparisons, boolean logic, arithmetic, ``in``, ``x if c else y``,
subscripts, field access on dicts (``applicant.income``), a few functions (:data:`FUNCTIONS`)
and a few methods of ``str``, ``dict`` and ``list`` (:data:`METHODS`). The accepted tree is
compiled to nested Python closures; nothing is ever passed to ``eval`` or ``exec``, and no
attribute of an arbitrary object is ever read. Sizes are bounded (text, tree, integers,
strings and lists produced), so a condition cannot exhaust memory or time: there are no
loops, comprehensions, lambdas, imports or dunder names.

Scripts (script tasks) are the same expressions in a few statement forms: ``x = expr``,
``x += expr``, ``if``/``elif``/``else`` and ``pass``.

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
from procestra.engine.exceptions import ConditionError, UnsafeExpressionError
from procestra.engine.sandbox_lib import (
    _ALL_METHODS,
    _COMPARE,
    _KEYWORDS,
    _NUMBERS,
    _SEQUENCES,
    FUNCTIONS,
    LIMITS,
    METHODS,
    Limits,
    _binop,
    _call_method,
    _check_size,
    _contains,
    _Fail,
)

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


# -- the compiler ---------------------------------------------------------------------------------
_Fn = Callable[[Mapping[str, Any]], Any]
_MISSING = object()


def _dunder(name: str) -> bool:
    return name.startswith("__") or name.endswith("__")


class _Compiler:
    """Turns a whitelisted AST into closures; anything else is an UnsafeExpressionError."""

    def __init__(self, text: str, what: str, dialect: str = "python") -> None:
        self.text = text
        self.what = what
        #: "python", or "juel"/"feel" for a translated condition (their comparison and logic rules).
        self.dialect = dialect
        self.variables: set[str] = set()
        self.assigned: set[str] = set()
        self.nodes = 0

    def unsafe(self, node: ast.AST, reason: str) -> UnsafeExpressionError:
        if self.dialect != "python":  # positions are in the translation, not in the author's text
            return UnsafeExpressionError(self.text, reason, what=self.what)
        return UnsafeExpressionError(self.text, reason, what=self.what, line=getattr(node, "lineno", None),
                                     column=(node.col_offset + 1) if hasattr(node, "col_offset") else None)  # fmt: skip

    def count(self, node: ast.AST, depth: int) -> None:
        self.nodes += 1
        if self.nodes > LIMITS.nodes:
            raise ConditionError(self.text, f"too large: more than {LIMITS.nodes} syntax nodes", what=self.what)
        if depth > LIMITS.depth:
            raise ConditionError(self.text, f"nested more than {LIMITS.depth} levels deep", what=self.what)

    # expressions
    def expr(self, node: ast.AST, depth: int = 0) -> _Fn:
        self.count(node, depth)
        d = depth + 1
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            kind = type(node).__name__
            raise self.unsafe(node, _FORBIDDEN.get(kind, f"{kind} expressions are not allowed"))
        fn: _Fn = method(node, d)
        return fn

    def _Constant(self, node: ast.Constant, d: int) -> _Fn:
        value = node.value
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise self.unsafe(node, f"{type(value).__name__} literals are not allowed")
        return lambda data: value

    def _Name(self, node: ast.Name, d: int) -> _Fn:
        name = node.id
        if _dunder(name):
            raise self.unsafe(node, f"the name {name!r} is not allowed (no double-underscore names)")
        if name not in self.assigned:  # scripts: a variable assigned earlier is not read from the case
            self.variables.add(name)
        feel = self.dialect == "feel"  # FEEL: a missing variable is null

        def load(data: Mapping[str, Any]) -> Any:
            value = data.get(name, _MISSING) if isinstance(data, Mapping) else _MISSING
            if value is _MISSING and feel:
                return None
            if value is _MISSING:
                known = ", ".join(sorted(str(k) for k in data)[:20]) if isinstance(data, Mapping) else ""
                raise _Fail(f"unknown variable {name!r} (case data has: {known or 'nothing'})", node)
            return value

        return load

    def _BoolOp(self, node: ast.BoolOp, d: int) -> _Fn:
        parts = [self.expr(v, d) for v in node.values]
        if self.dialect == "feel":
            combine = _lang.feel_and if isinstance(node.op, ast.And) else _lang.feel_or
            return lambda data: combine([functools.partial(p, data) for p in parts])
        if self.dialect == "juel":
            stop = not isinstance(node.op, ast.And)  # the value that ends the evaluation
            return lambda data: next((stop for p in parts if _lang.juel_bool(p(data)) is stop), not stop)
        if isinstance(node.op, ast.And):
            def and_(data: Mapping[str, Any]) -> Any:
                value: Any = True
                for p in parts:
                    value = p(data)
                    if not value:
                        return value
                return value

            return and_

        def or_(data: Mapping[str, Any]) -> Any:
            value: Any = False
            for p in parts:
                value = p(data)
                if value:
                    return value
            return value

        return or_

    def _UnaryOp(self, node: ast.UnaryOp, d: int) -> _Fn:
        operand = self.expr(node.operand, d)
        if isinstance(node.op, ast.Not):
            if self.dialect == "feel":
                return lambda data: _lang.feel_not(operand(data))
            if self.dialect == "juel":
                return lambda data: not _lang.juel_bool(operand(data))
            return lambda data: not operand(data)
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            negate = isinstance(node.op, ast.USub)

            def sign(data: Mapping[str, Any]) -> Any:
                v = operand(data)
                if not isinstance(v, _NUMBERS):
                    raise _Fail(f"unary '{'-' if negate else '+'}' needs a number, not {type(v).__name__}", node)
                return -v if negate else +v

            return sign
        raise self.unsafe(node, "bitwise operators are not allowed")

    def _BinOp(self, node: ast.BinOp, d: int) -> _Fn:
        op = type(node.op)
        if op not in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow):
            raise self.unsafe(node, f"the operator {op.__name__} is not allowed (bitwise and matrix operators)")
        left, right = self.expr(node.left, d), self.expr(node.right, d)
        if op is ast.Mod and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            raise self.unsafe(node, "'%' string formatting is not allowed: use + and str()")

        def binop(data: Mapping[str, Any]) -> Any:
            a, b = left(data), right(data)
            if op is ast.Mod and isinstance(a, str):
                raise _Fail("'%' string formatting is not allowed: use + and str()", node)
            return _binop(op, a, b)

        return binop

    def _Compare(self, node: ast.Compare, d: int) -> _Fn:
        left = self.expr(node.left, d)
        if self.dialect != "python":  # translations compare two operands at a time
            symbol = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
            op_name, right_fn = symbol[type(node.ops[0])], self.expr(node.comparators[0], d)
            cmp = _lang.feel_compare if self.dialect == "feel" else _lang.juel_compare
            return lambda data: cmp(op_name, left(data), right_fn(data))
        ops: list[Callable[[Any, Any], bool]] = []
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            if isinstance(op, (ast.Is, ast.IsNot)):
                pair = (operands[i], operands[i + 1])
                if not any(isinstance(x, ast.Constant) and x.value is None for x in pair):
                    raise self.unsafe(node, "'is' compares with None only (x is None); use == otherwise")
            if isinstance(op, ast.In):
                ops.append(_contains)
            elif isinstance(op, ast.NotIn):
                ops.append(lambda a, b: not _contains(a, b))
            else:
                ops.append(_COMPARE[type(op)])
        rights = [self.expr(c, d) for c in node.comparators]

        def compare(data: Mapping[str, Any]) -> bool:
            a = left(data)
            for op_fn, right in zip(ops, rights):
                b = right(data)
                if not op_fn(a, b):
                    return False
                a = b
            return True

        return compare

    def _IfExp(self, node: ast.IfExp, d: int) -> _Fn:
        test, body, orelse = self.expr(node.test, d), self.expr(node.body, d), self.expr(node.orelse, d)
        if self.dialect == "juel":
            return lambda data: body(data) if _lang.juel_bool(test(data)) else orelse(data)
        return lambda data: body(data) if test(data) else orelse(data)

    def _Attribute(self, node: ast.Attribute, d: int) -> _Fn:
        name = node.attr
        value = self.expr(node.value, d)
        if name.startswith("_"):
            raise self.unsafe(node, f"the attribute {name!r} is not allowed (no names starting with '_')")

        def field_(data: Mapping[str, Any]) -> Any:
            obj = value(data)
            if not isinstance(obj, Mapping):
                raise _Fail(f".{name} reads a field of a dict from the case data, not of a {type(obj).__name__}", node)
            if name not in obj:
                raise _Fail(f"no field {name!r} (fields: {', '.join(sorted(map(str, obj))[:20]) or 'none'})", node)
            return obj[name]

        return field_

    def _Subscript(self, node: ast.Subscript, d: int) -> _Fn:
        value = self.expr(node.value, d)
        if self.dialect != "python":  # a.b and a['b'] of the translations: null when missing
            key, lang = getattr(node.slice, "value", None), self.dialect
            return lambda data: _lang.path(lang, value(data), str(key))
        if isinstance(node.slice, ast.Slice):
            s = node.slice
            parts = [self.expr(p, d) if p is not None else (lambda data: None) for p in (s.lower, s.upper, s.step)]

            def slice_(data: Mapping[str, Any]) -> Any:
                obj = value(data)
                if not isinstance(obj, _SEQUENCES):
                    raise _Fail(f"slicing needs a string, list or tuple, not {type(obj).__name__}", node)
                bounds = [p(data) for p in parts]
                if any(b is not None and not isinstance(b, int) for b in bounds):
                    raise _Fail("slice bounds must be integers", node)
                return obj[slice(*bounds)]

            return slice_
        key = self.expr(node.slice, d)

        def item(data: Mapping[str, Any]) -> Any:
            obj, k = value(data), key(data)
            if isinstance(obj, Mapping):
                if k not in obj:
                    raise _Fail(f"no key {k!r} (keys: {', '.join(sorted(map(str, obj))[:20]) or 'none'})", node)
                return obj[k]
            if isinstance(obj, _SEQUENCES):
                if not isinstance(k, int):
                    raise _Fail(f"an index must be an integer, not {type(k).__name__}", node)
                if not -len(obj) <= k < len(obj):
                    raise _Fail(f"index {k} is out of range (length {len(obj)})", node)
                return obj[k]
            raise _Fail(f"[] needs a dict, list, tuple or string, not {type(obj).__name__}", node)

        return item

    def _List(self, node: ast.List, d: int) -> _Fn:
        items = [self.expr(e, d) for e in node.elts]
        return lambda data: [i(data) for i in items]

    def _Tuple(self, node: ast.Tuple, d: int) -> _Fn:
        items = [self.expr(e, d) for e in node.elts]
        return lambda data: tuple(i(data) for i in items)

    def _Set(self, node: ast.Set, d: int) -> _Fn:
        items = [self.expr(e, d) for e in node.elts]
        return lambda data: {i(data) for i in items}

    def _Dict(self, node: ast.Dict, d: int) -> _Fn:
        if any(k is None for k in node.keys):
            raise self.unsafe(node, "'**' unpacking is not allowed")
        keys = [self.expr(k, d) for k in node.keys if k is not None]
        values = [self.expr(v, d) for v in node.values]
        return lambda data: {k(data): v(data) for k, v in zip(keys, values)}

    def _Call(self, node: ast.Call, d: int) -> _Fn:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise self.unsafe(node, "'*' and '**' arguments are not allowed")
        func = node.func
        if self.dialect == "juel" and isinstance(func, ast.Name) and func.id == "empty" and len(node.args) == 1:
            arg = self.expr(node.args[0], d)
            return lambda data: _lang.juel_empty(arg(data))
        if isinstance(func, ast.Name):
            name = func.id
            if _dunder(name) or name not in FUNCTIONS:
                raise self.unsafe(node, f"calling {name!r} is not allowed (allowed functions: "
                                        f"{', '.join(sorted(FUNCTIONS))}; methods: x.lower(), d.get(k), ...)")
            target: Callable[..., Any] | None = FUNCTIONS[name]
            receiver: _Fn | None = None
        elif isinstance(func, ast.Attribute):
            name = func.attr
            receiver = self.expr(func.value, d)  # first: the innermost forbidden thing is reported
            if name.startswith("_") or name not in _ALL_METHODS:
                raise self.unsafe(node, f"calling the method {name!r} is not allowed (allowed methods: "
                                        f"{', '.join(sorted(_ALL_METHODS))})")
            target = None
        else:
            raise self.unsafe(node, "only named functions and methods can be called")
        allowed_kw = _KEYWORDS.get(name, set())
        for k in node.keywords:
            if k.arg not in allowed_kw:
                raise self.unsafe(node, f"{name}() takes no keyword {k.arg!r}"
                                        + (f" (allowed: {', '.join(sorted(allowed_kw))})" if allowed_kw else ""))
        args = [self.expr(a, d) for a in node.args]
        kwargs = {k.arg: self.expr(k.value, d) for k in node.keywords if k.arg}

        def call(data: Mapping[str, Any]) -> Any:
            values = [a(data) for a in args]
            named = {k: v(data) for k, v in kwargs.items()}
            if target is None:
                assert receiver is not None
                return _call_method(receiver(data), name, values, named)
            return _check_size(target(*values, **named))

        return call

    # statements (scripts)
    def block(self, body: list[ast.stmt], depth: int) -> Callable[[dict[str, Any]], None]:
        steps = [self.stmt(s, depth) for s in body]

        def run(scope: dict[str, Any]) -> None:
            for step in steps:
                step(scope)

        return run

    def stmt(self, node: ast.stmt, depth: int) -> Callable[[dict[str, Any]], None]:
        self.count(node, depth)
        if isinstance(node, ast.Pass):
            return lambda scope: None
        if isinstance(node, ast.Expr):
            fn = self.expr(node.value, depth + 1)

            def expression(scope: dict[str, Any]) -> None:
                fn(scope)

            return expression
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
                raise self.unsafe(node, "assign to one plain variable name, e.g. approved = amount < 1000")
            name = targets[0].id
            if _dunder(name) or name in FUNCTIONS:
                raise self.unsafe(node, f"cannot assign to {name!r}")
            value = self.expr(node.value, depth + 1)
            if isinstance(node, ast.AugAssign):
                if name not in self.assigned:
                    self.variables.add(name)
                op = type(node.op)
                if op not in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow):
                    raise self.unsafe(node, f"the operator {op.__name__} is not allowed")

                def augment(scope: dict[str, Any]) -> None:
                    if name not in scope:
                        raise _Fail(f"unknown variable {name!r}", node)
                    scope[name] = _binop(op, scope[name], value(scope))

                self.assigned.add(name)
                return augment
            self.assigned.add(name)

            def assign(scope: dict[str, Any]) -> None:
                scope[name] = value(scope)

            return assign
        if isinstance(node, ast.If):
            test = self.expr(node.test, depth + 1)
            body, orelse = self.block(node.body, depth + 1), self.block(node.orelse, depth + 1)

            def branch(scope: dict[str, Any]) -> None:
                (body if test(scope) else orelse)(scope)

            return branch
        raise self.unsafe(node, _FORBIDDEN.get(type(node).__name__, f"{type(node).__name__} statements are not "
                                               "allowed (scripts are assignments, if/elif/else and pass)"))


_FORBIDDEN = {
    "Lambda": "lambda functions are not allowed",
    "ListComp": "comprehensions are not allowed", "SetComp": "comprehensions are not allowed",
    "DictComp": "comprehensions are not allowed", "GeneratorExp": "generator expressions are not allowed",
    "NamedExpr": "':=' assignments are not allowed", "Await": "await is not allowed", "Yield": "yield is not allowed",
    "YieldFrom": "yield is not allowed", "JoinedStr": "f-strings are not allowed: use + and str()",
    "FormattedValue": "f-strings are not allowed", "Starred": "'*' unpacking is not allowed",
    "Import": "imports are not allowed", "ImportFrom": "imports are not allowed",
    "For": "loops are not allowed", "While": "loops are not allowed", "AsyncFor": "loops are not allowed",
    "FunctionDef": "defining functions is not allowed", "AsyncFunctionDef": "defining functions is not allowed",
    "ClassDef": "defining classes is not allowed", "With": "with-statements are not allowed",
    "Try": "try-statements are not allowed", "Raise": "raise is not allowed", "Delete": "del is not allowed",
    "Global": "global is not allowed", "Nonlocal": "nonlocal is not allowed", "Return": "return is not allowed",
    "Assert": "assert is not allowed", "Match": "match-statements are not allowed",
}  # fmt: skip


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

    def evaluate(self, data: Mapping[str, Any]) -> Any:
        """The value of the expression over ``data`` (a script: the dict of assigned variables)."""
        if self.mode == "script":
            scope = dict(data)
            self._run(scope)
            return {k: scope[k] for k in self.assigned if k in scope}
        if self.language != "python":
            return self._run(data, final=functools.partial(_lang.condition_result, self.language))
        return self._run(data)

    def _run(self, data: Any, final: Callable[[Any], Any] | None = None) -> Any:
        try:
            value = self._fn(data)
            return final(value) if final is not None else value
        except _lang.SemanticsError as exc:
            raise ConditionError(self.text, str(exc), what=self.what) from None
        except _Fail as exc:
            offset = getattr(exc.node, "col_offset", None)
            raise ConditionError(self.text, exc.reason, what=self.what, line=getattr(exc.node, "lineno", None),
                                 column=offset + 1 if offset is not None else None) from None  # fmt: skip
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError) as exc:
            raise ConditionError(self.text, f"{type(exc).__name__}: {exc}", what=self.what) from None
        except RecursionError:
            raise ConditionError(self.text, "nested too deeply to evaluate", what=self.what) from None


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
        if what != "condition":
            raise ConditionError(text, f"{language.upper()} is supported in conditions only; write the {what} "
                                       "in the sandbox's Python", what=what)  # fmt: skip
        python = _lang.to_python(text).python
        tree = _parse(python, "eval", what)
    else:
        tree = _parse(text, "eval" if mode == "expression" else "exec", what)
    compiler = _Compiler(text, what, language)
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
    return Expression(text, mode, frozenset(compiler.variables), frozenset(compiler.assigned), what, fn, language)


def compile_expression(text: str, *, what: str = "condition") -> Expression:
    """Check ``text`` as an expression and compile it; :class:`ConditionError` says what is wrong and where.

    ``what`` names the expression in messages ("condition", "input mapping", "timer"...).
    """
    return _compiled(text, "expression", what)


def compile_script(text: str, *, what: str = "script") -> Expression:
    """Check ``text`` as a script (assignments, if/elif/else, pass) and compile it."""
    return _compiled(text, "script", what)


def evaluate(expression: str | Expression, data: Mapping[str, Any], *, what: str = "condition") -> Any:
    """The value of ``expression`` over the case ``data``; :class:`ConditionError` on any failure."""
    expr = expression if isinstance(expression, Expression) else compile_expression(expression, what=what)
    return expr.evaluate(data)


def execute(script: str | Expression, data: MutableMapping[str, Any]) -> dict[str, Any]:
    """Run a script over ``data``, store what it assigns into ``data``, and return those variables."""
    expr = script if isinstance(script, Expression) else compile_script(script)
    if expr.mode != "script":
        raise ConditionError(expr.text, "is an expression, not a script", what=expr.what)
    scope = dict(data)
    expr._run(scope)
    changed = {k: scope[k] for k in expr.assigned if k in scope}
    data.update(changed)
    return changed


_ISO_DURATION = re.compile(r"^(R\d*/)?P(?=\d|T\d)(\d+(\.\d+)?[YMWD])*(T(\d+(\.\d+)?[HMS])+)?$", re.IGNORECASE)
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def is_iso_literal(text: str) -> bool:
    """Whether ``text`` is a bare ISO 8601 duration (``PT4H``), cycle (``R3/PT1H``) or date-time."""
    t = text.strip()
    return bool(_ISO_DURATION.match(t) or _ISO_DATETIME.match(t))


# -- SpiffWorkflow adapter ----------------------------------------------------------------------------
def _spiff_engine_class() -> type:
    from SpiffWorkflow.bpmn.script_engine import (
        BasePythonScriptEngineEnvironment,
        PythonScriptEngine,
    )

    class SandboxEnvironment(BasePythonScriptEngineEnvironment):  # type: ignore[misc]
        """SpiffWorkflow's environment, evaluating through the sandbox instead of eval/exec."""

        def evaluate(self, expression: str, context: Mapping[str, Any], external_context: Any = None) -> Any:
            text = str(expression)
            if is_iso_literal(text):  # timer definitions as modelers write them: PT4H, 2026-01-01T09:00
                return text.strip()
            scope = {**(external_context or {}), **context} if external_context else context
            return evaluate(text, scope)

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
                return self.environment.evaluate(expression, task.data, external_context)
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
