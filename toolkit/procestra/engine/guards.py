"""Which case variables a sequence flow's condition proves to exist, for validate's unknown-variable check.

SpiffWorkflow's models test for an optional variable with ``'x' in vars()`` (or ``locals()``,
``globals()``) on a gateway's branch, and use ``x`` only after it: such a use is sound, though
no task before it sets ``x``. :func:`proven` reads the condition; :func:`always_guarded` says
whether every path to an element passes such a branch.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

__all__ = ["always_guarded", "proven", "unguarded"]

_SCOPES = frozenset({"vars", "locals", "globals"})


def _tree(condition: str) -> ast.expr | None:
    try:
        return ast.parse(condition.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def proven(condition: str) -> frozenset[str]:
    """The variables that exist whenever the Python ``condition`` holds (``'x' in vars()``, ``not``, ``and``
    and ``or`` of such tests); empty for anything else, or text that does not parse."""
    tree = _tree(condition)
    return _proven(tree, True) if tree is not None else frozenset()


def unguarded(condition: str) -> frozenset[str] | None:
    """The names ``condition`` reads where it has not tested them first (``'x' in vars() and x > 1`` reads no
    unguarded ``x``); None if it does not parse."""
    tree = _tree(condition)
    return frozenset(_unguarded(tree, frozenset())) if tree is not None else None


def _proven(node: ast.expr, when: bool) -> frozenset[str]:
    """The variables that exist whenever ``node`` is ``when`` (True or False)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _proven(node.operand, not when)
    if isinstance(node, ast.BoolOp):
        parts = [_proven(v, when) for v in node.values]
        if isinstance(node.op, ast.And) == when:  # all of them hold (and) or all failed (or)
            return frozenset().union(*parts)
        return frozenset.intersection(*parts)
    if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn))
            and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):  # fmt: skip
        scope = node.comparators[0]
        if (isinstance(scope, ast.Call) and isinstance(scope.func, ast.Name) and scope.func.id in _SCOPES
                and not scope.args and not scope.keywords and isinstance(node.ops[0], ast.In) == when):  # fmt: skip
            return frozenset({node.left.value})
    return frozenset()


def _unguarded(node: ast.AST, known: frozenset[str]) -> set[str]:
    if isinstance(node, ast.BoolOp):  # evaluated left to right, each part only if the ones before did not decide
        out: set[str] = set()
        for v in node.values:
            out |= _unguarded(v, known)
            known = known | _proven(v, isinstance(node.op, ast.And))
        return out
    if isinstance(node, ast.IfExp):
        return (_unguarded(node.test, known) | _unguarded(node.body, known | _proven(node.test, True))
                | _unguarded(node.orelse, known | _proven(node.test, False)))  # fmt: skip
    if isinstance(node, ast.Name):
        return set() if node.id in known else {node.id}
    out = set()
    for child in ast.iter_child_nodes(node):
        out |= _unguarded(child, known)
    return out


def always_guarded(target: str, variable: str, pred: Mapping[str, Sequence[tuple[str, str | None]]],
                   guards: Mapping[str, frozenset[str]]) -> bool:  # fmt: skip
    """Whether every path that reaches ``target`` passes a flow whose condition proves ``variable`` exists.

    ``pred`` gives each element's predecessors with the flow id between them (None: no flow, e.g. a
    boundary event's host); ``guards`` the variables each flow's condition proves. A path is followed
    back from ``target``; reaching an element without predecessors (a start) unguarded means no."""
    seen = {target}
    stack = [target]
    while stack:
        node = stack.pop()
        sources = pred.get(node, ())
        if not sources:
            return False
        for source, flow in sources:
            if flow is not None and variable in guards.get(flow, frozenset()):
                continue
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return True
