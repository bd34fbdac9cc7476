"""Which case variables a sequence flow's condition proves to exist, for validate's unknown-variable check.

SpiffWorkflow's models test for an optional variable with ``'x' in vars()`` (or ``locals()``,
``globals()``) on a gateway's branch, and use ``x`` only after it: such a use is sound, though
no task before it sets ``x``. :func:`proven` reads the condition; :func:`always_guarded` says
whether every path to an element passes such a branch.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

__all__ = ["always_guarded", "proven"]

_SCOPES = frozenset({"vars", "locals", "globals"})


def proven(condition: str) -> frozenset[str]:
    """The variables that exist whenever the Python ``condition`` holds (``'x' in vars()`` and ``and``/``or``
    of such tests); empty for anything else, or text that does not parse."""
    try:
        tree = ast.parse(condition.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    return _proven(tree.body)


def _proven(node: ast.expr) -> frozenset[str]:
    if isinstance(node, ast.BoolOp):
        parts = [_proven(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return frozenset().union(*parts)
        return frozenset.intersection(*parts)
    if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In)
            and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):  # fmt: skip
        scope = node.comparators[0]
        if (isinstance(scope, ast.Call) and isinstance(scope.func, ast.Name) and scope.func.id in _SCOPES
                and not scope.args and not scope.keywords):  # fmt: skip
            return frozenset({node.left.value})
    return frozenset()


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
