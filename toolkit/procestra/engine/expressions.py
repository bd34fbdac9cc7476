r"""Conditions in JUEL and FEEL, as Camunda Modeler users write them, translated into the sandbox's Python.

A condition is JUEL when it is ``${...}`` or ``#{...}`` (Camunda 7), FEEL when it starts with
``=`` (Camunda 8 / Zeebe), and the sandbox's own Python otherwise. :func:`to_python` turns
JUEL and FEEL into a Python expression over the same variables; the sandbox compiles that
expression with the language's value semantics (the functions below), so the result is
the one Camunda gives, and validation analyses the same Python (intervals, value sets).
The author's text is never rewritten: translation happens, cached, when a condition is
checked or evaluated.

=================================  ==========================================  =========================================
construct                          JUEL (EL 2.2, as in Camunda 7)              FEEL (DMN 1.3, as in Camunda 8)
=================================  ==========================================  =========================================
comparison                         ``== != < > <= >=``, ``eq ne lt gt le ge``  ``= != < > <= >=``, ``x between a and b``
logic                              ``&& || !``, ``and or not``                 ``and or``, ``not(x)`` (three-valued)
literals                           ``true false null``, ``'s'`` ``"s"``, 1,    ``true false null``, ``"s"``, 1, 2.5, -3
                                   2.5, 1e3, -3
null                               ``empty x`` (null, '', [], {}), ``x ==      ``x = null``, ``x != null``
                                   null``
membership                         \-                                          ``x in [a..b]``, ``(a..b)``, ``]a..b[``,
                                                                               ``[a..b)``, ``x in (1, 2, 3)``, ``x in
                                                                               [1, 2]``, ``x in > 5``, ``in not(...)``
paths                              ``a.b``, ``a['b']`` (null if missing)        ``a.b`` (null if missing)
other                              ``c ? a : b``, parentheses                  parentheses
=================================  ==========================================  =========================================

Semantics. JUEL: ``null`` compares false (``== null`` true only for null); a number against
a string converts the string to the number's type (``'10' == 10``), a boolean against a
string compares ``'true'``/``'false'`` case-insensitively; strings order by UTF-16 code
units, as in Java; ``!``/``&&``/``||``/``?`` take null as false and refuse numbers; the
condition must give a boolean (Camunda fails otherwise). FEEL: comparing with null, or
values of different types, gives null; ``and``/``or``/``not`` are three-valued; a missing
variable or field is null; a condition that gives null is false, anything but a boolean
or null fails. A value that cannot be converted exactly as Camunda would (a string that is
not a plain number, an integer beyond Java's ``long``, a FEEL literal with more digits than
a double holds) fails with a :class:`~procestra.engine.exceptions.ConditionError`.

Everything else is refused with an error naming the element and the construct: arithmetic,
function and method calls (``date and time(...)``, ``execution.getVariable(...)``), ``if``,
``for``, ``some``/``every``, contexts, filters, temporal literals, lambdas.

>>> to_python("${amount > 1000 && status == 'open'}").python
"(amount > 1000) and (status == 'open')"
>>> to_python("=amount in [100..500]").python
'(amount >= 100) and (amount <= 500)'
"""

from __future__ import annotations

import functools
import keyword
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from procestra.engine.exceptions import ConditionError

__all__ = ["LANGUAGES", "SemanticsError", "Translated", "condition_result", "language_of", "to_python"]

#: The condition languages: the sandbox's Python, JUEL and FEEL.
LANGUAGES = ("python", "juel", "feel")


@dataclass(frozen=True)
class Translated:
    """A condition's ``source`` text, its ``language`` and the equivalent sandbox ``python``."""

    source: str
    language: str
    python: str


class SemanticsError(ValueError):
    """A value the language's rules cannot compare or convert exactly (the sandbox reports it)."""


def language_of(text: str) -> str:
    """ "juel" for ``${...}``/``#{...}``, "feel" for ``=...``, "python" otherwise."""
    t = text.strip()
    if t.startswith(("${", "#{")):
        return "juel"
    if t.startswith("=") and not t.startswith("=="):
        return "feel"
    return "python"


