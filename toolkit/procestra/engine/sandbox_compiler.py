"""The sandbox's compiler for expressions: a whitelisted Python AST turned into nested closures.

:mod:`procestra.engine.sandbox` adds the statements of scripts and is the public face;
values, limits and budgets are in :mod:`procestra.engine.sandbox_lib`, the modules scripts
may name in :mod:`procestra.engine.sandbox_modules`.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from datetime import time as clock
from typing import Any

from procestra.engine import expressions as _lang
from procestra.engine import sandbox_lib as _sl
from procestra.engine.exceptions import ConditionError, UnsafeExpressionError
from procestra.engine.sandbox_lib import (
    _ALL_METHODS,
    _COMPARE,
    _KEYWORDS,
    _NUMBERS,
    _SEQUENCES,
    ATTRIBUTES,
    FUNCTIONS,
    LIMITS,
    METHODS,
    _binop,
    _call_method,
    _check_size,
    _contains,
    _Fail,
)
from procestra.engine.sandbox_modules import NAMES, Function, Namespace

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
        #: Names bound by the comprehensions being compiled (not case data).
        self.locals: list[set[str]] = []
        #: Script variables named with a leading '_': working values, not stored in the case.
        self.temporaries: set[str] = set()
        self.variables: set[str] = set()
        self.assigned: set[str] = set()
        #: Local names of the script functions being compiled, innermost last (not case data).
        self.scopes: list[set[str]] = []
        #: Names the script binds to its own functions (the only other names it may call).
        self.function_names: frozenset[str] = frozenset()
        #: Variables functions read: case data unless the script assigns them (before a call, or it fails then).
        self.late: set[str] = set()
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
        local = any(name in names for names in (*self.locals, *self.scopes))
        # scripts: a variable assigned earlier is not read from the case; modules are not case data
        if not local and name not in self.assigned and name not in self.temporaries and name not in NAMES:
            (self.late if self.scopes else self.variables).add(name)
        feel = self.dialect == "feel"  # FEEL: a missing variable is null
        module = NAMES.get(name, _MISSING) if self.dialect == "python" else _MISSING

        def load(data: Mapping[str, Any]) -> Any:
            value = data.get(name, module) if isinstance(data, Mapping) else module
            if value is _MISSING and feel:
                return None
            if value is _MISSING:
                known = ", ".join(sorted(str(k) for k in data)[:20]) if isinstance(data, Mapping) else ""
                raise _Fail(f"unknown variable {name!r} (case data has: {known or 'nothing'})", node)
            return value

        return load

    def target(self, node: ast.AST, local: set[str] | None = None) -> Callable[[Any, Any], None]:
        """A function storing a value into ``node`` (a name or a tuple/list of them) in a scope."""
        if isinstance(node, ast.Name):
            name = node.id
            if _dunder(name) or name in FUNCTIONS or name in NAMES:
                raise self.unsafe(node, f"cannot assign to {name!r}")
            if local is not None:
                local.add(name)
            elif self.scopes:
                pass  # a local of the function being compiled
            elif name.startswith("_"):
                self.temporaries.add(name)
            else:
                self.assigned.add(name)

            def store(scope: Any, value: Any) -> None:
                scope[name] = value

            return store
        if isinstance(node, (ast.Tuple, ast.List)):
            if any(isinstance(e, ast.Starred) for e in node.elts):
                raise self.unsafe(node, "'*' in unpacking is not allowed: unpack into as many names as values")
            parts = [self.target(e, local) for e in node.elts]

            def unpack(scope: Any, value: Any) -> None:
                values = list(value) if isinstance(value, (list, tuple, str, dict, range)) else None
                if values is None:
                    raise _Fail(f"cannot unpack {type(value).__name__} into {len(parts)} names", node)
                if len(values) != len(parts):
                    raise _Fail(f"cannot unpack {len(values)} values into {len(parts)} names", node)
                for part, v in zip(parts, values):
                    part(scope, v)

            return unpack
        raise self.unsafe(node, "assign to variable names or tuples of them (a, b = ...); not to items or fields")

    # comprehensions: the first iterable in the enclosing scope, the rest with the loop names bound
    def comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp, d: int, *elements: ast.expr
    ) -> Callable[[Mapping[str, Any]], Iterator[list[Any]]]:
        first = self.expr(node.generators[0].iter, d)
        names: set[str] = set()
        self.locals.append(names)
        try:
            levels = []
            for i, g in enumerate(node.generators):
                if g.is_async:
                    raise self.unsafe(node, "async comprehensions are not allowed")
                it = first if i == 0 else self.expr(g.iter, d)
                levels.append((it, self.target(g.target, names), [self.expr(c, d) for c in g.ifs]))
            elts = [self.expr(e, d) for e in elements]
        finally:
            self.locals.pop()

        def run(data: Mapping[str, Any]) -> Iterator[list[Any]]:
            budget = _sl.budget()
            scope: ChainMap[str, Any] = ChainMap({}, data)  # type: ignore[arg-type]

            def level(n: int) -> Iterator[list[Any]]:
                if n == len(levels):
                    yield [e(scope) for e in elts]
                    return
                it, store, conds = levels[n]
                for item in _sl.iterate(it(scope)):
                    budget.tick()
                    store(scope.maps[0], item)
                    if all(c(scope) for c in conds):
                        yield from level(n + 1)

            return level(0)

        return run

    def _ListComp(self, node: ast.ListComp, d: int) -> _Fn:
        run = self.comprehension(node, d, node.elt)
        return lambda data: _check_size([v[0] for v in run(data)])

    def _SetComp(self, node: ast.SetComp, d: int) -> _Fn:
        run = self.comprehension(node, d, node.elt)
        return lambda data: _sl._set([v[0] for v in run(data)])

    def _DictComp(self, node: ast.DictComp, d: int) -> _Fn:
        run = self.comprehension(node, d, node.key, node.value)
        return lambda data: _sl._dict([(k, v) for k, v in run(data)])

    def generator(self, node: ast.GeneratorExp, d: int) -> _Fn:
        run = self.comprehension(node, d, node.elt)
        return lambda data: (v[0] for v in run(data))

    # f-strings
    def _JoinedStr(self, node: ast.JoinedStr, d: int) -> _Fn:
        parts: list[_Fn] = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(functools.partial(_constant, str(v.value)))
            elif isinstance(v, ast.FormattedValue):
                parts.append(self.formatted(v, d))
            else:
                raise self.unsafe(v, "unexpected part of an f-string")

        def join(data: Mapping[str, Any]) -> str:
            out = []
            size = 0
            for p in parts:
                piece = p(data)
                size += len(piece)
                if size > LIMITS.sequence:
                    raise _Fail(f"an f-string grew beyond {LIMITS.sequence:,} characters", node)
                out.append(piece)
            text: str = _check_size("".join(out))
            return text

        return join

    def formatted(self, node: ast.FormattedValue, d: int) -> _Fn:
        value = self.expr(node.value, d)
        spec = ""
        if node.format_spec is not None:
            pieces = node.format_spec.values if isinstance(node.format_spec, ast.JoinedStr) else []
            if not all(isinstance(x, ast.Constant) for x in pieces):
                raise self.unsafe(node, "format specs computed at run time ({x:{width}}) are not allowed")
            spec = "".join(str(x.value) for x in pieces if isinstance(x, ast.Constant))
        numbers = [int(n) for n in re.findall(r"\d+", re.sub(r"%[a-zA-Z]", "", spec))]
        if any(n > LIMITS.format_width for n in numbers):
            raise self.unsafe(node, f"a width or precision above {LIMITS.format_width:,} in a format spec")
        conversion = node.conversion

        def fmt(data: Mapping[str, Any]) -> str:
            v = value(data)
            _sl._text(v)
            if isinstance(v, (date, clock)):
                _sl.strftime_format(spec)
            if conversion == ord("r"):
                v = repr(v)
            elif conversion == ord("a"):
                v = ascii(v)
            elif conversion == ord("s"):
                v = str(v)
            return format(v, spec)

        return fmt

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
            if isinstance(obj, Namespace):
                if name not in obj.members:
                    raise _Fail(f"{obj.name} has no allowed member {name!r} (allowed: "
                                f"{', '.join(sorted(obj.members)) or 'none'})", node)  # fmt: skip
                return obj.members[name]
            for typ, names in ATTRIBUTES.items():
                if isinstance(obj, typ) and name in names:
                    return getattr(obj, name)
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
                _sl.guard(k)
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
        return lambda data: _check_size([i(data) for i in items])

    def _Tuple(self, node: ast.Tuple, d: int) -> _Fn:
        items = [self.expr(e, d) for e in node.elts]
        return lambda data: tuple(i(data) for i in items)

    def _Set(self, node: ast.Set, d: int) -> _Fn:
        items = [self.expr(e, d) for e in node.elts]
        return lambda data: _sl._set([i(data) for i in items])

    def _Dict(self, node: ast.Dict, d: int) -> _Fn:
        if any(k is None for k in node.keys):
            raise self.unsafe(node, "'**' unpacking is not allowed")
        keys = [self.expr(k, d) for k in node.keys if k is not None]
        values = [self.expr(v, d) for v in node.values]
        return lambda data: _sl._dict([(k(data), v(data)) for k, v in zip(keys, values)])

    def _Call(self, node: ast.Call, d: int) -> _Fn:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise self.unsafe(node, "'*' and '**' arguments are not allowed")
        func = node.func
        if self.dialect == "juel" and isinstance(func, ast.Name) and func.id == "empty" and len(node.args) == 1:
            arg = self.expr(node.args[0], d)
            return lambda data: _lang.juel_empty(arg(data))
        receiver: _Fn | None = None
        target: Callable[..., Any] | None = None
        if isinstance(func, ast.Name):
            name = func.id
            if name == "isinstance" and len(node.args) == 2:
                return self.isinstance_(node, d)
            if name in ("locals", "vars", "globals") and not node.args and not node.keywords and \
                    not any(name in n for n in self.locals):  # 'x' in locals(): a copy of the variables in scope
                return lambda data: dict(data.items()) if isinstance(data, Mapping) else {}
            if name in self.function_names:
                receiver = self.expr(func, d)  # a function the script defines: checked to be one when called
            elif name in NAMES and not any(name in n for n in self.locals):
                receiver = self.expr(func, d)  # timedelta(days=1), Decimal('1.5'): the namespace's constructor
            elif _dunder(name) or name not in FUNCTIONS:
                raise self.unsafe(node, f"calling {name!r} is not allowed (allowed functions: "
                                        f"{', '.join(sorted(FUNCTIONS))}; modules: {', '.join(sorted(NAMES))}; "
                                        "methods: x.lower(), d.get(k), ...)")  # fmt: skip
            else:
                target = FUNCTIONS[name]
        elif isinstance(func, ast.Attribute):
            name = func.attr
            receiver = self.expr(func.value, d)  # first: the innermost forbidden thing is reported
            if name.startswith("_") or name not in _method_names():
                raise self.unsafe(node, f"calling the method {name!r} is not allowed (allowed methods: "
                                        f"{', '.join(sorted(_ALL_METHODS))})")  # fmt: skip
        else:
            raise self.unsafe(node, "only named functions and methods can be called")
        if target is not None:
            allowed_kw = _KEYWORDS.get(name, set())
            for k in node.keywords:
                if k.arg not in allowed_kw:
                    raise self.unsafe(
                        node,
                        f"{name}() takes no keyword {k.arg!r}"
                        + (f" (allowed: {', '.join(sorted(allowed_kw))})" if allowed_kw else ""),
                    )
        if any(isinstance(a, ast.GeneratorExp) for a in node.args) and len(node.args) + len(node.keywords) != 1:
            raise self.unsafe(node, "a generator expression must be the only argument: sum(x for x in xs)")
        args = [self.generator(a, d) if isinstance(a, ast.GeneratorExp) else self.expr(a, d) for a in node.args]
        kwargs = {k.arg: self.expr(k.value, d) for k in node.keywords if k.arg}
        attr = isinstance(func, ast.Attribute)

        def call(data: Mapping[str, Any]) -> Any:
            values = [a(data) for a in args]
            named = {k: v(data) for k, v in kwargs.items()}
            if target is not None:
                return _check_size(target(*values, **named))
            assert receiver is not None
            obj = receiver(data)
            if isinstance(obj, Namespace):
                fn = obj.members.get(name) if attr else obj.call
                if isinstance(fn, Namespace):
                    fn = fn.call
                if not isinstance(fn, Function):
                    raise _Fail(f"{obj.name}{'.' + name if attr else ''} cannot be called", node)
                return _check_size(fn(*values, **named))
            if not attr and isinstance(obj, _sl.ScriptCallable):
                return obj.call(values, named)
            if not attr:
                raise _Fail(f"{name!r} is case data here, not a function", node)
            bad = set(named) - _KEYWORDS.get(name, set())
            if bad:
                raise _Fail(f"{name}() takes no keyword {sorted(bad)[0]!r}", node)
            return _call_method(obj, name, values, named)

        return call

    def isinstance_(self, node: ast.Call, d: int) -> _Fn:
        spec = node.args[1]
        names = spec.elts if isinstance(spec, ast.Tuple) else [spec]
        if not all(isinstance(n, ast.Name) and n.id in _TYPES for n in names):
            raise self.unsafe(node, f"isinstance() takes one of {', '.join(_TYPES)} or a tuple of them")
        types = tuple(_TYPES[n.id] for n in names if isinstance(n, ast.Name))
        value = self.expr(node.args[0], d)
        return lambda data: isinstance(value(data), types)


def _constant(text: str, data: Any) -> str:
    return text


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
                           "tuple": tuple, "set": set}  # fmt: skip


@functools.cache
def _method_names() -> frozenset[str]:
    members = {m for ns in NAMES.values() for m in ns.members}
    members |= {m for ns in NAMES.values() for v in ns.members.values() if isinstance(v, Namespace) for m in v.members}
    return frozenset().union(*METHODS.values()) | members


_FORBIDDEN = {
    "NamedExpr": "':=' assignments are not allowed", "Await": "await is not allowed", "Yield": "yield is not allowed",
    "YieldFrom": "yield is not allowed", "Starred": "'*' unpacking is not allowed",
    "GeneratorExp": "a generator expression can only be a function's argument: sum(x for x in xs)",
    "Import": "imports are not allowed", "ImportFrom": "imports are not allowed",
    "AsyncFor": "async loops are not allowed",
    "AsyncFunctionDef": "async functions are not allowed",
    "ClassDef": "defining classes is not allowed", "With": "with-statements are not allowed",
    "Try": "try-statements are not allowed", "Raise": "raise is not allowed",
    "Global": "global is not allowed", "Nonlocal": "nonlocal is not allowed", "Return": "return is not allowed",
    "Assert": "assert is not allowed", "Match": "match-statements are not allowed",
}  # fmt: skip
