"""What sandboxed conditions and scripts compute with: limits, safe functions and methods, operators.

:mod:`procestra.engine.sandbox` compiles the syntax; this module holds the values' side, and
every check that must happen before a value is built (sizes of sequences, integers, joins).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FUNCTIONS", "LIMITS", "METHODS", "Limits"]


# -- limits ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """Bounds on what one expression may be and produce."""

    #: Characters of expression or script text.
    text: int = 10_000
    #: AST nodes in one expression or script.
    nodes: int = 2_000
    #: Nesting depth of the tree.
    depth: int = 100
    #: Statements in one script.
    statements: int = 200
    #: Bits of any integer computed.
    int_bits: int = 4_096
    #: Length of any string, list or tuple computed.
    sequence: int = 1_000_000


LIMITS = Limits()

#: Functions an expression may call, by name.
FUNCTIONS: dict[str, Callable[..., Any]] = {}

#: Methods an expression may call, by receiver type.
METHODS: dict[type, frozenset[str]] = {
    str: frozenset({
        "capitalize", "casefold", "count", "endswith", "find", "isalnum", "isalpha", "isdigit", "islower",
        "isnumeric", "isspace", "isupper", "join", "lower", "lstrip", "removeprefix", "removesuffix", "replace",
        "rfind", "rsplit", "rstrip", "split", "startswith", "strip", "title", "upper",
    }),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}  # fmt: skip

_KEYWORDS = {"round": {"ndigits"}, "sorted": {"reverse"}, "split": {"sep", "maxsplit"}, "rsplit": {"sep", "maxsplit"}}
_SEQUENCES = (str, list, tuple)
_CONTAINERS = (str, list, tuple, dict, set, frozenset)
_NUMBERS = (int, float)


class _Fail(Exception):
    """Raised inside compiled closures; turned into a ConditionError naming the expression."""

    def __init__(self, reason: str, node: ast.AST | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.node = node


# -- safe builtins ----------------------------------------------------------------------------
def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > LIMITS.int_bits:
        raise _Fail(f"an integer grew beyond {LIMITS.int_bits} bits")
    if isinstance(value, _SEQUENCES) and len(value) > LIMITS.sequence:
        raise _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters")
    return value


def _iterable(value: Any, fn: str) -> Any:
    if isinstance(value, dict):
        return list(value)
    if not isinstance(value, (*_CONTAINERS,)):
        raise _Fail(f"{fn}() needs a list, tuple, set, dict or string, not {type(value).__name__}")
    return value


def _sum(values: Any, start: Any = 0) -> Any:
    total = start
    for v in _iterable(values, "sum"):
        if not isinstance(v, _NUMBERS) or not isinstance(total, _NUMBERS):
            raise _Fail(f"sum() adds numbers only, not {type(v).__name__}")
        total = _check_size(total + v)
    return total


def _minmax(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        if len(args) == 1:
            return fn(_iterable(args[0], name))
        return fn(args)

    return call


def _int(value: Any = 0) -> int:
    if isinstance(value, str) and len(value) > 400:
        raise _Fail("int() of a string longer than 400 characters")
    number = int(value)
    _check_size(number)
    return number


def _str(value: Any = "") -> str:
    if isinstance(value, (dict, list, tuple, set, frozenset)) and len(value) > 10_000:
        raise _Fail("str() of a container with more than 10,000 items")
    text = str(value)
    _check_size(text)
    return text


FUNCTIONS.update({
    "abs": abs, "all": lambda v: all(_iterable(v, "all")), "any": lambda v: any(_iterable(v, "any")), "bool": bool,
    "float": float, "int": _int, "len": len, "list": lambda v=(): list(_iterable(v, "list")),
    "max": _minmax(max, "max"), "min": _minmax(min, "min"), "round": round,
    "sorted": lambda v, reverse=False: sorted(_iterable(v, "sorted"), reverse=bool(reverse)), "str": _str,
    "sum": _sum, "tuple": lambda v=(): tuple(_iterable(v, "tuple")),
})  # fmt: skip

_ALL_METHODS = frozenset().union(*METHODS.values())


def _call_method(obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    for typ, names in METHODS.items():
        if isinstance(obj, typ):
            if name not in names:
                raise _Fail(f"{typ.__name__} values have no allowed method {name!r} "
                            f"(allowed: {', '.join(sorted(names))})")
            if isinstance(obj, str) and name == "replace" and len(args) >= 2 and isinstance(args[1], str):
                grow = (len(obj) + 1) * len(args[1])
                if len(obj) + grow > LIMITS.sequence:
                    raise _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters")
            result = getattr(typ, name)(obj, *args, **kwargs)  # the builtin type's own method, never the object's
            if typ is dict and name in ("items", "keys", "values"):
                result = [list(kv) if name == "items" else kv for kv in result]
            return _check_size(result)
    raise _Fail(f"method {name}() needs a string, dict or list, not {type(obj).__name__}")


# -- arithmetic and comparison ------------------------------------------------------------------
_SYMBOLS: dict[type, str] = {ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def _binop(op: type, a: Any, b: Any) -> Any:
    if op is ast.Add:
        if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES) and len(a) + len(b) > LIMITS.sequence:
            raise _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters")
        return _check_size(a + b)
    if op is ast.Mult:
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                if len(seq) * max(n, 0) > LIMITS.sequence:
                    raise _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters")
                return seq * n
        if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > LIMITS.int_bits + 1:
            raise _Fail(f"an integer grew beyond {LIMITS.int_bits} bits")
        return _check_size(a * b)
    if not (isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS)):
        sym = _SYMBOLS.get(op, "?")
        raise _Fail(f"'{sym}' needs numbers, not {type(a).__name__} and {type(b).__name__}")
    if op is ast.Sub:
        return _check_size(a - b)
    if op is ast.Div:
        return a / b
    if op is ast.FloorDiv:
        return _check_size(a // b)
    if op is ast.Mod:
        return a % b
    # ast.Pow: refuse before computing what would not fit
    big = isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1
    if big and (b > LIMITS.int_bits or b * math.log2(abs(a)) > LIMITS.int_bits):
        raise _Fail(f"the power {a}**{b} would exceed {LIMITS.int_bits} bits")
    if (isinstance(a, float) or isinstance(b, float)) and abs(b) > 10_000:
        raise _Fail("an exponent above 10,000")
    return _check_size(a**b)


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
}  # fmt: skip


def _contains(item: Any, container: Any) -> bool:
    if not isinstance(container, _CONTAINERS):
        raise _Fail(f"'in' needs a list, tuple, set, dict or string on the right, not {type(container).__name__}")
    return item in container