def to_python(text: str, *, element: str | None = None) -> Translated:
    """``text`` as sandbox Python; :class:`ConditionError` naming ``element`` and the construct if it cannot be."""
    try:
        return _translate(text)
    except ConditionError as exc:
        raise ConditionError(exc.expression, exc.reason, what=exc.what, element=element) from None


@functools.lru_cache(maxsize=4096)
def _translate(text: str) -> Translated:
    lang = language_of(text)
    if lang == "python":
        return Translated(text, lang, text)
    t = text.strip()
    if lang == "juel":
        if not t.endswith("}"):
            raise ConditionError(text, "JUEL text outside '${...}' (composite text) is not supported in conditions")
        parser: _Parser = _Juel(text, t[2:-1], 2)
    else:
        parser = _Feel(text, t[1:], 1)
    return Translated(text, lang, parser.parse())


# -- tokens -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tok:
    kind: str  # num, str, name, op, end
    value: str
    pos: int


_SUPPORTED = {
    "JUEL": "comparisons, &&/||/!, empty, literals, a.b, ?:",
    "FEEL": "comparisons, and/or/not(), literals, null checks, in ranges and lists, a.b",
}


class _Parser:
    """A recursive-descent parser emitting Python text; subclasses define one language."""

    lang = ""
    number = ""
    ops: tuple[str, ...] = ()
    name_re = re.compile(r"[A-Za-z_][\w]*")

    def __init__(self, source: str, body: str, offset: int) -> None:
        self.source, self.body, self.offset = source, body, offset
        self.toks = self.lex(body)
        self.i = 0

    # errors
    def refuse(self, construct: str) -> ConditionError:
        return ConditionError(
            self.source,
            f"{self.lang} {construct} is not supported in conditions (supported: "
            f"{_SUPPORTED[self.lang]}; see procestra.engine.expressions)",
        )

    def syntax(self, tok: _Tok, expected: str) -> ConditionError:
        got = "the end" if tok.kind == "end" else repr(tok.value)
        return ConditionError(
            self.source,
            f"{self.lang} does not parse: expected {expected}, found {got}",
            column=tok.pos + self.offset + 1,
        )

    # lexing
    def lex(self, body: str) -> list[_Tok]:
        toks: list[_Tok] = []
        i, n = 0, len(body)
        num = re.compile(self.number)
        while i < n:
            c = body[i]
            if c.isspace():
                i += 1
                continue
            m = num.match(body, i)
            if m:
                toks.append(_Tok("num", m.group(), i))
                i = m.end()
                continue
            if c in self.quotes():
                j, out = i + 1, []
                while j < n and body[j] != c:
                    if body[j] == "\\":
                        if j + 1 >= n:
                            break
                        out.append(self.escape(body[j + 1]))
                        j += 2
                    else:
                        out.append(body[j])
                        j += 1
                if j >= n:
                    raise ConditionError(
                        self.source, f"{self.lang} does not parse: a string is never closed", column=i + self.offset + 1
                    )
                toks.append(_Tok("str", "".join(out), i))
                i = j + 1
                continue
            m = self.name_re.match(body, i)
            if m:
                toks.append(_Tok("name", m.group(), i))
                i = m.end()
                continue
            op = next((o for o in self.ops if body.startswith(o, i)), None)
            if op is None:
                raise self.unknown_char(body, i)
            toks.append(_Tok("op", op, i))
            i += len(op)
        toks.append(_Tok("end", "", n))
        return toks

    def quotes(self) -> str:
        return "'\""

    def escape(self, c: str) -> str:
        if c in "\\'\"":
            return c
        raise self.refuse(f"string escape '\\{c}'")

    def unknown_char(self, body: str, i: int) -> ConditionError:
        return ConditionError(
            self.source, f"{self.lang} does not parse: unexpected {body[i]!r}", column=i + self.offset + 1
        )

    # token helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def at(self, *values: str) -> bool:
        t = self.tok
        return t.kind in ("op", "name") and t.value in values

    def take(self, *values: str) -> _Tok | None:
        if self.at(*values):
            t = self.tok
            self.i += 1
            return t
        return None

    def expect(self, value: str) -> None:
        if not self.take(value):
            raise self.syntax(self.tok, repr(value))

    def parse(self) -> str:
        if self.tok.kind == "end":
            raise ConditionError(self.source, f"{self.lang} expression is empty")
        out = self.top()
        if self.tok.kind != "end":
            raise self.syntax(self.tok, "the end of the expression")
        return out

    def top(self) -> str:
        raise NotImplementedError

    # paths: a.b (a['b'] in the translation), calls refused
    member_call = "function call"

    def postfix(self) -> str:
        start = self.tok
        py = self.primary()
        while True:
            if self.take("."):
                n = self.tok
                if n.kind != "name":
                    raise self.syntax(n, "a name after '.'")
                self.i += 1
                if self.at("("):
                    raise self.refuse(f"{self.member_call} '{self.body[start.pos : n.pos + len(n.value)]}(...)'")
                self.check_member(n.value)
                py = f"{py}[{_str(n.value)}]"
            elif self.at("["):
                py = self.bracket(start, py)
            elif self.at("("):
                raise self.refuse(f"function call '{self.body[start.pos : self.tok.pos]}(...)'")
            else:
                return py

    def primary(self) -> str:
        raise NotImplementedError

    def check_member(self, name: str) -> None:
        raise NotImplementedError

    def bracket(self, start: _Tok, py: str) -> str:
        raise NotImplementedError

    # emitting
    def name(self, tok: _Tok) -> str:
        if keyword.iskeyword(tok.value) or tok.value.startswith("__"):
            raise self.refuse(f"variable name {tok.value!r}")
        return tok.value


