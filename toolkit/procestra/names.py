"""One rule for the names people give logs, models and jobs, checked in one place.

Names become directory and file names (``models/<name>/``, ``runs/jobs/<name>/``), SQL values and
page addresses, so they must not be able to make a path, hide a control character or run on for
ever: 1-128 letters, digits (any script), spaces and ``_ . : + -``, starting with a letter, digit or
``_``; no ``..``, no leading or trailing space. :func:`shown` cuts a name an error message echoes.
"""

from __future__ import annotations

import re
from typing import Any

from procestra.errors import InvalidArgumentError

__all__ = ["MAX_NAME", "NAME_RULE", "check_name", "is_name", "shown"]

MAX_NAME = 128
NAME_RULE = (f"1-{MAX_NAME} letters, digits, spaces and _ . : + - (starting with a letter, digit or _; "
             "no '..', no '/' or '\\', no control characters, no leading or trailing space)")
_NAME = re.compile(r"\w[\w .:+\-]{0," + str(MAX_NAME - 1) + "}")


def is_name(name: Any) -> bool:
    """Whether ``name`` follows the rule (a ``str``, fully matched: a trailing newline does not pass)."""
    return (isinstance(name, str) and _NAME.fullmatch(name) is not None and ".." not in name
            and name == name.strip())


def check_name(name: Any, *, kind: str, parameter: str) -> str:
    """``name`` if it follows the rule, else :class:`InvalidArgumentError` naming ``kind`` and the rule."""
    if not is_name(name):
        raise InvalidArgumentError(f"invalid {kind} name {shown(name)}: use {NAME_RULE}", parameter=parameter)
    return str(name)


def shown(name: Any, limit: int = 60) -> str:
    """``repr(name)``, cut to about ``limit`` characters with the full length said, for error messages."""
    text = repr(name)
    if len(text) <= limit:
        return text
    size = f" ({len(name):,} characters)" if isinstance(name, str) else ""
    return f"{text[: limit - 1]}…{size}"
