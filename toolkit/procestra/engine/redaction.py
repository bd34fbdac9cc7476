"""Redaction of secret values in every form they take on the way out of a handler.

A :class:`Redactor` is built once per set of secret values (:class:`~procestra.engine.connectors.Secrets`
caches it) and replaces each value with ``[redacted:NAME]``: the raw value, its repr and JSON
escapes (also escaped twice, as when an error quoting a value is quoted again), its URL
encodings (``quote`` and ``quote_plus``), its hex, and its base64 (standard and URL-safe) at each
of the three byte alignments, so a secret inside a longer base64'd string, such as an HTTP Basic
header ``user:secret``, is caught too. All forms go into one regular expression, longest first.

:class:`RedactingStream` stands in for ``sys.stdout``/``sys.stderr`` while a handler runs, and a
filter on the logging handlers redacts what it logs: both reach the worker's streams redacted
(:func:`redacted_output`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

__all__ = ["MIN_SECRET", "RedactingStream", "Redactor", "secret_forms", "redacted_output"]

#: Secret values shorter than this cannot be redacted safely (they would match ordinary text).
MIN_SECRET = 4


def _escapes(value: str) -> set[str]:
    """``value`` as repr and JSON put it inside their quotes (each quote style, ASCII or not)."""
    body = value.replace("\\", "\\\\")
    out = {repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
           body.replace("'", "\\'"), body.replace('"', '\\"'), body.replace("'", "\\'").replace('"', '\\"')}
    out.add(value.encode("unicode_escape").decode("ascii"))
    return out


def _base64_fragments(raw: bytes) -> set[str]:
    """The base64 characters determined by ``raw`` alone, at byte offsets 0, 1 and 2 (standard, URL-safe)."""
    out: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        first = -(-8 * offset // 6)  # the first character whose 6 bits all come from raw
        last = (8 * (offset + len(raw))) // 6  # one past the last such character
        fragment = encoded[first:last]
        out.update({fragment, fragment.replace("+", "-").replace("/", "_")})
    return out


def secret_forms(value: str) -> set[str]:
    """Every form of ``value`` a :class:`Redactor` replaces (at least :data:`MIN_SECRET` characters long)."""
    escaped = {value}
    for _ in range(2):  # quoted once (an exception's repr) and twice (that message quoted again)
        escaped |= {e for v in escaped for e in _escapes(v)}
    forms = set(escaped)
    for v in escaped:
        forms |= {urllib.parse.quote(v, safe=""), urllib.parse.quote(v), urllib.parse.quote_plus(v)}
    raw = value.encode("utf-8")
    forms |= {raw.hex(), raw.hex().upper()}
    forms |= _base64_fragments(raw)
    forms |= {re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in forms if "%" in f}  # %2f, %2F
    return {f for f in forms if len(f) >= MIN_SECRET}


class Redactor:
    """Replaces secret values (raw, escaped, URL-encoded, hex, base64 at any alignment) in any data."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        forms: dict[str, str] = {}
        for name, value in secrets.items():
            if len(value) < MIN_SECRET:
                continue
            mark = f"[redacted:{name}]"
            for form in sorted(secret_forms(value)):
                forms.setdefault(form, mark)
        self._forms = sorted(forms.items(), key=lambda kv: (-len(kv[0]), kv[0]))
        self._pattern = re.compile("|".join(re.escape(f) for f, _ in self._forms)) if self._forms else None
        self._marks = dict(self._forms)
        #: the longest form: a stream holds back one character less, in case a form is cut between writes
        self.longest = max((len(f) for f in self._marks), default=0)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def _sub(self, match: re.Match[str]) -> str:
        return self._marks[match.group(0)]

    def redact(self, value: Any) -> Any:
        """``value`` with every secret replaced by ``[redacted:NAME]`` (dicts, lists and strings, deeply)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self._pattern.sub(self._sub, value)
        if isinstance(value, Mapping):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact(v) for v in value)
        return value

    def contains_secret(self, text: str) -> bool:
        """Whether ``text`` holds a secret in any of its forms."""
        return bool(self._pattern and self._pattern.search(text))

    def safe_cut(self, text: str) -> int:
        """How much of ``text`` can be redacted now: all but a tail that may be the start of a form."""
        cut = max(len(text) - (self.longest - 1), 0)
        if self._pattern is not None:
            for m in self._pattern.finditer(text):  # from the start: matches as redact() finds them
                if m.end() > cut:
                    return min(m.start(), cut)
        return cut

    def __repr__(self) -> str:
        return f"<Redactor of {len(set(self._marks.values()))} secrets>"


class RedactingStream:
    """A text stream that passes what is written on to ``target`` with secrets redacted.

    It holds back a tail that could be the start of a secret cut between two writes, and passes it
    on at :meth:`flush`'s ``final`` call, once the handler has returned.
    """

    def __init__(self, target: TextIO, redactor: Redactor) -> None:
        self.target = target
        self.redactor = redactor
        self._pending = ""
        self._lock = threading.Lock()  # the worker's other threads may print meanwhile
        self._done = False

    def write(self, text: str) -> int:
        with self._lock:
            if self._done:  # written after the handler returned (a thread kept this stream): pass it on now
                self.target.write(self.redactor.redact(text))
                return len(text)
            self._pending += text
            if "\n" in text or len(self._pending) > 8192:
                cut = self.redactor.safe_cut(self._pending)
                if cut:
                    self.target.write(self.redactor.redact(self._pending[:cut]))
                    self._pending = self._pending[cut:]
        return len(text)

    def flush(self, final: bool = False) -> None:
        with self._lock:
            if final:
                self._done = True
                if self._pending:
                    self.target.write(self.redactor.redact(self._pending))
                    self._pending = ""
        self.target.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the target's
        return getattr(self.target, name)


class _RedactingFilter(logging.Filter):
    """Redacts the message, traceback and stack of each record a logging handler emits."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        record.msg, record.args = r.redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        return True


@contextlib.contextmanager
def redacted_output(redactor: Redactor) -> Iterator[None]:
    """While inside: what is printed to ``sys.stdout``/``sys.stderr`` or logged reaches them redacted.

    The worker runs handlers in its main thread; what its other threads print or log meanwhile
    passes through the same redaction, so nothing is lost. Without secrets this does nothing.
    """
    if not redactor:
        yield
        return
    out, err = RedactingStream(sys.stdout, redactor), RedactingStream(sys.stderr, redactor)
    handlers = {h for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
                if isinstance(logger, logging.Logger) for h in logger.handlers}
    scrub = _RedactingFilter(redactor)
    for h in handlers:
        h.addFilter(scrub)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        for h in handlers:
            h.removeFilter(scrub)
        out.flush(final=True)
        err.flush(final=True)