def _wrap(py: str) -> str:
    return py if re.fullmatch(r"[\w.']+|\"[^\"]*\"|\([^()]*\)", py) and " " not in py else f"({py})"


def _str(value: str) -> str:
    return repr(value)


# -- JUEL ---------------------------------------------------------------------------------------------
_JUEL_CMP = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">", "gt": ">",
             "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="}  # fmt: skip
_JUEL_RESERVED = {"and", "or", "not", "eq", "ne", "lt", "gt", "le", "ge", "true", "false", "null", "empty", "div",
                  "mod", "instanceof"}  # fmt: skip
_LONG = 2**63


class _Juel(_Parser):
    lang = "JUEL"
    number = r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?(?![\w$])"
    ops = ("&&", "||", "==", "!=", "<=", ">=", "->", "+=", "<", ">", "!", "?", ":", ".", "[", "]", "(", ")", ",",
           "+", "-", "*", "/", "%", "=", ";", "{", "}")  # fmt: skip
    name_re = re.compile(r"[A-Za-z_$][\w$]*")

    def top(self) -> str:
        return self.ternary()

    def ternary(self) -> str:
        cond = self.binary(0)
        if self.take("?"):
            yes = self.ternary()
            self.expect(":")
            no = self.ternary()
            return f"{_wrap(yes)} if {_wrap(cond)} else {_wrap(no)}"
        return cond

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||", "or"),
        ("&&", "and"),
        ("==", "!=", "eq", "ne"),
        ("<", ">", "<=", ">=", "lt", "gt", "le", "ge"),
    )

    def binary(self, level: int) -> str:
        if level == len(self._LEVELS):
            return self.arith()
        left = self.binary(level + 1)
        while (t := self.take(*self._LEVELS[level])) is not None:
            right = self.binary(level + 1)
            if level < 2:
                left = f"{_wrap(left)} {'or' if level == 0 else 'and'} {_wrap(right)}"
            else:
                left = f"{_wrap(left)} {_JUEL_CMP[t.value]} {_wrap(right)}"
        return left

    def arith(self) -> str:
        left = self.unary()
        if self.at("+", "-", "*", "/", "%", "div", "mod"):
            raise self.refuse(f"arithmetic {self.tok.value!r}")
        if self.at("instanceof"):
            raise self.refuse("'instanceof'")
        if self.at("=", "+=", ";", "->"):
            raise self.refuse(f"EL 3.0 operator {self.tok.value!r} (assignment, lambda, ';')")
        return left

    def unary(self) -> str:
        if self.take("!", "not"):
            return f"not {_wrap(self.unary())}"
        if self.take("empty"):
            return f"empty({self.unary()})"
        if self.take("-"):
            if self.tok.kind == "num":
                return self.number_literal(self.tok, negative=True)
            raise self.refuse("arithmetic '-' (negation of anything but a number literal)")
        return self.postfix()

    member_call = "method call"

    def check_member(self, name: str) -> None:
        if name in _JUEL_RESERVED or not name.isidentifier() or name.startswith("_"):
            raise self.refuse(f"property name {name!r}")

    def bracket(self, start: _Tok, py: str) -> str:
        self.expect("[")
        k = self.tok
        if k.kind != "str":
            raise self.refuse("index other than a string literal (a['key'])")
        self.i += 1
        self.expect("]")
        return f"{py}[{_str(k.value)}]"

    def primary(self) -> str:
        t = self.tok
        if t.kind == "num":
            return self.number_literal(t, negative=False)
        self.i += 1
        if t.kind == "str":
            return _str(t.value)
        if t.kind == "name":
            literal = {"true": "True", "false": "False", "null": "None"}.get(t.value)
            if literal:
                return literal
            if t.value in _JUEL_RESERVED:
                raise self.syntax(t, "a value")
            if "$" in t.value:
                raise self.refuse(f"variable name {t.value!r}")
            if self.at(":") and self.toks[self.i + 1].kind == "name" and self.toks[self.i + 2].value == "(":
                raise self.refuse(f"function call '{t.value}:...'")
            return self.name(t)
        if t.value == "(":
            inner = self.ternary()
            self.expect(")")
            return f"({inner})"
        if t.value in ("[", "{"):
            raise self.refuse(f"collection literal '{t.value}...'")
        self.i -= 1
        raise self.syntax(t, "a value")

    def number_literal(self, t: _Tok, *, negative: bool) -> str:
        self.i += 1
        text = ("-" if negative else "") + t.value
        if re.fullmatch(r"-?\d+", text):
            if not -_LONG <= int(text) < _LONG:
                raise self.refuse(f"integer literal {text} (beyond Java's long)")
            return text
        return repr(float(text))


