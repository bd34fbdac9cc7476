"""What sandboxed conditions and scripts compute with: limits, budgets, safe functions and methods, operators.

:mod:`procestra.engine.sandbox` compiles the syntax; this module holds the values' side, and
every check that must happen before a value is built. One evaluation gets a :class:`Budget`:
a step counter (loop iterations and comprehension items) and a wall-clock deadline. Sizes
are checked before allocation: sequence lengths for ``*``, ``+``, ``join``, ``replace`` and
``range``, integer bits for ``*`` and ``**``, and the *weight* of nested values (items
and characters counted through shared references, so ``[[0] * 10**6] * 10**6`` weighs
10**12 though it takes 16 MB) before ``*`` builds one and before anything walks one
(comparisons, ``in``, ``str()``, f-strings, ``sorted``, ``json.dumps``, hashing a tuple, and
the values a script stores).
"""

from __future__ import annotations

import ast
import contextvars
import logging
import math
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
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
    #: Loop iterations and comprehension items in one evaluation.
    steps: int = 100_000
    #: Wall-clock seconds of one evaluation (checked every 256 steps).
    seconds: float = 1.0
    #: About the characters one value takes written out, shared references counted each time.
    weight: int = 20_000_000
    #: Bytes of values one evaluation may build (estimated: 8 per list item, 1 per character), freed or not.
    memory: int = 64_000_000
    #: Width and precision in a format spec.
    format_width: int = 10_000


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
    datetime: frozenset({"astimezone", "date", "isoformat", "isoweekday", "replace", "strftime", "time", "timestamp",
                         "toordinal", "weekday"}),
    date: frozenset({"isoformat", "isoweekday", "replace", "strftime", "toordinal", "weekday"}),
    clock: frozenset({"isoformat", "replace", "strftime"}),
    timedelta: frozenset({"total_seconds"}),
    Decimal: frozenset({"is_signed", "quantize", "to_integral_value"}),
}  # fmt: skip

#: Attributes scripts may read from dates, times, durations and decimals (dicts: their fields).
ATTRIBUTES: dict[type, frozenset[str]] = {
    datetime: frozenset({"year", "month", "day", "hour", "minute", "second", "microsecond", "tzinfo"}),
    date: frozenset({"year", "month", "day"}),
    clock: frozenset({"hour", "minute", "second", "microsecond", "tzinfo"}),
    timedelta: frozenset({"days", "seconds", "microseconds"}),
}

_TIME_PARTS = {"year", "month", "day", "hour", "minute", "second", "microsecond", "tzinfo", "fold"}
_KEYWORDS = {"round": {"ndigits"}, "sorted": {"reverse"}, "split": {"sep", "maxsplit"}, "rsplit": {"sep", "maxsplit"},
             "replace": _TIME_PARTS, "isoformat": {"sep", "timespec"}, "enumerate": {"start"},
             "quantize": {"rounding"}, "print": {"sep", "end"}}  # fmt: skip
_SEQUENCES = (str, list, tuple)
_CONTAINERS = (str, list, tuple, dict, set, frozenset)
_NUMBERS = (int, float)


