"""The modules scripts may name: ``datetime``, ``timedelta``, ``math``, ``re``, ``json`` and ``decimal``.

Each is a :class:`Namespace` of chosen members, never the module itself, so no attribute
reaches the interpreter: ``datetime.datetime.now()``, ``datetime.date(2026, 1, 31)``,
``timedelta(days=3)``, ``math.sqrt(x)``, ``re.match(r'\\d+', s)``, ``json.loads(s)``,
``decimal.Decimal('1.10')``. Functions that could run long or build large values are
checked first: a regular expression is refused when its backtracking could exceed
``10**8`` steps on the text (nested quantifiers, backreferences and lookarounds always),
``json.dumps`` weighs its value, and ``math`` takes ints and floats only (a huge decimal
made into an int would not be bounded).
"""

from __future__ import annotations

import importlib
import json as _json
import math as _math
import re as _re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any

from procestra.engine.sandbox_lib import LIMITS, METHODS, _Fail, guard

__all__ = ["NAMES", "Function", "Namespace"]


@dataclass(frozen=True)
class Function:
    """A callable a script may use, and the keyword arguments it may be given."""

    name: str
    fn: Callable[..., Any]
    keywords: frozenset[str] = frozenset()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bad = set(kwargs) - self.keywords
        if bad:
            allowed = f" (allowed: {', '.join(sorted(self.keywords))})" if self.keywords else ""
            raise _Fail(f"{self.name}() takes no keyword {sorted(bad)[0]!r}{allowed}")
        return self.fn(*args, **kwargs)


@dataclass(frozen=True, eq=False)
class Namespace:
    """A module or class as scripts see it: chosen ``members``, and ``call`` if calling it makes a value."""

    name: str
    members: Mapping[str, Any] = field(default_factory=dict)
    call: Function | None = None

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _f(name: str, fn: Callable[..., Any], *keywords: str) -> Function:
    return Function(name, fn, frozenset(keywords))


# -- datetime ---------------------------------------------------------------------------------
_PARTS = ("year", "month", "day", "hour", "minute", "second", "microsecond", "tzinfo", "fold")
_DELTA = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")
DATETIME = Namespace("datetime.datetime", {
    "now": _f("datetime.now", datetime.now, "tz"), "today": _f("datetime.today", datetime.today),
    "fromisoformat": _f("datetime.fromisoformat", datetime.fromisoformat),
    "strptime": _f("datetime.strptime", datetime.strptime),
    "fromtimestamp": _f("datetime.fromtimestamp", datetime.fromtimestamp, "tz"),
    "combine": _f("datetime.combine", datetime.combine, "tzinfo"), "min": datetime.min, "max": datetime.max,
}, _f("datetime", datetime, *_PARTS))  # fmt: skip
DATE = Namespace("datetime.date", {
    "today": _f("date.today", date.today), "fromisoformat": _f("date.fromisoformat", date.fromisoformat),
    "fromordinal": _f("date.fromordinal", date.fromordinal), "min": date.min, "max": date.max,
}, _f("date", date))  # fmt: skip
TIME = Namespace("datetime.time", {"fromisoformat": _f("time.fromisoformat", time.fromisoformat), "min": time.min,
                                   "max": time.max}, _f("time", time, *_PARTS))  # fmt: skip
TIMEDELTA = Namespace("datetime.timedelta", {"min": timedelta.min, "max": timedelta.max},
                      _f("timedelta", timedelta, *_DELTA))  # fmt: skip
TIMEZONE = Namespace("datetime.timezone", {"utc": UTC}, _f("timezone", timezone))
DATETIME_MODULE = Namespace("datetime", {"datetime": DATETIME, "date": DATE, "time": TIME, "timedelta": TIMEDELTA,
                                         "timezone": TIMEZONE, "UTC": UTC})  # fmt: skip


# -- math -------------------------------------------------------------------------------------------
def _numeric(name: str, fn: Callable[..., Any]) -> Function:
    def call(*args: Any) -> Any:
        if any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
            raise _Fail(f"math.{name}() takes ints and floats (use float(x) for a decimal)")
        return fn(*args)

    return Function(f"math.{name}", call)


_MATH_FUNCTIONS = ("acos", "asin", "atan", "atan2", "ceil", "copysign", "cos", "degrees", "exp", "fabs", "floor",
                   "fmod", "gcd", "hypot", "isclose", "isfinite", "isinf", "isnan", "isqrt", "log", "log10", "log2",
                   "pow", "radians", "sin", "sqrt", "tan", "trunc")  # fmt: skip
MATH = Namespace("math", {**{n: _numeric(n, getattr(_math, n)) for n in _MATH_FUNCTIONS},
                          "pi": _math.pi, "e": _math.e, "tau": _math.tau, "inf": _math.inf, "nan": _math.nan})  # fmt: skip


# -- json -------------------------------------------------------------------------------------------
def _dumps(value: Any, sort_keys: bool = False, indent: Any = None) -> str:
    if indent is not None and (isinstance(indent, bool) or not isinstance(indent, int) or not 0 <= indent <= 8):
        raise _Fail("json.dumps(indent=...) takes a whole number from 0 to 8")
    guard(value)
    return _json.dumps(value, sort_keys=bool(sort_keys), indent=indent)


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        raise _Fail(f"json.loads() takes a string, not {type(text).__name__}")
    return _json.loads(text)


JSON = Namespace("json", {"dumps": _f("json.dumps", _dumps, "sort_keys", "indent"), "loads": _f("json.loads", _loads)})