# -- FEEL ---------------------------------------------------------------------------------------------
_FEEL_MULTIWORD = ("date and time", "years and months duration", "days and time duration", "day of week",
                   "day of year", "month of year", "week of year", "string length", "upper case", "lower case",
                   "substring before", "substring after", "starts with", "ends with", "list contains",
                   "insert before", "index of", "distinct values", "get value", "get entries", "is defined",
                   "get or else", "string join", "last day of month", "context put", "context merge",
                   "list replace", "is empty", "duplicate values", "round up", "round down", "round half up",
                   "round half down", "random number", "time and date")  # fmt: skip
_FEEL_CMP = {"=": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_FEEL_KEYWORDS = {"if": "'if' expression", "for": "'for' expression", "some": "'some' quantifier",
                  "every": "'every' quantifier", "function": "'function' definition", "then": "'if' expression",
                  "else": "'if' expression", "satisfies": "quantifier", "return": "'for' expression",
                  "instance": "'instance of'"}  # fmt: skip
_MULTIWORD_CALL = re.compile(
    r"\b(" + "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in _FEEL_MULTIWORD) + r")\s*\("
)


class _Feel(_Parser):
    lang = "FEEL"
    number = r"(\d+(\.\d+)?|\.\d+)(?![\w.]\w)"
    ops = ("..", "!=", "<=", ">=", "**", "=", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", "+", "-", "*", "/",
           ":", "@", "`")  # fmt: skip
    name_re = re.compile(r"[A-Za-z_?][\w?]*")

    def lex(self, body: str) -> list[_Tok]:
        m = _MULTIWORD_CALL.search(re.sub(r'"(?:[^"\\]|\\.)*"', lambda s: " " * len(s.group()), body))
        if m:
            raise self.refuse(f"function call '{' '.join(m.group(1).split())}(...)'")
        return super().lex(body)

    def quotes(self) -> str:
        return '"'

    def escape(self, c: str) -> str:
        known = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
        if c in known:
            return known[c]
        raise self.refuse(f"string escape '\\{c}'")

    def unknown_char(self, body: str, i: int) -> ConditionError:
        if body[i] == "'":
            return self.refuse("single-quoted string (FEEL strings use double quotes)")
        return super().unknown_char(body, i)

    def top(self) -> str:
        return self.disjunction()

    def disjunction(self) -> str:
        left = self.conjunction()
        while self.take("or"):
            left = f"{_wrap(left)} or {_wrap(self.conjunction())}"
        return left

    def conjunction(self) -> str:
        left = self.comparison()
        while self.take("and"):
            left = f"{_wrap(left)} and {_wrap(self.comparison())}"
        return left

    def comparison(self) -> str:
        left = self.arith()
        if (t := self.take(*_FEEL_CMP)) is not None:
            right = self.arith()
            if self.at(*_FEEL_CMP):
                raise self.refuse("chained comparison")
            return f"{_wrap(left)} {_FEEL_CMP[t.value]} {_wrap(right)}"
        if self.take("between"):
            lo = self.arith()
            self.expect("and")
            hi = self.arith()
            return f"({_wrap(left)} >= {_wrap(lo)}) and ({_wrap(left)} <= {_wrap(hi)})"
        if self.take("in"):
            return self.tests(left, parenthesised=False)
        if self.at("instance"):
            raise self.refuse("'instance of'")
        return left

    def arith(self) -> str:
        left = self.unary()
        if self.at("+", "-", "*", "/", "**"):
            raise self.refuse(f"arithmetic {self.tok.value!r}")
        return left

    def unary(self) -> str:
        if self.take("-"):
            if self.tok.kind == "num":
                return self.number_literal(self.tok, negative=True)
            raise self.refuse("arithmetic '-' (negation of anything but a number literal)")
        return self.postfix()

    def check_member(self, name: str) -> None:
        if "?" in name or name.startswith("_"):
            raise self.refuse(f"name {name!r}")

    def bracket(self, start: _Tok, py: str) -> str:
        raise self.refuse(f"filter '{self.body[start.pos : self.tok.pos]}[...]'")

    def primary(self) -> str:
        t = self.tok
        if t.kind == "num":
            return self.number_literal(t, negative=False)
        if t.kind == "str":
            self.i += 1
            return _str(t.value)
        if t.kind == "name":
            if t.value in _FEEL_KEYWORDS:
                raise self.refuse(_FEEL_KEYWORDS[t.value])
            if t.value == "not" and self.toks[self.i + 1].value == "(":
                self.i += 2
                inner = self.disjunction()
                self.expect(")")
                return f"not {_wrap(inner)}"
            self.i += 1
            literal = {"true": "True", "false": "False", "null": "None"}.get(t.value)
            if literal:
                return literal
            if t.value in ("and", "or", "not", "in", "between"):
                self.i -= 1
                raise self.syntax(t, "a value")
            if self.at("("):
                raise self.refuse(f"function call '{t.value}(...)'")
            if "?" in t.value:
                raise self.refuse(f"name {t.value!r}")
            return self.name(t)
        if t.value == "(":
            self.i += 1
            inner = self.disjunction()
            self.expect(")")
            return f"({inner})"
        if t.value == "[":
            raise self.refuse("list literal outside 'in'")
        if t.value == "{":
            raise self.refuse("context '{...}'")
        if t.value == "@":
            raise self.refuse("temporal literal '@\"...\"'")
        if t.value == "`":
            raise self.refuse("backtick name")
        raise self.syntax(t, "a value")

    def number_literal(self, t: _Tok, *, negative: bool) -> str:
        self.i += 1
        text = ("-" if negative else "") + t.value
        if "." not in text:
            if len(text.lstrip("-")) > 34:
                raise self.refuse(f"number literal {text} (more than 34 digits)")
            return text
        value = float(text)
        if Decimal(repr(value)) != Decimal(text):
            raise self.refuse(
                f"number literal {text} (more digits than a double holds, so comparisons with case data could differ)"
            )
        return repr(value)

    # unary tests after 'in'
    def tests(self, subject: str, *, parenthesised: bool) -> str:
        parts = [self.test(subject)]
        while self.take(","):
            parts.append(self.test(subject))
        return parts[0] if len(parts) == 1 else " or ".join(_wrap(p) for p in parts)

    def test(self, subject: str) -> str:
        s = _wrap(subject)
        if (t := self.take("<", "<=", ">", ">=", "!=", "=")) is not None:
            return f"{s} {_FEEL_CMP[t.value]} {_wrap(self.arith())}"
        if self.at("not") and self.toks[self.i + 1].value == "(":
            self.i += 2
            inner = self.tests(subject, parenthesised=True)
            self.expect(")")
            return f"not {_wrap(inner)}"
        if self.take("]"):
            return self.range(s, open_low=True)
        if self.take("["):
            if self.take("]"):
                return "False"
            first = self.arith()
            if self.take(".."):
                return self.range_end(s, first, open_low=False)
            items = [first]
            while self.take(","):
                items.append(self.arith())
            self.expect("]")
            return " or ".join(f"({s} == {_wrap(x)})" for x in items)
        if self.take("("):
            first_pos = self.i
            first = self.arith()
            if self.take(".."):
                return self.range_end(s, first, open_low=True)
            self.i = first_pos
            inner = self.tests(subject, parenthesised=True)
            self.expect(")")
            return f"({inner})"
        value = self.arith()
        return f"{s} == {_wrap(value)}"

    def range(self, s: str, *, open_low: bool) -> str:
        lo = self.arith()
        self.expect("..")
        return self.range_end(s, lo, open_low=open_low)

    def range_end(self, s: str, lo: str, *, open_low: bool) -> str:
        hi = self.arith()
        close = self.take("]", ")", "[")
        if close is None:
            raise self.syntax(self.tok, "']', ')' or '[' closing the range")
        low_op = ">" if open_low else ">="
        high_op = "<=" if close.value == "]" else "<"
        return f"({s} {low_op} {_wrap(lo)}) and ({s} {high_op} {_wrap(hi)})"


# -- value semantics (used by the sandbox when it runs translated conditions) -----------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _utf16(s: str) -> bytes:
    return s.encode("utf-16-be", "surrogatepass")


_OPS: dict[str, Callable[[Any, Any], Any]] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt,
                                             "<=": operator.le, ">": operator.gt, ">=": operator.ge}  # fmt: skip