class _Fail(Exception):
    """Raised inside compiled closures; turned into a ConditionError naming the expression."""

    def __init__(self, reason: str, node: ast.AST | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.node = node


class ScriptCallable:
    """What a script may call besides the allowed functions: the functions it defines itself. Only the
    sandbox calls one, through :meth:`call`: it is no Python callable (``re.sub`` cannot call it back)."""

    def call(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError


# -- safe builtins ----------------------------------------------------------------------------
def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > LIMITS.int_bits:
        raise _Fail(f"an integer grew beyond {LIMITS.int_bits} bits")
    if isinstance(value, _SEQUENCES) and len(value) > LIMITS.sequence:
        raise _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters")
    if isinstance(value, _SIZED) and len(value) >= 64:
        charge(len(value) if isinstance(value, str) else 8 * len(value))
    return value


_SIZED = (str, list, tuple, dict, set, frozenset)


def charge(size: int) -> None:
    """Count ``size`` bytes (estimated) about to be allocated; fail past ``LIMITS.memory`` for the evaluation."""
    b = budget()
    b.allocated += size
    if b.allocated > LIMITS.memory:
        raise _Fail(f"built more than {LIMITS.memory:,} bytes of values (the memory limit; counted as built, "
                    "never given back): work on less data at once")  # fmt: skip


# -- budgets ----------------------------------------------------------------------------------------
class Budget:
    """One evaluation's allowance: steps left, its deadline, and the weights of values already measured."""

    __slots__ = ("allocated", "calls", "deadline", "memo", "steps")

    def __init__(self) -> None:
        self.calls = 0
        self.steps = LIMITS.steps
        self.deadline = time.monotonic() + LIMITS.seconds
        self.memo: dict[int, tuple[Any, int]] = {}
        self.allocated = 0

    def tick(self) -> None:
        """Count one loop iteration or comprehension item; fail past the step or time limit."""
        self.steps -= 1
        if self.steps < 0:
            raise _Fail(f"more than {LIMITS.steps:,} loop iterations and comprehension items (the step limit): "
                        "loop over less data, or split the work into several tasks")  # fmt: skip
        if not self.steps & 255:
            self.clock()

    def clock(self) -> None:
        """Fail if the evaluation has run past its deadline."""
        if time.monotonic() > self.deadline:
            raise _Fail(f"ran longer than {LIMITS.seconds:g} s (the time limit): loop over less data, or split the "
                        "work into several tasks")  # fmt: skip


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("procestra_sandbox_budget", default=None)


def budget() -> Budget:
    """The running evaluation's budget, made when it first loops or measures a value (most never do)."""
    b = _BUDGET.get()
    if b is None:
        b = Budget()
        _BUDGET.set(b)
    return b


def start_budget() -> contextvars.Token[Budget | None]:
    """Start an evaluation with no budget spent; pass the token to ``_BUDGET.reset`` when it ends."""
    return _BUDGET.set(None)


_NESTED = (list, tuple, dict, set, frozenset)
_NESTED_TYPES = frozenset(_NESTED)


_SCALAR_WEIGHT = {type(None): 5, bool: 5, float: 24, str: 3}


def _scalar(value: Any) -> int:
    """About the characters ``value`` takes when written out (``str()``, f-strings, JSON)."""
    if isinstance(value, str):
        return len(value) + 3
    if isinstance(value, int) and not isinstance(value, bool):
        return 2 + value.bit_length() // 3
    if isinstance(value, Decimal):
        return 8 + len(value.as_tuple().digits)
    return _SCALAR_WEIGHT.get(type(value), 32)


def weight(value: Any) -> int:
    """About the characters ``value`` takes written out, shared references counted each time; fails past
    ``LIMITS.weight`` (so comparing, sorting, hashing or printing it is bounded too)."""
    if not isinstance(value, _NESTED):
        return _scalar(value)
    memo = budget().memo
    hit = memo.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    total = 2 + 2 * len(value)
    kinds = set(map(type, value)) if not isinstance(value, dict) else {object}
    if kinds <= {int, bool}:  # the common flat lists, measured in C
        total += sum(map(int.bit_length, value)) // 3 + 2 * len(value)
    elif kinds <= {float, type(None)}:
        total += 24 * len(value)
    elif kinds <= {str}:
        total += sum(map(len, value)) + 3 * len(value)
    else:
        for item in (x for kv in value.items() for x in kv) if isinstance(value, dict) else value:
            total += weight(item)
            if total > LIMITS.weight:
                break
    if total > LIMITS.weight:
        raise _Fail(f"a value would be more than {LIMITS.weight:,} characters written out (repeated references "
                    "counted each time): work on less data at once")  # fmt: skip
    memo[id(value)] = (value, total)
    return total


def guard(*values: Any) -> None:
    """Check, before walking them, that nested ``values`` are within the weight limit."""
    for v in values:
        if isinstance(v, _NESTED):
            weight(v)


def _iterable(value: Any, fn: str) -> Any:
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, range):  # about to be listed: new int objects, 8 bytes of pointer each
        charge(40 * len(value))
        return value
    if isinstance(value, types.GeneratorType):  # only the sandbox's own, from (x for ...)
        return value
    if not isinstance(value, (*_CONTAINERS,)):
        raise _Fail(f"{fn}() needs a list, tuple, set, dict or string, not {type(value).__name__}")
    return value


def _sum(values: Any, start: Any = 0) -> Any:
    total = start
    for v in _iterable(values, "sum"):
        if not isinstance(v, (*_NUMBERS, Decimal, timedelta)):
            raise _Fail(f"sum() adds numbers only, not {type(v).__name__}")
        total = _check_size(_binop(ast.Add, total, v))
    return total


def _minmax(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        values = _iterable(args[0], name) if len(args) == 1 else args
        values = list(values)
        guard(values)
        return fn(values)

    return call


_BIG_DECIMAL = 1_300  # decimal digits of an integer of LIMITS.int_bits bits, roughly


def _whole(value: Any, fn: str) -> None:
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > _BIG_DECIMAL:
        raise _Fail(f"{fn}() of a decimal with more than {_BIG_DECIMAL} digits")


def _int(value: Any = 0) -> int:
    if isinstance(value, str) and len(value) > 400:
        raise _Fail("int() of a string longer than 400 characters")
    _whole(value, "int")
    number = int(value)
    _check_size(number)
    return number


def _round(value: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        _whole(value, "round")
    return round(value, ndigits)


def _text(value: Any) -> None:
    if isinstance(value, types.GeneratorType):
        raise _Fail("str() of a generator: make a list first")
    if isinstance(value, ScriptCallable):
        raise _Fail("str() of a function: call it")
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) > LIMITS.format_width:
        raise _Fail(f"a decimal with an exponent beyond {LIMITS.format_width:,} written out")
    guard(value)


def _str(value: Any = "") -> str:
    _text(value)
    text = str(value)
    _check_size(text)
    return text


def _range(*args: Any) -> range:
    if not 1 <= len(args) <= 3 or any(isinstance(a, bool) or not isinstance(a, int) for a in args):
        raise _Fail("range() takes one to three whole numbers")
    r = range(*args)
    if len(r) > LIMITS.sequence:
        raise _Fail(f"range() of more than {LIMITS.sequence:,} numbers")
    return r


def _listed(fn: Callable[..., Iterable[Any]]) -> Callable[..., list[Any]]:
    def call(*args: Any, **kwargs: Any) -> list[Any]:
        return list(fn(*(_iterable(a, fn.__name__) for a in args), **kwargs))

    return call


def _set(v: Any = ()) -> set[Any]:
    items = list(_iterable(v, "set"))
    guard(*(x for x in items if isinstance(x, tuple)))
    return set(items)


def _dict(v: Any = ()) -> dict[Any, Any]:
    if isinstance(v, dict):
        return dict(v)
    pairs = list(_iterable(v, "dict"))
    guard(*(p[0] for p in pairs if isinstance(p, (list, tuple)) and p and isinstance(p[0], tuple)))
    return dict(pairs)


def _sorted(v: Any, reverse: Any = False) -> list[Any]:
    items = list(_iterable(v, "sorted"))
    guard(items)
    return sorted(items, reverse=bool(reverse))


#: Where a script's print() goes: the worker's log (logger "procestra.script"), never the case data.
SCRIPT_LOG = logging.getLogger("procestra.script")


def _print(*values: Any, sep: Any = " ", end: Any = "\n") -> None:
    """print() in a script, as modellers debug with it: one bounded line on the script log."""
    text = _str(sep).join(_str(v) for v in values)
    SCRIPT_LOG.info("%s", text if len(text) <= 2000 else text[:2000] + f"... ({len(text):,} characters)")


FUNCTIONS.update({
    "print": _print,
    "abs": abs, "all": lambda v: all(_iterable(v, "all")), "any": lambda v: any(_iterable(v, "any")), "bool": bool,
    "float": float, "int": _int, "len": len, "list": lambda v=(): list(_iterable(v, "list")),
    "max": _minmax(max, "max"), "min": _minmax(min, "min"), "round": _round, "sorted": _sorted, "str": _str,
    "sum": _sum, "tuple": lambda v=(): tuple(_iterable(v, "tuple")), "range": _range, "set": _set, "dict": _dict,
    "enumerate": _listed(enumerate), "zip": _listed(zip), "reversed": _listed(reversed),
})  # fmt: skip

_ALL_METHODS = frozenset().union(*METHODS.values())


def _join_size(sep: str, items: list[Any]) -> None:
    if all(isinstance(x, str) for x in items):
        size = len(sep) * max(len(items) - 1, 0) + sum(len(x) for x in items)
        if size > LIMITS.sequence:
            raise _Fail(f"join() would make a string of {size:,} characters, beyond {LIMITS.sequence:,}")


def _call_method(obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    for typ, names in METHODS.items():
        if isinstance(obj, typ):
            if name not in names:
                raise _Fail(
                    f"{typ.__name__} values have no allowed method {name!r} (allowed: {', '.join(sorted(names))})"
                )
            if isinstance(obj, str) and name == "replace" and len(args) >= 2 and isinstance(args[1], str):
                grow = (len(obj) + 1) * len(args[1])
                if len(obj) + grow > LIMITS.sequence:
                    raise _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters")
            if isinstance(obj, str) and name == "join" and len(args) == 1:
                args = [list(_iterable(args[0], "join"))]
                _join_size(obj, args[0])
            if name == "strftime" and args and isinstance(args[0], str):
                strftime_format(args[0])
            if (name in ("count", "index") and typ in (list, tuple)) or typ is dict:
                guard(obj, *args)  # comparing or hashing walks them
            result = getattr(typ, name)(obj, *args, **kwargs)  # the builtin type's own method, never the object's
            if typ is dict and name in ("items", "keys", "values"):
                result = [list(kv) if name == "items" else kv for kv in result]
            return _check_size(result)
    raise _Fail(f"method {name}() needs a string, dict, list, date or decimal, not {type(obj).__name__}")


def strftime_format(fmt: str) -> str:
    """``fmt`` if it has no field widths (``%1000000Y`` would pad to that width)."""
    if re.search(r"%[-_0^#]*\d", fmt):
        raise _Fail("field widths in date formats (%10Y) are not allowed")
    return fmt


# -- arithmetic and comparison ------------------------------------------------------------------
_SYMBOLS: dict[type, str] = {ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}
_ARITH = (int, float, Decimal, date, clock, timedelta)


def _grown(n: int) -> _Fail:
    return _Fail(f"a value grew beyond {LIMITS.sequence:,} items or characters (to {n:,})")


def _arithmetic(a: Any, b: Any) -> bool:
    return isinstance(a, _ARITH) and isinstance(b, _ARITH)


def _binop(op: type, a: Any, b: Any) -> Any:
    if op is ast.Add:
        if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
            if len(a) + len(b) > LIMITS.sequence:
                raise _grown(len(a) + len(b))
            if isinstance(a, (list, tuple)) and weight(a) + weight(b) > LIMITS.weight:
                raise _Fail(f"a value would be more than {LIMITS.weight:,} characters written out")
        return _check_size(a + b)
    if op is ast.Mult:
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                if len(seq) * max(n, 0) > LIMITS.sequence:
                    raise _grown(len(seq) * max(n, 0))
                if not isinstance(seq, str) and weight(seq) * max(n, 0) > LIMITS.weight:
                    raise _Fail(f"a value would be more than {LIMITS.weight:,} characters written out (repeated "
                                "references counted each time)")  # fmt: skip
                charge(len(seq) * max(n, 0) * (1 if isinstance(seq, str) else 8))
                return seq * n
        if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > LIMITS.int_bits + 1:
            raise _Fail(f"an integer grew beyond {LIMITS.int_bits} bits")
        return _check_size(a * b)
    if not _arithmetic(a, b):
        sym = _SYMBOLS.get(op, "?")
        raise _Fail(f"'{sym}' needs numbers, dates or durations, not {type(a).__name__} and {type(b).__name__}")
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


def _walked(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if type(a) in _NESTED_TYPES or type(b) in _NESTED_TYPES:
            guard(a, b)
        return fn(a, b)

    return compare


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: _walked(lambda a, b: a == b), ast.NotEq: _walked(lambda a, b: a != b),
    ast.Lt: _walked(lambda a, b: a < b), ast.LtE: _walked(lambda a, b: a <= b),
    ast.Gt: _walked(lambda a, b: a > b), ast.GtE: _walked(lambda a, b: a >= b),
    ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
}  # fmt: skip


def _contains(item: Any, container: Any) -> bool:
    if not isinstance(container, (*_CONTAINERS, range)):
        raise _Fail(f"'in' needs a list, tuple, set, dict or string on the right, not {type(container).__name__}")
    guard(item)
    if isinstance(container, (list, tuple)):
        guard(container)
    return item in container


def iterate(value: Any) -> Iterator[Any]:
    """What a ``for`` loop or comprehension may run over: sequences, dict keys, sets, ranges."""
    if isinstance(value, (*_CONTAINERS, range)):
        return iter(value)
    raise _Fail(f"cannot loop over {type(value).__name__}: use a list, tuple, dict, set, string or range()")