# -- decimal ----------------------------------------------------------------------------------------
DECIMAL = Namespace("decimal.Decimal", {}, _f("Decimal", Decimal))
DECIMAL_MODULE = Namespace("decimal", {"Decimal": DECIMAL, "ROUND_HALF_UP": ROUND_HALF_UP,
                                       "ROUND_HALF_EVEN": ROUND_HALF_EVEN, "ROUND_DOWN": ROUND_DOWN,
                                       "ROUND_UP": ROUND_UP, "ROUND_FLOOR": ROUND_FLOOR,
                                       "ROUND_CEILING": ROUND_CEILING})  # fmt: skip

# -- re ---------------------------------------------------------------------------------------------
_sre = importlib.import_module("re._parser")
_c = importlib.import_module("re._constants")
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)}
_REFUSED = {_c.GROUPREF: "backreferences", _c.GROUPREF_EXISTS: "conditional groups", _c.ASSERT: "lookarounds",
            _c.ASSERT_NOT: "lookarounds"}  # fmt: skip
#: Backtracking steps a regular expression may take at most (estimated before it runs).
REGEX_COST = 10**8
REGEX_PATTERN = 1_000


def _shape(items: Any, in_repeat: bool) -> tuple[int, int]:
    """(unbounded quantifiers, product of bounded repeat counts) of a parsed pattern; refuses blow-ups."""
    unbounded, bounded = 0, 1
    for op, av in items:
        if op in _REFUSED:
            raise _Fail(f"regular expressions with {_REFUSED[op]} are not allowed (their time has no bound)")
        if op in _REPEATS:
            if in_repeat:
                raise _Fail("nested quantifiers such as (a+)+ are not allowed in regular expressions")
            lo, hi, sub = av
            u, b = _shape(sub, True)
            unbounded, bounded = unbounded + u, bounded * b
            if hi == _c.MAXREPEAT:
                unbounded += 1
            else:
                bounded *= hi + 1
        elif op == _c.SUBPATTERN:
            u, b = _shape(av[-1], in_repeat)
            unbounded, bounded = unbounded + u, bounded * b
        elif op == _c.BRANCH:
            if in_repeat:
                raise _Fail("alternatives under a quantifier such as (a|b)* are not allowed in regular expressions")
            shapes = [_shape(branch, in_repeat) for branch in av[1]]
            unbounded += max(s[0] for s in shapes)
            bounded *= sum(s[1] for s in shapes)
        elif op == getattr(_c, "ATOMIC_GROUP", None):
            u, b = _shape(av, in_repeat)
            unbounded, bounded = unbounded + u, bounded * b
    return unbounded, bounded


def _checked(pattern: Any, text: Any, flags: Any) -> None:
    if not isinstance(pattern, str) or not isinstance(text, str):
        raise _Fail("regular expressions take a string pattern and a string")
    if len(pattern) > REGEX_PATTERN:
        raise _Fail(f"a regular expression longer than {REGEX_PATTERN:,} characters")
    if isinstance(flags, bool) or not isinstance(flags, int) or flags & ~(_re.I | _re.M | _re.S):
        raise _Fail("regular expression flags: re.IGNORECASE, re.MULTILINE and re.DOTALL only")
    unbounded, bounded = _shape(_sre.parse(pattern, flags), False)
    n = len(text) + 1
    cost = n ** min(unbounded + 1, 20) * bounded
    if cost > REGEX_COST:
        raise _Fail(f"the regular expression {pattern[:60]!r} could take about {cost:.1e} steps on a text of "
                    f"{len(text):,} characters (limit {REGEX_COST:.0e}): use fewer open-ended quantifiers (*, +) "
                    "or a shorter text")  # fmt: skip


def _matcher(name: str) -> Function:
    fn = getattr(_re, name)

    def call(pattern: Any, text: Any, flags: Any = 0) -> Any:
        _checked(pattern, text, flags)
        return fn(pattern, text, flags=flags)

    return _f(f"re.{name}", call, "flags")


def _sub(pattern: Any, repl: Any, text: Any, count: Any = 0, flags: Any = 0) -> str:
    _checked(pattern, text, flags)
    if not isinstance(repl, str):
        raise _Fail("re.sub() takes a string replacement")
    refs = len(_re.findall(r"\\(?:\d|g<)", repl))
    size = len(text) + (len(text) + 1) * len(repl) + refs * len(text)
    if size > LIMITS.sequence:
        raise _Fail(f"re.sub() could make a string of {size:,} characters, beyond {LIMITS.sequence:,}")
    return _re.sub(pattern, repl, text, count=count, flags=flags)


def _split(pattern: Any, text: Any, maxsplit: Any = 0, flags: Any = 0) -> list[Any]:
    _checked(pattern, text, flags)
    return _re.split(pattern, text, maxsplit=maxsplit, flags=flags)


RE = Namespace("re", {
    **{n: _matcher(n) for n in ("match", "fullmatch", "search", "findall")},
    "sub": _f("re.sub", _sub, "count", "flags"), "split": _f("re.split", _split, "maxsplit", "flags"),
    "escape": _f("re.escape", _re.escape), "I": _re.I, "IGNORECASE": _re.I, "M": _re.M, "MULTILINE": _re.M,
    "S": _re.S, "DOTALL": _re.S,
})  # fmt: skip
METHODS[_re.Match] = frozenset({"end", "group", "groupdict", "groups", "span", "start"})

#: The names scripts and conditions may use besides case data (a case variable of the same name wins).
NAMES: dict[str, Namespace] = {"datetime": DATETIME_MODULE, "timedelta": TIMEDELTA, "math": MATH, "re": RE,
                               "json": JSON, "decimal": DECIMAL_MODULE, "Decimal": DECIMAL}  # fmt: skip