def _order(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, str) and op not in ("==", "!="):  # Java orders strings by UTF-16 code units
        a, b = _utf16(a), _utf16(b)
    return bool(_OPS[op](a, b))


_JAVA_WS = "".join(chr(c) for c in range(0x21))
_DOUBLE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _kind(v: Any) -> str:
    return "a list" if isinstance(v, (list, tuple)) else "a map" if isinstance(v, Mapping) else type(v).__name__


def _to_long(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise SemanticsError(f"JUEL cannot coerce {_kind(v)} to a number")
    if isinstance(v, str):
        if v == "":
            return 0
        if not _INTEGER.fullmatch(v):
            raise SemanticsError(f"JUEL cannot coerce the string {v[:40]!r} to a whole number")
        v = int(v)
    assert isinstance(v, int)
    if not -_LONG <= v < _LONG:
        raise SemanticsError(f"the integer {v} is beyond Java's long, so JUEL cannot compare it")
    return v


def _to_double(v: Any) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        if v == "":
            return 0.0
        text = v.strip(_JAVA_WS)
        if not _DOUBLE.fullmatch(text):
            raise SemanticsError(f"JUEL cannot coerce the string {v[:40]!r} to a number")
        return float(text)
    return float(_to_long(v))


def juel_bool(v: Any) -> bool:
    """EL's coercion to Boolean: null and '' are false, strings are true when 'true' in any case."""
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v.lower() == "true"
    raise SemanticsError(f"JUEL cannot use {_kind(v)} as true or false")


def juel_compare(op: str, a: Any, b: Any) -> bool:
    """``a op b`` by EL 2.2 sections 1.8.1-1.8.2 (coercion to Double, Long, Boolean or String)."""
    if a is None or b is None:
        if a is None and b is None:
            return op in ("==", "<=", ">=")
        return op == "!="
    if isinstance(a, float) or isinstance(b, float):
        return _order(op, _to_double(a), _to_double(b))
    if (isinstance(a, int) and not isinstance(a, bool)) or (isinstance(b, int) and not isinstance(b, bool)):
        return _order(op, _to_long(a), _to_long(b))
    if isinstance(a, bool) or isinstance(b, bool):
        if op in ("==", "!="):
            return _order(op, juel_bool(a), juel_bool(b))
        if isinstance(a, bool) and isinstance(b, bool):
            return _order(op, int(a), int(b))
        a, b = (str(x).lower() if isinstance(x, bool) else x for x in (a, b))
    if isinstance(a, str) and isinstance(b, str):
        return _order(op, a, b)
    raise SemanticsError(f"JUEL comparison '{op}' of {_kind(a)} and {_kind(b)} is not supported")


def juel_empty(v: Any) -> bool:
    """EL's ``empty``: null, '', and empty lists and maps."""
    return v is None or (isinstance(v, (str, list, tuple, dict, set)) and len(v) == 0)


_EXACT_INT = 2**53


def feel_compare(op: str, a: Any, b: Any) -> bool | None:
    """``a op b`` in FEEL: null for null (except ``=``/``!=``) and for values of different types."""
    if a is None or b is None:
        if op in ("==", "!="):
            return (a is None and b is None) == (op == "==")
        return None
    if _is_number(a) and _is_number(b):
        for x, y in ((a, b), (b, a)):
            if isinstance(x, float) and (not math.isfinite(x) or (isinstance(y, int) and abs(y) > _EXACT_INT)):
                raise SemanticsError(f"FEEL cannot compare {x!r} with {y!r} exactly (FEEL numbers are decimals)")
        return _order(op, a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _order(op, a, b)
    if isinstance(a, bool) and isinstance(b, bool):
        return _order(op, a, b) if op in ("==", "!=") else None
    if isinstance(a, (list, tuple, Mapping)) and isinstance(b, (list, tuple, Mapping)):
        raise SemanticsError(f"FEEL comparison '{op}' of lists or contexts is not supported")
    return None


def _feel_junction(values: list[Callable[[], Any]], decisive: bool) -> bool | None:
    """FEEL ``and`` (``decisive`` False) or ``or`` (True): ``decisive`` if any operand is it, else
    null if any operand is not a boolean, else the other boolean. Operands are evaluated lazily."""
    unknown = False
    for v in values:
        x = v()
        if x is decisive:
            return bool(decisive)
        unknown = unknown or x is not (not decisive)
    return None if unknown else not decisive


def feel_and(values: list[Callable[[], Any]]) -> bool | None:
    """FEEL ``and``: false if any operand is false, else null if any is not a boolean, else true."""
    return _feel_junction(values, False)


def feel_or(values: list[Callable[[], Any]]) -> bool | None:
    """FEEL ``or``: true if any operand is true, else null if any is not a boolean, else false."""
    return _feel_junction(values, True)


def feel_not(v: Any) -> bool | None:
    """FEEL ``not()``: null for anything but a boolean."""
    return (not v) if isinstance(v, bool) else None


def path(language: str, obj: Any, key: str) -> Any:
    """``obj.key``: null when ``obj`` is null or has no such field; a field of a non-map is an error in
    JUEL and null in FEEL."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    if language == "feel":
        return None
    raise SemanticsError(f"JUEL property '{key}' of {_kind(obj)} (only maps have properties here)")


def condition_result(language: str, value: Any) -> bool:
    """A condition's final value as Camunda takes it: JUEL must give a boolean; FEEL's null is false."""
    if isinstance(value, bool):
        return value
    if language == "feel" and value is None:
        return False
    shown = "null" if value is None else _kind(value)
    raise SemanticsError(f"a {language.upper()} condition must give true or false, not {shown}")
